"""Data-parallel training on MPI (fastnet.distributed), run for real: `mpiexec -n 2` (and 3) over
tests/mpi_worker.py, against the same scenario in one plain process.

These tests need the `mpi` extra (mpi4py and an MPI library with mpiexec). Without it they skip, unless
FASTNET_REQUIRE_MPI=1 (set by .ci/run), where the skip is a failure: CI must run them. Every run is bounded:
the launcher by a subprocess timeout, fastnet's collectives by FASTNET_MPI_TIMEOUT.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "mpi_worker.py")
LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")


def _mpiexec():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")  # the mpich wheel's, in this venv
    return beside if os.path.exists(beside) else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
if MPIEXEC is None:
    if os.environ.get("FASTNET_REQUIRE_MPI") == "1":
        raise RuntimeError("FASTNET_REQUIRE_MPI=1 but mpi4py or mpiexec is missing: pip install '.[mpi]'")
    pytest.skip("needs the mpi extra: pip install '.[mpi]'", allow_module_level=True)


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES and k != "OMP_NUM_THREADS"}
    env.pop("FASTNET_NUM_THREADS", None)
    env["FASTNET_MPI_TIMEOUT"] = "60"  # a bug that leaves a rank waiting fails the test in a minute, not never
    env.update(extra)
    return env


def launch(n, args, timeout=180, **env):
    """Run args under `mpiexec -n n` (n=None: as one plain process); returns (returncode, output, seconds)."""
    cmd = ([MPIEXEC, "-n", str(n)] if n else []) + args
    start = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          env=_env(**env))
    return proc.returncode, proc.stdout, time.monotonic() - start


def worker(n, scenario, folder, timeout=180, **env):
    os.makedirs(folder, exist_ok=True)
    return launch(n, [sys.executable, WORKER, scenario, str(folder)], timeout=timeout, **env)


def run_ok(n, scenario, folder, **env):
    code, output, _ = worker(n, scenario, folder, **env)
    assert code == 0, output
    return output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The `train` scenario in one process, twice under mpiexec -n 2, under -n 2 with one allreduce after the
    backward instead of one per plan step, and under -n 3."""
    root = tmp_path_factory.mktemp("train")
    for name, n, overlap in (("one", None, "1"), ("two_a", 2, "1"), ("two_b", 2, "1"), ("two_blocking", 2, "0"),
                             ("three", 3, "1")):
        run_ok(n, "train", root / name, OVERLAP=overlap)
    return root


def load(folder, name):
    with np.load(os.path.join(folder, name)) as f:
        return dict(f)


@pytest.mark.parametrize("net", ["mlp", "cnn", "binary"])
def test_two_runs_with_the_same_process_count_are_bit_identical(trained, net):
    a, b = load(trained / "two_a", f"{net}.npz"), load(trained / "two_b", f"{net}.npz")
    for key in a:
        assert np.array_equal(a[key], b[key]), key


@pytest.mark.parametrize("net", ["mlp", "cnn", "binary"])
def test_overlapped_and_blocking_allreduce_give_the_same_weights(trained, net):
    """Per element, both sum the same two rank values (one addition, whichever order): bit for bit."""
    a, b = load(trained / "two_a", f"{net}.npz"), load(trained / "two_blocking", f"{net}.npz")
    assert np.array_equal(a["params"], b["params"])


@pytest.mark.parametrize("ranks", ["two_a", "three"])
@pytest.mark.parametrize("net", ["mlp", "cnn", "binary"])
def test_data_parallel_training_equals_one_process(trained, net, ranks):
    """20 steps (shuffled, with dropout, a last batch of one row) agree with one process to 1e-5 of the largest
    weight: the update is the single-process update, dropout masks and shuffling included (with other masks or
    another order the weights differ by ~1e-2). Not bit for bit: the ranks' gradient partial sums are added in
    another order than one process's."""
    one, many = load(trained / "one", f"{net}.npz"), load(trained / ranks, f"{net}.npz")
    assert many["step"] == one["step"] == 20 and many["iterations"] == 20
    diff, scale = np.abs(many["params"] - one["params"]).max(), np.abs(one["params"]).max()
    assert diff <= 1e-5 * scale, f"max |diff| {diff:.3g} vs 1e-5 x {scale:.3g}"
    for key in one:
        if key.startswith("history_") or key in ("predict", "evaluate"):
            np.testing.assert_allclose(many[key], one[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_predict_evaluate_and_train_on_batch_split_and_gather_in_order(tmp_path):
    """Sample counts 1, 2, 7 and 50 over 2 and 3 ranks: uneven shares and ranks with nothing to do."""
    for name, n in (("one", None), ("two", 2), ("three", 3)):
        run_ok(n, "infer", tmp_path / name)
    for n in (1, 2, 7, 50):
        one = load(tmp_path / "one", f"infer{n}.npz")
        for ranks in ("two", "three"):
            many = load(tmp_path / ranks, f"infer{n}.npz")
            np.testing.assert_allclose(many["predict"], one["predict"], rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(many["evaluate"], one["evaluate"], rtol=1e-6)
            np.testing.assert_allclose(many["on_batch"], one["on_batch"], rtol=1e-6)
            np.testing.assert_allclose(many["params"], one["params"], rtol=1e-5, atol=1e-7)


def test_only_rank_0_writes_files_and_prints(tmp_path):
    output = run_ok(2, "files", tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["rank0", "threads0.txt", "threads1.txt"]  # no rank1 folder: no write
    assert sorted(os.listdir(tmp_path / "rank0")) == ["ckpt-1.npz", "ckpt-2.npz", "log.csv", "model.npz"]
    assert output.count("Epoch 1/2") == 1 and output.count("saved model to") == 2, output
    cpus = len(os.sched_getaffinity(0))
    expected = max(1, cpus // 2) if cpus == os.cpu_count() else cpus  # the node's CPUs, shared by its ranks
    assert [int((tmp_path / f"threads{r}.txt").read_text()) for r in (0, 1)] == [expected, expected]


def test_fit_starts_from_rank_0s_weights_and_says_so_when_a_rank_differed(tmp_path):
    output = run_ok(2, "diverged", tmp_path)
    assert output.count("RuntimeWarning: fit: the weights of rank(s) [1] differed from rank 0's") == 1, output
    assert np.array_equal(np.load(tmp_path / "params0.npy"), np.load(tmp_path / "params1.npy"))


def test_checkpoint_resume_under_mpi_equals_one_fit(tmp_path):
    run_ok(2, "resume", tmp_path)
    whole, resumed = load(tmp_path, "whole.npz"), load(tmp_path, "resumed.npz")
    assert whole["step"] == resumed["step"] == 60
    assert np.array_equal(whole["params"], resumed["params"])


FAULTS = {
    # scenario: (what the report says, how many times the launcher's output may say it)
    "bad_data": r"ValueError: fit: x contains NaN",
    "other_data": r"ValueError: fit: under fastnet.distributed every rank passes the same",
    "nan_loss": r"FloatingPointError: fit: the loss became",
    "failed_save": r"NotADirectoryError: \[Errno 20\] ModelCheckpoint: cannot write",
    "interrupted": r"(?m)^KeyboardInterrupt$",
    "uncaught": r"RuntimeError: rank 1 fails before fit",
    "stuck_abort": r"RuntimeError: rank 0 fails and its MPI_Abort hangs",  # the watchdog ends it
    "one_rank_only": r"TimeoutError: rank 0 waited 3 s for the other ranks in evaluate",
}


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_an_error_on_one_rank_ends_every_rank_with_one_report(tmp_path, kind):
    # 3 s for the rank left alone in a collective; longer where the other rank is not alone, only slow to die
    code, output, seconds = worker(2, f"fault_{kind}", tmp_path, timeout=60,
                                   FASTNET_MPI_TIMEOUT="60" if kind == "stuck_abort" else "3")
    assert code != 0, output
    assert seconds < 30, f"took {seconds:.0f} s"
    assert len(re.findall(FAULTS[kind], output)) == 1, output
    assert output.count("fastnet.distributed: rank") == 1, output


def test_a_rank_killed_outright_ends_the_others(tmp_path):
    code, output, seconds = worker(2, "fault_killed", tmp_path, timeout=60)
    assert code != 0, output
    assert seconds < 30, f"took {seconds:.0f} s"


def test_fastnet_train_under_mpiexec_is_data_parallel_with_one_set_of_outputs(tmp_path):
    code, output, _ = launch(2, [os.path.join(os.path.dirname(sys.executable), "fastnet-train"), "mlp",
                                 "--epochs", "1", "--verbose", "2", "--out", str(tmp_path)], timeout=300)
    assert code == 0, output
    assert output.count("Test accuracy") == 1 and "data-parallel over 2 MPI processes" in output, output
    assert sorted(os.listdir(tmp_path)) == ["history.csv", "history.json", "history.png", "model.npz", "model.png"]
    record = json.loads((tmp_path / "history.json").read_text())
    assert record["processes"] == 2 and record["test_accuracy"] > 0.95


def test_the_article_mlp_script_as_printed_runs_data_parallel_under_mpiexec(tmp_path):
    """The script unchanged (one epoch instead of 20): import fastnet starts MPI; every rank prints its own
    result lines (the script's print calls), all the same accuracy, which is the global one."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "examples", "article_mnist_mlp.py")) as f:
        text = f.read()
    script = tmp_path / "article_mnist_mlp.py"
    script.write_text(text.replace("nb_epoch = 20", "nb_epoch = 1"))
    # each rank's stdout in a file of its own: through one pipe, the launcher interleaved the ranks' lines mid-line
    # once ("Test accuracy: Test score: ..."; print writes its pieces apart)
    code, output, _ = launch(2, ["-outfile-pattern", str(tmp_path / "out.%r"), sys.executable, str(script)],
                             timeout=300)
    assert code == 0, output
    outs = [(tmp_path / f"out.{rank}").read_text() for rank in (0, 1)]
    accuracies = [float(line.split(":")[1]) for out in outs for line in out.splitlines()
                  if line.startswith("Test accuracy")]
    assert len(accuracies) == 2 and accuracies[0] == accuracies[1] >= 0.95, outs
    assert [out.count("Epoch 1/1") for out in outs] == [1, 0], outs  # one progress bar: rank 0's


def test_without_a_launcher_fastnet_never_imports_mpi4py():
    code = ("import sys, numpy as np, fastnet\n"
            "m = fastnet.Sequential([fastnet.layers.Dense(2, input_shape=(3,), activation='softmax')])\n"
            "m.compile(); m.fit(np.ones((4, 3)), np.eye(2)[[0, 1, 0, 1]], verbose=0); m.predict(np.ones((1, 3)))\n"
            "assert not fastnet.distributed.active() and 'mpi4py' not in sys.modules, sorted(sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(), timeout=120)


def test_fastnet_distributed_0_keeps_launched_processes_independent(tmp_path):
    # one write per line: two processes share the output pipe, and print's pieces could interleave
    code = "import sys, fastnet; sys.stdout.write(f'ranks {fastnet.distributed.size()} {\"mpi4py\" in sys.modules}\\n')"
    status, output, _ = launch(2, [sys.executable, "-c", code], FASTNET_DISTRIBUTED="0")
    assert status == 0 and output.count("ranks 1 False") == 2, output
