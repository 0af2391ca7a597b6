"""Callbacks, resuming, divergence, and memory that stays flat over many fits."""
import gc
import os

import numpy as np
import pytest

import fastnet
from fastnet.callbacks import Callback, CSVLogger, EarlyStopping, ModelCheckpoint, TerminateOnNaN
from fastnet.layers import Dense, Dropout
from fastnet.models import Sequential, load_model
from fastnet.optimizers import SGD


def mlp(optimizer="rmsprop"):
    m = Sequential([Dense(16, activation="relu", input_shape=(8,)), Dropout(0.3), Dense(3, activation="softmax")])
    m.compile(loss="categorical_crossentropy", optimizer=optimizer, metrics=["accuracy"])
    return m


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8)).astype(np.float32)
    return x, np.eye(3, dtype=np.float32)[(x[:, 0] * 3).astype(int).clip(0, 2)]


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path):
    x, y = data()
    fastnet.set_seed(5)
    straight = mlp()
    straight.fit(x, y, batch_size=16, epochs=6, verbose=0)

    fastnet.set_seed(5)
    first = mlp()
    first.fit(x, y, batch_size=16, epochs=3, verbose=0,
              callbacks=[ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.npz"))])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-01.npz", "ckpt-02.npz", "ckpt-03.npz"]
    resumed = load_model(tmp_path / "ckpt-03.npz")
    resumed.fit(x, y, batch_size=16, epochs=6, initial_epoch=3, verbose=0)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_best_only(tmp_path):
    x, y = data()
    m = mlp()
    cb = ModelCheckpoint(tmp_path / "best.npz", monitor="val_accuracy", save_best_only=True)
    h = m.fit(x, y, batch_size=16, epochs=5, verbose=0, validation_data=(x, y), callbacks=[cb])
    assert cb.best == max(h.history["val_accuracy"])
    assert load_model(tmp_path / "best.npz").evaluate(x, y)[1] == pytest.approx(cb.best)


class WeightsAtEpochEnd(Callback):
    def on_train_begin(self, logs=None):
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def test_early_stopping_restores_best_weights():
    x, y = data()
    fastnet.set_seed(1)
    m = mlp(SGD(lr=0.5))
    seen = WeightsAtEpochEnd()  # runs before EarlyStopping: it sees each epoch's own weights
    # The first epoch is the best; no later one improves by min_delta.
    stop = EarlyStopping(monitor="loss", patience=1, min_delta=10.0, restore_best_weights=True)
    h = m.fit(x, y, batch_size=16, epochs=10, verbose=0, callbacks=[seen, stop])
    assert len(h.epoch) == 3 and stop.stopped_epoch == 2  # Keras 2.0: patience non-improving epochs, then stop
    assert not np.array_equal(seen.weights[0][0], seen.weights[2][0])  # training moved the weights
    for restored, best in zip(m.get_weights(), seen.weights[0]):
        np.testing.assert_array_equal(restored, best)
    with pytest.raises(ValueError, match="monitors .val_loss., which fit does not report"):
        mlp().fit(x, y, epochs=1, verbose=0, callbacks=[EarlyStopping()])


def test_csv_logger(tmp_path):
    x, y = data()
    path = tmp_path / "log.csv"
    mlp().fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[CSVLogger(path)])
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,acc,accuracy,loss" and len(lines) == 4 and lines[3].startswith("2,")
    mlp().fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[CSVLogger(path, append=True)])
    assert len(path.read_text().splitlines()) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]  # no temporary files left


def test_nan_loss_stops_fit_before_updating():
    x, y = data()
    m = mlp()
    w = m.get_weights()
    w[2][:] = 3e38  # logits overflow to inf: the loss of the first batch is NaN
    m.set_weights(w)
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 1/6.*weights are those before this batch"):
        m.fit(x, y, batch_size=16, epochs=3, verbose=0)
    for a, b in zip(m.get_weights(), w):
        np.testing.assert_array_equal(a, b)
    stop = TerminateOnNaN()
    h = m.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[stop])
    assert stop.terminated_at == (0, 0) and h.epoch == []
    for a, b in zip(m.get_weights(), w):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FloatingPointError, match="train_on_batch"):
        m.train_on_batch(x[:4], y[:4])


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc to read the memory in use")
def test_memory_stays_flat_over_many_models_and_fits():
    x, y = data(512)

    def cycle():
        m = mlp()
        m.fit(x, y, batch_size=64, epochs=2, verbose=0, validation_data=(x, y))
        m.predict(x)
        return m.count_params()

    for _ in range(5):
        cycle()
    gc.collect()
    before = _rss_mb()
    for _ in range(60):
        cycle()
    gc.collect()
    grown = _rss_mb() - before
    assert grown < 8, f"memory grew by {grown:.1f} MB over 60 models"


class Stop(Callback):
    """Ends fit at its first batch, to see what the other callbacks did when training began."""

    def on_batch_begin(self, batch, logs=None):
        raise KeyboardInterrupt


@pytest.mark.parametrize("make", [lambda p: CSVLogger(p / "blocker" / "log.csv"),
                                  lambda p: ModelCheckpoint(str(p / "blocker" / "ckpt-{epoch}.keras")),
                                  lambda p: ModelCheckpoint(str(p / "blocker" / "{epoch}" / "m.npz"))])
def test_a_target_that_cannot_be_written_fails_when_training_begins(tmp_path, make):
    (tmp_path / "blocker").write_text("a file, not a folder")
    m = mlp()
    with pytest.raises(NotADirectoryError, match=r"cannot write .*blocker.*: .*blocker is a file, not a folder"):
        m.fit(*data(), batch_size=32, epochs=2, verbose=0, callbacks=[make(tmp_path)])
    assert m.step == 0, "a batch was trained before the callback's target was checked"


def test_callback_folders_are_made_and_the_log_opened_when_training_begins(tmp_path):
    (tmp_path / "log.csv").write_text("epoch,loss\n0,1.0\n")
    with pytest.raises(KeyboardInterrupt):
        mlp().fit(*data(), verbose=0, callbacks=[CSVLogger(tmp_path / "log.csv"),
                                                 ModelCheckpoint(str(tmp_path / "runs" / "a" / "ckpt-{epoch}.npz")),
                                                 Stop()])
    assert (tmp_path / "runs" / "a").is_dir()
    assert (tmp_path / "log.csv").read_text() == ""  # opened as Keras opens it: 'w' unless append=True


@pytest.mark.parametrize("name, message", [
    ("weights.{epoch:02d}.hdf5", r"Keras 2's .h5/.hdf5 model files are not supported\), e.g. 'weights.\{epoch:02d\}"
                                 r".keras'"),
    ("model.h5", r"fastnet saves checkpoints as .keras \(Keras 3's format\) or .npz"),
    ("ckpt", r"fastnet saves checkpoints as .keras")])
def test_a_checkpoint_name_fastnet_cannot_write_is_refused_when_made(name, message):
    with pytest.raises(ValueError, match=message):
        ModelCheckpoint(name)
    with pytest.raises(ValueError, match=r"with save_weights_only=True the file name must end in .weights.h5"):
        ModelCheckpoint("w.{epoch}.keras", save_weights_only=True)


def test_checkpoint_of_weights_only(tmp_path):
    pytest.importorskip("h5py")
    x, y = data()
    m = mlp()
    m.fit(x, y, epochs=2, verbose=0, callbacks=[ModelCheckpoint(str(tmp_path / "w{epoch}.weights.h5"),
                                                                save_weights_only=True)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w1.weights.h5", "w2.weights.h5"]
    other = mlp()
    other.load_weights(tmp_path / "w2.weights.h5")
    assert np.array_equal(other.predict(x), m.predict(x))
