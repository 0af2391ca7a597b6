"""Finite differences check the float64 reference; the reference then checks the C kernels."""
import numpy as np
import pytest

import reference as ref
from helpers import assert_close, numeric_grad


def check(analytic, f, x, name):
    assert_close(analytic, numeric_grad(f, x), rtol=1e-6, atol=1e-7, name=name)


@pytest.mark.parametrize("act", ["linear", "sigmoid", "tanh"])
def test_dense_gradients(rng, act):
    x, w, b = rng.standard_normal((3, 5)), rng.standard_normal((5, 7)), rng.standard_normal(7)
    R = rng.standard_normal((3, 7))
    y = ref.dense_forward(x, w, b, act)
    dz = ref.activation_backward(R, y, act)
    dx, dw, db = ref.dense_backward(dz, x, w)
    check(dx, lambda v: (ref.dense_forward(v, w, b, act) * R).sum(), x, "dx")
    check(dw, lambda v: (ref.dense_forward(x, v, b, act) * R).sum(), w, "dw")
    check(db, lambda v: (ref.dense_forward(x, w, v, act) * R).sum(), b, "db")


def test_relu_gradient_away_from_kink(rng):
    x = rng.standard_normal((4, 9))
    x[np.abs(x) < 0.05] = 0.3
    R = rng.standard_normal(x.shape)
    y = ref.activation_forward(x, "relu")
    check(ref.activation_backward(R, y, "relu"), lambda v: (ref.activation_forward(v, "relu") * R).sum(), x, "relu")


@pytest.mark.parametrize("strides,padding,kernel", [((1, 1), "valid", (3, 3)), ((2, 1), "same", (3, 2)),
                                                    ((2, 2), "same", (2, 2)), ((1, 1), "valid", (1, 1))])
def test_conv2d_gradients(rng, strides, padding, kernel):
    x = rng.standard_normal((2, 5, 6, 3))
    w = rng.standard_normal((*kernel, 3, 2))
    b = rng.standard_normal(2)
    y = ref.conv2d_forward(x, w, b, strides, padding)
    R = rng.standard_normal(y.shape)
    dx = ref.conv2d_backward_data(R, w, x.shape, strides, padding)
    dw, db = ref.conv2d_backward_filter(R, x, w.shape[:2], strides, padding)
    check(dx, lambda v: (ref.conv2d_forward(v, w, b, strides, padding) * R).sum(), x, "dx")
    check(dw, lambda v: (ref.conv2d_forward(x, v, b, strides, padding) * R).sum(), w, "dw")
    check(db, lambda v: (ref.conv2d_forward(x, w, v, strides, padding) * R).sum(), b, "db")


@pytest.mark.parametrize("pool,strides,padding", [((2, 2), None, "valid"), ((3, 3), (2, 2), "same"),
                                                  ((2, 3), (1, 2), "valid")])
def test_maxpool_gradients(rng, pool, strides, padding):
    x = rng.permutation(2 * 5 * 7 * 3).reshape(2, 5, 7, 3) * 0.1  # distinct values: no ties
    y, arg = ref.maxpool2d_forward(x, pool, strides, padding)
    R = rng.standard_normal(y.shape)
    dx = ref.maxpool2d_backward(R, arg, x.shape)
    check(dx, lambda v: (ref.maxpool2d_forward(v, pool, strides, padding)[0] * R).sum(), x, "maxpool dx")


def test_softmax_gradients(rng):
    x = rng.standard_normal((3, 6))
    R = rng.standard_normal(x.shape)
    y = ref.softmax_forward(x)
    check(ref.softmax_backward(R, y), lambda v: (ref.softmax_forward(v) * R).sum(), x, "softmax")


def test_softmax_xent_gradients(rng):
    z = rng.standard_normal((4, 5)) * 3
    t = np.eye(5)[[0, 3, 3, 1]] * 0.9 + 0.02  # soft targets exercise the sum(t) term
    p, _ = ref.softmax_xent_forward(z, t)
    scale = 1.0 / 4
    check(ref.softmax_xent_backward(p, t, scale), lambda v: scale * ref.softmax_xent_forward(v, t)[1].sum(), z,
          "xent")


@pytest.mark.parametrize("kind", ["squared", "absolute", "sigmoid_xent"])
def test_pointwise_loss_gradients(rng, kind):
    z = rng.standard_normal((4, 3)) * 3
    t = rng.random((4, 3)) if kind == "sigmoid_xent" else rng.standard_normal((4, 3))
    t[np.abs(z - t) < 0.05] += 0.3  # away from |z - t|'s kink
    w = rng.random(4)
    _, probs = ref.pointwise_loss_forward(kind, z, t, w)
    check(ref.pointwise_loss_backward(kind, z, t, 0.25, w, probs),
          lambda v: 0.25 * ref.pointwise_loss_forward(kind, v, t, w)[0].sum(), z, kind)


def test_dropout_gradient(rng):
    x = rng.standard_normal((3, 8))
    keep = rng.random(x.shape) > 0.3
    R = rng.standard_normal(x.shape)
    check(ref.dropout_backward(R, keep, 0.3), lambda v: (ref.dropout_forward(v, keep, 0.3) * R).sum(), x,
          "dropout")
