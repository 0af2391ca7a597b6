"""One training step of fastnet against a float64 numpy training loop written from the spec."""
import numpy as np
import pytest

import fastnet
import reference as ref
from fastnet import _kernels, _model_inputs, _seed, mixed_precision
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


def dropout_keep(model, step, n):
    """The mask the Dropout layer (index 3) draws at a training step: keyed by (seed, model, step, layer)."""
    shape = (n,) + model.layers[3].in_shape
    stream = _seed.key64(model.model_id, step, 3)
    return _kernels.random_uniform(int(np.prod(shape)), model.seed, stream).reshape(shape) >= model.layers[3].rate


def reference_step(weights, x_nhwc, y, data_format, keep, rate, bf16=False):
    """Forward and backward of small_net in float64 for these weights and dropout mask: (loss, grads).
    bf16: every product's operands rounded to bfloat16 first (mixed_bfloat16; the conv is im2col-shaped, so its
    operands are x, the kernel and dz themselves)."""
    r = (lambda a: ref.round_bf16(a).astype(np.float64)) if bf16 else (lambda a: a)
    wc, bc, w1, b1, w2, b2 = [w.astype(np.float64) for w in weights]
    z0 = ref.conv2d_forward(r(x_nhwc), r(wc), bc, (1, 1), "valid")
    a0 = np.maximum(z0, 0)
    p0, arg = ref.maxpool2d_forward(a0, (2, 2))
    d0 = ref.dropout_forward(p0, keep, rate)
    f = d0.transpose(0, 3, 1, 2) if data_format == "channels_first" else d0  # Keras flattens (C, H, W) then
    f = f.reshape(len(x_nhwc), -1)
    h = np.tanh(r(f) @ r(w1) + b1)
    z = r(h) @ r(w2) + b2
    probs, losses = ref.softmax_xent_forward(z, y)
    dz = ref.softmax_xent_backward(probs, y, 1.0 / len(y))
    dh, dw2, _ = ref.dense_backward(r(dz), r(h), r(w2))
    db2 = dz.sum(axis=0)
    dh = dh * (1 - h * h)
    df, dw1, _ = ref.dense_backward(r(dh), r(f), r(w1))
    db1 = dh.sum(axis=0)
    if data_format == "channels_first":
        n, hh, ww, c = d0.shape
        df = df.reshape(n, c, hh, ww).transpose(0, 2, 3, 1)
    dd0 = ref.dropout_backward(df.reshape(d0.shape), keep, rate)
    da0 = ref.maxpool2d_backward(dd0, arg, a0.shape)
    dz0 = da0 * (z0 > 0)
    dwc, _ = ref.conv2d_backward_filter(r(dz0), r(x_nhwc), wc.shape[:2])
    dbc = dz0.sum(axis=(0, 1, 2))
    return losses.mean(), [dwc, dbc, dw1, db1, dw2, db2]


# name: (the fastnet optimizer, its float64 update (param, grad, slots, t) -> (param, *slots), slot count)
OPTIMIZERS = {
    "sgd": (lambda: SGD(lr=0.1, momentum=0.9, nesterov=True),
            lambda p, g, s, t: ref.sgd_update(p, s[0], g, 0.1, 0.9, True), 1),
    "rmsprop": (RMSprop, lambda p, g, s, t: ref.rmsprop_update(p, s[0], g, 0.001, 0.9, 1e-7), 1),
    "adadelta": (Adadelta, lambda p, g, s, t: ref.adadelta_update(p, s[0], s[1], g, 1.0, 0.95, 1e-7), 2),
    "adam": (Adam, lambda p, g, s, t: ref.adam_update(p, s[0], s[1], g, 0.001, 0.9, 0.999, 1e-7, t), 2),
}


def batch(data_format, seed=0):
    rng = np.random.default_rng(seed)
    x_nhwc = rng.random((6, 7, 8, 2)).astype(np.float32)
    x = x_nhwc.transpose(0, 3, 1, 2).copy() if data_format == "channels_first" else x_nhwc
    return x_nhwc, x, np.eye(4, dtype=np.float32)[rng.integers(0, 4, 6)]


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_every_gradient_matches_numpy(data_format, policy):
    """After one train_on_batch, each parameter's gradient against the float64 reference (not the update,
    which for RMSprop, Adam and Adadelta is about lr * sign(g) whatever |g| is). Under mixed_bfloat16 the
    reference rounds every product's operands to bfloat16 as the kernels do; the bound stays float32's, as the
    products of rounded operands are exact (tests/test_mixed_precision.py)."""
    fastnet.set_seed(7)
    mixed_precision.set_global_policy(policy)
    try:
        model = small_net(data_format, SGD(lr=0.0))
    finally:
        mixed_precision.set_global_policy("float32")
    x_nhwc, x, y = batch(data_format)
    expected_loss, expected = reference_step(model.get_weights(), x_nhwc, y, data_format,
                                             dropout_keep(model, 0, len(x)), model.layers[3].rate,
                                             bf16=policy == "mixed_bfloat16")
    loss, _ = model.train_on_batch(x, y)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    grads = [g for layer in model.layers for g in layer.grads]
    names = [f"{layer.name}/{n}" for layer in model.layers for n in layer.weight_names]
    assert len(grads) == len(expected) == 6
    for name, g, rg in zip(names, grads, expected):
        assert np.abs(rg).max() > 1e-3, f"{name}: the test batch gives it no gradient to check"
        assert_close(g, rg, rtol=1e-4, atol=1e-6 * np.abs(rg).max(), name=f"gradient of {name}")


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_five_steps_match_numpy(data_format, opt):
    """Five train_on_batch steps (a new dropout mask each) against a float64 training loop from the same
    initial weights: losses and final weights."""
    fastnet.set_seed(7)
    make, update, n_slots = OPTIMIZERS[opt]
    model = small_net(data_format, make())
    x_nhwc, x, y = batch(data_format)
    weights = [w.astype(np.float64) for w in model.get_weights()]
    slots = [[np.zeros_like(w) for _ in range(n_slots)] for w in weights]
    for t in range(5):
        expected_loss, grads = reference_step(weights, x_nhwc, y, data_format, dropout_keep(model, t, len(x)),
                                              model.layers[3].rate)
        loss, _ = model.train_on_batch(x, y)
        assert loss == pytest.approx(expected_loss, rel=1e-4), f"loss at step {t + 1}"
        for k, (w, g) in enumerate(zip(weights, grads)):
            weights[k], *slots[k] = update(w, g, slots[k], t + 1)
    for i, (w, rw) in enumerate(zip(model.get_weights(), weights)):
        assert_close(w, rw, rtol=1e-4, atol=1e-5, name=f"weight {i} after five {opt} steps")


def test_dropout_is_off_at_inference_and_on_in_training():
    fastnet.set_seed(3)
    model = small_net("channels_last", "sgd")
    x = np.random.default_rng(1).random((4, 7, 8, 2)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), model.predict(x))
    plan = model._begin_call(4, training=True)
    plan.forward(_model_inputs.prepare_x(model, x, "t"), training=True)
    (i,) = [i for i, s in enumerate(plan.steps) if s.op == "dropout"]
    keep = plan.array(i, "keep", 4)
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
