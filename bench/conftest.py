import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def report(benchmark, flops):
    """Record the achieved GFLOP/s (from the median) once the benchmark has run."""
    median = benchmark.stats.stats.median
    benchmark.extra_info["GFLOP/s"] = round(flops / median / 1e9, 1)
