"""ONNX import (fastnet.onnx_import.load_onnx, through load_model('m.onnx')): models made by PyTorch and Keras
load and predict as their makers do, train on, and come back from fastnet's own export unchanged; random models
of the public-API fuzzer go through ONNX Runtime and back; a file that is not a chain fastnet can compute, or
that is malformed or reaches outside itself, is refused naming the node, the tensor or the file.

The PyTorch and Keras files are fixtures (tests/fixtures/make_onnx_fixtures.py writes them). Needs the onnx extra
and onnxruntime (the test extra); without them these tests skip, unless FASTNET_REQUIRE_ONNX=1 (set by .ci/run).
"""
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

import fastnet
from fastnet import networks
from fastnet.layers import Activation, Conv2D, Dense, Dropout, Flatten, LeakyReLU, MaxPooling2D
from fastnet.models import Sequential
from fastnet.saving import ModelFileError
from test_onnx_export import onnx, ort

import test_fuzz_api

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "onnx")
EXPECTED = np.load(os.path.join(FIXTURES, "expected.npz"))
MADE = sorted(name[2:] for name in EXPECTED.files if name.startswith("x_"))
helper, TensorProto, numpy_helper = onnx.helper, onnx.TensorProto, onnx.numpy_helper


def ort_run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_every_fixture_is_tested():
    assert MADE == sorted(f[:-5] for f in os.listdir(FIXTURES) if f.endswith(".onnx"))
    assert {"torch_mlp_script", "torch_mlp_dynamo", "torch_cnn_script", "torch_cnn_dynamo", "keras_mlp",
            "keras_cnn_channels_last", "keras_cnn_channels_first"} == set(MADE)


@pytest.mark.parametrize("name", MADE)
def test_models_made_by_pytorch_and_keras_predict_as_their_makers(name):
    model = fastnet.load_model(os.path.join(FIXTURES, name + ".onnx"))
    x, y = EXPECTED[f"x_{name}"], EXPECTED[f"y_{name}"]
    np.testing.assert_allclose(model.predict(x, verbose=0), y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(x[:1], verbose=0), y[:1], rtol=1e-5, atol=1e-6)
    kinds = [type(layer).__name__ for layer in model.layers]
    if "cnn" in name:
        assert kinds == ["Conv2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
        fmt = "channels_last" if name.endswith("channels_last") else "channels_first"  # PyTorch's are NCHW
        assert {layer.data_format for layer in model.layers[:3]} == {fmt}
        assert model.layers[1].activation == "relu" and model.layers[1].use_bias
    else:
        assert set(kinds) == {"Dense"}
    assert model.layers[-1].activation == "softmax" and not model._compiled


@pytest.mark.parametrize("name", ["torch_mlp_dynamo", "torch_cnn_script", "keras_cnn_channels_last"])
def test_they_train_on_and_export_again(tmp_path, name):
    model = fastnet.load_model(os.path.join(FIXTURES, name + ".onnx"))
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, *model.input_shape[1:])).astype(np.float32)
    y = rng.integers(0, 10, 64)
    before = model.predict(x, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    after = model.predict(x, verbose=0)
    assert np.abs(after - before).max() > 1e-3
    model.export(tmp_path / "again.onnx")
    np.testing.assert_allclose(ort_run(tmp_path / "again.onnx", x), after, rtol=1e-5, atol=1e-6)


def _round_trip_models():
    yield "mlp", networks.mlp()
    for fmt in ("channels_last", "channels_first"):
        yield f"cnn_{fmt}", networks.cnn(fmt)
        shape = (7, 9, 3) if fmt == "channels_last" else (3, 7, 9)
        yield f"padding_{fmt}", Sequential([
            Conv2D(4, (3, 2), strides=(2, 1), padding="same", activation="tanh", input_shape=shape, data_format=fmt),
            MaxPooling2D((2, 2), strides=(1, 2), padding="same", data_format=fmt),
            Conv2D(5, (2, 2), use_bias=False, activation="sigmoid", data_format=fmt), Activation("softmax")])
    for flatten in (Flatten(), Flatten(data_format="channels_first")):
        yield f"flatten_{flatten.data_format}", Sequential([
            Conv2D(3, (2, 2), input_shape=(2, 5, 4), data_format="channels_first"), LeakyReLU(0.1), flatten,
            Dropout(0.5), Dense(6, use_bias=False), Activation("relu"), Dense(3)])


@pytest.mark.parametrize("name", [name for name, _ in _round_trip_models()])
def test_a_round_trip_through_onnx_gives_the_same_model(tmp_path, name):
    fastnet.set_seed(3)
    model = dict(_round_trip_models())[name]
    x = np.random.default_rng(4).standard_normal((5, *model.input_shape[1:])).astype(np.float32)
    model.export(tmp_path / "m.onnx")
    again = fastnet.load_model(tmp_path / "m.onnx")
    assert again.input_shape == model.input_shape and again.output_shape == model.output_shape
    assert again.name == model.name
    assert [layer.name for layer in again.layers] == _kept(model)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-7)


def _kept(model):
    """The names of the layers an export and import keep: Dropout, linear activations and a Flatten of flat data
    go (they write no node), and an Activation joins the Dense or Conv2D before it when that one has none."""
    kept, before = [], None
    for layer in model.layers:
        silent = isinstance(layer, Dropout) or (type(layer) is Activation and layer.activation == "linear") or \
            (isinstance(layer, Flatten) and len(layer.in_shape) == 1)
        joins = type(layer) is Activation and isinstance(before, (Dense, Conv2D)) and before.activation == "linear"
        if not silent and not joins:
            kept.append(layer.name)
        before = before if silent else None if joins else layer
    return kept


class ValidDraw(test_fuzz_api.Draw):
    """The public-API fuzzer's draws, valid arguments only: models ONNX can express."""

    def arg(self, valid, invalid, label=None):
        return self.pick(valid, label)


@settings(max_examples=int(os.environ.get("FASTNET_FUZZ_EXAMPLES", "300")) // 2, deadline=None, database=None,
          derandomize=os.environ.get("FASTNET_FUZZ_RANDOM") != "1", suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzer_models_run_in_onnx_runtime_and_come_back(data, tmp_path_factory):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the image-order guesses of ambiguous shapes
            model, shape = test_fuzz_api.small_model(ValidDraw(data))
    except ValueError:  # valid arguments, shapes that do not fit (a kernel larger than its input)
        reject()
    x = np.random.default_rng(0).standard_normal((3, *model.input_shape[1:])).astype(np.float32)
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    model.export(path)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(ort_run(path, x), expected, rtol=1e-5, atol=1e-5)
    again = fastnet.load_model(path)
    assert [layer.name for layer in again.layers] == (_kept(model) or [again.layers[0].name])
    np.testing.assert_allclose(again.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------ refusals
def _tensor(name, array):
    return numpy_helper.from_array(np.asarray(array, np.float32), name)


def _mlp_proto(nodes=None, inits=None, in_dims=("batch", 4), out_dims=("batch", 3), opset=17, inputs=None):
    """x (batch, 4) -> Gemm(W (3, 4), transB=1) + b -> Relu -> y; parts replaced by the arguments."""
    rng = np.random.default_rng(0)
    inits = [_tensor("W", rng.standard_normal((3, 4))), _tensor("b", rng.standard_normal(3))] if inits is None \
        else inits
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="fc", transB=1),
             helper.make_node("Relu", ["h"], ["y"], name="act")] if nodes is None else nodes
    graph = helper.make_graph(nodes, "g", inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _conv_proto(pads=(0, 0, 0, 0), in_hw=(5, 5), **attrs):
    """x (batch, 1, H, W) -> Conv(W (2, 1, 3, 3)) -> Flatten -> y."""
    w = np.random.default_rng(1).standard_normal((2, 1, 3, 3))
    attrs = {"kernel_shape": [3, 3], "pads": list(pads), **attrs}
    conv = helper.make_node("Conv", ["x", "W"], ["c"], name="conv", **attrs)
    flat = helper.make_node("Flatten", ["c"], ["y"], name="flat", axis=1)
    graph = helper.make_graph([conv, flat], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                 ["batch", 1, *in_hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", None])],
                              initializer=[_tensor("W", w)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _save(tmp_path, proto, name="m.onnx"):
    path = tmp_path / name
    path.write_bytes(proto.SerializeToString())
    return path


def _refused(tmp_path, proto, match, **kwargs):
    path = _save(tmp_path, proto)
    with pytest.raises(ModelFileError, match=match) as info:
        fastnet.load_model(path, **kwargs)
    assert str(path) in str(info.value)


def test_the_base_graphs_load(tmp_path):
    """The graphs the refusals below break, unbroken."""
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    model = fastnet.load_model(_save(tmp_path, _mlp_proto()))
    np.testing.assert_allclose(model.predict(x, verbose=0), ort_run(tmp_path / "m.onnx", x), rtol=1e-6)
    assert model.layers[0].name == "fc" and model.layers[0].activation == "relu"


@pytest.mark.parametrize("attrs,padding", [({}, "valid"), ({"pads": [1, 1, 1, 1]}, "same"),
                                           ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, "same"),
                                           ({"auto_pad": "SAME_LOWER"}, "same"), ({"auto_pad": "VALID"}, "valid")])
def test_convolutions_pad_as_keras(tmp_path, attrs, padding):
    proto = _conv_proto(in_hw=(6, 6), **attrs)
    if "auto_pad" in attrs:  # pads and auto_pad never together
        del proto.graph.node[0].attribute[[a.name for a in proto.graph.node[0].attribute].index("pads")]
    model = fastnet.load_model(_save(tmp_path, proto))
    assert model.layers[0].padding == padding and model.layers[0].data_format == "channels_first"
    x = np.random.default_rng(5).standard_normal((3, 1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), ort_run(tmp_path / "m.onnx", x), rtol=1e-5, atol=1e-6)


def test_same_lower_with_an_odd_total_is_not_keras_same(tmp_path):
    """SAME_LOWER puts the odd padded pixel before, Keras's 'same' after: refused where the total is odd."""
    proto = _conv_proto(in_hw=(6, 6), auto_pad="SAME_LOWER", strides=[2, 2])
    del proto.graph.node[0].attribute[[a.name for a in proto.graph.node[0].attribute].index("pads")]
    _refused(tmp_path, proto, r"pads \[1, 1, 0, 0\].*neither")


def test_max_pool_with_ceil_mode_where_it_changes_nothing(tmp_path):
    proto = _conv_proto(in_hw=(6, 6))
    pool = helper.make_node("MaxPool", ["c"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    proto.graph.node.insert(1, pool)
    proto.graph.node[2].input[0] = "p"
    model = fastnet.load_model(_save(tmp_path, proto))  # 4x4 to 2x2: floor and ceil agree
    x = np.random.default_rng(6).standard_normal((3, 1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), ort_run(tmp_path / "m.onnx", x), rtol=1e-6)
    proto = _conv_proto(in_hw=(7, 7))
    proto.graph.node.insert(1, pool)
    proto.graph.node[2].input[0] = "p"
    _refused(tmp_path, proto, "ceil_mode=1 changes the output size")


def _ops(*ops):
    nodes, prev = [], "x"
    for i, (op, inputs, attrs) in enumerate(ops):
        out = "y" if i == len(ops) - 1 else f"t{i}"
        nodes.append(helper.make_node(op, [prev if a == "." else a for a in inputs], [out], name=f"n{i}", **attrs))
        prev = out
    return nodes


GEMM = ("Gemm", [".", "W", "b"], {"transB": 1})
REFUSALS = {
    "an op fastnet lacks": (_mlp_proto(_ops(GEMM, ("Sqrt", ["."], {}))), r"node 1 'n1' \(Sqrt\).*'Sqrt' is not one"),
    "a branch": (_mlp_proto([helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="fc", transB=1),
                             helper.make_node("Relu", ["h"], ["r"], name="act"),
                             helper.make_node("Add", ["h", "r"], ["y"], name="skip")]), r"'skip'.*not branches"),
    "a dynamic feature axis": (_mlp_proto(in_dims=("batch", "features")), r"static shapes beyond the batch"),
    "two inputs": (_mlp_proto(inputs=[helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 4])
                                      for n in "xz"]), r"2 inputs and 1 outputs"),
    "an old opset": (_mlp_proto(opset=6), r"opset 6"),
    "another domain": (_mlp_proto(_ops(GEMM, ("Relu", ["."], {"domain": "com.microsoft"}))),
                       r"domain 'com.microsoft'"),
    "Gemm's A transposed": (_mlp_proto(_ops(("Gemm", [".", "W", "b"], {"transA": 1, "transB": 1}))),
                            r"Gemm's A, untransposed"),
    "a weight of the wrong shape": (_mlp_proto(_ops(("Gemm", [".", "W", "b"], {}))), r"weight of shape \(3, 4\) on 4"),
    "an Add that is no bias": (_mlp_proto(_ops(GEMM, ("Relu", ["."], {}), ("Add", [".", "b"], {}))),
                               r"only as the bias"),
    "a bias of the wrong size": (_mlp_proto(_ops(("MatMul", [".", "V"], {}), ("Add", [".", "W"], {})),
                                            [_tensor("V", np.ones((4, 3))), _tensor("W", np.ones((3, 4)))]),
                                 r"only as the bias"),
    "NaN weights": (_mlp_proto(inits=[_tensor("W", np.full((3, 4), np.nan)), _tensor("b", np.zeros(3))]),
                    r"tensor of finite floats"),
    "a Softmax over the batch": (_mlp_proto(_ops(GEMM, ("Softmax", ["."], {"axis": 0}))), r"Softmax over axis 0"),
    "an output that is not the chain's end": (_mlp_proto(_ops(GEMM, ("Relu", ["."], {}), ("Identity", ["b"], {}))),
                                              r"not the end of the chain"),
    "a declared output of another size": (_mlp_proto(out_dims=("batch", 5)), r"declares its output as \(batch, 5\)"),
    "a Cast to int": (_mlp_proto(_ops(GEMM, ("Cast", ["."], {"to": TensorProto.INT64}))), r"a Cast to ONNX data"),
    "pads neither valid nor same": (_conv_proto(pads=(0, 0, 1, 1)), r"pads \[0, 0, 1, 1\].*neither"),
    "grouped": (_conv_proto(group=2), r"ungrouped"),
    "dilated": (_conv_proto(dilations=[2, 2]), r"dilated"),
    "a transpose of other axes": (_conv_proto(), None),  # replaced below
}


def _transposed_other_axes():
    proto = _conv_proto()
    proto.graph.node.insert(0, helper.make_node("Transpose", ["x"], ["xt"], name="swap", perm=[0, 1, 3, 2]))
    proto.graph.node[1].input[0] = "xt"
    return proto


REFUSALS["a transpose of other axes"] = (_transposed_other_axes(), r"'swap'.*perm \[0, 1, 3, 2\]")


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_what_fastnet_cannot_compute_is_refused_naming_the_node(tmp_path, case):
    proto, match = REFUSALS[case]
    _refused(tmp_path, proto, match)


def test_tensor_sizes_are_checked_before_an_array_is_made(tmp_path):
    proto = _mlp_proto()
    w = proto.graph.initializer[0]
    w.dims[:] = [1 << 40, 1 << 40]  # claims 4 * 2**80 bytes, holds 48
    _refused(tmp_path, proto, r"initializer 'W' declares float32 \(1099511627776, 1099511627776\).* holds 48 bytes")
    proto = _mlp_proto()
    proto.graph.initializer[1].ClearField("raw_data")
    proto.graph.initializer[1].float_data[:] = [1.0, 2.0]  # dims say 3
    _refused(tmp_path, proto, r"initializer 'b' declares \(3,\) \(3 values\) but holds 2")
    proto = _mlp_proto()
    proto.graph.initializer[1].data_type = TensorProto.STRING
    _refused(tmp_path, proto, r"initializer 'b' has ONNX data type 8")


@pytest.mark.parametrize("cut", [1, 10, 100, -7])
def test_truncated_or_corrupted_files_are_refused(tmp_path, cut):
    data = _mlp_proto().SerializeToString()
    path = tmp_path / "m.onnx"
    path.write_bytes(data[:cut])
    with pytest.raises(ModelFileError, match="m.onnx"):
        fastnet.load_model(path)
    path.write_bytes(b"\x93NUMPY garbage" * 10)
    with pytest.raises(ModelFileError, match="truncated, corrupted or not an ONNX model"):
        fastnet.load_model(path)


def _external(tmp_path, location, data=None):
    """The MLP's weights stored by ONNX's own writer in the file `location`, then the location rewritten."""
    proto = _mlp_proto()
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    onnx.save_model(proto, str(folder / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    saved = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    for t in saved.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    (folder / "m.onnx").write_bytes(saved.SerializeToString())
    return folder / "m.onnx"


def test_external_data_is_read_only_when_asked_and_only_beside_the_file(tmp_path):
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    expected = fastnet.load_model(_save(tmp_path, _mlp_proto())).predict(x, verbose=0)
    path = _external(tmp_path, "weights.bin")
    with pytest.raises(ModelFileError, match=r"initializer 'W' is stored outside the file \('weights.bin'\).*"
                                             r"external_data=True"):
        fastnet.load_model(path)
    np.testing.assert_array_equal(fastnet.load_model(path, external_data=True).predict(x, verbose=0), expected)
    (tmp_path / "secret.bin").write_bytes((tmp_path / "model" / "weights.bin").read_bytes())
    for location in ("../secret.bin", str(tmp_path / "secret.bin"), "./weights.bin", "sub/../../secret.bin"):
        with pytest.raises(ModelFileError, match="beside the model"):
            fastnet.load_model(_external(tmp_path, location), external_data=True)
    os.symlink(tmp_path / "secret.bin", tmp_path / "model" / "link.bin")
    with pytest.raises(ModelFileError, match="a link that leads out of the model's folder"):
        fastnet.load_model(_external(tmp_path, "link.bin"), external_data=True)
    (tmp_path / "model" / "short.bin").write_bytes(b"\0" * 20)
    with pytest.raises(ModelFileError, match="'short.bin' is 20 bytes, too short"):
        fastnet.load_model(_external(tmp_path, "short.bin"), external_data=True)
    os.mkfifo(tmp_path / "model" / "fifo.bin")
    with pytest.raises(ModelFileError, match="'fifo.bin' is not a plain file"):
        fastnet.load_model(_external(tmp_path, "fifo.bin"), external_data=True)
    with pytest.raises(ModelFileError, match="missing.bin.*No such file"):
        fastnet.load_model(_external(tmp_path, "missing.bin"), external_data=True)


def test_load_model_arguments(tmp_path, monkeypatch):
    model = Sequential([Dense(3, input_shape=(4,))])
    model.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="external_data=True is for .onnx files"):
        fastnet.load_model(tmp_path / "m.npz", external_data=True)
    with pytest.raises(TypeError, match="external_data"):
        fastnet.load_model(tmp_path / "m.npz", external_data="yes")
    with pytest.raises(ValueError, match=r"ONNX: model.export\('x.onnx'\)"):
        model.save(tmp_path / "m.onnx")
    path = _save(tmp_path, _mlp_proto())
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)
    with pytest.raises(ImportError, match="loading ONNX needs the onnx package"):
        fastnet.load_model(path)


def test_fastnet_imports_onnx_only_when_asked(tmp_path):
    """The onnx package is an extra: importing fastnet, building, training and saving a model never loads it."""
    import subprocess
    import sys

    code = ("import sys, numpy as np, fastnet\n"
            "from fastnet.layers import Dense\n"
            "m = fastnet.Sequential([Dense(2, input_shape=(3,))]); m.compile(loss='mse', optimizer='sgd')\n"
            "m.fit(np.ones((4, 3), np.float32), np.ones((4, 2), np.float32), verbose=0)\n"
            f"m.save({str(tmp_path / 'm.npz')!r}); fastnet.load_model({str(tmp_path / 'm.npz')!r})\n"
            "assert 'onnx' not in sys.modules, 'onnx imported'\n"
            f"m.export({str(tmp_path / 'm.onnx')!r})\n"
            "assert 'onnx' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
