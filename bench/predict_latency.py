"""Inference beside ONNX Runtime and PyTorch: one image (latency) and a batch of 1000 (throughput).

    python bench/predict_latency.py --threads 2
    python bench/predict_latency.py --network mlp --rounds 3 --json out.json

The article's networks, with the same weights in every engine: fastnet's model (seed 0), exported with
model.export() for ONNX Runtime and copied into PyTorch's modules. Each engine runs in a process of its own and
they take turns, round by round (their thread pools otherwise disturb each other); a round times many calls and
keeps their median. Reported: the median over rounds, and the median of the rounds' ratios to fastnet. The
inputs are each engine's own (NCHW for PyTorch), made before timing; outputs are the probabilities (softmax), and
each engine's predictions are checked against fastnet's before timing.
ONNX Runtime (pip install onnxruntime, in the test extra) and PyTorch are optional: without one, it is left out.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import common  # noqa: E402

ENGINES = ("fastnet", "onnxruntime", "torch")
BATCHES = (1, 1000)


def _inputs(network, n):
    shape = (784,) if network == "mlp" else (28, 28, 1)
    return np.random.default_rng(1).random((n,) + shape, dtype=np.float32)


def _torch_weights(model, weights):
    """fastnet's weights (Keras layouts) into PyTorch's modules: Linear (out, in), Conv2d (out, in, kh, kw); the
    CNN's first Dense reads channels_last features (H, W, C), PyTorch's Flatten (C, H, W)."""
    import torch

    layers = [m for m in model if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    pairs = list(zip(weights[::2], weights[1::2]))
    with torch.no_grad():
        for i, (m, (k, b)) in enumerate(zip(layers, pairs)):
            if isinstance(m, torch.nn.Conv2d):
                k = k.transpose(3, 2, 0, 1)
            else:
                if i > 0 and isinstance(layers[i - 1], torch.nn.Conv2d):  # the flattened images: (H, W, C) rows
                    c = layers[i - 1].out_channels
                    hw = k.shape[0] // c
                    k = k.reshape(hw, c, -1).transpose(1, 0, 2).reshape(k.shape)
                k = k.T
            m.weight.copy_(torch.from_numpy(np.ascontiguousarray(k)))
            m.bias.copy_(torch.from_numpy(b))


def serve(engine, network, threads, files):
    """A worker: load the engine and the model, then answer 'predict N' with the median seconds of a call on N
    rows, and 'check' with the predictions of the first 7 rows."""
    x = _inputs(network, max(BATCHES))
    weights = list(np.load(files + ".npz").values())
    if engine == "fastnet":
        import fastnet
        from fastnet import networks

        fastnet.set_num_threads(threads)
        model = networks.mlp() if network == "mlp" else networks.cnn()
        model.set_weights(weights)
        predict = lambda n: model.predict(x[:n], batch_size=n)  # noqa: E731
        about = fastnet.info()
    elif engine == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(files + ".onnx", options, providers=["CPUExecutionProvider"])
        predict = lambda n: session.run(None, {"input": x[:n]})[0]  # noqa: E731
        about = f"onnxruntime {ort.__version__}, {threads} intra-op threads"
    else:
        import torch

        torch.set_num_threads(threads)
        model, _ = common.torch_model(network)
        model.eval()
        _torch_weights(model, weights)
        tx = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2) if network == "cnn" else x))

        def predict(n):
            with torch.no_grad():
                return torch.softmax(model(tx[:n]), 1).numpy()
        about = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    print("RESULT " + json.dumps(about), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "quit":
            return
        if cmd[0] == "check":
            print("RESULT " + json.dumps(np.asarray(predict(7)).tolist()), flush=True)
            continue
        n = int(cmd[1])
        calls = max(5, int(0.3 / max(_once(predict, n), 1e-6)))  # about 0.3 s of calls
        times = [_once(predict, n) for _ in range(calls)]
        print("RESULT " + json.dumps(float(np.median(times))), flush=True)


def _once(predict, n):
    t = time.perf_counter()
    predict(n)
    return time.perf_counter() - t


class Worker:
    def __init__(self, engine, network, threads, files):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", engine, "--network",
                                      network, "--threads", str(threads), "--files", files],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.about = self.ask(None)

    def ask(self, command):
        if command:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                return json.loads(line[7:])
        raise RuntimeError(f"the worker exited with status {self.proc.wait()}")

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)


def available(engine):
    if engine == "fastnet":
        return True
    try:
        __import__(engine)
        return True
    except ImportError:
        return False


def run(network, threads, rounds, pause):
    import fastnet
    from fastnet import networks

    fastnet.set_seed(0)
    model = networks.mlp() if network == "mlp" else networks.cnn()
    with tempfile.TemporaryDirectory() as tmp:
        files = os.path.join(tmp, network)
        np.savez(files + ".npz", *model.get_weights())
        engines = [e for e in ENGINES if available(e)]
        if "onnxruntime" in engines:
            model.export(files + ".onnx")
        workers = {e: Worker(e, network, threads, files) for e in engines}
        try:
            expected = np.asarray(workers["fastnet"].ask("check"))
            for e, w in workers.items():
                np.testing.assert_allclose(np.asarray(w.ask("check")), expected, rtol=1e-4, atol=1e-6,
                                           err_msg=f"{e} predicts otherwise than fastnet")
            seconds = {e: {n: [] for n in BATCHES} for e in engines}
            for _ in range(rounds):
                for n in BATCHES:
                    for e, w in workers.items():
                        time.sleep(pause)
                        seconds[e][n].append(w.ask(f"predict {n}"))
        finally:
            for w in workers.values():
                w.close()
    result = {"network": network, "threads": threads, "rounds": rounds,
              "about": {e: w.about for e, w in workers.items()}, "batches": {}}
    for n in BATCHES:
        result["batches"][str(n)] = {
            e: {"seconds": common.median(seconds[e][n]),
                "ratio": common.median([f / o for f, o in zip(seconds["fastnet"][n], seconds[e][n])])}
            for e in engines}
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--network", choices=["mlp", "cnn", "both"], default="both")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--pause", type=float, default=0.5, help="seconds between turns")
    p.add_argument("--serve", choices=ENGINES, help=argparse.SUPPRESS)
    p.add_argument("--files", help=argparse.SUPPRESS)
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.network, args.threads, args.files)
        return
    out = {}
    for network in (("mlp", "cnn") if args.network == "both" else (args.network,)):
        r = out[network] = run(network, args.threads, args.rounds, args.pause)
        print(f"{network.upper()}, {args.threads} threads, median of {args.rounds} rounds:")
        for n, per in r["batches"].items():
            print(f"  batch {n}: " + ", ".join(
                f"{e} {1e6 * v['seconds']:.0f} us" + ("" if e == "fastnet" else f" (fastnet / {e} {v['ratio']:.2f})")
                for e, v in per.items()))
        for e, about in r["about"].items():
            print(f"  {e}: {about}")
    common.write_json(args.json, out)


if __name__ == "__main__":
    main()
