"""The fixed cost of a kernel call and of a training step, by thread count: what a step pays besides its work.

    python bench/call_overhead.py                       # 1, 2, 4, ... all CPUs
    python bench/call_overhead.py --threads 1 16 --json out.json

Probes whose work is next to nothing (or, for one image, little), so their time is the cost of getting there:
the Python and Cython layers (argument checks, keyword parsing), the OpenMP parallel region (waking the threads,
the barrier) and the model's Python around its one call into C (the plan's program):
  - dropout_backward on 16 floats: one checked call, one parallel region;
  - dense_forward of a 128x16 batch by a 16x16 kernel: a GEMM call (packing, tiles) and its bias/ReLU pass;
  - a training step of a 16-16-16-10 MLP with dropout (batch 128, in fit): the MLP's steps, fed almost no work;
  - the same MLP's train_on_batch on a batch of 16: a whole step through the public API;
  - the article's MLP predicting one image (model.predict(x[:1])): its 1.3 MFLOP, and the call around them.
Medians of 7 rounds, each the mean over many calls.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import common  # noqa: E402
import fastnet  # noqa: E402
from fastnet import _kernels, networks  # noqa: E402
from fastnet.layers import Dense, Dropout  # noqa: E402
from fastnet.models import Sequential  # noqa: E402


def per_call_us(fn, calls, rounds=7):
    fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t) / calls)
    return 1e6 * common.median(times)


def tiny_mlp():
    fastnet.set_seed(0)
    model = Sequential([Dense(16, activation="relu", input_shape=(16,)), Dropout(0.2), Dense(16, activation="relu"),
                        Dropout(0.2), Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    return model


def data(rows, features):
    rng = np.random.default_rng(0)
    return rng.random((rows, features), dtype=np.float32), np.eye(10, dtype=np.float32)[rng.integers(0, 10, rows)]


def tiny_step_us(threads, steps):
    model = tiny_mlp()
    x, y = data(128 * steps, 16)
    return per_call_us(lambda: model.fit(x, y, batch_size=128, epochs=1, verbose=0), 1) / steps


def tiny_train_on_batch_us(calls):
    model = tiny_mlp()
    x, y = data(16, 16)
    return per_call_us(lambda: model.train_on_batch(x, y), calls)


def one_image_us(calls):
    fastnet.set_seed(0)
    model = networks.mlp()
    x, _ = data(1, 784)
    return per_call_us(lambda: model.predict(x), calls)


def measure(threads, calls=2000, steps=100):
    rng = np.random.default_rng(0)
    d, keep = rng.random(16, dtype=np.float32), np.ones(16, np.uint8)
    out = np.empty_like(d)
    x, w, b = rng.random((128, 16), dtype=np.float32), rng.random((16, 16), dtype=np.float32), np.zeros(16, np.float32)
    y, ws = np.empty((128, 16), np.float32), _kernels.Workspace()
    result = {}
    for nt in threads:
        fastnet.set_num_threads(nt)
        result[str(nt)] = {
            "dropout_backward(16)": per_call_us(lambda: _kernels.dropout_backward(d, keep, 0.2, out=out, n_threads=nt),
                                                calls),
            "dense_forward(128x16 by 16x16)": per_call_us(
                lambda: _kernels.dense_forward(x, w, b, out=y, activation="relu", n_threads=nt, workspace=ws), calls),
            "training step, 16-16-16-10 MLP": tiny_step_us(nt, steps),
            "train_on_batch, 16-16-16-10 MLP, batch 16": tiny_train_on_batch_us(calls),
            "predict, one image, the article's MLP": one_image_us(calls)}
    fastnet.set_num_threads(None)
    return {"threads": [str(t) for t in threads], "us": result}


def main():
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    default = sorted({1, cpus} | {t for t in (2, 4, 8, 16, 32, 64) if t < cpus})
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=default)
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args()
    result = measure(args.threads)
    print(f"{common.cpu_name()}; {fastnet.info()}")
    for nt, probes in result["us"].items():
        print(f"{nt:>3} threads: " + ", ".join(f"{k} {v:.1f} us" for k, v in probes.items()))
    common.write_json(args.json, result)


if __name__ == "__main__":
    main()
