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

from fastnet import _version, layers, mixed_precision, optimizers
from fastnet._io import atomic_write

KERAS_VERSION = "3.0.0"  # the Keras format version written (metadata.json); fastnet's own version beside it


class KerasFileError(ValueError):
    """A Keras file fastnet cannot read, or a model it cannot write as one (the message names the reason)."""


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("Keras .keras and .weights.h5 files need h5py: pip install 'fastnet[keras]'") from None
    return h5py


# ---------------------------------------------------------------- names and paths
KERAS_CLASSES = {"Dense": layers.Dense, "Conv2D": layers.Conv2D, "MaxPooling2D": layers.MaxPooling2D,
                 "Dropout": layers.Dropout, "Flatten": layers.Flatten, "Activation": layers.Activation}
ALIASES = {"Convolution2D": "Conv2D", "MaxPool2D": "MaxPooling2D"}  # Keras's aliases of the same classes
INITIALIZERS = {"glorot_uniform": "GlorotUniform", "glorot_normal": "GlorotNormal", "he_uniform": "HeUniform",
                "he_normal": "HeNormal", "zeros": "Zeros", "ones": "Ones"}
OPTIMIZERS = {"SGD": optimizers.SGD, "RMSprop": optimizers.RMSprop, "Adadelta": optimizers.Adadelta,
              "Adam": optimizers.Adam}


def keras_class(layer):
    for name, cls in KERAS_CLASSES.items():
        if isinstance(layer, cls):
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


def read_weights(model, f, where):
    """Keras-layout weights from an open h5py File into the model (checked whole before anything changes); the
    optimizer's state too when the model is compiled and the file holds state of the same optimizer's shape."""
    new = []
    for layer, path in zip(model.layers, layer_paths(model)):
        if not layer.params:
            continue
        group = f.get(f"{path}/vars")
        if group is None:
            raise KerasFileError(f"{where}: no weights for {layer.name} ({keras_class(layer)}) at {path}: the file "
                                 f"holds {sorted(f.get('layers', {}).keys())}; is it the same architecture?")
        if len(group) != len(layer.params):
            raise KerasFileError(f"{where}: {path} holds {len(group)} arrays, {layer.name} has {len(layer.params)}")
        for i, (mine, wname) in enumerate(zip(layer.params, layer.weight_names)):
            w = np.asarray(group[str(i)])
            if w.shape != mine.shape:
                raise KerasFileError(f"{where}: {path}/vars/{i} has shape {w.shape}, {layer.name}/{wname} has "
                                     f"{mine.shape}")
            new.append(w)
    try:
        model.set_weights(new)
    except (TypeError, ValueError) as e:
        raise KerasFileError(f"{where}: {e}") from None
    group = f.get("optimizer/vars")
    if model._compiled and group is not None:
        slots = _slot_order(model)
        stored = [np.asarray(group[str(i)]) for i in range(len(group))]
        if len(stored) == len(slots) + 2 and all(s.shape == v.shape for s, v in zip(stored[2:], slots)):
            for view, s in zip(slots, stored[2:]):
                np.copyto(view, s)
            model.optimizer.iterations = int(stored[0])
        elif len(stored) > 2:
            warnings.warn(f"{where}: the file's optimizer state ({len(stored) - 2} arrays) does not fit "
                          f"{model.optimizer} ({len(slots)}); the optimizer starts afresh", RuntimeWarning,
                          stacklevel=3)


def save_weights(model, path):
    h5py = _h5py()

    def write(fileobj):
        with h5py.File(fileobj, "w") as f:
            write_weights(model, f)

    atomic_write(path, write)


def load_weights(model, path):
    h5py = _h5py()
    try:
        with h5py.File(os.fspath(path), "r") as f:
            read_weights(model, f, str(path))
    except OSError as e:
        if isinstance(e, FileNotFoundError) or not os.path.exists(path):
            raise FileNotFoundError(f"load_weights: no such file {path}") from None
        raise KerasFileError(f"{path}: not a readable HDF5 weights file ({e})") from None


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
}


def _dtype_name(dtype):
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name")
    return dtype


def _read_initializer(value, where):
    if isinstance(value, dict):
        value = value.get("class_name")
    names = {v: k for k, v in INITIALIZERS.items()}
    if value in names:
        return names[value]
    if value in INITIALIZERS:
        return value
    raise KerasFileError(f"{where}: initializer {value!r}; fastnet has {', '.join(INITIALIZERS)}")


def keras_layer(spec, where, input_shape=None):
    """A fastnet layer from one entry of a Keras Sequential config (input_shape: the model's, for the first)."""
    cls = ALIASES.get(spec.get("class_name"), spec.get("class_name"))
    config = dict(spec.get("config") or {})
    if cls not in KERAS_CLASSES:
        raise KerasFileError(f"{where}: layer {config.get('name')!r} is a Keras {cls}; fastnet reads "
                             f"{', '.join(KERAS_CLASSES)} (and InputLayer)")
    where = f"{where}: layer {config.get('name')!r} ({cls})"
    dtype = _dtype_name(config.get("dtype"))
    if dtype not in (None, *mixed_precision.POLICIES):
        raise KerasFileError(f"{where}: dtype policy {dtype!r}; fastnet has {', '.join(mixed_precision.POLICIES)}")
    if config.get("trainable") is False:
        raise KerasFileError(f"{where}: trainable=False; fastnet trains every layer")
    for key, value in config.items():
        if key not in _TAKEN[cls] and key not in _IGNORED and value not in _NOTHING:
            raise KerasFileError(f"{where}: {key}={value!r} is a Keras setting fastnet does not have")
    kwargs = {k: v for k, v in config.items() if k in _TAKEN[cls]}
    kwargs["dtype"] = dtype or "float32"  # the file's policy, never the global one in force while loading
    if input_shape is not None:
        kwargs["input_shape"] = tuple(input_shape)
    for key in ("kernel_initializer", "bias_initializer"):
        if key in kwargs:
            kwargs[key] = _read_initializer(kwargs[key], where)
    try:
        return KERAS_CLASSES[cls](**kwargs)
    except (TypeError, ValueError) as e:
        raise KerasFileError(f"{where}: {e}") from None


def _input_shape(config):
    """The model's input shape (no batch axis) from an InputLayer entry, a first layer's batch_input_shape, or
    the build config."""
    for spec in config.get("layers", []):
        c = spec.get("config") or {}
        shape = c.get("batch_shape") or c.get("batch_input_shape")
        if shape:
            return tuple(shape[1:])
    shape = config.get("build_input_shape")
    return tuple(shape[1:]) if shape else None


def keras_optimizer(spec, where):
    """An optimizer from a Keras compile_config entry: a name, or {'class_name', 'config'}."""
    if isinstance(spec, str) and spec.lower() in optimizers.ALL:
        return optimizers.get(spec)
    cls = OPTIMIZERS.get(spec.get("class_name")) if isinstance(spec, dict) else None
    if cls is None:
        raise KerasFileError(f"{where}: optimizer {spec!r}; fastnet has {', '.join(OPTIMIZERS)}")
    config = dict(spec.get("config") or {})
    hyper = {k: config.pop(k) for k in list(config) if k in cls.defaults}
    lr = config.pop("learning_rate", None)
    if isinstance(lr, dict):
        raise KerasFileError(f"{where}: a learning-rate schedule ({lr.get('class_name')}); fastnet takes a number")
    unused = {"name", "jit_compile", "is_legacy_optimizer", "ema_momentum", "ema_overwrite_frequency"}
    for key, value in config.items():
        if key not in unused and value not in _NOTHING:
            raise KerasFileError(f"{where}: optimizer setting {key}={value!r} that fastnet does not have")
    return cls(learning_rate=lr, **hyper)


def load_keras(path, compile=True):
    """A fastnet Sequential from a Keras 3 .keras archive."""
    from fastnet.models import Sequential

    h5py = _h5py()
    where = str(path)
    try:
        with zipfile.ZipFile(os.fspath(path)) as z:
            names = set(z.namelist())
            if not {"config.json", "model.weights.h5"} <= names:
                raise KerasFileError(f"{where}: not a Keras 3 archive (it holds {sorted(names)}; config.json and "
                                     "model.weights.h5 expected)")
            spec = json.loads(z.read("config.json"))
            weights = z.read("model.weights.h5")
    except (zipfile.BadZipFile, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KerasFileError(f"{where}: truncated, corrupted or not a .keras archive ({type(e).__name__}: {e})") \
            from None
    if not isinstance(spec, dict) or spec.get("class_name") != "Sequential":
        raise KerasFileError(f"{where}: the model is a Keras {spec.get('class_name') if isinstance(spec, dict) else spec!r}; "
                             "fastnet reads Sequential models")
    config = spec.get("config") or {}
    model = Sequential(name=config.get("name"))
    specs = [s for s in config.get("layers", []) if s.get("class_name") != "InputLayer"]
    shape = _input_shape(config)
    if shape is None:
        raise KerasFileError(f"{where}: the model's input shape is not in the file (an unbuilt model)")
    for i, layer_spec in enumerate(specs):
        model.add(keras_layer(layer_spec, where, input_shape=shape if i == 0 else None))
    compile_config = spec.get("compile_config")
    if compile and compile_config:
        loss, metrics = compile_config.get("loss"), compile_config.get("metrics")
        if not isinstance(loss, str):
            raise KerasFileError(f"{where}: loss {loss!r}; fastnet reads losses given by name")
        try:
            model.compile(loss=loss, optimizer=keras_optimizer(compile_config.get("optimizer"), where),
                          metrics=metrics)
        except (TypeError, ValueError) as e:
            raise KerasFileError(f"{where}: {e}") from None
    with h5py.File(io.BytesIO(weights), "r") as f:
        read_weights(model, f, where)
    return model
