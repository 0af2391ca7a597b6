"""Saving and loading models: by the file's extension, Keras 3's .keras archive (fastnet.keras_format) or
fastnet's own .npz; weights alone as Keras 3's .weights.h5.

fastnet's own format: one .npz archive (a zip of .npy files), read with allow_pickle=False.

    fastnet_model.json  0-d unicode array: {"format": "fastnet-model", "version": 1, "model": get_config(),
                        "compile": {"loss", "metrics", "optimizer": {"class_name", "config"}} | null,
                        "state": {"step", "epochs_trained", "iterations", "seed", "model_id"}}
                        (the random streams go on where they were)
    weight_NNN          the model's weights in get_weights() order (Keras layouts)
    optimizer_NNN       the optimizer's slots over the flat parameter arena (when saved with it)

Files are written to a temporary file beside the target and renamed into place: a crash never leaves a
half-written model.
"""
import json
import os
import zipfile

import numpy as np

from fastnet import _check, layers, optimizers
from fastnet._io import atomic_write
from fastnet.models import Sequential

FORMAT, VERSION = "fastnet-model", 1


class ModelFileError(ValueError):
    """A file that is not a valid fastnet model (truncated, corrupted, foreign or incompatible)."""


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
                     + (" (legacy Keras .h5 model files are not supported)" if name.endswith((".h5", ".hdf5")) else ""))


def save_model(model, path, include_optimizer=True):
    """model.save: .keras or .npz, by the extension."""
    if _extension(path, "save", MODEL_EXTENSIONS) == ".keras":
        from fastnet import keras_format

        return keras_format.save_keras(model, path, include_optimizer)
    _save_npz(model, path, include_optimizer)


def save_weights(model, path):
    from fastnet import keras_format

    _extension(path, "weights", (WEIGHTS_EXTENSION,))
    keras_format.save_weights(model, path)


def load_weights(model, path):
    from fastnet import keras_format

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


def _read(path):
    try:
        f = np.load(os.fspath(path), allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise ModelFileError(f"{path}: a single .npy array, not a fastnet model archive")
        with f:
            if "fastnet_model.json" not in f.files:
                raise ModelFileError(f"{path}: not a fastnet model (no fastnet_model.json entry)")
            meta = json.loads(str(f["fastnet_model.json"][()]))
            arrays = {k: f[k] for k in f.files if k != "fastnet_model.json"}
    except FileNotFoundError:
        raise
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: truncated, corrupted or not a fastnet model file ({type(e).__name__}: {e})") \
            from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a fastnet model (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise ModelFileError(f"{path}: fastnet model format version {meta.get('version')}, this fastnet reads {VERSION}")
    return meta, arrays


def load_model(path, compile=True):
    """A model from a .keras or .npz file (by the extension)."""
    path = _check.path(path, "path", "load_model")
    if _extension(path, "load_model", MODEL_EXTENSIONS) == ".keras":
        from fastnet import keras_format

        if not os.path.exists(path):
            raise FileNotFoundError(f"load_model: no such file {os.fspath(path)}")
        return keras_format.load_keras(path, compile)
    meta, arrays = _read(path)
    not_layers = ("Layer", "LegacyAPIWarning", "Input", "InputLayer")  # never in a saved model's layer list
    classes = {name: getattr(layers, name) for name in layers.__all__ if name not in not_layers}
    try:
        config = meta["model"]
        model = Sequential(name=config["name"])
        for spec in config["layers"]:
            if spec["class_name"] not in classes:
                raise ModelFileError(f"{path}: unknown layer class {spec['class_name']!r}")
            layer_config = dict(spec["config"])
            layer_config.setdefault("dtype", "float32")  # files from before policies; never the global policy
            if "batch_input_shape" in layer_config:
                layer_config["batch_input_shape"] = tuple(layer_config["batch_input_shape"])
            model.add(classes[spec["class_name"]].from_config(layer_config))
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: invalid model configuration ({type(e).__name__}: {e})") from None

    weights = [arrays.get(f"weight_{i:03d}") for i in range(len(model.weights))]
    extra = [k for k in arrays if k.startswith("weight_") and int(k[7:]) >= len(weights)]
    if any(w is None for w in weights) or extra:
        raise ModelFileError(f"{path}: the file holds {sum(k.startswith('weight_') for k in arrays)} weight arrays, "
                             f"the model described in it needs {len(weights)}")
    try:
        model.set_weights(weights)
    except ValueError as e:
        raise ModelFileError(f"{path}: {e}") from None

    if compile and meta.get("compile"):
        c = meta["compile"]
        model.compile(loss=c["loss"], optimizer=optimizers.get(c["optimizer"]), metrics=c["metrics"])
        slots = [arrays[k] for k in sorted(arrays) if k.startswith("optimizer_")]
        if slots:
            if len(slots) != len(model.optimizer.slots) or any(s.shape != m.shape for s, m in zip(slots, model.optimizer.slots)):
                raise ModelFileError(f"{path}: optimizer state does not match the model's {model.optimizer}")
            for mine, saved in zip(model.optimizer.slots, slots):
                np.copyto(mine, saved)
            model.optimizer.iterations = int(meta["state"]["iterations"])
    state = meta["state"]
    model.step = int(state.get("step", 0))
    model.epochs_trained = int(state.get("epochs_trained", 0))
    model.seed, model.model_id = int(state.get("seed", model.seed)), int(state.get("model_id", model.model_id))
    return model
