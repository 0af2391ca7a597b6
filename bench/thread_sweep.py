"""Training throughput of both networks for 1, 2, ... all cores, and a check that every thread count trains
the same weights bit for bit.

    python bench/thread_sweep.py                 # 1 .. all CPUs
    python bench/thread_sweep.py --threads 1 2 4 8 16 --steps 40 --repeats 3
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import common  # noqa: E402
import fastnet  # noqa: E402
from fastnet import networks  # noqa: E402


def steps_per_second(network, threads, steps, batch_size):
    fastnet.set_num_threads(threads)
    fastnet.set_seed(0)
    model = networks.mlp() if network == "mlp" else networks.cnn()
    rng = np.random.default_rng(0)
    shape = (784,) if network == "mlp" else (28, 28, 1)
    n = batch_size * steps
    x = rng.random((n,) + shape, dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    model.fit(x[:batch_size * 3], y[:batch_size * 3], batch_size=batch_size, epochs=1, verbose=0)  # warm up
    t = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    seconds = time.perf_counter() - t
    return n / seconds, model.get_weights()


def main():
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=list(range(1, cpus + 1)))
    p.add_argument("--steps", type=int, default=60, help="training steps timed per point (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--network", choices=["mlp", "cnn", "both"], default="both")
    p.add_argument("--repeats", type=int, default=3,
                   help="rounds over all thread counts; each point is the median (default %(default)s)")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args()
    results = {"cpus": cpus, "steps": args.steps, "batch_size": args.batch_size, "repeats": args.repeats,
               "networks": {}}
    print(f"{common.cpu_name()}, {cpus} CPUs; {fastnet.info()}")
    for network in (["mlp", "cnn"] if args.network == "both" else [args.network]):
        flop = common.FLOPS[network][0]
        print(f"\n{network}: {args.steps} steps of batch {args.batch_size}")
        print(f"{'threads':>7} {'images/s':>10} {'GFLOP/s':>8} {'speedup':>8} {'efficiency':>10}  same weights as 1 thread")
        # Rounds over all thread counts, so a slow spell of the machine hits every count alike.
        rates, same = {t: [] for t in args.threads}, {}
        base_weights = None
        for _ in range(args.repeats):
            for t in args.threads:
                ips, weights = steps_per_second(network, t, args.steps, args.batch_size)
                rates[t].append(ips)
                base_weights = weights if base_weights is None else base_weights
                same[t] = same.get(t, True) and all(np.array_equal(a, b) for a, b in zip(weights, base_weights))
        base = common.median(rates[args.threads[0]])
        for t in args.threads:
            ips = common.median(rates[t])
            print(f"{t:7d} {ips:10,.0f} {ips * flop / 1e9:8.1f} {ips / base:8.2f} {ips / base / t:10.0%}  {same[t]}",
                  flush=True)
        results["networks"][network] = {"images_per_s": {t: common.median(rates[t]) for t in args.threads},
                                        "rounds": rates, "same_weights": same}
    common.write_json(args.json, results)


if __name__ == "__main__":
    main()
