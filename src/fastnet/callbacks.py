"""Callbacks: the Keras hooks into fit() (and its callbacks and verbose arguments), the History it returns, and its
progress output."""
import os
import sys
import time

from fastnet import _check, _io, distributed, metrics, saving


class Callback:
    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...


def check_verbose(verbose, where):
    """0 (silent), 1 (a progress bar) or 2 (a line per epoch); Keras's 'auto' is 1."""
    if type(verbose) is int and 0 <= verbose <= 2:  # the common case, first: predict checks it on every call
        return verbose
    if isinstance(verbose, str) and verbose == "auto":
        return 1
    return _check.integer(verbose, "verbose", 0, 2, where)


def check_callbacks(callbacks):
    """fit's callbacks argument: None or a list of Callback instances."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"fit: callbacks must be a list of fastnet.callbacks.Callback, got {type(callbacks).__name__}")
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"fit: callbacks must be fastnet.callbacks.Callback instances, got {type(cb).__name__}")
    return list(callbacks)


class History(Callback):
    """history[key] lists one value per epoch: loss, accuracy (and acc), val_loss, val_accuracy (val_acc).

    Each epoch is recorded by one list append, so a fit cut short (KeyboardInterrupt, an error) leaves whole
    epochs only: model.history then holds every epoch that finished."""

    def __init__(self):
        super().__init__()
        self.records = []  # (epoch, logs) per finished epoch

    def on_epoch_end(self, epoch, logs=None):
        self.records.append((epoch, dict(logs or {})))

    @property
    def epoch(self):
        return [epoch for epoch, _ in self.records]

    @property
    def history(self):
        history = {}
        for _, logs in self.records:
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
        return history


def _fmt_time(seconds):
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{seconds:.0f}s"


def _fmt_step(seconds):
    return f"{seconds * 1e3:.0f}ms/step" if seconds >= 1e-3 else f"{seconds * 1e6:.0f}us/step"


def _fmt_logs(logs, hidden=()):
    """Every log in order but the hidden ones (aliases of a value shown already)."""
    return "".join(f" - {k}: {v:.4f}" for k, v in logs.items() if k not in hidden)


class ProgressLogger(Callback):
    """Keras-style output. verbose=1: a progress bar with ETA on a terminal (one line per epoch elsewhere);
    verbose=2: one line per epoch."""

    def __init__(self, verbose=1, stream=None):
        super().__init__()
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.live = verbose == 1 and hasattr(self.stream, "isatty") and self.stream.isatty()

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()

    def on_train_begin(self, logs=None):
        self.hidden = metrics.aliases(getattr(self.model, "_metrics", []))

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = self.last = time.perf_counter()
        self._write(f"Epoch {epoch + 1}/{self.params['epochs']}\n")

    def on_batch_end(self, batch, logs=None):
        if not self.live:
            return
        now = time.perf_counter()
        steps = self.params["steps"]
        if now - self.last < 0.1 and batch + 1 < steps:
            return
        self.last = now
        done = batch + 1
        width = 30
        filled = int(width * done / steps)
        bar = "=" * max(filled - 1, 0) + (">" if filled < width else "=") + "." * (width - filled)
        eta = (now - self.t0) / done * (steps - done)
        digits = len(str(steps))
        self._write(f"\r{done:{digits}d}/{steps} [{bar}] - ETA: {_fmt_time(eta)}{_fmt_logs(logs, self.hidden)}")

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self.t0
        steps = self.params["steps"]
        timing = f"{_fmt_time(elapsed)} {_fmt_step(elapsed / max(steps, 1))}"
        if self.verbose == 1:
            line = f"{steps}/{steps} [{'=' * 30}] - {timing}{_fmt_logs(logs, self.hidden)}"
            self._write(("\r" if self.live else "") + line + "\n")
        else:
            self._write(f"{steps}/{steps} - {timing}{_fmt_logs(logs, self.hidden)}\n")


def _improved(mode, current, best, min_delta):
    return current < best - min_delta if mode == "min" else current > best + min_delta


def _mode(mode, monitor, where):
    _check.choice(mode, "mode", ("auto", "min", "max"), where)
    if not isinstance(monitor, str):
        raise TypeError(f"{where}: monitor must be the name of a logged value such as 'val_loss', got {monitor!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than min_delta for `patience` epochs; optionally put back
    the weights of the best epoch."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 restore_best_weights=False):
        super().__init__()
        self.mode = _mode(mode, monitor, "EarlyStopping")
        self.monitor, self.verbose = monitor, verbose
        self.min_delta = abs(_check.real(min_delta, "min_delta", where="EarlyStopping"))
        self.patience = _check.integer(patience, "patience", 0, where="EarlyStopping")
        self.restore_best_weights = _check.boolean(restore_best_weights, "restore_best_weights", "EarlyStopping")

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_weights = 0, 0, None
        self.best = float("inf") if self.mode == "min" else -float("inf")

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor not in (logs or {}):
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which fit does not report; it reports "
                             f"{sorted(logs or {})} (val_* needs validation_data)")
        current = logs[self.monitor]
        if _improved(self.mode, current, self.best, self.min_delta):
            self.best, self.wait = current, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)
            if self.verbose and distributed.is_primary():
                print(f"Epoch {epoch + 1}: early stopping ({self.monitor} best {self.best:.4f})")


class ModelCheckpoint(Callback):
    """Save the model (atomically: a crash never leaves a half-written file) after every epoch, or only when
    `monitor` improves. filepath may hold Keras-style fields: 'ckpt-{epoch:02d}-{val_loss:.3f}.npz'."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, mode="auto",
                 save_weights_only=False):
        super().__init__()
        self.filepath = _check.path(filepath, "filepath", "ModelCheckpoint")
        self.monitor, self.verbose = monitor, verbose
        self.save_best_only = _check.boolean(save_best_only, "save_best_only", "ModelCheckpoint")
        self.save_weights_only = _check.boolean(save_weights_only, "save_weights_only", "ModelCheckpoint")
        self.mode = _mode(mode, monitor, "ModelCheckpoint")
        self.best = float("inf") if self.mode == "min" else -float("inf")
        if self.save_weights_only and not self.filepath.endswith(saving.WEIGHTS_EXTENSION):
            raise ValueError(f"ModelCheckpoint: {self.filepath!r}: with save_weights_only=True the file name must "
                             "end in .weights.h5 (Keras 3's weights format)")
        if not self.save_weights_only and not self.filepath.endswith(saving.MODEL_EXTENSIONS):
            legacy = " (Keras 2's .h5/.hdf5 model files are not supported)" if \
                self.filepath.endswith((".h5", ".hdf5")) else ""
            raise ValueError(f"ModelCheckpoint: {self.filepath!r}: fastnet saves checkpoints as .keras (Keras 3's "
                             f"format) or .npz (fastnet's own, exact resume){legacy}, e.g. "
                             "'weights.{epoch:02d}.keras'; weights alone: save_weights_only=True and .weights.h5")

    def on_train_begin(self, logs=None):
        """The checkpoints' folder is made, and checked to be writable, before the first epoch trains."""
        if distributed.is_primary():
            fixed = self.filepath.split("{", 1)[0]  # the part of the path no epoch's values change
            _io.check_writable(self.filepath, "ModelCheckpoint", os.path.abspath(os.path.dirname(fixed) or "."))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"ModelCheckpoint: filepath {self.filepath!r} cannot be filled in from epoch and the "
                             f"logged values {sorted(logs)} ({type(e).__name__}: {e})") from None
        if self.save_best_only:
            if self.monitor not in logs:
                raise ValueError(f"ModelCheckpoint monitors {self.monitor!r}, which fit does not report; it reports "
                                 f"{sorted(logs)} (val_* needs validation_data)")
            if not _improved(self.mode, logs[self.monitor], self.best, 0.0):
                return
            self.best = logs[self.monitor]
        (self.model.save_weights if self.save_weights_only else self.model.save)(path)
        if self.verbose and distributed.is_primary():
            print(f"Epoch {epoch + 1}: saved {'weights' if self.save_weights_only else 'model'} to {path}")


class CSVLogger(Callback):
    """One CSV row per epoch (epoch, then the logged values). The file is rewritten whole, atomically, after
    each epoch, so it is never left with a partial line; append=True continues an existing file."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = _check.path(filename, "filename", "CSVLogger")
        if not isinstance(separator, str) or not separator:
            raise TypeError(f"CSVLogger: separator must be a non-empty string, got {separator!r}")
        self.separator, self.append = separator, _check.boolean(append, "append", "CSVLogger")

    def on_train_begin(self, logs=None):
        """The log is opened as Keras opens it, before the first epoch: made empty, or kept with append=True; a
        path that cannot be written fails here."""
        self.lines = []
        if self.append and os.path.exists(self.filename):
            with open(self.filename) as f:
                self.lines = f.read().splitlines()
        self.keys = None
        if distributed.is_primary():
            _io.check_writable(self.filename, "CSVLogger")
            self._write()

    def _write(self):
        text = "".join(line + "\n" for line in self.lines)
        _io.atomic_write(self.filename, lambda f: f.write(text.encode()))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            header = self.separator.join(["epoch"] + self.keys)
            if not self.lines:
                self.lines.append(header)
        self.lines.append(self.separator.join([str(epoch)] + [f"{logs.get(k, float('nan')):.6g}" for k in self.keys]))
        self._write()


class TerminateOnNaN(Callback):
    """With this callback, a NaN or inf loss ends fit quietly (keeping the last good weights and the history)
    instead of raising FloatingPointError."""

    def __init__(self):
        super().__init__()
        self.terminated_at = None
