"""ONNX export (fastnet.onnx_format), checked by the ONNX checker and run by ONNX Runtime.

Needs the onnx extra and onnxruntime (the test extra); without them these tests skip, unless
FASTNET_REQUIRE_ONNX=1 (set by .ci/run), where a missing package fails them.
"""
import os

import numpy as np
import pytest

import fastnet
from fastnet import networks
from fastnet.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from fastnet.models import Sequential


def _need(module):
    if os.environ.get("FASTNET_REQUIRE_ONNX") == "1":
        return __import__(module)
    return pytest.importorskip(module)


onnx = _need("onnx")
ort = _need("onnxruntime")


def run(path, x):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def trained(model, x, y):
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    return model


@pytest.mark.parametrize("network,data_format", [("mlp", None), ("cnn", "channels_last"), ("cnn", "channels_first")])
def test_the_article_networks_predict_in_onnx_runtime_as_in_fastnet(tmp_path, network, data_format):
    fastnet.set_seed(0)
    model = networks.mlp() if network == "mlp" else networks.cnn(data_format)
    rng = np.random.default_rng(1)
    shape = model.input_shape[1:]
    x = rng.random((1000,) + shape, dtype=np.float32)
    trained(model, x[:256], np.eye(10, dtype=np.float32)[rng.integers(0, 10, 256)])
    path = tmp_path / "model.onnx"
    model.export(path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.producer_name == "fastnet" and proto.producer_version == fastnet.__version__
    assert proto.opset_import[0].version == 17 and proto.graph.name == model.name
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch"  # any batch size
    assert not [n for n in proto.graph.node if n.op_type == "Dropout"]
    for n in (1, 7, 1000):
        np.testing.assert_allclose(run(path, x[:n]), model.predict(x[:n]), rtol=1e-5, atol=1e-6)


def test_padding_strides_activations_and_image_outputs(tmp_path):
    """'same' padding (uneven: 7 by 2), strides, every activation, a model ending in images, no bias."""
    fastnet.set_seed(2)
    for data_format, shape in (("channels_last", (7, 9, 3)), ("channels_first", (3, 7, 9))):
        model = Sequential([Conv2D(4, (3, 2), strides=(2, 1), padding="same", activation="tanh", input_shape=shape,
                                   data_format=data_format),
                            MaxPooling2D((2, 2), strides=(1, 2), padding="same", data_format=data_format),
                            Conv2D(5, (2, 2), use_bias=False, activation="sigmoid", data_format=data_format),
                            Activation("softmax")])
        x = np.random.default_rng(3).standard_normal((5,) + shape).astype(np.float32)
        model.export(tmp_path / "m.onnx")
        np.testing.assert_allclose(run(tmp_path / "m.onnx", x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_flatten_orders(tmp_path):
    """channels_first images flatten in (C, H, W) order, and in (H, W, C) with Flatten(data_format=
    'channels_first') (Keras 3's way to keep a channels_last model's weights): the exported graph reads the same."""
    fastnet.set_seed(4)
    for flatten in (Flatten(), Flatten(data_format="channels_first")):
        model = Sequential([Conv2D(3, (2, 2), input_shape=(2, 5, 4), data_format="channels_first", activation="relu"),
                            flatten, Dropout(0.5), Dense(6, use_bias=False), Dense(3)])
        x = np.random.default_rng(5).standard_normal((4, 2, 5, 4)).astype(np.float32)
        model.export(tmp_path / "m.onnx")
        np.testing.assert_allclose(run(tmp_path / "m.onnx", x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_what_cannot_be_exported_is_refused_by_name(tmp_path):
    model = Sequential([Dense(3, input_shape=(4,))])
    with pytest.raises(ValueError, match="exports 'onnx' only"):
        model.export(tmp_path / "m", format="tf_saved_model")
    fastnet.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = Sequential([Dense(3, input_shape=(4,), name="mixed_dense")])
    finally:
        fastnet.mixed_precision.set_global_policy("float32")
    with pytest.raises(ValueError, match="'mixed_dense' computes with bfloat16"):
        mixed.export(tmp_path / "m.onnx")
    assert not os.path.exists(tmp_path / "m.onnx")
