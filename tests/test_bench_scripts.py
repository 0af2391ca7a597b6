"""The measuring scripts behind the published tables (bench/), run on tiny inputs: a script that no longer runs
against today's API means a figure nobody can regenerate. (profile_steps.py went stale once, unnoticed, when the
losses gained per-sample weights.) They time nothing here; bench/report.py runs them for real."""
import os
import sys

import pytest

import fastnet

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


@pytest.fixture
def bench_module():
    sys.path.insert(0, BENCH)
    yield __import__
    sys.path.remove(BENCH)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("network", ["mlp", "cnn"])
def test_profile_steps_times_every_plan_step(bench_module, network, policy):
    fastnet.mixed_precision.set_global_policy(policy)
    try:
        result = bench_module("profile_steps").profile(network, batches=1, batch_size=3)
    finally:
        fastnet.mixed_precision.set_global_policy("float32")
    steps = 4 if network == "mlp" else 7  # dense/dropout steps (MLP), conv/pool/flatten/dense (CNN): at least
    assert len([k for k in result["ms"] if k.endswith(" forward")]) >= steps
    assert all(v >= 0 for v in result["ms"].values()) and result["total_ms"] > 0


def test_conv_paths_times_three_passes(bench_module):
    ms = bench_module("conv_paths").passes_ms("generic", "im2col", batch=1, repeats=1)
    assert sorted(ms) == ["backward_data", "backward_filter", "forward"]
