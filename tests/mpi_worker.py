"""The rank-side half of tests/test_distributed.py: `python tests/mpi_worker.py SCENARIO OUT`, run by the tests
under `mpiexec -n N` (and, for the single-process results to compare with, as one plain process).

Every scenario builds its data and models from fixed seeds, the same on every rank, so a run with any number of
processes computes what one process computes. Results are written by rank 0 into OUT as .npz files (plain
numpy, not fastnet's writer, which only rank 0 uses anyway); the tests compare them.
"""
import os
import signal
import sys
import time

import numpy as np

import fastnet
from fastnet import callbacks, distributed
from fastnet.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from fastnet.models import Sequential
from fastnet.utils import to_categorical

BATCH = 16
SAMPLES = 19 * BATCH + 1  # 20 steps an epoch, the last a batch of one row: one rank's share of it is empty


def data(shape, classes=5, n=SAMPLES, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + shape).astype(np.float32)
    y = to_categorical(rng.integers(0, classes, n), classes)
    return x, y


def mlp():
    return Sequential([Dense(33, input_shape=(20,)), Activation("relu"), Dropout(0.3), Dense(17, activation="relu"),
                       Dropout(0.2), Dense(5), Activation("softmax")])


def cnn():
    return Sequential([Conv2D(4, (3, 3), activation="relu", input_shape=(9, 9, 2), data_format="channels_last"),
                       Conv2D(6, (3, 3), activation="relu"), MaxPooling2D((2, 2)), Dropout(0.25), Flatten(),
                       Dense(7, activation="relu"), Dropout(0.5), Dense(5, activation="softmax")])


def binary():
    """Three independent sigmoid outputs: binary cross-entropy from the logits, two metrics."""
    return Sequential([Dense(12, activation="relu", input_shape=(20,)), Dropout(0.2), Dense(3, activation="sigmoid")])


def save(out, name, **arrays):
    if distributed.is_primary():
        np.savez(os.path.join(out, name), **arrays)


def results(model, history, x, y):
    logs = {f"history_{k}": np.array(v) for k, v in history.history.items()}
    return dict(params=model._params, step=model.step, iterations=model.optimizer.iterations,
                predict=model.predict(x, batch_size=BATCH), evaluate=np.array(model.evaluate(x, y, batch_size=BATCH)),
                **logs)


def train(out):
    """20 steps of an MLP (RMSprop, class weights), a CNN (Adadelta) and a multi-label net (binary cross-entropy,
    sample weights, two metrics), all with dropout and shuffling, and validation."""
    for name, build, shape, optimizer in (("mlp", mlp, (20,), "rmsprop"), ("cnn", cnn, (9, 9, 2), "adadelta"),
                                          ("binary", binary, (20,), "adam")):
        fastnet.set_seed(7)
        x, y = data(shape)
        model = build()
        weights = {}
        if name == "binary":
            y = (y[:, :3] + y[:, 3:4] > 0).astype(np.float32)
            model.compile(loss="binary_crossentropy", optimizer=optimizer, metrics=["binary_accuracy", "mae"])
            weights = {"sample_weight": np.random.default_rng(1).random(len(x))}
        else:
            model.compile(optimizer=optimizer, metrics=["accuracy"])
        if name == "mlp":
            weights = {"class_weight": {0: 2.0, 3: 0.5}}  # rows keep their weights
        history = model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, validation_data=(x[:37], y[:37]),
                            **weights)
        save(out, f"{name}.npz", **results(model, history, x, y))


def infer(out):
    """predict and evaluate of an untrained model: sample counts that do not split evenly, and fewer than ranks."""
    fastnet.set_seed(3)
    model = cnn()
    model.compile(optimizer="sgd", metrics=["accuracy"])
    for n in (1, 2, 7, 50):
        x, y = data((9, 9, 2), n=n, seed=n)
        loss, acc = model.evaluate(x, y, batch_size=4)
        save(out, f"infer{n}.npz", predict=model.predict(x, batch_size=4), evaluate=np.array([loss, acc]),
             on_batch=np.array(model.train_on_batch(x, y)), params=model._params)


def files(out):
    """Only rank 0 writes files and prints the progress bar. Each rank names its own folder, so a write by any
    other rank would show."""
    mine = os.path.join(out, f"rank{distributed.rank()}")
    fastnet.set_seed(5)
    x, y = data((20,))
    model = mlp()
    model.compile(metrics=["accuracy"])
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=2, validation_data=(x[:20], y[:20]),
              callbacks=[callbacks.ModelCheckpoint(os.path.join(mine, "ckpt-{epoch}.npz"), verbose=1),
                         callbacks.CSVLogger(os.path.join(mine, "log.csv"))])
    model.save(os.path.join(out, "rank0", "model.npz"))  # every rank names rank 0's file; rank 0 writes it
    distributed.barrier()  # ...and every rank reads it once rank 0 has
    assert np.array_equal(fastnet.load_model(os.path.join(out, "rank0", "model.npz"))._params, model._params)
    with open(os.path.join(out, f"threads{distributed.rank()}.txt"), "w") as f:  # not through fastnet: every rank
        f.write(str(fastnet.get_num_threads()))


def diverged(out):
    """Rank 1's weights differ before fit: fit broadcasts rank 0's (with a warning), and the ranks stay equal."""
    fastnet.set_seed(2)
    x, y = data((20,))
    model = mlp()
    model.compile()
    if distributed.rank() == 1:
        model._params[:5] += 1.0
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    np.save(os.path.join(out, f"params{distributed.rank()}.npy"), model._params)  # every rank: to compare


def resume(out):
    """fit(epochs=3) with a checkpoint each epoch; then, from the epoch-1 checkpoint, fit(initial_epoch=1)."""
    fastnet.set_seed(11)
    x, y = data((20,))
    model = mlp()
    model.compile(metrics=["accuracy"])
    model.fit(x, y, batch_size=BATCH, epochs=3, verbose=0,
              callbacks=[callbacks.ModelCheckpoint(os.path.join(out, "ckpt-{epoch}.npz"))])
    save(out, "whole.npz", params=model._params, step=model.step)
    resumed = fastnet.load_model(os.path.join(out, "ckpt-1.npz"))
    resumed.fit(x, y, batch_size=BATCH, epochs=3, initial_epoch=1, verbose=0)
    save(out, "resumed.npz", params=resumed._params, step=resumed.step)


def fault(out, kind):
    """One rank fails in the middle of a data-parallel fit; every rank must end, soon, with one report."""
    fastnet.set_seed(1)
    x, y = data((20,))
    model = mlp()
    model.compile()
    cbs = []
    if kind == "bad_data" and distributed.rank() == 1:
        x = x.copy()
        x[5, 3] = np.nan  # this rank's data fails fit's checks; the others are already waiting
    elif kind == "other_data" and distributed.rank() == 1:
        x = x + 1.0  # valid, but not the data of the other ranks
    elif kind == "nan_loss":
        y = y.copy()
        y[BATCH - 1] *= 3e38  # a finite target whose loss is inf, in the last row of the first batch (unshuffled):
        # rank 1's share. fit's global loss is inf on every rank, so every rank raises (rank 0 reports)
    elif kind == "failed_save":
        blocker = os.path.join(out, "not_a_folder")
        open(blocker, "w").close()  # a checkpoint inside a file: rank 0 fails as training begins
        cbs = [callbacks.ModelCheckpoint(os.path.join(blocker, "ckpt.npz"))]
    elif kind == "killed":
        class Die(callbacks.Callback):
            def on_batch_end(self, batch, logs=None):
                if batch == 3 and distributed.rank() == 1:
                    os.kill(os.getpid(), signal.SIGKILL)
        cbs = [Die()]
    elif kind == "interrupted":
        class Interrupt(callbacks.Callback):
            def on_batch_end(self, batch, logs=None):
                if batch == 3 and distributed.rank() == 1:
                    raise KeyboardInterrupt
        cbs = [Interrupt()]
    elif kind == "uncaught":
        if distributed.rank() == 1:
            raise RuntimeError("rank 1 fails before fit")  # outside fastnet: the excepthook ends the job
    elif kind == "stuck_abort":
        real = distributed._comm

        class StuckAbort:  # MPICH's MPI_Abort has been seen to hang once a peer had finalized
            def __getattr__(self, name):
                return getattr(real, name)

            def Abort(self, code):
                time.sleep(3600)

        distributed._comm = StuckAbort()
        if distributed.rank() == 0:
            raise RuntimeError("rank 0 fails and its MPI_Abort hangs")
    elif kind == "one_rank_only":
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
        if distributed.is_primary():
            model.evaluate(x, y)  # a collective made by rank 0 alone: it must not wait forever
        return
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, shuffle=kind != "nan_loss", callbacks=cbs)


if __name__ == "__main__":
    scenario, out = sys.argv[1], sys.argv[2]
    distributed.overlap = os.environ.get("OVERLAP", "1") == "1"
    if scenario.startswith("fault_"):
        fault(out, scenario[len("fault_"):])
    else:
        globals()[scenario](out)
    sys.stdout.flush()
