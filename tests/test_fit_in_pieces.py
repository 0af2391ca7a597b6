"""Training in pieces equals training at once: every fit call continues the model's shuffling and dropout streams."""
import numpy as np
import pytest

import fastnet
from fastnet import networks
from fastnet.callbacks import Callback, CSVLogger, ModelCheckpoint
from fastnet.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from fastnet.models import Sequential, load_model


def winograd_net():
    """A conv net whose second convolution takes the Winograd path (with the fused ReLU + max-pool), with
    dropout: shuffling, dropout and chunked filter gradients all in play."""
    m = Sequential([Conv2D(16, (3, 3), activation="relu", input_shape=(10, 10, 2)),
                    Conv2D(16, (3, 3), activation="relu"), MaxPooling2D((2, 2)), Dropout(0.25), Flatten(),
                    Dense(16, activation="relu"), Dropout(0.5), Dense(3, activation="softmax")])
    m.compile(loss="categorical_crossentropy", optimizer="adadelta", metrics=["accuracy"])
    assert [s.op for s in m.plan().steps][:2] == ["conv2d", "conv2d_maxpool"]
    return m


def data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 10, 10, 2), dtype=np.float32)
    return x, np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]


def assert_same_weights(a, b):
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)


def trained(pieces, between=None, **fit_args):
    """A fresh model (seed 5) trained with one fit call per entry of pieces (its epochs)."""
    x, y = data()
    fastnet.set_seed(5)
    m = winograd_net()
    for k, epochs in enumerate(pieces):
        m.fit(x, y, batch_size=16, epochs=epochs, verbose=0, **fit_args)
        if between:
            between(m, k)
    return m


def test_the_issue_snippet():
    x, y = data()
    fastnet.set_seed(5)
    a = winograd_net()
    a.fit(x, y, epochs=1, verbose=0)
    a.fit(x, y, epochs=1, verbose=0)
    fastnet.set_seed(5)
    b = winograd_net()
    b.fit(x, y, epochs=2, verbose=0)
    assert a.epochs_trained == b.epochs_trained == 2 and a.step == b.step
    assert_same_weights(a, b)


@pytest.mark.parametrize("pieces", [(1, 1), (1, 2), (2, 1), (1, 1, 1)])
def test_pieces_equal_one_call(pieces):
    assert_same_weights(trained(pieces), trained((sum(pieces),)))


def test_pieces_with_validation_callbacks_and_work_in_between(tmp_path):
    x, y = data()
    xv, yv = data(20, seed=1)

    def between(m, k):  # evaluation, prediction and a save use the plan, but change no random stream
        m.evaluate(xv, yv, batch_size=7)
        m.predict(xv, batch_size=3)
        m.save(tmp_path / f"m{k}.npz")

    kwargs = {"validation_data": (xv, yv), "callbacks": [CSVLogger(tmp_path / "log.csv", append=True)]}
    pieces = trained((1, 1, 1), between, **kwargs)
    whole = trained((3,), **kwargs)
    assert_same_weights(pieces, whole)


def test_shuffling_differs_from_epoch_to_epoch():
    x, y = data()
    fastnet.set_seed(5)
    m = winograd_net()
    seen = []

    class FirstBatch(Callback):
        def on_batch_begin(self, batch, logs=None):
            if batch == 0:
                seen.append(m.plan().buffers.get("x", x.shape[1:], 16).copy())

    m.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[FirstBatch()])
    m.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[FirstBatch()])
    assert not np.array_equal(seen[0], seen[1])  # each call's first batch holds other samples


def test_resume_in_pieces_from_a_checkpoint_is_bit_exact(tmp_path):
    x, y = data()
    whole = trained((4,))
    fastnet.set_seed(5)
    first = winograd_net()
    first.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[ModelCheckpoint(str(tmp_path / "c{epoch}.npz"))])
    resumed = load_model(tmp_path / "c2.npz")
    assert resumed.epochs_trained == 2
    resumed.fit(x, y, batch_size=16, epochs=3, initial_epoch=2, verbose=0)  # the third epoch, numbered 3
    resumed.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert_same_weights(resumed, whole)


def test_initial_epoch_numbers_the_epochs_and_leaves_the_batches_alone():
    x, y = data()
    fastnet.set_seed(5)
    m = winograd_net()
    h = m.fit(x, y, batch_size=16, epochs=3, initial_epoch=1, verbose=0)
    assert h.epoch == [1, 2] and m.epochs_trained == 2
    assert_same_weights(m, trained((2,)))


def test_article_cnn_epoch_by_epoch_equals_one_call():
    """The article's CNN (seed 1337, its recipe's batch of 128), two epochs one at a time and in one call."""
    rng = np.random.default_rng(0)
    x = rng.random((640, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 640)]
    models = []
    for pieces in ((1, 1), (2,)):
        fastnet.set_seed(1337)
        m = networks.cnn()
        for epochs in pieces:
            m.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
        models.append(m)
    assert_same_weights(*models)
