"""A fuzzer of the model file readers. Valid .keras, .weights.h5 and .npz files of four architectures
(model_files.ARCHITECTURES) are mutated by five families of edits: bytes (flips, truncation), zip members
(renamed, removed, duplicated, swapped, deflated, added), JSON (any field replaced by a value of another type,
or removed), HDF5 (datasets replaced by links, external or virtual storage, other dtypes, huge or other shapes,
chunked or compressed storage, renamed, removed, linked twice) and .npy headers (dtype, shape, order, version).

Each case loads in a worker process whose address space is capped at 2 GiB (model_files.Worker): it must load a
model that predicts, or raise KerasFileError / ModelFileError naming the file; never another exception, a
signal, a memory error, or a hang (links and external storage point at a FIFO, which blocks whatever opens it).
FASTNET_FUZZ_EXAMPLES sets the cases per family (default 300); FASTNET_FUZZ_RANDOM=1 draws new ones instead of the
fixed sequence.
"""
import json
import os
import tempfile
import zipfile

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import model_files as mf

CASES = int(os.environ.get("FASTNET_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=CASES, deadline=None, derandomize=os.environ.get("FASTNET_FUZZ_RANDOM") != "1",
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                      HealthCheck.filter_too_much])

FOLDER = tempfile.mkdtemp(prefix="fastnet-fuzz-")
FILES = mf.save_all(FOLDER)
BLOBS = {key: open(path, "rb").read() for key, path in FILES.items()}
CANARY = os.path.join(FOLDER, "canary")
os.mkfifo(CANARY)
H5 = {key: mf.datasets(blob if key[1] == ".weights.h5" else dict(mf.members(blob))["model.weights.h5"])
      for key, blob in BLOBS.items() if key[1] in (".keras", ".weights.h5")}


@pytest.fixture(scope="module")
def worker():
    w = mf.Worker(timeout=30)
    yield w
    w.close()


def run(worker, key, blob):
    arch, ext = key
    path = os.path.join(FOLDER, f"case{ext}")
    with open(path, "wb") as f:
        f.write(blob)
    outcome = mf.check_outcome(worker.load(path, arch if ext == ".weights.h5" else None), path)
    event(f"{ext} {outcome}")


SIZES = st.sampled_from([0, 1, 3, 16, 20, 255, 4096, 2**31 - 1, 2**31, 4194304, 2**40, 2**62])
SHAPES = st.lists(st.integers(0, 40) | SIZES, max_size=4).map(tuple)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | SIZES | st.floats() | st.text(max_size=12)
    | st.sampled_from(["relu", "softmax", "channels_first", "valid", "same", "Dense", "Conv2D", "os.system",
                       "float64", "mixed_bfloat16", "GlorotUniform"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["class_name", "config", "name", "units", "shape", "layers", "module"]) | st.text(max_size=6),
        inner, max_size=3),
    max_leaves=10)


# ------------------------------------------------------------ bytes
@FUZZ
@given(st.sampled_from(sorted(BLOBS)), st.data())
def test_bytes_flipped_or_cut(worker, key, data):
    blob = bytearray(BLOBS[key])
    for _ in range(data.draw(st.integers(0, 8), "flips")):
        where = data.draw(st.sampled_from(["start", "end", "anywhere"]), "region")
        lo = {"start": 0, "end": max(len(blob) - 1024, 0), "anywhere": 0}[where]
        hi = {"start": min(1024, len(blob)), "end": len(blob), "anywhere": len(blob)}[where]
        blob[data.draw(st.integers(lo, hi - 1), "at")] ^= data.draw(st.integers(1, 255), "xor")
    cut = data.draw(st.none() | st.integers(0, len(blob) - 1), "cut")
    run(worker, key, bytes(blob if cut is None else blob[:cut]))


# ------------------------------------------------------------ zip members
NAMES = ["config.json", "metadata.json", "model.weights.h5", "fastnet_model.json.npy", "weight_000.npy",
         "weight_001.npy", "weight_999.npy", "weight_abc.npy", "optimizer_000.npy", "optimizer_7.npy",
         "../outside", "/absolute", "assets/"]


@FUZZ
@given(st.sampled_from([k for k in sorted(BLOBS) if k[1] in (".keras", ".npz")]), st.data())
def test_zip_members_edited(worker, key, data):
    entries = mf.members(BLOBS[key])
    for _ in range(data.draw(st.integers(1, 3), "edits")):
        i = data.draw(st.integers(0, len(entries) - 1), "member") if entries else 0
        op = data.draw(st.sampled_from(["remove", "rename", "duplicate", "swap", "add"] if entries else ["add"]))
        if op == "remove":
            del entries[i]
        elif op == "rename":
            entries[i] = (data.draw(st.sampled_from(NAMES) | st.text(min_size=1, max_size=12), "name"), entries[i][1])
        elif op == "duplicate":
            entries.insert(data.draw(st.integers(0, len(entries))), entries[i])
        elif op == "swap":
            j = data.draw(st.integers(0, len(entries) - 1))
            entries[i], entries[j] = (entries[i][0], entries[j][1]), (entries[j][0], entries[i][1])
        else:
            entries.append((data.draw(st.sampled_from(NAMES), "name"), data.draw(st.binary(max_size=64), "bytes")))
    compression = data.draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]), "compression")
    run(worker, key, mf.zip_bytes(entries, compression))


# ------------------------------------------------------------ JSON
def _nodes(value, path=()):
    """Every (path, value) of a JSON document, the root first."""
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield from _nodes(v, path + (k,))


@FUZZ
@given(st.sampled_from([k for k in sorted(BLOBS) if k[1] in (".keras", ".npz")]), st.data())
def test_json_fields_replaced(worker, key, data):
    blob = BLOBS[key]
    document = json.loads(dict(mf.members(blob))["config.json"]) if key[1] == ".keras" else mf.npz_meta(blob)
    for _ in range(data.draw(st.integers(1, 3), "edits")):
        nodes = list(_nodes(document))
        path, _ = data.draw(st.sampled_from(nodes), "field")
        if not path:
            document = data.draw(JSON_VALUES, "document")
            continue
        parent = document
        for k in path[:-1]:
            parent = parent[k]
        if data.draw(st.booleans(), "remove") and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(JSON_VALUES, "value")
    text = json.dumps(document)
    run(worker, key, mf.keras_with_config(blob, text) if key[1] == ".keras" else mf.npz_with_meta(blob, text))


# ------------------------------------------------------------ HDF5
DTYPES = ["f8", "f2", "i1", "u8", "<f4", ">f4", "c8", "S4", "bool", "vlen", "ref", "compound"]


def _dtype(name):
    import h5py
    import numpy as np

    return {"vlen": h5py.vlen_dtype("f4"), "ref": h5py.ref_dtype, "compound": np.dtype([("a", "f4"), ("b", "i2")]),
            "bool": np.dtype(bool)}.get(name, name)


def _h5_edit(data, path, paths):
    """One HDF5 edit of the dataset at path (paths: all of them, for a soft link's target). Each edit of a case
    has its own path: an edit that opened a link an earlier one made would block on the FIFO itself."""
    import numpy as np

    other = data.draw(st.sampled_from(paths), "other")
    op = data.draw(st.sampled_from(["soft link", "external link", "external storage", "virtual", "dtype", "shape",
                                    "shape with data", "chunked", "compressed", "remove", "rename", "hard link",
                                    "named datatype", "scalar"]), "edit")
    if op == "soft link":
        return mf.link(path, "soft", "/" + other)
    if op == "external link":
        return mf.link(path, "external", f"{CANARY}:/data")
    if op == "external storage":
        return mf.external_storage(path, CANARY)
    if op == "virtual":
        return mf.virtual(path, CANARY)
    if op == "dtype":
        return mf.replace_dataset(path, dtype=_dtype(data.draw(st.sampled_from(DTYPES), "dtype")))
    if op == "shape":
        return mf.replace_dataset(path, shape=data.draw(SHAPES, "shape"))
    if op == "shape with data":
        shape = data.draw(st.lists(st.integers(0, 24), max_size=3).map(tuple), "shape")
        return mf.replace_dataset(path, shape=shape, data=np.ones(shape, np.float32))
    if op in ("chunked", "compressed"):
        return lambda f: mf.replace_dataset(path, chunks=True, data=f[path][()] if f[path].ndim else np.ones(3),
                                            compression="gzip" if op == "compressed" else None)(f)
    if op == "remove":
        return lambda f: f.__delitem__(path)
    if op == "rename":
        new = path.rsplit("/", 1)[0] + "/" + data.draw(st.sampled_from(["kernel", "bias", "9", "00", "x"]), "name")
        return lambda f: None if new.rsplit("/", 1)[1].encode() in f[path.rsplit("/", 1)[0]].id else f.move(path, new)
    if op == "hard link":
        return mf.hard_link(path, path + "_again")
    if op == "named datatype":
        return mf.named_datatype(path + "_type")
    return mf.replace_dataset(path, shape=(), dtype=data.draw(st.sampled_from(["f4", "i8", "f8"]), "dtype"),
                              data=data.draw(st.floats(allow_nan=True) | SIZES.map(float), "value"))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # an edit's own values
@FUZZ
@given(st.sampled_from(sorted(H5)), st.data())
def test_hdf5_objects_replaced(worker, key, data):
    paths = data.draw(st.permutations(H5[key]), "datasets")[:data.draw(st.integers(1, 2), "edits")]
    edits = [_h5_edit(data, path, H5[key]) for path in paths]

    def edit(f):
        for e in edits:
            e(f)

    blob = BLOBS[key]
    try:
        blob = mf.edit_keras_weights(blob, edit) if key[1] == ".keras" else mf.edit_h5(blob, edit)
    except (KeyError, ValueError, TypeError, OSError, RuntimeError, OverflowError):
        event("an edit h5py refused to make")
        return
    run(worker, key, blob)


# ------------------------------------------------------------ .npy headers
DESCRS = ["<f4", ">f4", "<f8", "<f2", "|u1", "<i8", "|b1", "|O", "<c8", "|V4", "<U3", "<M8[s]", "(2,)<f4",
          "[('a', '<f4')]", "'", "1", "None"]


@FUZZ
@given(st.sampled_from([k for k in sorted(BLOBS) if k[1] == ".npz"]), st.data())
def test_npy_headers_rewritten(worker, key, data):
    entries = mf.members(BLOBS[key])
    i = data.draw(st.integers(0, len(entries) - 1), "member")
    name, old = entries[i]
    descr = data.draw(st.sampled_from(DESCRS), "descr")
    descr = descr if descr.startswith(("[", "'", "1", "N")) else repr(descr)
    shape = data.draw(SHAPES | st.sampled_from([(-1,), (1.5,), "x", ()]), "shape")
    fortran = data.draw(st.sampled_from(["False", "True", "0", "'no'"]), "fortran")
    header = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    payload = old[old.index(b"\n") + 1:]
    payload = payload[:data.draw(st.integers(0, len(payload)), "keep")] if data.draw(st.booleans(), "cut") else payload
    entries[i] = (name, mf.npy_with_header(header, payload, version=data.draw(st.sampled_from([1, 2, 3]), "version")))
    run(worker, key, mf.zip_bytes(entries))


# ------------------------------------------------------------ ONNX protobufs
def _onnx_edit(proto, data):
    """One edit of an exported model's graph: a tensor's dims, type, bytes or storage; a node's op, inputs or
    attributes; the input's shape; the opset."""
    import onnx

    graph = proto.graph
    what = data.draw(st.sampled_from(["dims", "data_type", "raw_data", "external", "op", "input", "attribute",
                                      "input_shape", "opset", "duplicate_node", "drop_node"]), "edit")
    tensor = data.draw(st.sampled_from(list(graph.initializer)), "tensor")
    node = data.draw(st.sampled_from(list(graph.node)), "node")
    if what == "dims":
        tensor.dims[:] = data.draw(SHAPES, "dims")
    elif what == "data_type":
        tensor.data_type = data.draw(st.integers(0, 25), "type")
    elif what == "raw_data":
        raw = tensor.raw_data
        tensor.raw_data = raw[:data.draw(st.integers(0, len(raw)), "cut")] + data.draw(st.binary(max_size=8), "tail")
    elif what == "external":  # pointing at a FIFO: opening it would hang
        tensor.data_location = onnx.TensorProto.EXTERNAL
        del tensor.external_data[:]
        for key, value in (("location", data.draw(st.sampled_from([CANARY, "canary", "../canary"]), "at")),
                           ("length", str(data.draw(SIZES, "length")))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        tensor.ClearField("raw_data")
    elif what == "op":
        node.op_type = data.draw(st.sampled_from(["Conv", "Gemm", "MatMul", "MaxPool", "Flatten", "Reshape", "Add",
                                                  "Transpose", "Softmax", "Shape", "Gather", "Concat", "Loop",
                                                  "If", "Constant"]), "op")
    elif what == "input" and node.input:
        node.input[data.draw(st.integers(0, len(node.input) - 1), "which")] = data.draw(
            st.sampled_from([i.name for i in graph.initializer] + ["input", "nothing", ""]), "name")
    elif what == "attribute":
        del node.attribute[:]
        for name in data.draw(st.lists(st.sampled_from(["kernel_shape", "strides", "pads", "perm", "axis",
                                                        "transB", "group", "dilations"]), max_size=3, unique=True)):
            value = data.draw(st.lists(st.integers(-3, 5) | SIZES, max_size=5) | st.integers(-3, 5), name)
            kind = onnx.AttributeProto.INTS if isinstance(value, list) else onnx.AttributeProto.INT
            node.attribute.append(onnx.helper.make_attribute(name, value, attr_type=kind))
    elif what == "input_shape":
        dims = graph.input[0].type.tensor_type.shape.dim
        del dims[:]
        for d in data.draw(st.lists(st.integers(0, 40) | SIZES, min_size=1, max_size=5), "shape"):
            dims.add().dim_value = d
    elif what == "opset":
        proto.opset_import[0].version = data.draw(st.integers(-2, 40), "opset")
    elif what == "duplicate_node":
        graph.node.append(node)
    else:
        graph.node.remove(node)


@FUZZ
@given(st.sampled_from([k for k in sorted(BLOBS) if k[1] == ".onnx"]), st.data())
def test_onnx_graphs_edited(worker, key, data):
    import onnx

    proto = onnx.ModelProto.FromString(BLOBS[key])
    for _ in range(data.draw(st.integers(1, 3), "edits")):
        _onnx_edit(proto, data)
    run(worker, key, proto.SerializeToString())
