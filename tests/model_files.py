"""Model files as a stranger might send them: valid files of several architectures, and the edits that make
them hostile or broken (HDF5 links and storage outside the file, shapes that claim terabytes, JSON replaced,
zip members renamed or duplicated, .npy headers rewritten). Used by test_untrusted_files.py,
test_fuzz_model_files.py (through model_file_worker.py) and error_cases.py."""
import io
import json
import os
import struct
import tempfile
import warnings
import zipfile

import numpy as np

import fastnet
from fastnet.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D


def _mlp():
    m = fastnet.Sequential([Dense(16, activation="relu", input_shape=(20,)), Dropout(0.2),
                            Dense(10, activation="softmax")], name="mlp")
    m.compile(loss="categorical_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    return m


def _cnn(data_format, optimizer):
    shape = (1, 9, 9) if data_format == "channels_first" else (9, 9, 1)
    m = fastnet.Sequential([Conv2D(3, (3, 3), activation="relu", input_shape=shape, data_format=data_format),
                            MaxPooling2D((2, 2), data_format=data_format), Dropout(0.25), Flatten(),
                            Dense(4, activation="relu"), Dense(1, activation="sigmoid")], name=f"cnn_{data_format}")
    m.compile(loss="binary_crossentropy", optimizer=optimizer, metrics=["accuracy"])
    return m


def _uncompiled():
    return fastnet.Sequential([Dense(5, input_shape=(3,)), Dense(2, activation="tanh")], name="uncompiled")


ARCHITECTURES = {"mlp": _mlp, "cnn_first": lambda: _cnn("channels_first", "adam"),
                 "cnn_last": lambda: _cnn("channels_last", "adadelta"), "uncompiled": _uncompiled}


def build(arch):
    """A fresh model of the architecture (glorot weights from the default seed)."""
    fastnet.set_seed(7)
    return ARCHITECTURES[arch]()


def trained(arch):
    """The architecture after one training step, so its optimizer state is not all zeros."""
    m = build(arch)
    if m._compiled:
        x = np.random.default_rng(0).random((4, *m.input_shape[1:]), dtype=np.float32)
        y = np.eye(m.output_shape[1], dtype=np.float32)[[0, 1, 0, 1]] if m.output_shape[1] > 1 else \
            np.array([[0], [1], [0], [1]], np.float32)
        m.train_on_batch(x, y)
    return m


def save_all(folder):
    """{(arch, extension): path} of every architecture saved in every format (and exported to ONNX), in
    folder."""
    files = {}
    for arch in ARCHITECTURES:
        m = trained(arch)
        for ext in (".keras", ".npz", ".weights.h5", ".onnx"):
            path = os.path.join(folder, arch + ext)
            {".weights.h5": m.save_weights, ".onnx": m.export}.get(ext, m.save)(path)
            files[arch, ext] = path
    return files


# ------------------------------------------------------------ zip archives
def members(path_or_bytes):
    """[(name, bytes)] of a zip archive, in order."""
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with zipfile.ZipFile(source) as z:
        return [(info.filename, z.read(info)) for info in z.infolist()]


def zip_bytes(entries, compression=zipfile.ZIP_STORED):
    """A zip archive of [(name, bytes)], duplicates written as given."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": written on purpose
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


def replace_member(blob, name, data):
    return zip_bytes([(n, data if n == name else d) for n, d in members(blob)])


# ------------------------------------------------------------ .npy members and fastnet's JSON
def npy(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npy_with_header(header_text, data=b"", version=1):
    """An .npy member with this header text (a dict literal) and data, whatever they claim."""
    text = header_text.encode("latin1")
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    length = struct.pack("<H", len(text)) if version == 1 else struct.pack("<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + length + text + data


def npz_meta(blob):
    """The JSON of a fastnet .npz."""
    return json.loads(str(np.load(io.BytesIO(dict(members(blob))["fastnet_model.json.npy"]))[()]))


def npz_with_meta(blob, meta_or_text):
    text = meta_or_text if isinstance(meta_or_text, str) else json.dumps(meta_or_text)
    return replace_member(blob, "fastnet_model.json.npy", npy(np.array(text)))


def keras_with_config(blob, config_or_text):
    text = config_or_text if isinstance(config_or_text, str) else json.dumps(config_or_text)
    return replace_member(blob, "config.json", text.encode())


# ------------------------------------------------------------ HDF5
def edit_h5(data, edit):
    """The HDF5 bytes after edit(h5py.File opened for writing)."""
    import h5py

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "edit.h5")
        with open(path, "wb") as f:
            f.write(data)
        with h5py.File(path, "r+") as f:
            edit(f)
        with open(path, "rb") as f:
            return f.read()


def edit_keras_weights(blob, edit):
    """A .keras archive whose model.weights.h5 went through edit_h5."""
    return replace_member(blob, "model.weights.h5", edit_h5(dict(members(blob))["model.weights.h5"], edit))


def datasets(data):
    """The paths of every dataset in HDF5 bytes."""
    import h5py

    found = []
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


def replace_dataset(path, **create):
    """An HDF5 edit: the dataset at path replaced by one made with h5py's create_dataset(**create), keeping its
    shape and dtype unless create says otherwise."""
    def edit(f):
        old = f[path]
        create.setdefault("shape", old.shape)
        create.setdefault("dtype", old.dtype)
        del f[path]
        f.create_dataset(path, **create)
    return edit


def link(path, kind, target="/"):
    """An HDF5 edit: the dataset at path replaced by a soft or external link (to target, a path in the file
    for soft, 'file:object' for external)."""
    def edit(f):
        import h5py

        del f[path]
        if kind == "soft":
            f[path] = h5py.SoftLink(target)
        else:
            filename, obj = target.split(":", 1)
            f[path] = h5py.ExternalLink(filename, obj)
    return edit


def virtual(path, filename):
    """An HDF5 edit: the dataset at path made a virtual dataset mapping another file's /data."""
    def edit(f):
        import h5py

        old = f[path]
        layout = h5py.VirtualLayout(shape=old.shape, dtype=old.dtype)
        layout[...] = h5py.VirtualSource(filename, "data", shape=old.shape)
        del f[path]
        f.create_virtual_dataset(path, layout)
    return edit


def hard_link(path, new):
    """An HDF5 edit: a second name for the object at path."""
    def edit(f):
        f[new] = f[path]
    return edit


def named_datatype(path):
    def edit(f):
        f[path] = np.dtype("f4")
    return edit


def external_storage(path, filename):
    return replace_dataset(path, external=[(filename, 0, 1 << 30)])


# ------------------------------------------------------------ loading in a process of capped memory
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_file_worker.py")


class Worker:
    """model_file_worker.py in a subprocess whose address space is capped (RLIMIT_AS): load(path, arch) loads a
    file there and returns what happened. A worker killed by a signal, or that hangs past `timeout` seconds
    (a read of a FIFO outside the file blocks forever), is replaced and the case reported as such."""

    def __init__(self, memory=2 << 30, timeout=60):
        self.memory, self.timeout, self.proc = memory, timeout, None

    def _start(self):
        import subprocess
        import sys

        env = dict(os.environ, FASTNET_WORKER_MEMORY=str(self.memory), FASTNET_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)

    def load(self, path, arch=None):
        """{'outcome': 'loaded' | 'refused' | 'escaped' | 'died' | 'hung', ...}; arch: load path as weights
        into a fresh model of that architecture, else load_model(path)."""
        import select

        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps({"path": os.fspath(path), "arch": arch}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line:
            return json.loads(line)
        if ready:
            code = self.proc.wait()
            self.proc = None
            return {"outcome": "died", "message": f"the worker exited with {code} (negative: a signal)"}
        self.close()
        return {"outcome": "hung", "message": f"no answer in {self.timeout} s (a read outside the file blocks)"}

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def check_outcome(result, path):
    """A file loads into a model that predicts, or is refused with the documented error naming it."""
    if result["outcome"] == "loaded":
        assert result["predicted"] or result["input_elements"] > PREDICT_LIMIT, result
        return "loaded"
    assert result["outcome"] == "refused", f"{path}: {result}"
    assert result["type"] in ("ModelFileError", "KerasFileError"), result
    assert os.fspath(path) in result["message"], f"the error does not name the file: {result['message']}"
    return "refused"


PREDICT_LIMIT = 1 << 22  # the worker predicts one sample when its input has at most this many numbers
