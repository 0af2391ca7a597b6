"""Shared test helpers: comparisons that report the max difference, and 4th-order finite differences."""
import numpy as np


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
