"""Test accuracy over several seeds, with its spread: the full recipe of each network, one run per seed.

    python bench/seed_spread.py mlp --seeds 1 2 3 4 5
    python bench/seed_spread.py cnn --seeds 1 2 3
    python bench/seed_spread.py mlp --seeds 1 2 3 --mpi 2     # under mpiexec -n 2
    python bench/seed_spread.py cnn --seeds 1 2 3 --precision bf16   # Keras's mixed_bfloat16 policy

Each run is `fastnet-train <network> --seed S` (histories land in runs/seeds/<network>-<S>/); the summary
prints every seed's final test accuracy, then mean, standard deviation, min and max.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("network", choices=["mlp", "cnn"])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--out", default=os.path.join("runs", "seeds"))
    p.add_argument("--mpi", type=int, help="run each under `mpiexec -n MPI` (data-parallel; needs the mpi extra)")
    p.add_argument("--precision", choices=["float32", "bf16"], default="float32")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args()
    bin_dir = os.path.dirname(sys.executable)
    train = [os.path.join(bin_dir, "fastnet-train")]
    if args.mpi:
        launcher = os.path.join(bin_dir, "mpiexec")
        train = [launcher if os.path.exists(launcher) else "mpiexec", "-n", str(args.mpi)] + train
    accs = []
    for seed in args.seeds:
        out = os.path.join(args.out, f"{args.network}-{seed}")
        subprocess.run(train + [args.network, "--seed", str(seed), "--out", out, "--verbose", "0",
                                "--precision", args.precision], check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(out, "history.json")) as f:
            record = json.load(f)
        accs.append(record["test_accuracy"])
        print(f"seed {seed}: test accuracy {record['test_accuracy']:.4f}, loss {record['test_loss']:.4f}, "
              f"{record['train_seconds']:.0f} s", flush=True)
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f"{args.network}: {len(accs)} seeds, mean {statistics.mean(accs):.4f} +- {sd:.4f} (sd), "
          f"min {min(accs):.4f}, max {max(accs):.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"network": args.network, "precision": args.precision, "accuracy": dict(zip(args.seeds, accs)),
                       "mean": statistics.mean(accs), "sd": sd, "min": min(accs), "max": max(accs)}, f, indent=1)


if __name__ == "__main__":
    main()
