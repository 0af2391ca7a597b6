"""End-to-end training throughput: 20 steps of each network at batch 128 (pytest-benchmark).

    pytest bench/test_bench_training.py --benchmark-columns=median,iqr

images/s and GFLOP/s (from the median) are stored in extra_info.
"""
import numpy as np
import pytest

import common
import fastnet
from fastnet import networks

STEPS, BATCH = 20, 128


@pytest.mark.parametrize("network", ["mlp", "cnn"])
def test_training_steps(benchmark, network):
    fastnet.set_seed(0)
    model = networks.mlp() if network == "mlp" else networks.cnn()
    rng = np.random.default_rng(0)
    shape = (784,) if network == "mlp" else (28, 28, 1)
    x = rng.random((STEPS * BATCH,) + shape, dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, STEPS * BATCH)]
    benchmark.pedantic(model.fit, args=(x, y), kwargs={"batch_size": BATCH, "epochs": 1, "verbose": 0},
                       rounds=5, warmup_rounds=1)
    ips = STEPS * BATCH / benchmark.stats.stats.median
    benchmark.extra_info["images/s"] = round(ips)
    benchmark.extra_info["GFLOP/s"] = round(ips * common.FLOPS[network][0] / 1e9, 1)


@pytest.mark.parametrize("network", ["mlp", "cnn"])
def test_inference(benchmark, network):
    fastnet.set_seed(0)
    model = networks.mlp() if network == "mlp" else networks.cnn()
    shape = (784,) if network == "mlp" else (28, 28, 1)
    x = np.random.default_rng(0).random((10_000,) + shape, dtype=np.float32)
    benchmark.pedantic(model.predict, args=(x,), kwargs={"batch_size": BATCH}, rounds=5, warmup_rounds=1)
    benchmark.extra_info["images/s"] = round(10_000 / benchmark.stats.stats.median)
