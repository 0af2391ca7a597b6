"""Nothing is lost when a run is cut short: an interrupted fit, a failed save, a failed checkpoint."""
import errno
import gc
import os
import signal
import threading
import time

import numpy as np
import pytest

import fastnet
from fastnet import _io, _seed
from fastnet.callbacks import Callback, ModelCheckpoint
from fastnet.plan import Plan
from fastnet.layers import Dense, Dropout
from fastnet.models import Sequential

SEED = 123


def model():
    fastnet.set_seed(SEED)  # the same seed and model number: every model here starts and trains identically
    m = Sequential([Dense(16, activation="relu", input_shape=(8,)), Dropout(0.3), Dense(4, activation="softmax")])
    m.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return m


def data(n=40):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    return x, (x[:, :4].argmax(1))


class Enough(Exception):
    pass


class Record(Callback):
    """The weights after each training step, keyed by the step count; stops fit before the step after `upto`."""

    def __init__(self, upto=None):
        super().__init__()
        self.weights, self.upto = {}, upto

    def on_batch_begin(self, batch, logs=None):
        if self.upto is not None and self.model.step > self.upto:
            raise Enough

    def on_batch_end(self, batch, logs=None):
        self.weights[self.model.step] = self.model.get_weights()


def reference(steps, epochs):
    """A model trained without interruption: its weights after every step up to steps, its history over the
    epochs those steps complete."""
    m, rec = model(), Record(upto=steps)
    x, y = data()
    try:
        m.fit(x, y, batch_size=8, epochs=epochs + 1, verbose=0, validation_data=(x[:8], y[:8]), callbacks=[rec])
    except Enough:
        pass
    return rec.weights, m.history


def assert_state_is_a_completed_step(m, x, y):
    """The interrupted model holds exactly the weights of its last completed step, whole epochs of history, and
    trains and predicts on."""
    step = m.step
    assert m.optimizer.iterations == step
    weights, history = reference(step, len(m.history.epoch))
    for mine, ref in zip(m.get_weights(), weights.get(step, model().get_weights())):
        np.testing.assert_array_equal(mine, ref)
    assert m.history.epoch == list(range(len(m.history.epoch)))
    assert m.epochs_trained - len(m.history.epoch) in (0, 1)  # 1: cut short during the epoch's validation
    for key, values in m.history.history.items():
        assert values == history.history[key][:len(values)], key
    assert np.isfinite(m.predict(x)).all()
    m.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert m.step == step + 5


class Deadline(Callback):
    """Fails fit after `seconds`: a signal that never arrives fails the test instead of hanging it."""

    def __init__(self, seconds):
        super().__init__()
        self.end = time.monotonic() + seconds

    def on_batch_end(self, batch, logs=None):
        if time.monotonic() > self.end:
            raise RuntimeError("no KeyboardInterrupt arrived")


@pytest.mark.parametrize("delay", [0.0, 0.003, 0.011, 0.05, 0.13, 0.29])
def test_ctrl_c_at_any_moment_of_fit_keeps_the_last_completed_step(delay):
    """SIGINT (Ctrl-C) sent from another thread at an arbitrary moment, `delay` seconds after the first step:
    inside a kernel, between a kernel and the Python around it, in a callback or in validation."""
    m = model()
    x, y = data()
    done = threading.Event()

    def interrupt():
        while m.step < 1 and not done.is_set():
            time.sleep(0.0005)
        time.sleep(delay)
        if not done.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    # Python's own Ctrl-C handler, also where the test runs with SIGINT ignored (a background job of a shell)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=interrupt, daemon=True)
    # No garbage collection meanwhile: a KeyboardInterrupt that lands in a gc callback is printed and dropped, not
    # raised (hypothesis, imported by other test files, hooks one into every collection: a fresh-clone run lost
    # its one SIGINT there). fastnet's code is never in such a callback.
    gc.disable()
    thread.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            m.fit(x, y, batch_size=8, epochs=10**6, verbose=0, validation_data=(x[:8], y[:8]),
                  callbacks=[Deadline(60)])
    finally:
        done.set()
        thread.join()
        gc.enable()
        signal.signal(signal.SIGINT, previous)
    assert m.step > 0
    assert_state_is_a_completed_step(m, x, y)


@pytest.mark.parametrize("when", ["before", "after"])
def test_interrupt_next_to_the_update_kernel(monkeypatch, when):
    """A signal that lands just before the 8th training step's call into C (its forward, backward and update), or
    just after it returns (at the first Python instruction after it): the step count always matches the weights,
    because the C call that updates the weights also advances the counts."""
    m = model()
    x, y = data()
    real, calls = Plan.train_step, []

    def step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8 and when == "before":
            raise KeyboardInterrupt
        real(*args, **kwargs)
        if len(calls) == 8 and when == "after":
            raise KeyboardInterrupt

    monkeypatch.setattr(Plan, "train_step", step)
    with pytest.raises(KeyboardInterrupt):
        m.fit(x, y, batch_size=8, epochs=5, verbose=0)
    monkeypatch.undo()
    assert m.step == (8 if when == "after" else 7)
    assert_state_is_a_completed_step(m, x, y)


class Raise(Callback):
    def __init__(self, at_step, exc):
        super().__init__()
        self.at_step, self.exc = at_step, exc

    def on_batch_begin(self, batch, logs=None):
        if self.model.step == self.at_step:
            raise self.exc


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("a callback failed")], ids=["interrupt", "error"])
def test_exception_in_fit_keeps_the_last_completed_step_and_whole_epochs(exc):
    m = model()
    x, y = data()
    with pytest.raises(type(exc)):
        m.fit(x, y, batch_size=8, epochs=5, verbose=0, validation_data=(x[:8], y[:8]), callbacks=[Raise(13, exc)])
    assert m.step == 13 and m.history.epoch == [0, 1] and m.epochs_trained == 2
    assert_state_is_a_completed_step(m, x, y)


class FailingFile:
    """A file object that fails after `limit` bytes, as a full disk (or an interrupt) would mid-write."""

    def __init__(self, f, limit, exc):
        self.f, self.limit, self.exc, self.written = f, limit, exc, 0

    def write(self, b):
        if self.written + len(b) > self.limit:
            self.f.write(b[:self.limit - self.written])
            raise self.exc
        self.written += len(b)
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def fail_writes(monkeypatch, limit, exc, after_calls=0):
    """Make the atomic writer's file fail mid-way, from its (after_calls + 1)-th use on."""
    real, calls = os.fdopen, []

    def fdopen(fd, mode="r", *args, **kwargs):
        calls.append(fd)
        f = real(fd, mode, *args, **kwargs)
        return FailingFile(f, limit, exc) if len(calls) > after_calls else f

    monkeypatch.setattr(_io.os, "fdopen", fdopen)


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "interrupt"])
def test_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch, exc):
    m = model()
    x, y = data()
    path = tmp_path / "model.npz"
    m.save(path)
    before = path.read_bytes()
    m.fit(x, y, batch_size=8, epochs=1, verbose=0)
    fail_writes(monkeypatch, limit=3000, exc=exc)
    with pytest.raises(type(exc)):
        m.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]  # no partial file left behind
    assert fastnet.load_model(path).step == 0


def test_checkpoint_keeps_the_last_good_file_when_the_next_save_fails(tmp_path, monkeypatch):
    m = model()
    x, y = data()
    path = tmp_path / "ckpt.npz"
    rec = Record()
    fail_writes(monkeypatch, limit=3000, exc=OSError(errno.ENOSPC, "No space left on device"), after_calls=1)
    with pytest.raises(OSError, match="No space left"):
        m.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[rec, ModelCheckpoint(path)])
    good = fastnet.load_model(path)
    assert good.epochs_trained == 1 and good.step == 5
    for saved, recorded in zip(good.get_weights(), rec.weights[5]):
        np.testing.assert_array_equal(saved, recorded)
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_any_number_of_models_gets_its_own_dropout_stream():
    """Dropout keys are hashed, not packed: the 70,000th model trains (packing the model number into 16 bits
    raised OverflowError from the 65,536th), and no two (model, step, layer) share a stream."""
    fastnet.set_seed(5)
    for _ in range(70_000):
        Sequential()
    m = Sequential([Dense(8, input_shape=(4,)), Dropout(0.5), Dense(2, activation="softmax")])
    assert m.model_id == 70_000
    m.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
    x = np.random.default_rng(1).standard_normal((16, 4)).astype(np.float32)
    m.fit(x, np.arange(16) % 2, batch_size=4, epochs=1, verbose=0)
    assert m.step == 4
    streams = {_seed.key64(model, step, layer)
               for model in (0, 1, 65_535, 65_536, 70_000, 2**70) for step in (0, 1, 2**36) for layer in (0, 1, 4096)}
    assert len(streams) == 6 * 3 * 3


def test_history_records_an_epoch_whole_or_not_at_all():
    """An interrupt while History copies an epoch's logs leaves no part of that epoch behind."""
    from fastnet.callbacks import History

    class InterruptedLogs(dict):
        def __iter__(self):
            yield "loss"
            raise KeyboardInterrupt

        keys = __iter__

        def items(self):
            yield "loss", self["loss"]
            raise KeyboardInterrupt

    h = History()
    h.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.9})
    with pytest.raises(KeyboardInterrupt):
        h.on_epoch_end(1, InterruptedLogs(loss=0.4, accuracy=0.95))
    assert h.epoch == [0] and h.history == {"loss": [0.5], "accuracy": [0.9]}
