"""The CNN's second convolution on every ISA path and both algorithms: its forward and its backward, timed.

    python bench/conv_paths.py                   # batch 32, median of 5 per pass
    python bench/conv_paths.py --batch 128 --json out.json

Shows which algorithm 'auto' should pick on each instruction set (fastnet._kernels.set_isa forces one).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import common  # noqa: E402
import fastnet  # noqa: E402
from fastnet import _kernels  # noqa: E402


def passes_ms(isa, algo, batch, repeats):
    rng = np.random.default_rng(0)
    x = rng.random((batch, 26, 26, 32), dtype=np.float32)
    w = rng.standard_normal((3, 3, 32, 32), dtype=np.float32) * 0.1
    b = np.zeros(32, np.float32)
    dy = rng.standard_normal((batch, 24, 24, 32), dtype=np.float32)
    ws = _kernels.Workspace()
    kw = {"isa": isa, "conv_algo": algo, "workspace": ws}
    dw, db, dx = np.empty_like(w), np.empty_like(b), np.empty_like(x)
    # the two calls a training step makes: the forward, and the whole backward (dw, db, and dx with the previous
    # ReLU's mask) in one call
    calls = {"forward": lambda: _kernels.conv2d_forward(x, w, b, activation="relu", **kw),
             "backward": lambda: _kernels.conv2d_backward(dy, x, w, dw=dw, db=db, dx=dx, relu_input=x, **kw)}
    return {name: 1000 * common.median(common.timings(call, repeats)) for name, call in calls.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args()
    print(f"{common.cpu_name()}; {fastnet.info()}; conv2 (26x26x32 -> 24x24x32), batch {args.batch}")
    result = {"batch": args.batch, "threads": fastnet.get_num_threads(), "ms": {}}
    for isa in _kernels.supported_isas():
        for algo in ("im2col", "winograd"):
            ms = passes_ms(isa, algo, args.batch, args.repeats)
            result["ms"][f"{isa}/{algo}"] = ms
            print(f"{isa:8s} {algo:9s} " + "  ".join(f"{k} {v:8.3f} ms" for k, v in ms.items()) +
                  f"  total {sum(ms.values()):8.3f} ms", flush=True)
    common.write_json(args.json, result)


if __name__ == "__main__":
    main()
