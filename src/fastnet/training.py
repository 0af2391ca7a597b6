"""The training loop, written once: fit's epochs over a rank-aware batch iterator, and one optimizer step.

Sequential.fit checks Keras's arguments and prepares the arrays; fit_loop runs the epochs (shuffling, callbacks,
validation, a diverged loss); Batches hands each process its rows of every batch, gathered into the plan's
memory; train_step is one optimizer step, for fit and train_on_batch alike. In one process a step is one call
into C where the loss has a kernel; data-parallel (fastnet.distributed), or with a loss computed in numpy, it is
the forward, the loss, and the backward with the reducer's hooks (which sum the gradients over the ranks as the
backward finishes each step's slice), then the update.
"""
import math

import numpy as np

from fastnet import _kernels, _seed
from fastnet.callbacks import History, ProgressLogger, TerminateOnNaN


class OneProcess:
    """A step's reducer in one process: nothing to sum over ranks (distributed.StepReducer's interface)."""

    distributed = False

    def begin(self, loss_sum, metric_sums):
        self.totals = loss_sum, metric_sums

    def finish(self):
        return self.totals


def train_step(model, plan, xb, yb, wb, tb, reducer=None, batch=None, row0=0):
    """One optimizer step; returns (sum of per-sample losses, metric sums) before the update.
    yb, wb: the loss's targets and sample weights (None: all ones); tb: the targets metrics compare with
    (see _model_inputs.targets). A NaN or inf loss returns before the update: the weights stay the last good
    ones. Data-parallel (reducer a distributed.StepReducer): xb, yb, wb, tb are this rank's rows row0.. (maybe
    none) of a global batch of `batch`; the loss, sums and gradients returned and applied are the global batch's,
    on every rank."""
    n, nt, loss_fn, opt = xb.shape[0], plan.program.n_threads, model._loss, model.optimizer
    if reducer is None and loss_fn.kernel is not None:  # the whole step in one call into C
        plan.bind_training(loss_fn.kernel, opt.kernel, model._params, model._grads, opt.slots,
                           (model._step, opt._iterations))
        plan.train_step(xb, yb, wb, opt.current_lr(), opt.kernel_hyper(), opt.iterations + 1, model.model_id,
                        model.step)
        out = plan.program.output(n)
        probs, loss, _ = plan.loss_arrays(n, out.shape[1])
        return float(loss.sum(dtype=np.float64)), model._metric_sums(out, probs if loss_fn.makes_probs else out, tb)
    reducer = reducer or OneProcess()
    loss_sum, sums = 0.0, np.zeros(len(model._metrics))
    if n:
        out = plan.forward(xb, True, model.model_id, model.step, row0)
        probs, loss, dout = plan.loss_arrays(n, out.shape[1])
        loss, probs = loss_fn.forward(out, yb, wb, probs, loss, n_threads=nt)
        loss_sum = float(loss.sum(dtype=np.float64))
        sums = model._metric_sums(out, probs, tb)
    reducer.begin(loss_sum, sums)
    if not n:  # a rank with no rows of this batch adds zeros to the others' gradients
        model._grads.fill(0.0)
    elif reducer.distributed or math.isfinite(loss_sum):  # one process skips the backward of a step it won't apply
        dy = loss_fn.backward(out, probs, yb, wb, dout, n_threads=nt, batch=batch)
        plan.backward(dy, done=reducer.step_done if reducer.distributed else None)
    loss_sum, sums = reducer.finish()
    if not math.isfinite(loss_sum):
        return loss_sum, sums
    opt.apply(model._params, model._grads, n_threads=nt, counters=(model._step,))
    return loss_sum, sums


class Batches:
    """The batches of fit's epochs as this process computes them: each batch's rows in the epoch's order, this
    rank's share of them (all of them in one process), gathered into the plan's memory."""

    def __init__(self, model, plan, arrays, batch_size, rows):
        """arrays: (X, Y, W or None, T, where T may be Y itself); rows: the rows of a batch this process computes."""
        self.model, self.arrays, self.batch_size = model, arrays, batch_size
        self.steps = math.ceil(arrays[0].shape[0] / batch_size)
        self.n_threads = plan.program.n_threads
        X, Y, W, T = arrays
        ybuf = plan.buffers.get("y", Y.shape[1:], rows)
        self.buffers = (plan.buffers.get("x", X.shape[1:], rows), ybuf,
                        None if W is None else plan.buffers.get("w", (), rows),
                        ybuf if T is Y else plan.buffers.get("t", T.shape[1:], rows))

    def epoch(self, order):
        """(batch index, the batch's global size, this share's first row, (xb, yb, wb, tb)) for each batch."""
        for b in range(self.steps):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            lo, hi = self.model._share(len(idx))
            yield b, len(idx), lo, self._gather(idx[lo:hi])

    def _gather(self, rows):
        (X, Y, W, T), (xbuf, ybuf, wbuf, tbuf), nt, n = self.arrays, self.buffers, self.n_threads, len(rows)
        xb = _kernels.gather_rows(X, rows, xbuf[:n], n_threads=nt)
        yb = _kernels.gather_rows(Y, rows, ybuf[:n], n_threads=nt)
        wb = None if W is None else _kernels.gather_rows(W, rows, wbuf[:n], n_threads=nt)
        tb = yb if T is Y else _kernels.gather_rows(T, rows, tbuf[:n], n_threads=nt)
        return xb, yb, wb, tb


def fit_loop(model, train, validation, batch_size, rows, epochs, initial_epoch, shuffle, verbose, callbacks,
             is_primary):
    """fit's epochs: train (X, Y, W, T) in batches of batch_size (rows of which this process computes), then
    validation (the same four, or None) after each epoch, with the callbacks; returns the History."""
    n = train[0].shape[0]
    history = History()
    bar = verbose and is_primary
    cbs = [history] + ([ProgressLogger(verbose)] if bar else []) + callbacks
    plan = model._begin_call(rows, training=True)
    batches = Batches(model, plan, train, batch_size, rows)
    for cb in cbs:
        cb.set_model(model)
        cb.set_params({"epochs": epochs, "steps": batches.steps, "batch_size": batch_size, "samples": n,
                       "verbose": verbose})
    model.history = history
    model.stop_training = False
    reducer = model._reducer(plan)
    for cb in cbs:
        cb.on_train_begin()
    for epoch in range(initial_epoch, epochs):  # epoch: the number logs and callbacks see (Keras)
        for cb in cbs:
            cb.on_epoch_begin(epoch)
        # Keyed by the model's own count, not the loop's: fit(epochs=1) twice shuffles like fit(epochs=2).
        order = (_seed.generator(model.seed, model.model_id, 1, model.epochs_trained).permutation(n) if shuffle
                 else np.arange(n))
        total, sums, seen, nan_stopped = 0.0, np.zeros(len(model._metrics)), 0, False
        for b, size, row0, (xb, yb, wb, tb) in batches.epoch(order):
            for cb in cbs:
                cb.on_batch_begin(b)
            loss_sum, batch_sums = model._train_step(plan, xb, yb, wb, tb, reducer, size, row0)
            if not math.isfinite(loss_sum):
                where = f"epoch {epoch + 1}, batch {b + 1}/{batches.steps}"
                nan_stop = [cb for cb in cbs if isinstance(cb, TerminateOnNaN)]
                if not nan_stop:
                    raise FloatingPointError(
                        f"fit: the loss became {loss_sum / size} at {where}: training diverged; the weights are "
                        "those before this batch. Lower the learning rate, or check the data for extreme values "
                        "(fastnet.callbacks.TerminateOnNaN stops quietly instead)")
                nan_stop[0].terminated_at = (epoch, b)
                if bar:
                    print(f"\n{where}: invalid loss {loss_sum / size}, terminating training")
                model.stop_training = nan_stopped = True
                break
            total, sums, seen = total + loss_sum, sums + batch_sums, seen + size
            batch_logs = model._logs(total / seen, sums / seen)
            for cb in cbs:
                cb.on_batch_end(b, batch_logs)
        if nan_stopped:  # the epoch did not finish: no epoch end, no validation
            break
        model.epochs_trained += 1  # before the callbacks: a checkpoint saved now resumes with the next epoch
        logs = model._logs(total / seen, sums / seen)
        if validation is not None:
            logs.update(model._logs(*model._evaluate_arrays(plan, *validation, rows), prefix="val_"))
        for cb in cbs:
            cb.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    for cb in cbs:
        cb.on_train_end()
    return history
