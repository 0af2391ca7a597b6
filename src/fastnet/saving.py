"""Saving and loading models: by the file's extension, Keras 3's .keras archive (fastnet.keras_format) or
fastnet's own .npz; weights alone as Keras 3's .weights.h5.

fastnet's own format: one .npz archive (a zip of .npy files), each member read by fastnet._untrusted (its .npy
header checked against what the model needs before its data is read; never a pickle):

    fastnet_model.json  0-d unicode array: {"format": "fastnet-model", "version": 1, "model": get_config(),
                        "compile": {"loss", "metrics", "optimizer": {"class_name", "config"}} | null,
                        "state": {"step", "epochs_trained", "iterations", "seed", "model_id"}}
                        (the random streams go on where they were)
    weight_NNN          the model's weights in get_weights() order (Keras layouts)
    optimizer_NNN       the optimizer's slots over the flat parameter arena (when saved with it)

Files are written to a partial file beside the target and renamed into place (fastnet._io): a crash never
leaves a half-written model.
"""
import json
import os
import re

import numpy as np

from fastnet import _check, _untrusted, keras_format, layers, onnx_import, optimizers
from fastnet._io import atomic_write
from fastnet._untrusted import ModelFileError

FORMAT, VERSION = "fastnet-model", 1
MODEL_EXTENSIONS = (".keras", ".npz")
WEIGHTS_EXTENSION = ".weights.h5"


def _extension(path, what, extensions):
    name = os.fspath(path)
    name = name.decode() if isinstance(name, bytes) else name
    for ext in extensions:
        if name.endswith(ext):
            return ext
    if what == "weights":
        raise ValueError(f"save_weights/load_weights: {name!r}: weights files end in {WEIGHTS_EXTENSION} (Keras 3's "
                         "layout); a whole model: save('x.keras') or save('x.npz')")
    raise ValueError(f"{what}: {name!r}: fastnet saves models as .keras (Keras 3's format) or .npz (fastnet's own, "
                     "with the optimizer state for exact resume); weights alone: save_weights('x.weights.h5')"
                     + (", ONNX: model.export('x.onnx')" if name.endswith(".onnx") else "")
                     + (" (legacy Keras .h5 model files are not supported)" if name.endswith((".h5", ".hdf5")) else ""))


def save_model(model, path, include_optimizer=True):
    """model.save: .keras or .npz, by the extension."""
    if _extension(path, "save", MODEL_EXTENSIONS) == ".keras":
        return keras_format.save_keras(model, path, include_optimizer)
    _save_npz(model, path, include_optimizer)


def save_weights(model, path):
    _extension(path, "weights", (WEIGHTS_EXTENSION,))
    keras_format.save_weights(model, path)


def load_weights(model, path):
    _extension(path, "weights", (WEIGHTS_EXTENSION,))
    keras_format.load_weights(model, path)


def _save_npz(model, path, include_optimizer):
    compiled = model._compiled
    meta = {"format": FORMAT, "version": VERSION, "model": model.get_config(), "compile": None,
            "state": {"step": model.step, "epochs_trained": model.epochs_trained, "iterations": 0, "seed": model.seed,
                      "model_id": model.model_id}}
    arrays = {f"weight_{i:03d}": w for i, w in enumerate(model.get_weights())}
    if compiled:
        meta["compile"] = {"loss": model.loss, "metrics": list(model.metrics),
                           "optimizer": optimizers.serialize(model.optimizer)}
        if include_optimizer:
            meta["state"]["iterations"] = model.optimizer.iterations
            arrays.update({f"optimizer_{i:03d}": s for i, s in enumerate(model.optimizer.slots)})
    arrays["fastnet_model.json"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **arrays))


NPZ_JSON = "fastnet_model.json.npy"
_NPZ_ARRAY = re.compile(r"(weight|optimizer)_(\d{3,})\.npy")


def _npz_members(archive):
    """The archive's weight and optimizer entries by kind, in order; any other member is refused by name."""
    found = {"weight": {}, "optimizer": {}}
    for name in archive.members:
        match = _NPZ_ARRAY.fullmatch(name)
        if name != NPZ_JSON and (match is None or name != f"{match[1]}_{int(match[2]):03d}.npy"):
            raise archive.source.error(f"unknown member {name!r}; a fastnet model holds {NPZ_JSON}, weight_NNN.npy "
                                       "and optimizer_NNN.npy")
        if match:
            found[match[1]][int(match[2])] = name
    return [[kind[i] for i in sorted(kind)] for kind in found.values()]


def _npz_arrays(archive, names, shapes, what):
    """The arrays of these members, each header checked against its expected shape before any is read."""
    if len(names) != len(shapes) or any(name != f"{what}_{i:03d}.npy" for i, name in enumerate(names)):
        raise archive.source.error(f"the file holds {len(names)} {what} arrays, the model described in it needs "
                                   f"{len(shapes)}")
    entries = [archive.npy(name) for name in names]
    for entry, shape in zip(entries, shapes):
        if entry.dtype.kind not in _untrusted.REAL_KINDS or entry.shape != tuple(shape):
            raise archive.source.error(f"{entry.name} is {entry.dtype} {entry.shape}; the model needs float32 "
                                       f"{tuple(shape)}")
    return [archive.array(entry) for entry in entries]


def _npz_layer(source, spec, i):
    """A layer from one entry of the file's layer list, by fastnet's own class names only."""
    not_layers = ("Layer", "LegacyAPIWarning", "Input", "InputLayer")  # never in a saved model's layer list
    what = f"layer {i}"
    name = source.field(spec, "class_name", "string", what)
    if name not in layers.__all__ or name in not_layers:
        raise source.error(f"{what}: unknown layer class {name!r}")
    config = dict(source.field(spec, "config", "object", what))
    config.setdefault("dtype", "float32")  # files from before policies; never the global policy
    if "batch_input_shape" in config:
        config["batch_input_shape"] = tuple(source.expect(config["batch_input_shape"], "list",
                                                          f"{what}: batch_input_shape"))
    try:
        return getattr(layers, name).from_config(config)
    except (TypeError, ValueError, OverflowError) as e:
        raise source.error(f"{what} ({name}): {e}") from None


def _load_npz(path, compile):
    source = _untrusted.Source(path, ModelFileError)
    with open(path, "rb") as f:
        if f.read(6) == b"\x93NUMPY":
            raise source.error("a single .npy array, not a fastnet model archive")
    with _untrusted.Archive(source, path, "a fastnet model file") as archive:
        if NPZ_JSON not in archive.members:
            raise source.error("not a fastnet model (no fastnet_model.json entry)")
        weight_names, slot_names = _npz_members(archive)
        entry = archive.npy(NPZ_JSON)
        if entry.dtype.kind != "U" or entry.shape != () or entry.nbytes > 4 * _untrusted.MAX_JSON_BYTES:
            raise source.error(f"fastnet_model.json is {entry.dtype} {entry.shape}; a JSON text was expected")
        meta = source.json(archive.text(entry), "fastnet_model.json")
        source.expect(meta, "object", "fastnet_model.json")
        if meta.get("format") != FORMAT:
            raise source.error(f"not a fastnet model (format {meta.get('format')!r:.60})")
        if meta.get("version") != VERSION:
            raise source.error(f"fastnet model format version {meta.get('version')!r:.60}, this fastnet reads "
                               f"{VERSION}")
        config = source.field(meta, "model", "object", "fastnet_model.json")
        layer_specs = source.field(config, "layers", "list", "model")
        model = _untrusted.restore(source, source.field(config, "name", "string", "model"),
                                   [_npz_layer(source, spec, i) for i, spec in enumerate(layer_specs)])
        shapes = [shape for layer in model.layers for _, shape, *_ in layer.weight_specs()]
        _untrusted.check_weights_fit(source, shapes, archive.size, "the file")
        weights = _npz_arrays(archive, weight_names, shapes, "weight")
        try:
            model._set_restored_weights(weights)
        except (TypeError, ValueError) as e:
            raise source.error(str(e)) from None

        state = source.field(meta, "state", "object", "fastnet_model.json")
        compiled = source.field(meta, "compile", ("object", "null"), "fastnet_model.json")
        if compile and compiled:
            loss = source.field(compiled, "loss", "string", "compile")
            metrics = source.field(compiled, "metrics", ("list", "null"), "compile")
            optimizer = source.field(compiled, "optimizer", "object", "compile")
            try:
                model.compile(loss=loss, optimizer=optimizers.get(optimizer), metrics=metrics)
            except (TypeError, ValueError, OverflowError) as e:
                raise source.error(f"compile: {e}") from None
            if slot_names:
                slots = _npz_arrays(archive, slot_names, [s.shape for s in model.optimizer.slots], "optimizer")
                for name, mine, saved in zip(slot_names, model.optimizer.slots, slots):
                    np.copyto(mine, _untrusted.check_finite(source, saved, name), casting="unsafe")
                model.optimizer.iterations = source.count(state, "iterations", "state")
    model.step = source.count(state, "step", "state", 0)
    model.epochs_trained = source.count(state, "epochs_trained", "state", 0)
    model.seed = source.count(state, "seed", "state", model.seed)
    model.model_id = source.count(state, "model_id", "state", model.model_id)
    return model


def load_model(path, compile=True, *, external_data=False):
    """A model from a .keras, .npz or .onnx file (by the extension). Files are untrusted input
    (fastnet._untrusted): nothing in them is executed, nothing outside them is read, and every size they claim is
    checked first. external_data=True lets an ONNX file's tensors come from files beside it (below its folder);
    a model from ONNX is an inference graph, uncompiled: compile it to train on."""
    path = _check.path(path, "path", "load_model")
    external_data = _check.boolean(external_data, "external_data", "load_model")
    ext = _extension(path, "load_model", MODEL_EXTENSIONS + (".onnx",))
    if ext == ".onnx":
        return onnx_import.load_onnx(path, external_data)
    if external_data:
        raise ValueError(f"load_model: external_data=True is for .onnx files; {os.fspath(path)!r} is {ext}")
    if ext == ".keras":
        if not os.path.exists(path):
            raise FileNotFoundError(f"load_model: no such file {os.fspath(path)}")
        return keras_format.load_keras(path, compile)
    return _load_npz(path, compile)
