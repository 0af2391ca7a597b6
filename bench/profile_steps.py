"""Where a training step goes: each step of the model's execution plan, forward and backward, timed alone.

    python bench/profile_steps.py cnn            # median ms per plan step over 20 batches of 128
    python bench/profile_steps.py mlp --json out.json
    python bench/profile_steps.py cnn --precision bf16   # under Keras's mixed_bfloat16 policy
    python bench/profile_steps.py cnn --threads 1        # on one thread (default: fastnet's count)

The plan's steps are the kernel calls a training step makes (fastnet.plan); the loss and the optimizer update
are timed as two more rows. Timing each call separately adds a little overhead: the total is a bit above an
uninterrupted step, which is timed too (train_on_batch: the whole step in one call). Last, the GEMMs of the dense
steps are timed alone (random operands, the same shapes): what a step would take if it were nothing but those
products.
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


def profile(network, batches=20, batch_size=128, precision="float32"):
    fastnet.set_seed(0)
    policy = fastnet.mixed_precision.global_policy()
    fastnet.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    try:
        model = networks.mlp() if network == "mlp" else networks.cnn()  # its layers take the policy
    finally:
        fastnet.mixed_precision.set_global_policy(policy)
    rng = np.random.default_rng(0)
    shape = (784,) if network == "mlp" else (28, 28, 1)
    x = rng.random((batch_size,) + shape, dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch_size)]
    plan = model._begin_call(batch_size, training=True)
    program = plan.program
    rows = {f"{s.describe()} forward": [] for s in plan.steps}
    rows.update({f"{s.describe()} backward": [] for s in plan.steps})
    rows.update({"loss forward + backward": [], f"{type(model.optimizer).__name__} update": []})
    for b in range(batches + 2):  # two warm-up batches
        times = {}
        h = x
        for i, s in enumerate(plan.steps):  # the program's ops one at a time
            t = time.perf_counter()
            h = program.forward(h, True, model.model_id, b, lo=i, hi=i + 1)
            times[f"{s.describe()} forward"] = time.perf_counter() - t
        t = time.perf_counter()
        probs, loss, dout = plan.loss_arrays(batch_size, 10)
        model._loss.forward(h, y, None, probs, loss, n_threads=program.n_threads)
        grad = model._loss.backward(h, probs, y, None, dout, n_threads=program.n_threads)
        times["loss forward + backward"] = time.perf_counter() - t
        for i in range(len(plan.steps) - 1, -1, -1):
            s = plan.steps[i]
            t = time.perf_counter()
            grad = program.backward(grad, lo=i, hi=i + 1)
            times[f"{s.describe()} backward"] = time.perf_counter() - t
        t = time.perf_counter()
        model.optimizer.apply(model._params, model._grads, n_threads=program.n_threads)
        times[f"{type(model.optimizer).__name__} update"] = time.perf_counter() - t
        if b >= 2:
            for k, v in times.items():
                rows[k].append(v)
    ms = {k: 1000 * common.median(v) for k, v in rows.items()}
    return {"network": network, "batch_size": batch_size, "batches": batches, "threads": program.n_threads,
            "isa": program.isa, "precision": precision, "bf16_path": fastnet.mixed_precision.bf16_path(), "ms": ms,
            "total_ms": sum(ms.values()), "step_ms": whole_step_ms(model, x, y, batches),
            "dense_products_ms": dense_products_ms(plan, batch_size, batches, program.n_threads, precision)}


def whole_step_ms(model, x, y, batches):
    """A training step as training runs it, one call into C (train_on_batch): the median over batches, in ms. The
    rows above time each step from Python, which adds a wake-up of the threads to every row (most to the short
    ones: the update's row read 0.06-0.25 ms where inside a step the update takes about 0.05)."""
    times = []
    for b in range(batches + 2):  # two warm-up batches
        t = time.perf_counter()
        model.train_on_batch(x, y)
        if b >= 2:
            times.append(time.perf_counter() - t)
    return 1000 * common.median(times)


def dense_products(plan, batch_size):
    """The GEMMs the plan's dense steps make in a training step, as (M, N, K, trans_a, trans_b): each step's forward
    and dW, and its dx but for the plan's first step (whose input needs no gradient)."""
    from fastnet.plan import DenseStep

    shapes = []
    for i, s in enumerate(plan.steps):
        if isinstance(s, DenseStep):
            I, O = s.layers[0].get_weights()[0].shape
            shapes += [(batch_size, O, I, False, False), (I, O, batch_size, True, False)]  # x w, x^T dy
            if i > 0:
                shapes.append((batch_size, I, O, False, True))  # dy w^T
    return shapes


def dense_products_ms(plan, batch_size, batches, n_threads, precision):
    """dense_products alone, on random operands: the median over batches of their sum, in ms. What a step would
    take with nothing but those products."""
    from fastnet import _kernels

    rng = np.random.default_rng(1)
    prec = "bfloat16" if precision == "bf16" else "float32"
    products = [(rng.random((K, M) if ta else (M, K), dtype=np.float32),
                 rng.random((N, K) if tb else (K, N), dtype=np.float32), np.empty((M, N), np.float32), ta, tb)
                for M, N, K, ta, tb in dense_products(plan, batch_size)]
    ws = _kernels.Workspace()
    times = []
    for b in range(batches + 2):  # two warm-up rounds
        t = time.perf_counter()
        for a, bm, out, ta, tb in products:
            _kernels.gemm(a, bm, out=out, trans_a=ta, trans_b=tb, n_threads=n_threads, precision=prec, workspace=ws)
        if b >= 2:
            times.append(time.perf_counter() - t)
    return 1000 * common.median(times) if products else 0.0

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("network", choices=["mlp", "cnn"])
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--precision", choices=["float32", "bf16"], default="float32")
    p.add_argument("--threads", type=int, help="threads every kernel uses (default: fastnet.get_num_threads())")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args()
    if args.threads:
        fastnet.set_num_threads(args.threads)
    result = profile(args.network, args.batches, precision=args.precision)
    print(f"{common.cpu_name()}; {fastnet.info()}")
    for k, v in result["ms"].items():
        print(f"{v:8.3f} ms  {k}")
    print(f"{result['total_ms']:8.3f} ms  total per batch of {result['batch_size']}")
    print(f"{result['step_ms']:8.3f} ms  a whole training step (train_on_batch)")
    print(f"{result['dense_products_ms']:8.3f} ms  the dense steps' products alone")
    common.write_json(args.json, result)


if __name__ == "__main__":
    main()
