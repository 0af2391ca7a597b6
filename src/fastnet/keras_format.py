"""Keras 3's file formats, both ways: `.keras` model archives and `.weights.h5` weight files (h5py, the optional
`keras` extra; Keras itself is never needed).

    x.keras            a zip: config.json (the model: Keras class names, layer configs, compile config),
                       metadata.json, model.weights.h5
    x.weights.h5       HDF5: layers/<path>/vars/0.. each layer's weights in Keras's order and layouts (Dense
                       kernel (in, out), Conv2D kernel (rows, cols, in, out), bias (out,)), optimizer/vars/0..
                       (iteration, learning rate, then the slots weight by weight), vars (the model's own: none)

A layer's <path> is not its name: Keras names it after its class in snake case, numbered by occurrence
(dense, dense_1, conv2d, max_pooling2d, ...); the group's `name` attribute holds the layer's name.

Both orderings move exactly: Conv2D and MaxPooling2D carry their data_format, and a Flatten is written with the
data_format that makes Keras 3 flatten in the order fastnet does (a plain reshape of the public tensor:
(C, H, W) after channels_first layers, Keras 1's order; Flatten(data_format='channels_first') is Keras 3's
(H, W, C)). A layer or setting Keras cannot represent, or one fastnet lacks, gets a KerasFileError naming it.
"""
import datetime
import io
import json
import os
import re
import warnings
import zipfile

import numpy as np

from fastnet import _untrusted, _version, layers, mixed_precision, optimizers
from fastnet._io import atomic_write
from fastnet.layers.base import by_class

KERAS_VERSION = "3.0.0"  # the Keras format version written (metadata.json); fastnet's own version beside it


class KerasFileError(_untrusted.ModelFileError):
    """A Keras file fastnet cannot read, or a model it cannot write as one (the message names the reason)."""


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("Keras .keras and .weights.h5 files need h5py: pip install 'fastnet[keras]'") from None
    return h5py


# ---------------------------------------------------------------- names and paths
KERAS_CLASSES = {"Dense": layers.Dense, "Conv2D": layers.Conv2D, "MaxPooling2D": layers.MaxPooling2D,
                 "Dropout": layers.Dropout, "Flatten": layers.Flatten, "Activation": layers.Activation,
                 "LeakyReLU": layers.LeakyReLU}
ALIASES = {"Convolution2D": "Conv2D", "MaxPool2D": "MaxPooling2D"}  # Keras's aliases of the same classes
INITIALIZERS = {"glorot_uniform": "GlorotUniform", "glorot_normal": "GlorotNormal", "he_uniform": "HeUniform",
                "he_normal": "HeNormal", "zeros": "Zeros", "ones": "Ones"}
OPTIMIZERS = {"SGD": optimizers.SGD, "RMSprop": optimizers.RMSprop, "Adadelta": optimizers.Adadelta,
              "Adam": optimizers.Adam}


_KERAS_NAMES = {cls: name for name, cls in KERAS_CLASSES.items()}


def keras_class(layer):
    """The Keras class a layer is written as: its own class's, else its nearest base class's (Convolution2D:
    Conv2D)."""
    name = by_class(_KERAS_NAMES, layer)
    if name is not None:
        return name
    raise KerasFileError(f"{layer.name} ({type(layer).__name__}): no Keras layer to write it as")


def snake_case(name):
    """Keras's naming.to_snake_case: 'MaxPooling2D' -> 'max_pooling2d'."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def layer_paths(model):
    """Each layer's group in a Keras weights file: its class in snake case, then _1, _2, ... on repeats."""
    used, paths = {}, []
    for layer in model.layers:
        base = snake_case(keras_class(layer))
        used[base] = used.get(base, -1) + 1
        paths.append(f"layers/{base}" + (f"_{used[base]}" if used[base] else ""))
    return paths


# ---------------------------------------------------------------- weights files
def _slot_order(model):
    """The optimizer's state as Keras lists it after iteration and learning rate: for each weight in model order,
    each slot (Keras interleaves an optimizer's slots per weight), as views into fastnet's flat slot arrays."""
    opt = model.optimizer
    slots = opt.slots if not (isinstance(opt, optimizers.SGD) and opt.hyper["momentum"] == 0) else []
    views, offset = [], 0
    for w in model.weights:
        views += [s[offset:offset + w.size].reshape(w.shape) for s in slots]
        offset += w.size
    return views


def write_weights(model, f):
    """The model's weights (and its optimizer's state when compiled) into an open h5py File, Keras's layout."""
    f.create_group("vars").attrs["name"] = model.name
    for layer, path in zip(model.layers, layer_paths(model)):
        group = f.create_group(f"{path}/vars")
        group.attrs["name"] = layer.name
        for i, w in enumerate(layer.params):
            group.create_dataset(str(i), data=np.asarray(w, np.float32))
    if model._compiled:
        group = f.create_group("optimizer/vars")
        group.attrs["name"] = type(model.optimizer).__name__.lower()
        group.create_dataset("0", data=np.int64(model.optimizer.iterations))
        group.create_dataset("1", data=np.float32(model.optimizer.lr))
        for i, s in enumerate(_slot_order(model)):
            group.create_dataset(str(i + 2), data=s)


def _weight_datasets(model, h5):
    """The datasets holding each layer's weights, in get_weights order, their shapes checked (nothing read)."""
    found = []
    for layer, path in zip(model.layers, layer_paths(model)):
        specs = layer.weight_specs()
        if not specs:
            continue
        names = h5.groups.get(f"{path}/vars")
        if names is None:
            raise h5.error(f"no weights for {layer.name} ({keras_class(layer)}) at {path}: the file holds "
                           f"{sorted(h5.groups.get('layers', []))}; is it the same architecture?")
        if len(names) != len(specs):
            raise h5.error(f"{path} holds {len(names)} arrays, {layer.name} has {len(specs)}")
        for i, (wname, shape, *_) in enumerate(specs):
            dataset = h5.datasets.get(f"{path}/vars/{i}")
            if dataset is None:
                raise h5.error(f"{path}/vars holds {sorted(names)}; Keras numbers a layer's weights 0, 1, ... "
                               f"({layer.name}/{wname} is {i})")
            if dataset.shape != tuple(shape):
                raise h5.error(f"{path}/vars/{i} has shape {dataset.shape}, {layer.name}/{wname} has {tuple(shape)}")
            found.append(dataset)
    return found


def _read_optimizer_state(model, h5):
    """(iterations, slot arrays) from the file when its optimizer state fits the model's compiled optimizer;
    None when the model is not compiled or the file holds no state, or (with a warning) when it does not fit."""
    names = h5.groups.get("optimizer/vars")
    if not model._compiled or names is None:
        return None
    stored = [h5.datasets.get(f"optimizer/vars/{i}") for i in range(len(names))]
    if None in stored:
        raise h5.error(f"optimizer/vars holds {sorted(names)}; Keras numbers them 0, 1, ...")
    slots = _slot_order(model)
    if len(stored) != len(slots) + 2 or stored[0].shape not in ((), (1,)) or \
            any(s.shape != v.shape for s, v in zip(stored[2:], slots)):
        if len(stored) > 2:
            warnings.warn(f"{h5.source.name}: the file's optimizer state ({len(stored) - 2} arrays) does not fit "
                          f"{model.optimizer} ({len(slots)}); the optimizer starts afresh", RuntimeWarning,
                          stacklevel=4)
        return None
    iterations = np.asarray(h5.read(stored[0]), dtype=np.float64).reshape(-1)[0]
    if not (np.isfinite(iterations) and iterations == int(iterations) and 0 <= iterations < 2**63):
        raise h5.error(f"optimizer/vars/0, the optimizer's iteration count, is {iterations}")
    return int(iterations), [_untrusted.check_finite(h5, h5.read(d), d.path) for d in stored[2:]]


def _set_optimizer_state(model, state):
    if state is not None:
        for view, s in zip(_slot_order(model), state[1]):
            np.copyto(view, s, casting="unsafe")
        model.optimizer.iterations = state[0]


def _set_weights(model, h5, weights, restored):
    try:
        (model._set_restored_weights if restored else model.set_weights)(weights)
    except (TypeError, ValueError) as e:
        raise h5.error(str(e)) from None


def read_weights(model, h5):
    """Keras-layout weights from a walked HDF5 file (fastnet._untrusted.HDF5) into the model, and the optimizer's
    state when the model is compiled and the file holds state of that optimizer's shape. Every shape is checked
    before anything is read; the model changes only once everything has been read."""
    weights = [h5.read(d) for d in _weight_datasets(model, h5)]
    state = _read_optimizer_state(model, h5)
    _set_weights(model, h5, weights, restored=False)
    _set_optimizer_state(model, state)


def save_weights(model, path):
    h5py = _h5py()

    def write(fileobj):
        with h5py.File(fileobj, "w") as f:
            write_weights(model, f)

    atomic_write(path, write)


def load_weights(model, path):
    _h5py()
    source = _untrusted.Source(path, KerasFileError)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_weights: no such file {path}")
    with _untrusted.HDF5.open(source, path) as h5:
        read_weights(model, h5)


# ---------------------------------------------------------------- model configs, fastnet -> Keras
def _initializer(name):
    return {"module": "keras.initializers", "class_name": INITIALIZERS[name], "config": {}, "registered_name": None}


def _flatten_format(layer):
    """The data_format under which Keras 3 flattens as this layer does (see the module docstring)."""
    if layer.in_fmt == "channels_first" and len(layer.in_shape) == 3:
        return "channels_last" if layer.reorders else "channels_first"
    return "channels_last"


def _dtype_policy(name):
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name}, "registered_name": None}


def layer_config(layer):
    name = keras_class(layer)
    config = {"name": layer.name, "trainable": True, "dtype": _dtype_policy(layer.dtype_policy.name)}
    if name in ("Dense", "Conv2D"):
        config.update(activation=layer.activation, use_bias=layer.use_bias,
                      kernel_initializer=_initializer(layer.kernel_initializer),
                      bias_initializer=_initializer(layer.bias_initializer), kernel_regularizer=None,
                      bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None)
    if name == "Dense":
        config["units"] = layer.units
    elif name == "Conv2D":
        config.update(filters=layer.filters, kernel_size=list(layer.kernel_size), strides=list(layer.strides),
                      padding=layer.padding, data_format=layer.in_fmt, dilation_rate=[1, 1], groups=1)
    elif name == "MaxPooling2D":
        config.update(pool_size=list(layer.pool_size), strides=list(layer.strides), padding=layer.padding,
                      data_format=layer.in_fmt)
    elif name == "Dropout":
        config.update(rate=layer.rate, seed=None, noise_shape=None)
    elif name == "Flatten":
        config["data_format"] = _flatten_format(layer)
    elif name == "Activation":
        config["activation"] = layer.activation
    else:  # a layer whose Keras config is its own: the fields Keras takes, from get_config
        config.update({k: v for k, v in layer.get_config().items() if k in _TAKEN[name]})
    return {"module": "keras.layers", "class_name": name, "config": config, "registered_name": None,
            "build_config": {"input_shape": list(layer.input_shape)}}


def optimizer_config(opt):
    name = {cls: n for n, cls in OPTIMIZERS.items()}[type(opt)]
    if opt.decay:
        raise KerasFileError(f"{opt}: Keras 3 optimizers have no time decay (decay={opt.decay}); save with "
                             "include_optimizer=False, or as .npz")
    config = {"name": name.lower(), "learning_rate": opt.lr, **opt.hyper}
    if name == "RMSprop":
        config.update(momentum=0.0, centered=False)
    if name == "Adam":
        config["amsgrad"] = False
    return {"module": "keras.optimizers", "class_name": name, "config": config, "registered_name": None}


def model_config(model, include_optimizer):
    input_shape = [None, *model.input_shape[1:]]
    input_layer = {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
                   "config": {"batch_shape": input_shape, "dtype": "float32", "sparse": False,
                              "name": "input_layer"}}
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": model.name, "trainable": True, "dtype": "float32",
                         "layers": [input_layer] + [layer_config(layer) for layer in model.layers],
                         "build_input_shape": input_shape},
              "build_config": {"input_shape": input_shape}}
    if model._compiled and include_optimizer:
        config["compile_config"] = {"optimizer": optimizer_config(model.optimizer), "loss": model.loss,
                                    "loss_weights": None, "metrics": list(model.metrics) or None,
                                    "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
                                    "jit_compile": False}
    return config


def save_keras(model, path, include_optimizer=True):
    """The model as a Keras 3 .keras archive (written whole to a temporary file, then renamed into place)."""
    h5py = _h5py()
    config = model_config(model, include_optimizer)
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        write_weights(model, f)
        if not include_optimizer and "optimizer" in f:
            del f["optimizer"]
    metadata = {"keras_version": KERAS_VERSION, "fastnet_version": _version.__version__,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}

    def write(fileobj):
        with zipfile.ZipFile(fileobj, "w") as z:
            z.writestr("metadata.json", json.dumps(metadata))
            z.writestr("config.json", json.dumps(config))
            z.writestr("model.weights.h5", weights.getvalue())

    atomic_write(path, write)


# ---------------------------------------------------------------- model configs, Keras -> fastnet
_NOTHING = (None, False, 0, 0.0, [1, 1], 1, "float32")  # values of settings fastnet lacks that mean "not used"
_IGNORED = {"trainable", "dtype", "module", "registered_name", "seed", "batch_input_shape", "autocast",
            "input_dim", "optional"}
_TAKEN = {
    "Dense": {"name", "units", "activation", "use_bias", "kernel_initializer", "bias_initializer"},
    "Conv2D": {"name", "filters", "kernel_size", "strides", "padding", "data_format", "activation", "use_bias",
               "kernel_initializer", "bias_initializer"},
    "MaxPooling2D": {"name", "pool_size", "strides", "padding", "data_format"},
    "Dropout": {"name", "rate"},
    "Flatten": {"name", "data_format"},
    "Activation": {"name", "activation"},
    "LeakyReLU": {"name", "negative_slope"},
}


def _dtype_name(source, dtype, where):
    if isinstance(dtype, dict):  # a DTypePolicy: {'class_name': 'DTypePolicy', 'config': {'name': ...}}
        dtype = source.field(source.field(dtype, "config", "object", f"{where}: dtype"), "name", "string",
                             f"{where}: dtype")
    return source.expect(dtype, ("string", "null"), f"{where}: dtype")


def _read_initializer(source, value, where):
    if isinstance(value, dict):
        value = source.field(value, "class_name", "string", where)
    names = {v: k for k, v in INITIALIZERS.items()}
    if isinstance(value, str) and value in names:
        return names[value]
    if isinstance(value, str) and value in INITIALIZERS:
        return value
    raise source.error(f"{where}: initializer {value!r:.60}; fastnet has {', '.join(INITIALIZERS)}")


def keras_layer(source, spec, i, input_shape=None):
    """A fastnet layer from entry i of a Keras Sequential config (input_shape: the model's, for the first)."""
    cls = source.field(spec, "class_name", "string", f"layer {i}")
    cls = ALIASES.get(cls, cls)
    config = dict(source.field(spec, "config", "object", f"layer {i}", {}))
    if cls not in KERAS_CLASSES:
        raise source.error(f"layer {config.get('name')!r:.60} is a Keras {cls:.60}; fastnet reads "
                           f"{', '.join(KERAS_CLASSES)} (and InputLayer)")
    where = f"layer {config.get('name')!r:.60} ({cls})"
    dtype = _dtype_name(source, config.get("dtype"), where)
    if dtype not in (None, *mixed_precision.POLICIES):
        raise source.error(f"{where}: dtype policy {dtype!r}; fastnet has {', '.join(mixed_precision.POLICIES)}")
    if config.get("trainable") is False:
        raise source.error(f"{where}: trainable=False; fastnet trains every layer")
    for key, value in config.items():
        if key not in _TAKEN[cls] and key not in _IGNORED and value not in _NOTHING:
            raise source.error(f"{where}: {key}={value!r:.60} is a Keras setting fastnet does not have")
    kwargs = {k: v for k, v in config.items() if k in _TAKEN[cls]}
    kwargs["dtype"] = dtype or "float32"  # the file's policy, never the global one in force while loading
    if input_shape is not None:
        kwargs["input_shape"] = tuple(input_shape)
    for key in ("kernel_initializer", "bias_initializer"):
        if key in kwargs:
            kwargs[key] = _read_initializer(source, kwargs[key], f"{where}: {key}")
    try:
        return KERAS_CLASSES[cls](**kwargs)
    except (TypeError, ValueError, OverflowError) as e:
        raise source.error(f"{where}: {e}") from None


def _input_shape(source, config, entries):
    """The model's input shape (no batch axis) from an InputLayer entry, a first layer's batch_input_shape, or
    the build config."""
    for i, spec in enumerate(entries):
        c = source.field(spec, "config", "object", f"layer {i}", {})
        shape = c.get("batch_shape") or c.get("batch_input_shape")
        if shape:
            return tuple(source.expect(shape, "list", f"layer {i}: batch_shape")[1:])
    shape = source.field(config, "build_input_shape", ("list", "null"), "the model's config", None)
    return tuple(shape[1:]) if shape else None


def keras_optimizer(source, spec, where):
    """An optimizer from a Keras compile_config entry: a name, or {'class_name', 'config'}."""
    if isinstance(spec, str) and spec.lower() in optimizers.ALL:
        return optimizers.get(spec)
    cls = OPTIMIZERS.get(spec.get("class_name")) if isinstance(spec, dict) else None
    if cls is None:
        raise source.error(f"{where}: optimizer {spec!r:.80}; fastnet has {', '.join(OPTIMIZERS)}")
    config = dict(source.field(spec, "config", ("object", "null"), where, None) or {})
    hyper = {k: config.pop(k) for k in list(config) if k in cls.defaults}
    lr = config.pop("learning_rate", None)
    if isinstance(lr, dict):
        raise source.error(f"{where}: a learning-rate schedule ({lr.get('class_name')!r:.60}); fastnet takes a number")
    unused = {"name", "jit_compile", "is_legacy_optimizer", "ema_momentum", "ema_overwrite_frequency"}
    for key, value in config.items():
        if key not in unused and value not in _NOTHING:
            raise source.error(f"{where}: optimizer setting {key}={value!r:.60} that fastnet does not have")
    try:
        return cls(learning_rate=lr, **hyper)
    except (TypeError, ValueError, OverflowError) as e:
        raise source.error(f"{where}: {e}") from None


def _compile(source, model, compile_config):
    where = "compile_config"
    loss = compile_config.get("loss")
    if not isinstance(loss, str):
        raise source.error(f"{where}: loss {loss!r:.60}; fastnet reads losses given by name")
    try:
        model.compile(loss=loss, optimizer=keras_optimizer(source, compile_config.get("optimizer"), where),
                      metrics=compile_config.get("metrics"))
    except (TypeError, ValueError, OverflowError) as e:
        raise source.error(f"{where}: {e}") from None


def load_keras(path, compile=True):
    """A fastnet Sequential from a Keras 3 .keras archive, read as untrusted input (fastnet._untrusted)."""
    _h5py()
    source = _untrusted.Source(path, KerasFileError)
    with _untrusted.Archive(source, path, "a .keras archive") as archive:
        if not {"config.json", "model.weights.h5"} <= set(archive.members):
            raise source.error(f"not a Keras 3 archive (it holds {sorted(archive.members)[:20]}; config.json and "
                               "model.weights.h5 expected)")
        spec = source.json(archive.read("config.json", _untrusted.MAX_JSON_BYTES), "config.json")
        if not isinstance(spec, dict) or spec.get("class_name") != "Sequential":
            kind = spec.get("class_name") if isinstance(spec, dict) else spec
            raise source.error(f"the model is a Keras {kind!r:.60}; fastnet reads Sequential models")
        config = source.field(spec, "config", "object", "config.json")
        entries = [source.expect(s, "object", f"layer {i}")
                   for i, s in enumerate(source.field(config, "layers", "list", "the model's config"))]
        shape = _input_shape(source, config, entries)
        if shape is None:
            raise source.error("the model's input shape is not in the file (an unbuilt model)")
        entries = [(i, s) for i, s in enumerate(entries) if s.get("class_name") != "InputLayer"]
        layers_ = [keras_layer(source, s, i, input_shape=shape if n == 0 else None) for n, (i, s) in enumerate(entries)]
        model = _untrusted.restore(source, source.field(config, "name", "string", "the model's config", None),
                                   layers_)
        shapes = [shape for layer in model.layers for _, shape, *_ in layer.weight_specs()]
        size = archive.members["model.weights.h5"].file_size
        _untrusted.check_weights_fit(source, shapes, size, "its model.weights.h5")
        compile_config = source.field(spec, "compile_config", ("object", "null"), "config.json", None)
        weights = io.BytesIO(archive.read("model.weights.h5", size))
    with _untrusted.HDF5(source, weights, "model.weights.h5", size) as h5:
        _set_weights(model, h5, [h5.read(d) for d in _weight_datasets(model, h5)], restored=True)
        if compile and compile_config:
            _compile(source, model, compile_config)
            _set_optimizer_state(model, _read_optimizer_state(model, h5))
    return model
