"""fastnet's fp32 GEMM against numpy's BLAS on the same shapes: 2048³ and the two networks' own products.

    python bench/gemm_vs_blas.py                      # fastnet's AVX2 path against OpenBLAS's Haswell kernel
    python bench/gemm_vs_blas.py --isa best --threads 1 2 4 --json out.json

Each figure is measured in a process of its own, one engine at a time, the engines taking turns round by round
(--rounds): in one process OpenBLAS's idle threads spin after each call and slow OpenMP's, so a same-process
comparison measures the spinning. Figures are medians over rounds; each ratio is the median of the rounds' ratios
(fastnet / numpy GFLOP/s, so above 1 is fastnet faster), which keeps a noisy minute from deciding it.

--isa picks fastnet's path (FASTNET_ISA) and, for 'avx2', OpenBLAS's Haswell kernel too (OPENBLAS_CORETYPE), so an
AVX-512 CPU measures both engines' AVX2 kernels.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# name: (M, N, K, trans_a, trans_b): C (M x N) = op(A) (M x K) . op(B) (K x N), as the kernels call them
SHAPES = {
    "2048³": (2048, 2048, 2048, False, False),
    "MLP dense 1 forward, 128x784 . 784x512": (128, 512, 784, False, False),
    "MLP dense 2 forward, 128x512 . 512x512": (128, 512, 512, False, False),
    "MLP dense 3 forward, 128x512 . 512x10": (128, 10, 512, False, False),
    "MLP dense 1 dW, (784x128) . 128x512": (784, 512, 128, True, False),
    "MLP dense 2 dW, (512x128) . 128x512": (512, 512, 128, True, False),
    "MLP dense 2 dx, 128x512 . (512x512)": (128, 512, 512, False, True),
    "MLP dense 3 dx, 128x10 . (10x512)": (128, 512, 10, False, True),
    "CNN dense forward, 128x4608 . 4608x128": (128, 128, 4608, False, False),
    "CNN dense dW, (4608x128) . 128x128": (4608, 128, 128, True, False),
    "CNN dense dx, 128x128 . (128x4608)": (128, 4608, 128, False, True),
    "CNN conv 2 as im2col, 73728x288 . 288x32": (73728, 32, 288, False, False),
    "CNN conv 2 Winograd, one position of 128 images, 4608x32 . 32x32": (4608, 32, 32, False, False),
}
SECONDS = 0.6  # timed per measurement, after one warm-up call


def measure(engine, name, threads):
    """GFLOP/s of one engine on one shape, in this process (the worker)."""
    import numpy as np

    M, N, K, ta, tb = SHAPES[name]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)
    out = np.empty((M, N), np.float32)
    if engine == "numpy":
        import threadpoolctl
        threadpoolctl.threadpool_limits(threads)
        A, B = (a.T if ta else a), (b.T if tb else b)

        def call():
            np.matmul(A, B, out=out)
    else:
        from fastnet import _kernels
        ws = _kernels.Workspace()

        def call():
            _kernels.gemm(a, b, out=out, trans_a=ta, trans_b=tb, n_threads=threads, workspace=ws)
    call()
    reps = max(1, int(1e9 / (2 * M * N * K)))  # calls per sample: ~1 GFLOP, so a sample is not a timer's tick
    samples = []
    end = time.perf_counter() + SECONDS
    while time.perf_counter() < end or len(samples) < 5:
        t = time.perf_counter()
        for _ in range(reps):
            call()
        samples.append((time.perf_counter() - t) / reps)
    return 2 * M * N * K / statistics.median(samples) / 1e9


def worker_env(isa, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    if isa != "best":
        env["FASTNET_ISA"] = isa
    if isa == "avx2":
        env["OPENBLAS_CORETYPE"] = "Haswell"
    return env


def run(isa, threads, rounds):
    import common

    result = {}
    for t in threads:
        result[str(t)] = {}
        for name in SHAPES:
            gflops = {"numpy": [], "fastnet": []}
            for _ in range(rounds):
                for engine in gflops:
                    out = subprocess.run([sys.executable, __file__, "--worker", engine, name, str(t)], check=True,
                                         capture_output=True, text=True, env=worker_env(isa, t))
                    gflops[engine].append(float(out.stdout.split()[-1]))
            ratios = [f / n for f, n in zip(gflops["fastnet"], gflops["numpy"])]
            row = {"numpy": common.median(gflops["numpy"]), "fastnet": common.median(gflops["fastnet"]),
                   "ratio": common.median(ratios), "rounds": gflops}
            result[str(t)][name] = row
            print(f"{t} thread{'s' * (t > 1)}  {name:66s} numpy {row['numpy']:7.1f}  fastnet {row['fastnet']:7.1f}"
                  f"  GFLOP/s  fastnet/numpy {row['ratio']:.2f}", flush=True)
    return result


def blas_kernel(isa):
    """What numpy's BLAS says of itself, under the run's environment."""
    code = ("import threadpoolctl; "
            "print([(x['internal_api'], x.get('architecture')) for x in threadpoolctl.threadpool_info()])")
    out = subprocess.run([sys.executable, "-c", "import numpy; " + code], capture_output=True, text=True,
                         env=worker_env(isa, 1))
    return out.stdout.strip()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--isa", default="avx2", help="fastnet's GEMM path (default %(default)s; 'best': the CPU's best)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=3, help="turns of each engine per point (default %(default)s)")
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        engine, name, threads = args.worker
        print(measure(engine, name, int(threads)))
        return
    import common
    blas = blas_kernel(args.isa)
    print(f"{common.cpu_name()}; fastnet path {args.isa}; numpy BLAS {blas}")
    data = {"isa": args.isa, "blas": blas, "rounds": args.rounds, "shapes": {k: list(v) for k, v in SHAPES.items()},
            "threads": run(args.isa, args.threads, args.rounds)}
    common.write_json(args.json, data)


if __name__ == "__main__":
    main()
