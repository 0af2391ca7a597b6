"""Files fastnet writes (fastnet._io.atomic_write): the mode a plain open() would give, and no litter left by a
save killed with SIGKILL once the next save of the same file has run."""
import fcntl
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastnet
from fastnet import _io
from fastnet.layers import Dense


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def mode(path):
    return os.stat(path).st_mode & 0o777


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
@pytest.mark.parametrize("ext", [".npz", ".keras", ".weights.h5", ".csv"])
def test_a_new_file_gets_the_umask_mode(tmp_path, umask, mask, expected, ext):
    umask(mask)
    path = tmp_path / f"m{ext}"
    m = fastnet.Sequential([Dense(2, input_shape=(3,))])
    if ext == ".csv":
        fastnet.callbacks.CSVLogger(str(path)).on_train_begin()
    else:
        (m.save_weights if ext == ".weights.h5" else m.save)(path)
    assert mode(path) == expected


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    path = tmp_path / "m.npz"
    m = fastnet.Sequential([Dense(2, input_shape=(3,))])
    m.save(path)
    os.chmod(path, 0o640)
    m.save(path)
    assert mode(path) == 0o640


def partials(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".partial"))


def test_only_stale_partials_of_the_same_file_are_removed(tmp_path):
    folder = str(tmp_path)
    for name in (".m.npz.0123456789abcdef.partial", ".m.npz.k3j_x9q2.partial", ".m.npz.0000000000000000.partial",
                 ".other.npz.0123456789abcdef.partial", ".m.npz.notatoken!.partial", ".m.npz.abc.partial"):
        (tmp_path / name).write_bytes(b"x")
    living = os.open(tmp_path / ".m.npz.0000000000000000.partial", os.O_RDONLY)
    fcntl.flock(living, fcntl.LOCK_EX)  # a save in progress holds its partial file's lock
    try:
        _io.atomic_write(os.path.join(folder, "m.npz"), lambda f: f.write(b"model"))
        assert partials(folder) == [".m.npz.0000000000000000.partial", ".m.npz.abc.partial",
                                    ".m.npz.notatoken!.partial", ".other.npz.0123456789abcdef.partial"]
    finally:
        os.close(living)
    assert (tmp_path / "m.npz").read_bytes() == b"model"


def test_a_write_that_fails_leaves_no_partial(tmp_path):
    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        _io.atomic_write(str(tmp_path / "m.npz"), fail)
    assert os.listdir(tmp_path) == []


SAVER = textwrap.dedent("""
    import sys
    import fastnet
    from fastnet.layers import Dense
    folder = sys.argv[1]
    m = fastnet.Sequential([Dense(2500, input_shape=(2000,)), Dense(10)])  # 20 MB of weights
    m.compile(optimizer="rmsprop", loss="mse")
    print("saving", flush=True)
    while True:
        m.save(folder + "/m.npz")
        m.save(folder + "/m.keras")
""")


def test_a_save_killed_at_any_moment_leaves_no_partial_after_the_next_save(tmp_path, umask):
    """Saves of 20 MB models (with their optimizer state, 40 MB) killed with SIGKILL at random moments: the files
    always load, and once the next save of each has run no partial file remains."""
    pytest.importorskip("h5py")
    folder, rng, kills = str(tmp_path), random.Random(0), 0
    while kills < 12 or not partials(folder):  # then on, until a kill leaves a partial file for the next save
        assert kills < 60, "60 kills and none left a partial file: the test no longer tests anything"
        child = subprocess.Popen([sys.executable, "-c", SAVER, folder], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline() == "saving\n"
        time.sleep(rng.uniform(0.05, 1.0))
        child.send_signal(signal.SIGKILL)
        child.wait()
        kills += 1
    for name in ("m.npz", "m.keras"):
        model = fastnet.models.load_model(os.path.join(folder, name))  # the last whole save
        model.save(os.path.join(folder, name))
    assert sorted(os.listdir(folder)) == ["m.keras", "m.npz"], f"left after {kills} kills: {partials(folder)}"
    assert mode(os.path.join(folder, "m.npz")) == mode(os.path.join(folder, "m.keras")) == 0o644
    x = np.ones((1, 2000), np.float32)
    assert np.array_equal(fastnet.models.load_model(os.path.join(folder, "m.npz")).predict(x),
                          fastnet.models.load_model(os.path.join(folder, "m.keras")).predict(x))
