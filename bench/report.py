"""Every figure that README.md, bench/README.md and docs/*.md publish, measured and written by this one script.

    python bench/report.py                          # every section (about an hour on 2 cores)
    python bench/report.py accuracy seeds           # some sections
    python bench/report.py --render                 # only rewrite the Markdown from bench/results/*.json
    python bench/report.py side_by_side --baseline PYTHON   # with another fastnet build timed beside this one

Each section runs the script that measures it, stores the figures with the commit, date, CPU model and flags
and thread count in bench/results/<section>.json, and renders its table into README.md, bench/README.md and docs/
between the markers <!-- report:<section> --> and <!-- /report:<section> -->. No figure inside those markers is
typed by hand; a section that was not run keeps its last table. Needs FASTNET_DATA (real MNIST) for accuracy,
seeds, side_by_side and memory, and PyTorch (pip install torch==2.13.0) for the side-by-side baseline.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, HERE)

import common  # noqa: E402

BIN = os.path.dirname(sys.executable)
SEEDS = {"mlp": [1, 2, 3, 4, 5], "cnn": [1, 2, 3]}
ARTICLE = {"mlp": 0.9843, "cnn": 0.9914}
RECIPE = {"mlp": "MLP 784-512-512-10, RMSprop, 20 epochs", "cnn": "CNN conv-conv-pool-dense, Adadelta, 12 epochs"}


# ---- measuring ----

def run_json(cmd):
    """Run a measuring script with --json TMP and return what it wrote (its output goes to the terminal)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.json")
        subprocess.run(cmd + ["--json", path], check=True, cwd=ROOT)
        with open(path) as f:
            return json.load(f)


def script(name):
    return [sys.executable, os.path.join(HERE, name)]


def measure_accuracy(args):
    out = {}
    for network in ("mlp", "cnn"):
        folder = os.path.join(ROOT, "runs", "report", network)
        subprocess.run([os.path.join(BIN, "fastnet-train"), network, "--out", folder, "--verbose", "0"], check=True,
                       cwd=ROOT)
        with open(os.path.join(folder, "history.json")) as f:
            out[network] = json.load(f)
    return out


def mpiexec():
    beside = os.path.join(BIN, "mpiexec")  # the mpich wheel's, from the mpi extra
    return beside if os.path.exists(beside) else shutil.which("mpiexec") or "mpiexec"


def measure_mpi_accuracy(args):
    """The article's two recipes under `mpiexec -n 2 fastnet-train` (default seed, 1 thread per process)."""
    out = {}
    for network in ("mlp", "cnn"):
        folder = os.path.join(ROOT, "runs", "report-mpi", network)
        subprocess.run([mpiexec(), "-n", "2", os.path.join(BIN, "fastnet-train"), network, "--out", folder,
                        "--verbose", "0"], check=True, cwd=ROOT)
        with open(os.path.join(folder, "history.json")) as f:
            out[network] = json.load(f)
    return out


def measure_mpi_seeds(args):
    return {network: run_json(script("seed_spread.py") + [network, "--mpi", "2", "--seeds", "1", "2", "3",
                                                           "--out", os.path.join(ROOT, "runs", "seeds-mpi")])
            for network in ("mlp", "cnn")}


def measure_bf16_seeds(args):
    """The article's two recipes under Keras's mixed_bfloat16 policy, seeds 1-3 (beside the float32 `seeds`)."""
    return {network: run_json(script("seed_spread.py") + [network, "--precision", "bf16", "--seeds", "1", "2", "3",
                                                           "--out", os.path.join(ROOT, "runs", "seeds-bf16")])
            for network in ("mlp", "cnn")}


def measure_distributed(args):
    return run_json(script("distributed.py") + ["--repeats", "5"])


def measure_seeds(args):
    return {network: run_json(script("seed_spread.py") + [network, "--seeds", *map(str, seeds),
                                                           "--out", os.path.join(ROOT, "runs", "seeds")])
            for network, seeds in SEEDS.items()}


def measure_side_by_side(args):
    return run_json(script("side_by_side.py") + ["--epochs", "3"] +
                    (["--baseline", args.baseline] if args.baseline else []))


def measure_bf16_side_by_side(args):
    return run_json(script("side_by_side.py") + ["--epochs", "3", "--precision", "bf16"])


def measure_threads(args):
    # 5 repeats: two 3-repeat runs of the same code an hour apart gave the MLP 1.77x and 1.55x
    return run_json(script("thread_sweep.py") + ["--steps", "100", "--repeats", "5"])


def measure_profile(args):
    """Both policies at the run's threads, and float32 on one thread: where a second core is lost, step by step."""
    out = {}
    for network in ("cnn", "mlp"):
        out[network] = {precision: run_json(script("profile_steps.py") + [network, "--precision", precision])
                        for precision in ("float32", "bf16")}
        out[network]["float32_1"] = run_json(script("profile_steps.py") + [network, "--threads", "1"])
    return out


def measure_overhead(args):
    return run_json(script("call_overhead.py"))


def measure_latency(args):
    return run_json(script("predict_latency.py") + ["--threads", "2", "--rounds", "9"])


def measure_gemm(args):
    # 5 rounds: on a shared machine a noisy minute moved 3-round medians of the small products by 10-15 %
    return run_json(script("gemm_vs_blas.py") + ["--isa", os.environ.get("FASTNET_ISA", "avx2"), "--rounds", "5"])


def measure_conv_paths(args):
    return run_json(script("conv_paths.py"))


def measure_memory(args):
    return run_json(script("memory.py"))


def measure_kernels(args):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.json")
        subprocess.run([sys.executable, "-m", "pytest", "-q", os.path.join(HERE, "test_bench_kernels.py"),
                        f"--benchmark-json={path}", "--benchmark-columns=median"], check=True, cwd=ROOT)
        with open(path) as f:
            data = json.load(f)
    return {b["name"]: {"median_ms": 1000 * b["stats"]["median"], **b.get("extra_info", {})} for b in data["benchmarks"]}


SECTIONS = {"accuracy": measure_accuracy, "seeds": measure_seeds, "side_by_side": measure_side_by_side,
            "threads": measure_threads, "profile": measure_profile, "conv_paths": measure_conv_paths,
            "memory": measure_memory, "kernels": measure_kernels, "mpi_accuracy": measure_mpi_accuracy, "mpi_seeds": measure_mpi_seeds,
            "distributed": measure_distributed, "bf16_seeds": measure_bf16_seeds,
            "bf16_side_by_side": measure_bf16_side_by_side, "overhead": measure_overhead, "gemm": measure_gemm,
            "latency": measure_latency}
# Settings that pick which kernels the engines run (fastnet's, OpenBLAS's, PyTorch's and oneDNN's, MKL's): a run
# under them says so in its tables. With the first two at avx2 / Haswell, an AVX-512 CPU runs both GEMMs' AVX2 code.
KERNEL_SETTINGS = ("FASTNET_ISA", "OPENBLAS_CORETYPE", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                   "MKL_ENABLE_INSTRUCTIONS")


def meta():
    import fastnet

    def git(*a):
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT).stdout.strip()

    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        pass
    # FASTNET_COMMIT names the commit measured where the tree is a copy whose .git is absent or stale (another machine)
    commit = os.environ.get("FASTNET_COMMIT")
    if not commit:
        # what this script writes itself (the tables, the stored results) is not a change to the code measured, so
        # several sections run one after another all name the commit
        paths = [line.split(maxsplit=1)[1] for line in git("status", "--porcelain", "-uno").splitlines()]
        changed = [p for p in paths if p not in ("README.md", "bench/README.md") and not p.startswith("bench/results/")]
        commit = git("rev-parse", "--short", "HEAD") + ("+changes" if changed else "")
    return {"commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": common.cpu_name(), "cpus": len(os.sched_getaffinity(0)),
            "flags": sorted(flags & {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"}),
            "threads": fastnet.get_num_threads(), "isa": fastnet._kernels.get_isa(), "fastnet": fastnet.__version__,
            "settings": {k: os.environ[k] for k in KERNEL_SETTINGS if os.environ.get(k)}}


# ---- rendering ----

def load(section):
    path = os.path.join(RESULTS, section + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def provenance(section, record):
    m = record["meta"]
    settings = " ".join(f"{k}={v}" for k, v in m.get("settings", {}).items())
    return (f"*Written by `{settings + ' ' if settings else ''}python bench/report.py {section}` on {m['date']}: "
            f"{m['cpu']} ({', '.join(m['flags'])}), {m['threads']} threads, GEMM path {m['isa']}, "
            f"commit {m['commit']}.*")


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def pct(x):
    return f"{100 * x:.2f} %"


def render_results():
    acc, seeds, sbs = load("accuracy"), load("seeds"), load("side_by_side")
    if not acc:
        return None
    rows = []
    for net in ("mlp", "cnn"):
        a = acc["data"][net]
        spread = ""
        if seeds and net in seeds["data"]:
            s = seeds["data"][net]
            spread = _spread(s)
        epoch = torch = ""
        if sbs and net in sbs["data"]["networks"]:
            n = sbs["data"]["networks"][net]
            epoch = f"**{n['epoch_median']['fastnet']:.2f} s**"
            torch = f"{n['epoch_median']['torch']:.2f} s" if "torch" in n["epoch_median"] else "not installed"
        rows.append([RECIPE[net], f"`fastnet-train {net}`", f"**{pct(a['test_accuracy'])}** (loss {a['test_loss']:.4f})",
                     spread, pct(ARTICLE[net]), epoch, torch])
    text = table(["network", "command", f"test accuracy, default seed {acc['data']['mlp']['seed']}", "over other seeds",
                  "the article", "training epoch (median)", "PyTorch epoch, same machine"], rows)
    text += f"\n\n{provenance('accuracy', acc)}"
    for name, rec in (("seeds", seeds), ("side_by_side", sbs)):
        if rec:
            text += "\n\n" + provenance(name, rec)
    return text


def render_side_by_side(section="side_by_side"):
    rec = load(section)
    if not rec:
        return None
    rows = []
    for net, n in rec["data"]["networks"].items():
        names = list(n["epoch_median"])
        for what, key, count in (("training epoch", "epoch_median", n["images"]),
                                 ("inference, 10,000 images", "predict_median", n["test_images"])):
            med = n[key]
            cells = [f"{med[k]:.3f} s ({count / med[k]:,.0f} img/s)" for k in names]
            ratios = [f"{med['fastnet'] / med[k]:.2f}" for k in names if k != "fastnet"]
            rows.append([net.upper(), what] + cells + ratios)
    names = list(next(iter(rec["data"]["networks"].values()))["epoch_median"])
    header = ["network", "what"] + names + [f"fastnet / {k} time" for k in names if k != "fastnet"]
    per_epoch = "; ".join(
        f"{net.upper()} " + ", ".join(f"{k} " + " / ".join(f"{t:.2f}" for t in v) for k, v in n["epoch_seconds"].items())
        for net, n in rec["data"]["networks"].items())
    peak = ", ".join(f"{k} {v:.0f}" for k, v in rec["data"]["peak_gflops"].items())
    about = "; ".join(sorted({a for n in rec["data"]["networks"].values() for a in n["about"].values()}))
    return (table(header, rows) + f"\n\nPer-epoch seconds: {per_epoch}. Measured fp32 GEMM peak (2048³): {peak} "
            f"GFLOP/s. Contestants: {about}.\n\n{provenance(section, rec)}")


def round_range(num, den):
    """", lo-hi" of the rounds' ratios num[i] / den[i] (both measured in round i), or "" for fewer than 2 rounds."""
    ratios = sorted(a / b for a, b in zip(num, den))
    return f", {ratios[0]:.2f}-{ratios[-1]:.2f}" if len(ratios) > 1 else ""


def render_threads():
    rec = load("threads")
    if not rec:
        return None
    d = rec["data"]
    counts = list(next(iter(d["networks"].values()))["images_per_s"])

    def cell(n, t):
        ips, base = n["images_per_s"][t], n["images_per_s"][counts[0]]
        r = n.get("rounds", {})  # each round's images/s, every count back to back: the speedup's spread
        return (f"{ips:,.0f} img/s ({ips / base:.2f}x"
                + (round_range(r.get(t, []), r.get(counts[0], [])) if t != counts[0] else "") + ")")

    rows = [[net.upper()] + [cell(n, t) for t in counts] + ["yes" if all(n["same_weights"].values()) else "**no**"]
            for net, n in d["networks"].items()]
    spread = ("; beside a speedup, its range over the rounds (each round's counts run back to back)"
              if any("rounds" in n for n in d["networks"].values()) else "")
    return (table(["network"] + [f"{t} thread{'s' * (t != '1')}" for t in counts] + ["same weights, every count"], rows)
            + f"\n\n{d['steps']} steps of batch {d['batch_size']} per point, median of {d['repeats']} rounds{spread}."
            + "\n\n" + provenance("threads", rec))


def dense_products_line(f32, one):
    """The dense steps' GEMMs alone against a whole training step (older records: against the rows' total, or
    nothing)."""
    if not f32.get("dense_products_ms"):
        return ""

    def share(d):
        whole = d.get("step_ms")
        of = f"a whole training step ({whole:.2f} ms, train_on_batch)" if whole else "the total"
        return f"{d['dense_products_ms']:.2f} ms, {100 * d['dense_products_ms'] / (whole or d['total_ms']):.0f} % of {of}"

    return (f"\n\nThe dense steps' products alone (the same GEMMs on random operands, timed together): "
            f"{share(f32)} at {f32['threads']} threads" + (f"; {share(one)} at 1 thread" if one and
                                                             one.get("dense_products_ms") else "") + ".")


def render_profile():
    rec = load("profile")
    if not rec:
        return None
    parts = []
    for net, by_precision in rec["data"].items():
        f32, bf16 = by_precision["float32"], by_precision["bf16"]
        # a step's name says "bfloat16 products" under mixed_bfloat16; the plans have the same steps otherwise
        bf16_ms = {re.sub(r" \[bfloat16 products\]|bfloat16 products, |, bfloat16 products", "", k): v
                   for k, v in bf16["ms"].items()}
        keys = list(f32["ms"]) + [k for k in bf16_ms if k not in f32["ms"]]
        cell = lambda d, k: f"{d[k]:.3f}" if k in d else "-"  # noqa: E731
        one = by_precision.get("float32_1")  # float32 on one thread (older records have none)
        speedup = lambda k: f"{one['ms'][k] / f32['ms'][k]:.2f}x" if f32["ms"].get(k) else "-"  # noqa: E731
        rows = [[k, cell(f32["ms"], k), cell(bf16_ms, k)] + ([cell(one["ms"], k), speedup(k)] if one else [])
                for k in keys]
        rows.append(["total", f"**{f32['total_ms']:.2f}**", f"**{bf16['total_ms']:.2f}**"] +
                    ([f"**{one['total_ms']:.2f}**", f"**{one['total_ms'] / f32['total_ms']:.2f}x**"] if one else []))
        header = ["plan step", f"float32 ms ({f32['threads']} threads)", "mixed_bfloat16 ms"] + (
            ["float32 ms, 1 thread", f"1 → {f32['threads']} threads"] if one else [])
        parts.append(f"{net.upper()}, per batch of {f32['batch_size']} (median of {f32['batches']}; mixed_bfloat16 with "
                     f"{bf16['bf16_path']} bfloat16 products):\n\n" + table(header, rows) + dense_products_line(f32, one))
    return "\n\n".join(parts) + "\n\n" + provenance("profile", rec)


def render_overhead():
    rec = load("overhead")
    if not rec:
        return None
    d = rec["data"]
    probes = list(d["us"][d["threads"][0]])
    rows = [[probe] + [f"{d['us'][t][probe]:.1f}" for t in d["threads"]] for probe in probes]
    return (table(["probe (next to no work), us"] + [f"{t} thread{'s' * (t != '1')}" for t in d["threads"]], rows)
            + "\n\n" + provenance("overhead", rec))


def render_latency():
    rec = load("latency")
    if not rec:
        return None
    rows = []
    for network, r in rec["data"].items():
        for n, per in r["batches"].items():
            cells = [f"{1e6 * per['fastnet']['seconds']:,.0f}"]
            for engine in ("onnxruntime", "torch"):
                cells.append(f"{1e6 * per[engine]['seconds']:,.0f} (**{per[engine]['ratio']:.2f}x**)" if engine in per
                             else "not installed")
            rows.append([network.upper(), f"{n} image{'s' * (n != '1')}", *cells])
    first = next(iter(rec["data"].values()))
    about = "; ".join(f"{e}: {a}" for e, a in first["about"].items())
    return (table(["network", "batch", "fastnet, us", "ONNX Runtime, us (fastnet / it)", "PyTorch, us (fastnet / it)"],
                  rows)
            + f"\n\nMedians over {first['rounds']} rounds of each engine's median call, the engines taking turns in "
            f"processes of their own; the ratio is the median of the rounds' ratios. {about}.\n\n"
            + provenance("latency", rec))


def render_gemm():
    rec = load("gemm")
    if not rec:
        return None
    d = rec["data"]
    counts = list(d["threads"])

    def cell(r):
        g = r["rounds"]  # each round's GFLOP/s per engine: the ratio's spread, as a noisy machine gave it
        return (f"{r['numpy']:.0f} / {r['fastnet']:.0f} (**{r['ratio']:.2f}x**"
                + round_range(g.get("fastnet", []), g.get("numpy", [])) + ")")

    rows = [[name] + [cell(d["threads"][t][name]) for t in counts] for name in d["shapes"]]
    first, big = counts[0], next(iter(d["shapes"]))
    scaling = "; ".join(f"numpy {d['threads'][t][big]['numpy'] / d['threads'][first][big]['numpy']:.2f}x and fastnet "
                        f"{d['threads'][t][big]['fastnet'] / d['threads'][first][big]['fastnet']:.2f}x at {t} threads"
                        for t in counts[1:])
    return (table(["product", *[f"{t} thread{'s' * (t != '1')}: numpy / fastnet GFLOP/s (fastnet / numpy, rounds' range)"
                                for t in counts]], rows)
            + f"\n\n{big} against {first} thread{'s' * (first != '1')}: {scaling}. fastnet path `{d['isa']}`; numpy's "
            f"BLAS: {d['blas']}. Each engine in its own process, taking turns, {d['rounds']} rounds; medians, the "
            f"median of the rounds' ratios and their range (lowest-highest).\n\n" + provenance("gemm", rec))


def render_conv_paths():
    rec = load("conv_paths")
    if not rec:
        return None
    rows = [[path.replace("/", " / ")] + [f"{v:.3f}" for v in ms.values()] + [f"**{sum(ms.values()):.3f}**"] +
            ([f"{ms['backward'] / ms['forward']:.2f}"] if "backward" in ms else [])
            for path, ms in rec["data"]["ms"].items()]
    first = next(iter(rec["data"]["ms"].values()))
    return (table(["ISA / algorithm"] + [f"{k} ms" for k in first] + ["total ms"] +
                  (["backward / forward"] if "backward" in first else []), rows) +
            f"\n\nconv2 (26x26x32 → 24x24x32, 3x3), batch {rec['data']['batch']}, median of 5 per pass; the backward "
            "is one call: dw, db, and dx with the previous ReLU's mask.\n\n" + provenance("conv_paths", rec))


def render_memory():
    rec = load("memory")
    if not rec:
        return None
    rows = [[net.upper(), f"{m['data_loaded']:.0f}", f"{m['training_epoch_peak']:.0f}", f"{m['plan_training_mib']:.1f}",
             f"{m['predict_batch_128_peak']:.0f}", f"{m['predict_one_batch_peak']:.0f}",
             f"{m['plan_predict_one_batch_mib']:.1f}"] for net, m in rec["data"].items()]
    return (table(["network", "RSS with the data loaded (MiB)", "peak in a training epoch", "plan's memory then",
                   "peak in predict (batch 128)", "peak in predict (one batch of 10,000)", "plan's memory then"],
                  rows)
            + "\n\n" + provenance("memory", rec))


def render_kernels():
    rec = load("kernels")
    if not rec:
        return None
    rows = [[f"`{name}`", f"{b['median_ms']:.3f} ms", b.get("GFLOP/s", "")] for name, b in rec["data"].items()]
    return table(["benchmark", "median", "GFLOP/s"], rows) + "\n\n" + provenance("kernels", rec)


def _spread(s):
    return (f"seeds {min(map(int, s['accuracy']))}-{max(map(int, s['accuracy']))}: {pct(s['mean'])} "
            f"± {100 * s['sd']:.2f} (sd), {pct(s['min'])}-{pct(s['max'])}")


def render_mpi_accuracy():
    rec, single, seeds, mpi_seeds = load("mpi_accuracy"), load("accuracy"), load("seeds"), load("mpi_seeds")
    if not rec:
        return None
    rows = []
    for net in ("mlp", "cnn"):
        a = rec["data"][net]
        one = single["data"][net] if single else None
        rows.append([RECIPE[net], f"`mpiexec -n 2 fastnet-train {net}`",
                     f"**{pct(a['test_accuracy'])}** (loss {a['test_loss']:.4f})",
                     f"{pct(one['test_accuracy'])} (loss {one['test_loss']:.4f})" if one else "",
                     _spread(mpi_seeds["data"][net]) if mpi_seeds else "",
                     _spread(seeds["data"][net]) if seeds else "", f"{a['processes']} x {a['threads']}"])
    text = table(["network", "command", f"test accuracy, seed {rec['data']['mlp']['seed']}", "one process, same seed",
                  "2 processes, other seeds", "one process, other seeds", "processes x threads"], rows)
    return text + "".join(f"\n\n{provenance(name, r)}" for name, r in (("mpi_accuracy", rec), ("mpi_seeds", mpi_seeds))
                          if r)


def render_distributed():
    rec = load("distributed")
    if not rec:
        return None
    d = rec["data"]
    m = d["measured"]
    rows = []
    for net in m["1x2"]:
        one, two, blocking = m["1x2"][net], m["2x1"][net], m["2x1_no_overlap"][net]
        rows.append([net.upper(), f"{1e3 * one['step_s']:.1f}",
                     f"{1e3 * two['step_s']:.1f} ({100 * two['comm_share']:.1f} % in MPI)",
                     f"{1e3 * blocking['step_s']:.1f} ({100 * blocking['comm_share']:.1f} % in MPI)",
                     f"{one['step_s'] / two['step_s']:.2f}"])
    text = table(["network", "1 process x 2 threads, ms/step", "2 processes x 1 thread, allreduce overlapped",
                  "2 x 1, one allreduce after the backward", "1x2 / 2x1 time"], rows)
    text += (f"\n\nBatch {d['batch_size']}; the three configurations take turns, and each figure is the median of "
             f"{d['repeats']} rounds of a {d['steps']}-step fit. \"In MPI\": "
             "the share of the step spent inside MPI calls (starting, progressing and waiting for the allreduces).")
    batches = list(next(iter(d["single_core"].values())))
    text += "\n\nOne core (1 process x 1 thread), ms per step at each local batch:\n\n" + table(
        ["network"] + [f"batch {b}" for b in batches],
        [[net.upper()] + [f"{1e3 * v[b]['step_s']:.2f}" for b in batches] for net, v in d["single_core"].items()])
    for net, mod in d["model"].items():
        gbits = list(mod["fixed"])
        nodes = list(mod["fixed"][gbits[0]])
        rows = [[n] + [f"{mod['fixed'][g][n][0]:.1f} s ({100 * mod['fixed'][g][n][1]:.0f} %)" for g in gbits]
                + [f"{mod['growing'][g][n][0]:.2f} s ({100 * mod['growing'][g][n][1]:.0f} %)" for g in gbits]
                for n in nodes]
        text += (f"\n\n{net.upper()}: predicted epoch time (efficiency); one node (one core) takes "
                 f"{mod['one_node_epoch_s']:.1f} s an epoch; the gradient is {mod['gradient_bytes'] / 1e6:.2f} MB."
                 "\n\n" + table(["nodes"] + [f"batch 128, {g} Gb/s" for g in gbits]
                                 + [f"batch 128 x nodes, {g} Gb/s" for g in gbits], rows))
    text += (f"\n\nModel: step = compute(local batch) + 2(N-1)/N x gradient bytes / bandwidth + 2(N-1) x "
             f"{1e6 * d['latency_s']:.0f} µs, no credit for overlap; a node is one core timed above. Efficiency: one "
             "node's epoch time / (N x the N-node epoch time) at the fixed batch; compute / step at 128 per node. "
             "A batch growing with N changes the optimization (Goyal et al. scale the learning rate with it); "
             "the article's batch keeps the single-process result.\n\n" + provenance("distributed", rec))
    return text


def render_bf16():
    """mixed_bfloat16 over seeds 1-3 beside float32 over the same seeds (the `seeds` section's runs)."""
    rec, seeds = load("bf16_seeds"), load("seeds")
    if not rec:
        return None
    floors = {"mlp": 0.983, "cnn": 0.991}  # the float32 spreads' lower ends the issue set as the bar
    rows = []
    for net in ("mlp", "cnn"):
        b = rec["data"][net]
        same = {s: v for s, v in seeds["data"][net]["accuracy"].items() if s in b["accuracy"]} if seeds else {}
        f32 = (f"{pct(sum(same.values()) / len(same))} (seeds {', '.join(sorted(same))})" if same else "")
        rows.append([RECIPE[net], f"`fastnet-train {net} --precision bf16`",
                     ", ".join(f"{pct(v)}" for v in b["accuracy"].values()), f"**{pct(b['mean'])}** ± {100 * b['sd']:.2f}",
                     f32, pct(floors[net])])
    text = table(["network", "command", "mixed_bfloat16, seeds 1, 2, 3", "mean ± sd", "float32 mean, same seeds",
                  "bar (mean)"], rows)
    return text + "".join(f"\n\n{provenance(name, r)}" for name, r in (("bf16_seeds", rec), ("seeds", seeds)) if r)


RENDER = {"results": render_results, "bf16": render_bf16, "side_by_side": render_side_by_side, "threads": render_threads,
          "profile": render_profile, "conv_paths": render_conv_paths, "memory": render_memory,
          "kernels": render_kernels, "mpi_accuracy": render_mpi_accuracy, "distributed": render_distributed,
          "bf16_side_by_side": lambda: render_side_by_side("bf16_side_by_side"), "overhead": render_overhead,
          "gemm": render_gemm, "latency": render_latency}


def render_file(path):
    with open(path) as f:
        text = f.read()

    def fill(match):
        block = RENDER[match.group(1)]()
        return match.group(0) if block is None else f"<!-- report:{match.group(1)} -->\n{block}\n<!-- /report:{match.group(1)} -->"

    new = re.sub(r"<!-- report:(\w+) -->.*?<!-- /report:\1 -->", fill, text, flags=re.S)
    if new != text:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(new)
        os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sections", nargs="*", choices=[[]] + list(SECTIONS), help="default: all")
    p.add_argument("--render", action="store_true", help="only rewrite the Markdown from the stored results")
    p.add_argument("--baseline", help="side_by_side: a Python with another fastnet build installed")
    args = p.parse_args()
    if not args.render:
        os.makedirs(RESULTS, exist_ok=True)
        about = meta()  # the code as the run starts: edits made while it runs do not change what it measures
        for section in args.sections or list(SECTIONS):
            print(f"== {section}", flush=True)
            record = {"meta": {**about, "date": meta()["date"]}, "data": SECTIONS[section](args)}
            tmp = os.path.join(RESULTS, section + ".json.tmp")
            with open(tmp, "w") as f:
                json.dump(record, f, indent=1)
            os.replace(tmp, os.path.join(RESULTS, section + ".json"))
    docs = os.path.join(ROOT, "docs")
    for path in [os.path.join(ROOT, "README.md"), os.path.join(HERE, "README.md")] + sorted(
            os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md")):
        render_file(path)


if __name__ == "__main__":
    main()
