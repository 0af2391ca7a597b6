"""One training step of fastnet against a float64 numpy training loop written from the spec."""
import numpy as np
import pytest

import fastnet
import reference as ref
from fastnet import _kernels
from fastnet.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from fastnet.models import Sequential
from fastnet.optimizers import SGD, Adadelta, Adam, RMSprop
from helpers import assert_close


def small_net(data_format, optimizer):
    shape = (2, 7, 8) if data_format == "channels_first" else (7, 8, 2)
    m = Sequential()
    m.add(Conv2D(3, (3, 2), input_shape=shape, data_format=data_format))
    m.add(Activation("relu"))
    m.add(MaxPooling2D((2, 2)))
    m.add(Dropout(0.3))
    m.add(Flatten())
    m.add(Dense(5, activation="tanh"))
    m.add(Dense(4))
    m.add(Activation("softmax"))
    m.compile(loss="categorical_crossentropy", optimizer=optimizer, metrics=["accuracy"])
    return m


def reference_step(model, x_nhwc, y, data_format):
    """Forward and backward in float64 with the model's current weights; returns (loss, grads)."""
    wc, bc, w1, b1, w2, b2 = [w.astype(np.float64) for w in model.get_weights()]
    drop = model.layers[3]
    z0 = ref.conv2d_forward(x_nhwc, wc, bc, (1, 1), "valid")
    a0 = np.maximum(z0, 0)
    p0, arg = ref.maxpool2d_forward(a0, (2, 2))
    stream = (model.model_id << 48) ^ (model.step << 12) ^ drop.index
    keep = _kernels.random_uniform(p0.size, model.seed, stream).reshape(p0.shape) >= drop.rate
    d0 = ref.dropout_forward(p0, keep, drop.rate)
    f = d0.transpose(0, 3, 1, 2) if data_format == "channels_first" else d0  # Keras flattens (C, H, W) then
    f = f.reshape(len(x_nhwc), -1)
    h = np.tanh(f @ w1 + b1)
    z = h @ w2 + b2
    probs, losses = ref.softmax_xent_forward(z, y)
    dz = ref.softmax_xent_backward(probs, y, 1.0 / len(y))
    dh, dw2, db2 = ref.dense_backward(dz, h, w2)
    dh = dh * (1 - h * h)
    df, dw1, db1 = ref.dense_backward(dh, f, w1)
    if data_format == "channels_first":
        n, hh, ww, c = d0.shape
        df = df.reshape(n, c, hh, ww).transpose(0, 2, 3, 1)
    dd0 = ref.dropout_backward(df.reshape(d0.shape), keep, drop.rate)
    da0 = ref.maxpool2d_backward(dd0, arg, a0.shape)
    dz0 = da0 * (z0 > 0)
    dwc, dbc = ref.conv2d_backward_filter(dz0, x_nhwc, wc.shape[:2])
    return losses.mean(), [dwc, dbc, dw1, db1, dw2, db2]


OPTIMIZERS = {
    "sgd": (lambda: SGD(lr=0.1, momentum=0.9, nesterov=True), lambda p, g, s: ref.sgd_update(p, s[0], g, 0.1, 0.9, True)),
    "rmsprop": (RMSprop, lambda p, g, s: ref.rmsprop_update(p, s[0], g, 0.001, 0.9, 1e-7)),
    "adadelta": (Adadelta, lambda p, g, s: ref.adadelta_update(p, s[0], s[1], g, 1.0, 0.95, 1e-7)),
    "adam": (Adam, lambda p, g, s: ref.adam_update(p, s[0], s[1], g, 0.001, 0.9, 0.999, 1e-7, 1)),
}


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_one_step_matches_numpy(data_format, opt):
    fastnet.set_seed(7)
    make, step = OPTIMIZERS[opt]
    model = small_net(data_format, make())
    rng = np.random.default_rng(0)
    x_nhwc = rng.random((6, 7, 8, 2)).astype(np.float32)
    x = x_nhwc.transpose(0, 3, 1, 2).copy() if data_format == "channels_first" else x_nhwc
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 6)]
    before = model.get_weights()
    expected_loss, grads = reference_step(model, x_nhwc, y, data_format)
    loss, _ = model.train_on_batch(x, y)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    n_slots = len(model.optimizer.slot_names)
    for i, (w0, g, w1) in enumerate(zip(before, grads, model.get_weights())):
        expected = step(w0.astype(np.float64), g, [np.zeros_like(g)] * n_slots)[0]
        assert_close(w1, expected, rtol=1e-4, atol=1e-5, name=f"weight {i} after one {opt} step")


def test_dropout_is_off_at_inference_and_on_in_training():
    fastnet.set_seed(3)
    model = small_net("channels_last", "sgd")
    x = np.random.default_rng(1).random((4, 7, 8, 2)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), model.predict(x))
    plan, ctx = model._begin_call(4)
    plan.forward(ctx, model._prepare_x(x, "t"), training=True)
    (i, step), = [(i, s) for i, s in enumerate(plan.steps) if s.op == "dropout"]
    keep = plan._saved[i]
    assert 0 < (~keep.astype(bool)).mean() < 0.6


def test_overfit_one_batch():
    fastnet.set_seed(0)
    rng = np.random.default_rng(5)
    x = rng.random((32, 20)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 32)]
    model = Sequential([Dense(64, activation="relu", input_shape=(20,)), Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=Adam(lr=0.01), metrics=["accuracy"])
    first = model.train_on_batch(x, y)[0]
    for _ in range(300):
        loss, acc = model.train_on_batch(x, y)
    assert first > 2.0 and loss < 0.01 and acc == 1.0
