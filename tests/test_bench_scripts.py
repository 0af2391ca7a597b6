"""The measuring scripts behind the published tables (bench/), run on tiny inputs: a script that no longer runs
against today's API means a figure nobody can regenerate. (profile_steps.py went stale once, unnoticed, when the
losses gained per-sample weights.) They time nothing here; bench/report.py runs them for real."""
import os
import sys

import pytest

import fastnet

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


@pytest.fixture
def bench_module():
    sys.path.insert(0, BENCH)
    yield __import__
    sys.path.remove(BENCH)


@pytest.mark.parametrize("network", ["mlp", "cnn"])
def test_profile_steps_times_every_plan_step_under_both_policies(bench_module, network):
    result = {p: bench_module("profile_steps").profile(network, batches=1, batch_size=3, precision=p)
              for p in ("float32", "bf16")}
    assert fastnet.mixed_precision.global_policy().name == "float32"  # left as it was
    steps = 4 if network == "mlp" else 7  # dense/dropout steps (MLP), conv/pool/flatten/dense (CNN): at least
    for r in result.values():
        assert len([k for k in r["ms"] if k.endswith(" forward")]) >= steps
        assert all(v >= 0 for v in r["ms"].values()) and r["total_ms"] > 0
    assert any("bfloat16 products" in k for k in result["bf16"]["ms"])
    assert not any("bfloat16 products" in k for k in result["float32"]["ms"])
    # report.py renders the two side by side, one row per plan step: the same steps, named alike
    report = bench_module("report")
    rec = {"data": {network: result}, "meta": {"commit": "c", "date": "d", "cpu": "cpu", "cpus": 2, "flags": [],
                                              "threads": 2, "isa": "avx2", "fastnet": "0"}}
    report.load = lambda name: rec
    rows = [line for line in report.render_profile().splitlines() if line.startswith("| ") and " ms" not in line]
    assert len(rows) == len(result["float32"]["ms"]) + 1 and not any("| - |" in row for row in rows)
    rec["data"][network]["float32_1"] = result["float32"]  # with the one-thread run: two more columns
    text = report.render_profile()
    assert "float32 ms, 1 thread" in text and "**1.00x**" in text
    assert result["float32"]["dense_products_ms"] > 0 and result["float32"]["step_ms"] > 0
    assert "The dense steps' products alone" in text and "of a whole training step" in text


def test_profile_counts_every_product_of_the_dense_steps(bench_module):
    """The MLP's products: each layer's forward and dW, and dx but for the first layer's."""
    model = fastnet.networks.mlp()
    model.compile(loss="categorical_crossentropy", optimizer="rmsprop")
    plan = model._begin_call(3, training=True)
    assert sorted(bench_module("profile_steps").dense_products(plan, 3)) == sorted([
        (3, 512, 784, False, False), (784, 512, 3, True, False),
        (3, 512, 512, False, False), (512, 512, 3, True, False), (3, 512, 512, False, True),
        (3, 10, 512, False, False), (512, 10, 3, True, False), (3, 512, 10, False, True)])


def test_thread_sweep_table_shows_each_speedup_and_its_range_over_the_rounds(bench_module):
    net = {"images_per_s": {"1": 100.0, "2": 150.0}, "same_weights": {"1": True, "2": True},
           "rounds": {"1": [100.0, 90.0, 110.0], "2": [150.0, 171.0, 143.0]}}
    report = bench_module("report")
    report.load = lambda name: {"data": {"steps": 100, "batch_size": 128, "repeats": 3, "networks": {"mlp": net}},
                                "meta": {"commit": "c", "date": "d", "cpu": "cpu", "cpus": 2, "flags": [],
                                         "threads": 2, "isa": "avx2", "fastnet": "0"}}
    text = report.render_threads()
    assert "| MLP | 100 img/s (1.00x) | 150 img/s (1.50x, 1.30-1.90) | yes |" in text
    del net["rounds"]  # an older record: the medians alone
    assert "| MLP | 100 img/s (1.00x) | 150 img/s (1.50x) | yes |" in report.render_threads()


def test_conv_paths_times_the_forward_and_the_backward(bench_module):
    ms = bench_module("conv_paths").passes_ms("generic", "im2col", batch=1, repeats=1)
    assert sorted(ms) == ["backward", "forward"]


def test_gemm_vs_blas_measures_both_engines_and_renders_its_table(bench_module, monkeypatch):
    gemm_vs_blas = bench_module("gemm_vs_blas")
    monkeypatch.setattr(gemm_vs_blas, "SECONDS", 0.0)
    gflops = {e: gemm_vs_blas.measure(e, "MLP dense 3 forward, 128x512 . 512x10", 1) for e in ("numpy", "fastnet")}
    assert all(v > 0 for v in gflops.values())
    names = list(gemm_vs_blas.SHAPES)[:2]
    row = {"numpy": 100.0, "fastnet": 96.0, "ratio": 0.96, "rounds": {"numpy": [100.0, 90.0, 110.0],
                                                                      "fastnet": [91.0, 96.0, 99.0]}}
    data = {"isa": "avx2", "blas": "openblas", "rounds": 3, "shapes": {n: gemm_vs_blas.SHAPES[n] for n in names},
            "threads": {"1": {n: row for n in names}, "2": {n: {**row, "fastnet": 190.0} for n in names}}}
    report = bench_module("report")
    report.load = lambda name: {"data": data, "meta": {"commit": "c", "date": "d", "cpu": "cpu", "cpus": 2,
                                                       "flags": [], "threads": 2, "isa": "avx2", "fastnet": "0",
                                                       "settings": {"FASTNET_ISA": "avx2"}}}
    text = report.render_gemm()
    assert len([line for line in text.splitlines() if line.startswith("| ")]) == 1 + len(names)
    assert "100 / 96 (**0.96x**, 0.90-1.07)" in text and "fastnet 1.98x at 2 threads" in text
    assert "`FASTNET_ISA=avx2 python bench/report.py gemm`" in text


def test_call_overhead_times_five_probes_per_thread_count(bench_module):
    result = bench_module("call_overhead").measure([1, 2], calls=2, steps=2)
    assert result["threads"] == ["1", "2"]
    for probes in result["us"].values():
        assert len(probes) == 5 and all(v > 0 for v in probes.values())
    assert not fastnet._kernels.num_threads_is_set()  # left following OpenMP again
    report = bench_module("report")
    rec = {"data": result, "meta": {"commit": "c", "date": "d", "cpu": "cpu", "cpus": 2, "flags": [], "threads": 2,
                                    "isa": "avx2", "fastnet": "0"}}
    report.load = lambda name: rec
    assert len([line for line in report.render_overhead().splitlines() if line.startswith("| ")]) == 1 + 5  # header and probes


def test_predict_latency_runs_every_engine_on_the_same_weights(bench_module, monkeypatch):
    """The CNN in fastnet, ONNX Runtime and PyTorch (each installed one): run() checks that every engine predicts
    what fastnet predicts before timing (PyTorch's flatten order included), then times one image and 1000."""
    latency = bench_module("predict_latency")
    monkeypatch.setattr(latency, "BATCHES", (1, 3))
    result = latency.run("cnn", threads=1, rounds=1, pause=0.0)
    engines = [e for e in latency.ENGINES if latency.available(e)]
    assert set(result["batches"]["1"]) == set(engines) and "fastnet" in engines
    assert all(v["seconds"] > 0 for per in result["batches"].values() for v in per.values())
    assert result["batches"]["3"]["fastnet"]["ratio"] == 1.0
    report = bench_module("report")
    rec = {"data": {"cnn": result}, "meta": {"commit": "c", "date": "d", "cpu": "cpu", "cpus": 2, "flags": [],
                                            "threads": 1, "isa": "avx2", "fastnet": "0"}}
    report.load = lambda name: rec
    rows = [line for line in report.render_latency().splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 2  # header and batches


def test_report_names_a_changed_tree_but_not_its_own_tables(bench_module, tmp_path, monkeypatch):
    """A footer's commit says "+changes" when the measured code differs from it; the tables and results the script
    writes itself, section after section, are not such a change."""
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "bench" / "results").mkdir(parents=True)
    for name in ("README.md", "bench/README.md", "bench/results/gemm.json", "csrc.c"):
        (tmp_path / name).write_text("0")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    report = bench_module("report")
    monkeypatch.setattr(report, "ROOT", str(tmp_path))
    monkeypatch.delenv("FASTNET_COMMIT", raising=False)
    for name in ("README.md", "bench/README.md", "bench/results/gemm.json"):
        (tmp_path / name).write_text("1")
    assert not report.meta()["commit"].endswith("+changes")
    (tmp_path / "csrc.c").write_text("1")
    assert report.meta()["commit"].endswith("+changes")
