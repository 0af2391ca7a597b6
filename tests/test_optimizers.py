"""Optimizer kernels: one step and a 25-step trajectory against the written Keras 2 formulas."""
import numpy as np
import pytest

import reference as ref
from fastnet import _kernels
from helpers import assert_close, rand


def trajectory(rng, n, steps, kernel_step, ref_step, n_slots):
    p = rand(rng, n)
    slots = [np.zeros(n, dtype=np.float32) for _ in range(n_slots)]
    rp, rslots = p.astype(np.float64), [s.astype(np.float64) for s in slots]
    for t in range(1, steps + 1):
        g = rand(rng, n)
        kernel_step(p, slots, g, t)
        rp, *rslots = ref_step(rp, rslots, g, t)
        assert_close(p, rp, rtol=1e-5, atol=1e-6, name=f"param after step {t}")
        for s, rs in zip(slots, rslots):
            assert_close(s, rs, rtol=1e-5, atol=1e-6, name=f"slot after step {t}")


@pytest.mark.parametrize("n", [1, 17, 10_001])
@pytest.mark.parametrize("steps", [1, 25])
def test_rmsprop(rng, n, steps):
    trajectory(rng, n, steps,
               lambda p, s, g, t: _kernels.rmsprop_update(p, s[0], g, 0.001, 0.9, 1e-7),
               lambda p, s, g, t: ref.rmsprop_update(p, s[0], g, 0.001, 0.9, 1e-7), 1)


@pytest.mark.parametrize("n", [1, 17, 10_001])
@pytest.mark.parametrize("steps", [1, 25])
def test_adadelta(rng, n, steps):
    trajectory(rng, n, steps,
               lambda p, s, g, t: _kernels.adadelta_update(p, s[0], s[1], g, 1.0, 0.95, 1e-7),
               lambda p, s, g, t: ref.adadelta_update(p, s[0], s[1], g, 1.0, 0.95, 1e-7), 2)


@pytest.mark.parametrize("n", [1, 17, 10_001])
@pytest.mark.parametrize("steps", [1, 25])
def test_adam(rng, n, steps):
    trajectory(rng, n, steps,
               lambda p, s, g, t: _kernels.adam_update(p, s[0], s[1], g, 0.001, 0.9, 0.999, 1e-7, t),
               lambda p, s, g, t: ref.adam_update(p, s[0], s[1], g, 0.001, 0.9, 0.999, 1e-7, t), 2)


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd(rng, momentum, nesterov):
    trajectory(rng, 33, 25,
               lambda p, s, g, t: _kernels.sgd_update(p, s[0], g, 0.01, momentum, nesterov),
               lambda p, s, g, t: ref.sgd_update(p, s[0], g, 0.01, momentum, nesterov), 1)


def test_sgd_without_momentum_needs_no_slot(rng):
    p, g = rand(rng, 5), rand(rng, 5)
    expected = p - np.float32(0.1) * g
    _kernels.sgd_update(p, None, g, 0.1)
    assert_close(p, expected, rtol=1e-6, atol=1e-7, name="plain sgd")


def test_adam_rejects_step_zero(rng):
    p = rand(rng, 3)
    with pytest.raises(ValueError, match=r"t \(adam_update counts steps from 1\) must be in \[1, "):
        _kernels.adam_update(p, p * 0, p * 0, p.copy(), 0.001, 0.9, 0.999, 1e-7, 0)
