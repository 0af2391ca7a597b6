"""Model files from strangers (fastnet._untrusted): nothing outside the file is read, no size it claims is trusted,
nothing in it runs, and every malformed file gets the documented error naming the file.

Files that would make an unguarded reader open something outside them point at a FIFO: opening it blocks until
a writer comes, so such a read hangs the capped worker process and shows as 'hung'. Size bombs load in a
worker whose address space is capped at 2 GiB: an allocation of what they claim would be a MemoryError there.
"""
import json
import os
import pickle
import re
import zipfile

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import model_files as mf
from fastnet import keras_format
from fastnet._untrusted import json_depth
from fastnet.models import load_model
from fastnet.saving import ModelFileError

KerasFileError = keras_format.KerasFileError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return mf.save_all(str(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="module")
def worker():
    w = mf.Worker(timeout=30)
    yield w
    w.close()


@pytest.fixture
def canary(tmp_path):
    """A FIFO: whatever opens it for reading waits for a writer that never comes."""
    path = str(tmp_path / "canary")
    os.mkfifo(path)
    return path


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def hostile(files, tmp_path, ext, edit, arch="mlp"):
    """The architecture's file of this extension with edit applied to its HDF5 (the .keras archive's member)."""
    with open(files[arch, ext], "rb") as f:
        blob = f.read()
    data = mf.edit_keras_weights(blob, edit) if ext == ".keras" else mf.edit_h5(blob, edit)
    return write(tmp_path / f"hostile{ext}", data)


def load(worker, path, ext, arch="mlp"):
    return worker.load(path, arch if ext == ".weights.h5" else None)


# ------------------------------------------------------------ nothing outside the file
OUTSIDE = {
    "external storage": (lambda target: mf.external_storage("layers/dense/vars/0", target),
                         r"layers/dense/vars/0 is a dataset stored in other files \(external storage\)"),
    "external link": (lambda target: mf.link("layers/dense/vars/0", "external", f"{target}:/data"),
                      r"layers/dense/vars/0 is an external link"),
    "virtual dataset": (lambda target: mf.virtual("layers/dense/vars/0", target),
                        r"layers/dense/vars/0 is a virtual dataset"),
    "external link to a group": (lambda target: mf.link("layers/dense_1", "external", f"{target}:/"),
                                 r"layers/dense_1 is an external link"),
}


@pytest.mark.parametrize("ext", [".keras", ".weights.h5"])
@pytest.mark.parametrize("kind", sorted(OUTSIDE))
def test_nothing_outside_the_file_is_read(files, tmp_path, worker, canary, ext, kind):
    edit, message = OUTSIDE[kind]
    path = hostile(files, tmp_path, ext, edit(canary))
    result = load(worker, path, ext)
    assert result["outcome"] == "refused", result
    assert result["type"] == "KerasFileError" and result["message"].startswith(path), result
    assert re.search(message, result["message"]), result["message"]


def test_a_secret_beside_the_model_never_becomes_its_weights(files, tmp_path):
    """The issue's case: a .keras whose kernel is external storage naming a file beside it."""
    secret = write(tmp_path / "secret", np.arange(20 * 16, dtype=np.float32).tobytes())
    path = hostile(files, tmp_path, ".keras", mf.external_storage("layers/dense/vars/0", secret))
    with pytest.raises(KerasFileError, match="external storage"):
        load_model(path)


IN_FILE = {
    "soft link": (mf.link("layers/dense/vars/0", "soft", "/layers/dense_1/vars/0"), r"is a soft link"),
    "a second hard link": (mf.hard_link("layers/dense/vars/0", "layers/dense/extra"), r"a second link to an object"),
    "named datatype": (mf.named_datatype("layers/dense/vars/t"), r"is a named datatype"),
    "chunked": (mf.replace_dataset("layers/dense/vars/0", chunks=(4, 4), data=np.ones((20, 16), np.float32)),
                r"is a chunked dataset"),
    "compressed": (mf.replace_dataset("layers/dense/vars/0", compression="gzip", data=np.ones((20, 16), np.float32)),
                   r"is a chunked dataset"),
    "variable-length": (mf.replace_dataset("layers/dense/vars/1", shape=(16,), dtype=h5py.vlen_dtype("f4")),
                        r"holds variable-length data"),
    "object references": (mf.replace_dataset("layers/dense/vars/1", shape=(16,),
                                             dtype=h5py.ref_dtype), r"holds object references"),
    "strings": (mf.replace_dataset("layers/dense/vars/1", shape=(16,), dtype="S4"), r"holds dtype \|S4"),
    "complex": (mf.replace_dataset("layers/dense/vars/1", dtype="c8"), r"holds dtype complex64"),
    "no storage": (mf.replace_dataset("layers/dense/vars/0"), r"declares float32 \(20, 16\) \(1,280 bytes\) that are "
                                                               r"not stored in the file"),
}


@pytest.mark.parametrize("ext", [".keras", ".weights.h5"])
@pytest.mark.parametrize("kind", sorted(IN_FILE))
def test_only_plain_groups_and_datasets_are_read(files, tmp_path, ext, kind):
    edit, message = IN_FILE[kind]
    path = hostile(files, tmp_path, ext, edit)
    model = mf.build("mlp")
    before = model.get_weights()
    with pytest.raises(KerasFileError, match=message) as e:
        load_model(path) if ext == ".keras" else model.load_weights(path)
    assert str(e.value).startswith(path)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "a refused file changed weights"


def test_other_numeric_dtypes_load_as_float32(files, tmp_path):
    """float64 or int weights are numbers: they load (Keras reads them too), converted to float32."""
    path = hostile(files, tmp_path, ".weights.h5", mf.replace_dataset("layers/dense/vars/1", dtype="f8",
                                                                      data=np.arange(16.0)))
    model = mf.build("mlp")
    model.load_weights(path)
    assert np.array_equal(model.layers[0].params[1], np.arange(16, dtype=np.float32))


# ------------------------------------------------------------ no size is trusted
def _architecture_bomb(config):
    """Keras config edit: the first Dense 28,000 -> 28,000: 3.1 GB of weights, more than the worker may map."""
    layers = config["config"]["layers"]
    layers[0]["config"]["batch_shape"] = [None, 28000]
    layers[1]["config"]["units"] = 28000


def test_size_bombs_are_refused_before_anything_large_is_allocated(files, tmp_path, worker):
    with open(files["mlp", ".keras"], "rb") as f:
        keras_blob = f.read()
    with open(files["mlp", ".npz"], "rb") as f:
        npz_blob = f.read()
    config = json.loads(dict(mf.members(keras_blob))["config.json"])
    _architecture_bomb(config)
    meta = mf.npz_meta(npz_blob)
    meta["model"]["layers"][0]["config"].update(units=28000, batch_input_shape=[None, 28000])
    huge = mf.replace_dataset("layers/dense/vars/0", shape=(4194304, 4194304))
    bombs = {
        # the issue's: a 64 TiB kernel declared in a small .keras (the architecture as it was)
        "kernel.keras": (mf.edit_keras_weights(keras_blob, huge), r"declares float32 \(4194304, 4194304\)"),
        # the same declared kernel with an architecture that claims it too
        "both.keras": (mf.edit_keras_weights(mf.keras_with_config(keras_blob, _bomb_config(config, 4194304)), huge),
                       r"has 17,592,\S+ weights but its model.weights.h5 is [\d,]+ bytes, too small"),
        "architecture.keras": (mf.keras_with_config(keras_blob, config), r"has 784,\S+ weights but its "
                                                                         r"model.weights.h5 is"),
        # the issue's: an .npy header that claims 2**40 floats
        "header.npz": (mf.replace_member(npz_blob, "weight_000.npy", mf.npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }", b"\0" * 16)),
            r"member 'weight_000.npy': its header declares <f4 \(1099511627776,\) \(4,398,046,511,104 bytes\) but "
            r"it holds 16 bytes"),
        "architecture.npz": (mf.npz_with_meta(npz_blob, meta), r"has 784,\S+ weights but the file is"),
        "zip member.npz": (_lying_zip_member(npz_blob), r"claims [\d,]+ bytes from [\d,]+ stored"),
    }
    for name, (blob, message) in bombs.items():
        path = write(tmp_path / name, blob)
        result = worker.load(path)
        assert result["outcome"] == "refused", (name, result)
        assert re.search(message, result["message"]), (name, result["message"])


def _bomb_config(config, units):
    config = json.loads(json.dumps(config))
    config["config"]["layers"][0]["config"]["batch_shape"] = [None, units]
    config["config"]["layers"][1]["config"]["units"] = units
    return config


def _lying_zip_member(blob):
    """The archive with weight_000.npy's uncompressed size in the central directory raised to 4 GiB."""
    data, name = bytearray(blob), b"weight_000.npy"
    at = blob.find(b"PK\x01\x02")  # a central directory entry: the name at 46, the uncompressed size at 24
    while blob[at + 46:at + 46 + len(name)] != name:
        at = blob.find(b"PK\x01\x02", at + 4)
    data[at + 24:at + 28] = (0xFFFFFFF0).to_bytes(4, "little")
    return bytes(data)


# ------------------------------------------------------------ malformed files, the documented error
def _edit_npz_meta(edit):
    def apply(blob):
        meta = mf.npz_meta(blob)
        return mf.npz_with_meta(blob, edit(meta) or meta)
    return apply


def _edit_keras_config(edit):
    def apply(blob):
        config = json.loads(dict(mf.members(blob))["config.json"])
        return mf.keras_with_config(blob, edit(config) or config)
    return apply


MALFORMED = {
    # the list
    "deep config.json": (".keras", lambda b: mf.keras_with_config(b, "[" * 100000 + "]" * 100000),
                         r"config.json is nested 100000 levels deep; fastnet reads at most 64"),
    "deep fastnet_model.json": (".npz", lambda b: mf.npz_with_meta(b, "[" * 100000 + "]" * 100000),
                                r"fastnet_model.json is nested 100000 levels deep"),
    "a layer that is a string": (".keras", _edit_keras_config(lambda c: c["config"]["layers"].__setitem__(1, "Dense")),
                                 r"layer 1 must be an object, got the string \"Dense\""),
    "weights named kernel and bias": (".keras", lambda b: mf.edit_keras_weights(b, _rename_vars),
                                      r"layers/dense/vars holds \['bias', 'kernel'\]; Keras numbers a layer's weights"),
    "no state section": (".npz", _edit_npz_meta(lambda m: m.pop("state") and None),
                         r"fastnet_model.json has no 'state'"),
    "a corrupt model.weights.h5": (".keras", lambda b: mf.replace_member(b, "model.weights.h5", b"garbage" * 99),
                                   r"model.weights.h5 is not a readable HDF5 file"),
    "NaN iterations (.npz)": (".npz", _edit_npz_meta(lambda m: m["state"].__setitem__("iterations", float("nan"))),
                              r"state\['iterations'\] must be an integer, got the number NaN"),
    "NaN iterations (.keras)": (".keras", lambda b: mf.edit_keras_weights(b, mf.replace_dataset(
        "optimizer/vars/0", shape=(), dtype="f8", data=np.float64("nan"))),
        r"optimizer/vars/0, the optimizer's iteration count, is nan"),
    "an extra weight_abc": (".npz", lambda b: mf.zip_bytes(mf.members(b) + [("weight_abc.npy", mf.npy(np.ones(3)))]),
                            r"unknown member 'weight_abc.npy'"),
    # more of the same kind
    "a layer without class_name": (".npz", _edit_npz_meta(lambda m: m["model"]["layers"][0].pop("class_name") and None),
                                   r"layer 0 has no 'class_name'"),
    "a module path as a class": (".npz", _edit_npz_meta(
        lambda m: m["model"]["layers"][0].update(class_name="os.system")), r"layer 0: unknown layer class 'os.system'"),
    "units as a string": (".keras", _edit_keras_config(lambda c: c["config"]["layers"][1]["config"].update(units="16")),
                          r"layer 'dense' \(Dense\): Dense: units must be an int, got str '16'"),
    "a dtype policy that is a list": (".keras", _edit_keras_config(
        lambda c: c["config"]["layers"][1]["config"].update(dtype={"config": []})),
        r"layer 'dense' \(Dense\): dtype\['config'\] must be an object, got a list"),
    "an initializer that is a list": (".keras", _edit_keras_config(
        lambda c: c["config"]["layers"][1]["config"].update(kernel_initializer=[1])),
        r"kernel_initializer: initializer \[1\]; fastnet has"),
    "a batch shape that is an object": (".keras", _edit_keras_config(
        lambda c: c["config"]["layers"][0]["config"].update(batch_shape={"a": 1})),
        r"layer 0: batch_shape must be a list, got an object"),
    "a negative step": (".npz", _edit_npz_meta(lambda m: m["state"].__setitem__("step", -1)),
                        r"state\['step'\] must be in \[0, 2\*\*63\), got -1"),
    "a huge seed": (".npz", _edit_npz_meta(lambda m: m["state"].__setitem__("seed", 2**70)),
                    r"state\['seed'\] must be in \[0, 2\*\*63\)"),
    "two members of one name": (".npz", lambda b: mf.zip_bytes(mf.members(b) + mf.members(b)[-1:]),
                                r"the archive holds two members named 'fastnet_model.json.npy'"),
    "a weight of objects": (".npz", lambda b: mf.replace_member(b, "weight_001.npy", mf.npy_with_header(
        "{'descr': '|O', 'fortran_order': False, 'shape': (16,), }", b"\0" * 128)),
        r"weight_001.npy is object \(16,\); the model needs float32 \(16,\)"),
    "a weight of records": (".npz", lambda b: mf.replace_member(b, "weight_001.npy", mf.npy_with_header(
        "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (16,), }", b"\0" * 64)),
        r"dtype \[\('a', '<f4'\)\]; fastnet reads arrays of plain numbers"),
    "a weight of the wrong shape": (".npz", lambda b: mf.replace_member(b, "weight_001.npy", mf.npy(np.ones(15, "f4"))),
                                    r"weight_001.npy is float32 \(15,\); the model needs float32 \(16,\)"),
    "an unreadable .npy header": (".npz", lambda b: mf.replace_member(b, "weight_001.npy", mf.npy_with_header(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (16,), 'x': __import__('os')}")),
        r"unreadable .npy header \(ValueError\)"),
    "a JSON member that is not text": (".npz", lambda b: mf.replace_member(
        b, "fastnet_model.json.npy", mf.npy_with_header("{'descr': '<U1', 'fortran_order': False, 'shape': (), }",
                                                        b"\xff\xff\xff\xff")),
        r"member 'fastnet_model.json.npy' is not text"),
    "NaN optimizer state (.npz)": (".npz", lambda b: mf.replace_member(b, "optimizer_000.npy", mf.npy(
        np.full(506, np.nan, np.float32))), r"optimizer_000.npy holds NaN or inf"),
    "NaN optimizer state (.keras)": (".keras", lambda b: mf.edit_keras_weights(b, mf.replace_dataset(
        "optimizer/vars/2", data=np.full((20, 16), np.inf, np.float32))),
        r"\.keras: model.weights.h5: optimizer/vars/2 holds NaN or inf"),
    "NaN weights": (".npz", lambda b: mf.replace_member(b, "weight_001.npy", mf.npy(np.full(16, np.nan, "f4"))),
                    r"set_weights: dense/bias contains NaN or inf"),
}


def _rename_vars(f):
    f.move("layers/dense/vars/0", "layers/dense/vars/kernel")
    f.move("layers/dense/vars/1", "layers/dense/vars/bias")


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_get_the_documented_error(files, tmp_path, case):
    ext, edit, message = MALFORMED[case]
    with open(files["mlp", ext], "rb") as f:
        path = write(tmp_path / f"bad{ext}", edit(f.read()))
    error = KerasFileError if ext == ".keras" else ModelFileError
    with pytest.raises(error, match=message) as e:
        load_model(path)
    assert type(e.value) is error and str(e.value).startswith(path)


# ------------------------------------------------------------ nothing runs
class _Marker:
    """Unpickling this creates a file: what a pickle in a model file could do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_in_a_model_file_is_never_unpickled(files, tmp_path):
    """An object array of dense/kernel's shape whose bytes fill the member exactly as its header claims: only the
    dtype tells it from a weight."""
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(np.full((20, 16), _Marker(str(marker)), dtype=object))
    assert len(payload) <= 20 * 16 * 8
    array = mf.npy_with_header("{'descr': '|O', 'fortran_order': False, 'shape': (20, 16), }",
                               payload.ljust(20 * 16 * 8, b"\0"))
    with open(files["mlp", ".npz"], "rb") as f:
        path = write(tmp_path / "pickle.npz", mf.replace_member(f.read(), "weight_000.npy", array))
    with pytest.raises(ModelFileError):
        load_model(path)
    assert not marker.exists()


# ------------------------------------------------------------ valid files still load
@pytest.mark.parametrize("arch", sorted(mf.ARCHITECTURES))
@pytest.mark.parametrize("ext", [".keras", ".npz", ".weights.h5"])
def test_every_architecture_and_format_loads_exactly(files, arch, ext):
    original = mf.trained(arch)
    if ext == ".weights.h5":
        model = mf.build(arch)
        model.load_weights(files[arch, ext])
    else:
        model = load_model(files[arch, ext])
    x = np.random.default_rng(1).random((3, *original.input_shape[1:]), dtype=np.float32)
    assert np.array_equal(model.predict(x), original.predict(x))
    if original._compiled and ext != ".weights.h5" or (ext == ".weights.h5" and model._compiled):
        assert model.optimizer.iterations == original.optimizer.iterations == 1
        assert all(np.array_equal(a, b) for a, b in zip(model.optimizer.slots, original.optimizer.slots))


def test_a_deflated_npz_loads(files, tmp_path):
    """np.savez_compressed's members are deflated: read, with their sizes bounded by deflate's ratio."""
    with open(files["cnn_last", ".npz"], "rb") as f:
        path = write(tmp_path / "deflated.npz", mf.zip_bytes(mf.members(f.read()), zipfile.ZIP_DEFLATED))
    x = np.ones((2, 9, 9, 1), np.float32)
    assert np.array_equal(load_model(path).predict(x), mf.trained("cnn_last").predict(x))


def _depth(value):
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
    return 0 if children is None else 1 + max((_depth(c) for c in children), default=0)


JSON = st.recursive(st.none() | st.integers() | st.text(alphabet='[]{}"\\ab\n', max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.text(alphabet='[]{}"\\ab', max_size=4), inner, max_size=3), max_leaves=20)


@settings(max_examples=300, derandomize=True)
@given(JSON)
def test_json_depth_counts_what_the_parser_will_nest(value):
    """The pre-parse bound sees brackets, quotes and escapes as JSON does (strings full of them included)."""
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        assert json_depth(text) == _depth(value)
