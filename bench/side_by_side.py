"""fastnet vs PyTorch, side by side in one run: training epochs alternated, then inference.

    python bench/side_by_side.py --threads 2 --epochs 3            # both networks
    python bench/side_by_side.py --network cnn --epochs 2
    python bench/side_by_side.py --baseline /tmp/old-venv/bin/python  # also another fastnet build (before/after)
    python bench/side_by_side.py --precision bf16   # mixed_bfloat16 vs fastnet float32 vs PyTorch CPU autocast bf16

Same architecture, initialization scheme, optimizer, batch size and thread count; data already in memory.
Each framework runs in a process of its own (their thread pools otherwise disturb each other: PyTorch's
threads keep spinning after its epoch), and the two take turns, epoch by epoch, with a pause between turns (--pause, 2 s).
Prints per-epoch times, medians, images/s, the ratio, and effective GFLOP/s (the work of direct convolutions;
see common.py) as a fraction of this machine's measured fp32 GEMM peak. PyTorch is optional (pip install torch==2.13.0); without it only fastnet is timed.
--baseline names a Python interpreter (a virtual environment's) with another build of fastnet installed: it runs
as a third contestant, so a change is measured before and after in one run.
--precision bf16 runs fastnet under Keras's mixed_bfloat16 policy beside fastnet in float32 (the contestant
"fastnet-float32"), and PyTorch under torch.autocast('cpu', dtype=torch.bfloat16) (the same recipe otherwise).
--json writes the figures (bench/report.py reads them).
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def serve(framework, network, threads, batch_size, precision="float32"):
    """The worker process: load the data and the model, then answer 'epoch' and 'predict' (one line each on
    stdin) with the seconds each took (a 'RESULT <json>' line on stdout)."""
    os.environ.setdefault("FASTNET_NUM_THREADS", str(threads))
    import fastnet
    from fastnet import networks

    bf16 = precision == "bf16"

    def answer(value):
        print("RESULT " + json.dumps(value), flush=True)

    (x, y), (xt, yt) = common.mnist(network)
    if framework == "fastnet":
        fastnet.set_num_threads(threads)
        if os.environ.get("FASTNET_ISA", "best") != fastnet._kernels.get_isa() and os.environ.get("FASTNET_ISA"):
            fastnet._kernels.set_isa(os.environ["FASTNET_ISA"])  # a --baseline build older than FASTNET_ISA
        fastnet.set_seed(0)
        if bf16:
            fastnet.mixed_precision.set_global_policy("mixed_bfloat16")
        model = networks.mlp() if network == "mlp" else networks.cnn()
        epoch = lambda: model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)  # noqa: E731
        predict = lambda: model.predict(xt, batch_size=batch_size)  # noqa: E731
        about = f"{fastnet.info()} ({os.path.dirname(os.path.dirname(fastnet.__file__))})"
    else:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.manual_seed(0)
        model, opt = common.torch_model(network)
        tx, ty = common.torch_data(network, x, y)
        txt, _ = common.torch_data(network, xt, yt)
        epoch = lambda: common.torch_epoch(model, opt, tx, ty, batch_size, autocast=bf16)  # noqa: E731
        predict = lambda: common.torch_predict(model, txt, batch_size, autocast=bf16)  # noqa: E731
        about = (f"torch {torch.__version__}, {torch.get_num_threads()} threads"
                 + (", autocast bfloat16" if bf16 else ""))
    answer([about, x.shape[0], xt.shape[0]])
    for command in sys.stdin:
        command = command.strip()
        if command == "quit":
            return
        t = time.perf_counter()
        epoch() if command == "epoch" else predict()
        answer(time.perf_counter() - t)


class Worker:
    """One contestant in a process of its own: fastnet or torch under this Python, or fastnet under the
    baseline's Python (another build)."""

    def __init__(self, name, network, threads, batch_size, pause, baseline=None, precision="float32"):
        self.pause = pause
        python = baseline if name == "baseline" else sys.executable
        framework = "torch" if name == "torch" else "fastnet"
        precision = "float32" if name == "fastnet-float32" else precision
        self.proc = subprocess.Popen([python, os.path.abspath(__file__), "--serve", framework, "--network", network,
                                      "--threads", str(threads), "--batch-size", str(batch_size),
                                      "--precision", precision],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
        self.about, self.n_train, self.n_test = self._read()
        self.about = f"{name}: {self.about}"

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                return json.loads(line[7:])
            print("  | " + line.rstrip())
        raise RuntimeError(f"the worker exited with status {self.proc.wait()}")

    def run(self, command):
        time.sleep(self.pause)  # let the other framework's threads go idle
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)


def describe(name, seconds, flop_per_image, count, peak):
    gflops = flop_per_image * count / seconds / 1e9
    return (f"  {name:8s} {seconds:7.3f} s  {count / seconds:10,.0f} images/s  {gflops:6.1f} effective GFLOP/s = "
            f"{gflops / peak:5.1%} of peak")


def run(network, epochs, batch_size, threads, peak, use_torch, pause, baseline=None, precision="float32"):
    """Prints the comparison and returns its figures: per framework, epoch and inference seconds."""
    names = (["fastnet"] + (["fastnet-float32"] if precision == "bf16" else []) + (["baseline"] if baseline else [])
             + (["torch"] if use_torch else []))
    workers = {name: Worker(name, network, threads, batch_size, pause, baseline, precision) for name in names}
    n, n_test = workers["fastnet"].n_train, workers["fastnet"].n_test
    train_flop, infer_flop = common.FLOPS[network]
    print(f"\n== {network}: {epochs} epochs of {n} images, batch {batch_size}, {threads} threads ==")
    for w in workers.values():
        print("  " + w.about)
    times = {name: [] for name in names}
    for epoch in range(epochs):
        for name in names:
            times[name].append(workers[name].run("epoch"))
        print(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    print("training epoch (median):")
    med = {k: common.median(v) for k, v in times.items()}
    for name in names:
        print(describe(name, med[name], train_flop, n, peak))
    if use_torch:
        print(f"  fastnet / torch epoch time: {med['fastnet'] / med['torch']:.2f}  "
              f"(fastnet {med['torch'] / med['fastnet']:.2f}x faster)")
    if precision == "bf16":
        print(f"  fastnet mixed_bfloat16 / float32 epoch time: {med['fastnet'] / med['fastnet-float32']:.2f}")
    pred = {name: [] for name in names}
    for _ in range(5):
        for name in names:
            pred[name].append(workers[name].run("predict"))
    print(f"inference on {n_test} test images (median of 5, batch {batch_size}):")
    pmed = {k: common.median(v) for k, v in pred.items()}
    for name in names:
        print(describe(name, pmed[name], infer_flop, n_test, peak))
    if use_torch:
        print(f"  fastnet / torch time: {pmed['fastnet'] / pmed['torch']:.2f}")
    if baseline:
        print(f"  fastnet / baseline: epoch {med['fastnet'] / med['baseline']:.3f}, "
              f"inference {pmed['fastnet'] / pmed['baseline']:.3f}")
    about = {name: w.about for name, w in workers.items()}
    for w in workers.values():
        w.close()
    return {"epochs": epochs, "batch_size": batch_size, "threads": threads, "precision": precision, "images": n,
            "test_images": n_test,
            "train_flop_per_image": train_flop, "about": about, "epoch_seconds": times, "predict_seconds": pred,
            "epoch_median": med, "predict_median": pmed}


def main():
    import fastnet

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--network", choices=["mlp", "cnn", "both"], default="both")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=fastnet.get_num_threads())
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--pause", type=float, default=2.0,
                   help="seconds between turns, for the other framework's spinning threads to go idle")
    p.add_argument("--baseline", help="a Python with another fastnet build installed, timed as a third contestant")
    p.add_argument("--precision", choices=["float32", "bf16"], default="float32",
                   help="bf16: fastnet mixed_bfloat16 (beside its float32) and PyTorch CPU autocast bfloat16")
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--serve", choices=["fastnet", "torch"], help=argparse.SUPPRESS)  # a worker process
    args = p.parse_args()
    if args.serve:
        return serve(args.serve, args.network, args.threads, args.batch_size, args.precision)
    use_torch = common.torch_available() and not args.no_torch
    peak, parts = common.measured_peak(args.threads)
    print(f"{common.cpu_name()}, {os.cpu_count()} CPUs")
    print("measured fp32 GEMM peak (2048^3, best of 3): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in parts.items()))
    results = {"peak_gflops": parts, "torch": use_torch, "networks": {}}
    for network in (["mlp", "cnn"] if args.network == "both" else [args.network]):
        results["networks"][network] = run(network, args.epochs, args.batch_size, args.threads, peak, use_torch,
                                           args.pause, args.baseline, args.precision)
    common.write_json(args.json, results)


if __name__ == "__main__":
    main()
