"""LeakyReLU (Keras 3's layer): its kernel against the float64 reference, the reference against finite
differences, a model's gradients against float64 numpy, and the layer through every file format."""
import os
import warnings

import numpy as np
import pytest

import fastnet
import reference as ref
from fastnet import _kernels
from fastnet.layers import Dense, Flatten, LeakyReLU, LegacyAPIWarning, MaxPooling2D
from fastnet.models import Sequential, load_model
from helpers import assert_close, numeric_grad, rand


def close(actual, expected, name, rel):
    return assert_close(actual, expected, rtol=rel, atol=rel * max(1.0, float(np.abs(expected).max())), name=name)


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 33, 17)])
@pytest.mark.parametrize("slope", [0.3, 0.0, 0.01])
def test_kernel_matches_the_reference(rng, shape, slope):
    x = rand(rng, *shape, scale=3)
    y = _kernels.activation_forward(x, "leaky_relu", alpha=slope)
    close(y, ref.activation_forward(x, "leaky_relu", slope), "leaky_relu forward", rel=1e-6)
    dy = rand(rng, *shape)
    dx = _kernels.activation_backward(dy, y, "leaky_relu", alpha=slope)
    close(dx, ref.activation_backward(dy, y, "leaky_relu", slope), "leaky_relu backward", rel=1e-6)
    for nt in (1, 2, 3):  # the same bits on any thread count
        np.testing.assert_array_equal(_kernels.activation_forward(x, "leaky_relu", alpha=slope, n_threads=nt), y)


def test_the_reference_gradient_is_the_finite_difference(rng):
    x = rng.standard_normal((4, 9))
    x[np.abs(x) < 0.05] = 0.3  # away from the kink
    r = rng.standard_normal(x.shape)
    y = ref.activation_forward(x, "leaky_relu", 0.2)
    assert_close(ref.activation_backward(r, y, "leaky_relu", 0.2),
                 numeric_grad(lambda v: (ref.activation_forward(v, "leaky_relu", 0.2) * r).sum(), x),
                 rtol=1e-6, atol=1e-7, name="leaky_relu")


def test_a_model_step_matches_numpy(rng):
    """One SGD step (lr 1) of Dense -> LeakyReLU -> Dense(softmax): the weights move by float64 numpy's gradient."""
    fastnet.set_seed(1)
    model = Sequential([Dense(6, input_shape=(5,)), LeakyReLU(0.25), Dense(3, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=fastnet.optimizers.SGD(lr=1.0))
    x, t = rand(rng, 7, 5), np.eye(3, dtype=np.float32)[rng.integers(0, 3, 7)]
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    z = x @ w1 + b1
    h = np.where(z > 0, z, 0.25 * z)
    logits = h @ w2 + b2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d2 = (p - t) / len(x)
    dz = np.where(z > 0, 1.0, 0.25) * (d2 @ w2.T)
    expected = [w1 - x.T @ dz, b1 - dz.sum(0), w2 - h.T @ d2, b2 - d2.sum(0)]
    loss = model.train_on_batch(x, t)
    assert loss == pytest.approx(-np.log(p[t.astype(bool)]).mean(), rel=1e-5)
    for got, want in zip(model.get_weights(), expected):
        assert_close(got, want, rtol=1e-5, atol=1e-6, name="weights after one step")


def model():
    fastnet.set_seed(2)
    m = Sequential([MaxPooling2D((2, 2), input_shape=(4, 4, 2)), LeakyReLU(negative_slope=0.1, name="leaky"),
                    Flatten(), Dense(3)])
    m.compile(loss="mse", optimizer="adam")
    return m


def test_config_spellings_and_errors():
    layer = LeakyReLU()
    assert layer.negative_slope == 0.3 and layer.alpha == 0.3  # Keras 3's default slope
    with pytest.warns(LegacyAPIWarning, match="negative_slope"):
        assert LeakyReLU(alpha=0.2).negative_slope == 0.2
    with pytest.raises(ValueError, match="negative_slope"):
        LeakyReLU(-0.5)
    m = model()
    assert m.layers[1].get_config()["negative_slope"] == 0.1 and "activation" not in m.layers[1].get_config()
    assert "activation(leaky)" in repr(m.plan())


@pytest.mark.parametrize("ext", [".npz", ".keras"])
def test_saved_and_loaded(tmp_path, rng, ext):
    if ext == ".keras":
        pytest.importorskip("h5py") if os.environ.get("FASTNET_REQUIRE_KERAS") != "1" else None
    m = model()
    x = rand(rng, 5, 4, 4, 2)
    m.fit(x, rand(rng, 5, 3), epochs=2, verbose=0)
    m.save(tmp_path / f"m{ext}")
    back = load_model(tmp_path / f"m{ext}")
    assert isinstance(back.layers[1], LeakyReLU) and back.layers[1].negative_slope == 0.1
    np.testing.assert_array_equal(back.predict(x), m.predict(x))


def test_keras_reads_it(tmp_path, rng):
    if os.environ.get("FASTNET_REQUIRE_KERAS") == "1":  # .ci/run installs Keras: there this test must run
        import keras
    else:
        keras = pytest.importorskip("keras")
    m = model()
    x = rand(rng, 5, 4, 4, 2)
    m.save(tmp_path / "m.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = keras.models.load_model(tmp_path / "m.keras")
    assert type(theirs.layers[1]).__name__ == "LeakyReLU"
    assert_close(np.asarray(theirs.predict(x, verbose=0)), m.predict(x), rtol=1e-5, atol=1e-6, name="Keras")


def test_onnx_runtime_runs_it(tmp_path, rng):
    if os.environ.get("FASTNET_REQUIRE_ONNX") == "1":
        import onnxruntime as ort
    else:
        pytest.importorskip("onnx")
        ort = pytest.importorskip("onnxruntime")
    m = model()
    x = rand(rng, 5, 4, 4, 2)
    m.export(tmp_path / "m.onnx")
    got = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert_close(got[0], m.predict(x), rtol=1e-5, atol=1e-6, name="ONNX Runtime")
