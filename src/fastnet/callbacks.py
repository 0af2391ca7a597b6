"""Callbacks: the Keras hooks into fit(), the History it returns, and its progress output."""
import sys
import time


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


class History(Callback):
    """history[key] lists one value per epoch: loss, accuracy (and acc), val_loss, val_accuracy (val_acc)."""

    def __init__(self):
        super().__init__()
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


def _fmt_time(seconds):
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{seconds:.0f}s"


def _fmt_step(seconds):
    return f"{seconds * 1e3:.0f}ms/step" if seconds >= 1e-3 else f"{seconds * 1e6:.0f}us/step"


def _fmt_logs(logs, keys):
    return "".join(f" - {k}: {logs[k]:.4f}" for k in keys if k in logs)


class ProgressLogger(Callback):
    """Keras-style output. verbose=1: a progress bar with ETA on a terminal (one line per epoch elsewhere);
    verbose=2: one line per epoch."""

    KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")

    def __init__(self, verbose=1, stream=None):
        super().__init__()
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.live = verbose == 1 and hasattr(self.stream, "isatty") and self.stream.isatty()

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()

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
        self._write(f"\r{done:{digits}d}/{steps} [{bar}] - ETA: {_fmt_time(eta)}{_fmt_logs(logs, self.KEYS)}")

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self.t0
        steps = self.params["steps"]
        timing = f"{_fmt_time(elapsed)} {_fmt_step(elapsed / max(steps, 1))}"
        if self.verbose == 1:
            line = f"{steps}/{steps} [{'=' * 30}] - {timing}{_fmt_logs(logs, self.KEYS)}"
            self._write(("\r" if self.live else "") + line + "\n")
        else:
            self._write(f"{steps}/{steps} - {timing}{_fmt_logs(logs, self.KEYS)}\n")
