"""Shared test helpers: comparisons that report the max difference, 4th-order finite differences, and the
bfloat16 error bounds (derived at the top of test_mixed_precision.py)."""
import numpy as np

import reference as ref


def assert_close(actual, expected, rtol, atol, name=""):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    diff = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    worst = np.unravel_index(np.argmax(diff - bound), diff.shape) if diff.size else ()
    assert np.all(diff <= bound), (
        f"{name}: max |diff| {diff.max():.3g} at {worst} (actual {actual[worst]:.6g}, expected {expected[worst]:.6g})")
    return float(diff.max()) if diff.size else 0.0


def numeric_grad(f, x, h=1e-3):
    """d f / d x by 4th-order central differences in float64; f returns a scalar."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        vals = []
        for step in (2, 1, -1, -2):
            flat[i] = orig + step * h
            vals.append(f(x))
        flat[i] = orig
        gflat[i] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
    return grad


def rand(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


# ---- bfloat16 products (tests/test_mixed_precision.py derives these bounds) ----

U32 = 2.0 ** -24


def bf16_close(actual, a_terms, name, K):
    """actual against the float64 result of rounded operands: a_terms = (expected, sum of |products|)."""
    expected, magnitude = a_terms
    bound = K * U32 / (1 - K * U32) * magnitude + 1e-30
    err = np.abs(np.asarray(actual, np.float64) - expected)
    worst = float((err / bound).max())
    assert worst <= 1.0, f"{name}: error {worst:.2f}x the float32 summation bound"


def gemm_terms(a, b):
    a, b = ref.round_bf16(a).astype(np.float64), ref.round_bf16(b).astype(np.float64)
    return a @ b, np.abs(a) @ np.abs(b)


BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64)
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64)


def winograd_abs_bound(x, w):
    """A^T (sum_c |U| . |V|) |A| per output, for a valid 3x3 convolution whose outputs tile by 4 (float64)."""
    N, H, W, C = x.shape
    th, tw = (H - 2) // 4, (W - 2) // 4
    U = np.abs(np.einsum("ik,klco,jl->ijco", G, w.astype(np.float64), G))  # (6, 6, C, OC)
    out = np.zeros((N, 4 * th, 4 * tw, w.shape[3]))
    for ti in range(th):
        for tj in range(tw):
            d = x[:, 4 * ti:4 * ti + 6, 4 * tj:4 * tj + 6, :].astype(np.float64)
            V = np.abs(np.einsum("ik,nklc,jl->nijc", BT, d, BT))  # (N, 6, 6, C)
            M = np.einsum("nijc,ijco->nijo", V, U)
            out[:, 4 * ti:4 * ti + 4, 4 * tj:4 * tj + 4, :] = np.einsum("ai,nijo,bj->nabo", np.abs(AT), M,
                                                                         np.abs(AT))
    return out
