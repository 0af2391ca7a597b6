"""Peak memory of training and inference, each network in a fresh process (Linux: /proc/self/status).

    python bench/memory.py                       # one epoch of each network on real MNIST, then predict
    python bench/memory.py --json out.json

Reports the resident memory once the data is loaded, then the peak (VmHWM, reset before each phase through
/proc/self/clear_refs) of one training epoch (batch 128, validation on the test images) and of predict on the
10,000 test images (batch 128, then one batch of 10,000), and what the model's execution plan holds then
(activation buffers and kernel workspace).
"""
import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys
import fastnet
from fastnet import networks

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key + ":")) / 1024

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

network = sys.argv[1]
(x, y), (xt, yt) = networks.mnist_arrays(network)
model = networks.mlp() if network == "mlp" else networks.cnn()
out = {"data_loaded": status("VmRSS")}
reset_peak()
model.fit(x, y, batch_size=128, epochs=1, verbose=0, validation_data=(xt, yt))
out["training_epoch_peak"] = status("VmHWM")
out["plan_training_mib"] = model.plan().nbytes / 2**20
reset_peak()
model.predict(xt, batch_size=128)
out["predict_batch_128_peak"] = status("VmHWM")
reset_peak()
model.predict(xt, batch_size=len(xt))
out["predict_one_batch_peak"] = status("VmHWM")
out["plan_predict_one_batch_mib"] = model.plan().nbytes / 2**20
print(json.dumps(out))
"""


def measure(network):
    result = subprocess.run([sys.executable, "-c", CHILD, network], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args()
    if not os.path.exists("/proc/self/status"):
        sys.exit("needs Linux /proc")
    results = {}
    for network in ("mlp", "cnn"):
        results[network] = measure(network)
        print(network, ", ".join(f"{k} {v:.0f} MiB" for k, v in results[network].items()), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
