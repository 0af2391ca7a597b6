"""Data-parallel training on MPI, measured on this machine, and a cost model for the clusters it cannot show.

    python bench/distributed.py --json out.json      # needs the mpi extra: pip install '.[mpi]'

Measured (synthetic data of MNIST's shapes, the article's networks, batch 128), each in its own launch:
- time per training step with 1 process x 2 threads, 2 processes x 1 thread (the allreduce of each plan step
  started as its backward ends, `fastnet.distributed.overlap = True`, the default), and 2 x 1 with one allreduce
  after the whole backward (overlap off); for the MPI runs, the share of a step spent inside MPI calls. The three
  take turns, one launch each per round, and each figure is the median over the rounds;
- the single-core time per step at every local batch a global batch of 128 leaves a node, 128 down to 2.

The cost model (written out in bench/README.md) takes a node to be one such core and predicts, for N = 2..64 nodes
at 10, 25 and 100 Gb/s, epoch time and efficiency at the article's global batch (128, each node computing 128/N)
and at a global batch of 128 per node: step = compute(local batch) + ring allreduce of the gradient, with no
credit for overlap.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

BATCH = 128
TRAIN_IMAGES = 60_000
NODES = [2, 4, 8, 16, 32, 64]
GBITS = [10, 25, 100]
LATENCY_S = 10e-6  # per message of the ring's 2(N-1) steps: a TCP or RDMA cluster network's order of magnitude


def _launcher():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.path.exists(beside) else shutil.which("mpiexec")


def _data(network, n):
    rng = np.random.default_rng(0)
    shape = (784,) if network == "mlp" else (28, 28, 1)
    return rng.random((n,) + shape, dtype=np.float32), np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]


def worker(args):
    """One launch: per network, the median seconds per step (and the share inside MPI) over args.repeats fits."""
    import fastnet
    from fastnet import distributed, networks

    distributed.overlap = not args.no_overlap
    out = {"processes": distributed.size(), "threads": fastnet.get_num_threads(), "overlap": distributed.overlap,
           "networks": {}}
    for network in args.networks:
        per_batch = {}
        for batch in args.batches:
            steps = max(args.steps, args.min_images // batch)
            model = networks.mlp() if network == "mlp" else networks.cnn()
            x, y = _data(network, batch * steps)
            model.fit(x[:batch * 3], y[:batch * 3], batch_size=batch, epochs=1, verbose=0)  # warm up
            seconds, shares = [], []
            for _ in range(args.repeats):
                comm0, _ = distributed.step_communication()
                t = time.perf_counter()
                model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
                elapsed = time.perf_counter() - t
                seconds.append(elapsed / steps)
                shares.append((distributed.step_communication()[0] - comm0) / elapsed)
            per_batch[batch] = {"step_s": statistics.median(seconds), "comm_share": statistics.median(shares),
                                "steps": steps}
            if distributed.is_primary():
                print(f"{network} {distributed.size()}x{fastnet.get_num_threads()} overlap={distributed.overlap} "
                      f"batch {batch}: {1e3 * per_batch[batch]['step_s']:.2f} ms/step, "
                      f"{100 * per_batch[batch]['comm_share']:.1f} % in MPI", flush=True)
        out["networks"][network] = {"params": int(model.count_params()), "per_batch": per_batch}
    if distributed.is_primary():
        with open(args.worker, "w") as f:
            json.dump(out, f)


def launch(processes, threads, extra, args):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "w.json")
        env = {**os.environ, "FASTNET_NUM_THREADS": str(threads)}
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", path, "--repeats", str(args.repeats),
               "--steps", str(args.steps)] + extra  # a later --repeats in extra wins
        if processes > 1:
            cmd = [_launcher(), "-n", str(processes)] + cmd
        subprocess.run(cmd, check=True, env=env)
        with open(path) as f:
            return json.load(f)


def ring_allreduce_s(n_nodes, nbytes, gbits):
    return 2 * (n_nodes - 1) / n_nodes * nbytes / (gbits * 1e9 / 8) + 2 * (n_nodes - 1) * LATENCY_S


def cost_model(single_core, params):
    """{network: {"fixed"|"growing": {gbits: {N: (epoch seconds, efficiency)}}}} from single-core step times."""
    model = {}
    for network, per_batch in single_core.items():
        t = {int(b): v["step_s"] for b, v in per_batch.items()}
        nbytes = 4 * params[network]
        one_node_epoch = TRAIN_IMAGES / BATCH * t[BATCH]
        fixed, growing = {}, {}
        for g in GBITS:
            fixed[g], growing[g] = {}, {}
            for n in NODES:
                comm = ring_allreduce_s(n, nbytes, g)
                step = t[BATCH // n] + comm  # the article's global batch: each node computes 128 / N rows
                epoch = TRAIN_IMAGES / BATCH * step
                fixed[g][n] = (epoch, one_node_epoch / (n * epoch))
                step = t[BATCH] + comm  # 128 rows per node: N times fewer steps
                growing[g][n] = (TRAIN_IMAGES / (BATCH * n) * step, t[BATCH] / step)
        model[network] = {"one_node_epoch_s": one_node_epoch, "gradient_bytes": nbytes, "fixed": fixed,
                          "growing": growing}
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--steps", type=int, default=20, help="training steps per timed fit (default %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="timed fits per point; the median (default %(default)s)")
    p.add_argument("--min-images", type=int, default=1024, help="at small batches, steps enough for this many images")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--no-overlap", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--networks", nargs="+", default=["mlp", "cnn"], help=argparse.SUPPRESS)
    p.add_argument("--batches", type=int, nargs="+", default=[BATCH], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    if _launcher() is None:
        sys.exit("bench/distributed.py needs mpiexec: pip install '.[mpi]'")
    # Rounds over the three configurations, each launch timing one fit per network, so that a slow spell of the
    # shared machine hits every configuration alike; each figure is the median over the rounds.
    setups = {"1x2": (1, 2, []), "2x1": (2, 1, []), "2x1_no_overlap": (2, 1, ["--no-overlap"])}
    rounds = {name: [] for name in setups}
    for _ in range(args.repeats):
        for name, (processes, threads, extra) in setups.items():
            rounds[name].append(launch(processes, threads, extra + ["--repeats", "1"], args))
    configs = {name: {"networks": {net: {"per_batch": {str(BATCH): {
        key: statistics.median(r["networks"][net]["per_batch"][str(BATCH)][key] for r in runs)
        for key in ("step_s", "comm_share")}}} for net in runs[0]["networks"]}} for name, runs in rounds.items()}
    batches = [BATCH // n for n in [1] + NODES]
    single = launch(1, 1, ["--batches", *map(str, batches)], args)
    params = {net: v["params"] for net, v in single["networks"].items()}
    result = {"batch_size": BATCH, "steps": args.steps, "repeats": args.repeats, "latency_s": LATENCY_S,
              "measured": {name: {net: v["per_batch"][str(BATCH)] for net, v in c["networks"].items()}
                           for name, c in configs.items()},
              "single_core": {net: v["per_batch"] for net, v in single["networks"].items()},
              "model": cost_model({net: v["per_batch"] for net, v in single["networks"].items()}, params)}
    for net in params:
        m = result["measured"]
        print(f"{net}: 1x2 {1e3 * m['1x2'][net]['step_s']:.2f} ms/step; 2x1 {1e3 * m['2x1'][net]['step_s']:.2f} "
              f"({100 * m['2x1'][net]['comm_share']:.1f} % in MPI); 2x1 without overlap "
              f"{1e3 * m['2x1_no_overlap'][net]['step_s']:.2f} ({100 * m['2x1_no_overlap'][net]['comm_share']:.1f} %)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
