"""The losses: categorical cross-entropy (plain and sparse), mean squared error, mean absolute error and binary
cross-entropy, each as Keras computes it (per-sample loss, then the batch mean of the sample-weighted losses).

A loss that can take over the model's final activation does: categorical cross-entropy computes a final
softmax from the logits, binary cross-entropy a final sigmoid (stable for any magnitude). Otherwise they read
probabilities, clipped to [eps, 1 - eps] as Keras does. forward() returns per-sample losses and the model's
output probabilities; backward() dL/d(output) for the batch mean.

Sample weights: cross-entropy is linear in its targets, so its weights are folded into the one-hot targets once
(weigh()); the elementwise losses take them per row in their kernels.
"""
import numpy as np

from fastnet import _kernels
from fastnet import backend

ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}
NAMES = ("categorical_crossentropy", "sparse_categorical_crossentropy", "mean_squared_error", "mean_absolute_error",
         "binary_crossentropy")


def check(name, where="compile"):
    """The loss's canonical name (Keras's short spellings 'mse' and 'mae' are accepted)."""
    if isinstance(name, str) and ALIASES.get(name, name) in NAMES:
        return ALIASES.get(name, name)
    raise ValueError(f"{where}: unknown loss {name!r}; fastnet has {', '.join(NAMES)} (and 'mse', 'mae')")


def get(name, final_activation):
    """The loss object for a canonical name and the model's final activation ('softmax', 'sigmoid' or None)."""
    name = check(name)
    if name in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        loss = CrossEntropy(from_logits=final_activation == "softmax")
    elif name == "binary_crossentropy":
        loss = BinaryCrossEntropy(from_logits=final_activation == "sigmoid")
    else:
        loss = Pointwise({"mean_squared_error": "squared", "mean_absolute_error": "absolute"}[name])
    loss.name = name
    return loss


class Loss:
    """Per-sample losses and dL/d(output) of the batch mean, into arrays the caller owns (the plan's).
    takes_over: the final activation this loss computes itself from the logits (None: none)."""

    name = None  # the canonical name (get() sets it)
    takes_over = None
    kernel = None  # the C program's name for this loss (Program.set_loss), or None: computed in numpy
    makes_probs = False  # forward fills the probabilities array (else the probabilities are the outputs)

    def weigh(self, targets, weights):
        """(targets, per-row weights or None) as forward and backward take them."""
        return targets, weights


class CrossEntropy(Loss):
    def __init__(self, from_logits):
        self.from_logits = from_logits
        self.takes_over = "softmax" if from_logits else None
        self.kernel = "softmax_xent" if from_logits else None
        self.makes_probs = from_logits

    def weigh(self, targets, weights):
        """w * -sum(t log p) = -sum((w t) log p), and the gradient p * sum(w t) - w t = w (p sum(t) - t)."""
        if weights is None:
            return targets, None
        return np.ascontiguousarray(targets * weights.astype(np.float32)[:, None]), None

    def forward(self, out, targets, weights, probs, loss, n_threads=None):
        """Fills probs [N, C] (the softmax of out, or out itself) and loss [N]; returns (loss, probs)."""
        if self.from_logits:
            _kernels.softmax_xent_forward(out, targets, probs, loss, n_threads=n_threads)
            return loss, probs
        eps = backend.epsilon()
        p = np.clip(out, eps, 1 - eps)
        loss[...] = -(targets * np.log(p)).sum(axis=1)
        return loss, out

    def backward(self, out, probs, targets, weights, dout, n_threads=None, batch=None):
        """dL/d(out) for the mean over a batch of `batch` samples (default: out's rows; a data-parallel rank
        holds a share of the batch, and its gradient is its share of the batch mean's)."""
        n = out.shape[0] if batch is None else batch
        if self.from_logits:
            return _kernels.softmax_xent_backward(probs, targets, 1.0 / n, out=dout, n_threads=n_threads)
        eps = backend.epsilon()
        inside = (out > eps) & (out < 1 - eps)  # clipping stops the gradient, as in Keras
        dout[...] = -targets / np.clip(out, eps, 1 - eps) * inside / n
        return dout


class Pointwise(Loss):
    """Mean squared or mean absolute error: each sample's mean over its outputs."""

    def __init__(self, kind):
        self.kind = self.kernel = kind

    def forward(self, out, targets, weights, probs, loss, n_threads=None):
        _kernels.pointwise_loss_forward(self.kind, out, targets, weights, loss=loss, n_threads=n_threads)
        return loss, out

    def backward(self, out, probs, targets, weights, dout, n_threads=None, batch=None):
        n = out.shape[0] if batch is None else batch
        return _kernels.pointwise_loss_backward(self.kind, out, targets, 1.0 / n, weights, dout=dout,
                                                n_threads=n_threads)


class BinaryCrossEntropy(Loss):
    """Each sample's mean over its outputs of -(t log p + (1 - t) log(1 - p)); from the logits (the kernel's
    max(z, 0) - z t + log(1 + exp(-|z|))) when the model ends in a sigmoid."""

    def __init__(self, from_logits):
        self.from_logits = from_logits
        self.takes_over = "sigmoid" if from_logits else None
        self.kernel = "sigmoid_xent" if from_logits else None
        self.makes_probs = from_logits

    def forward(self, out, targets, weights, probs, loss, n_threads=None):
        if self.from_logits:
            _kernels.pointwise_loss_forward("sigmoid_xent", out, targets, weights, loss=loss, probs=probs,
                                            n_threads=n_threads)
            return loss, probs
        eps = backend.epsilon()
        p = np.clip(out, eps, 1 - eps)
        per = -(targets * np.log(p) + (1 - targets) * np.log(1 - p)).mean(axis=1)
        loss[...] = per if weights is None else per * weights
        return loss, out

    def backward(self, out, probs, targets, weights, dout, n_threads=None, batch=None):
        n = out.shape[0] if batch is None else batch
        if self.from_logits:
            return _kernels.pointwise_loss_backward("sigmoid_xent", out, targets, 1.0 / n, weights, probs=probs,
                                                    dout=dout, n_threads=n_threads)
        eps = backend.epsilon()
        p = np.clip(out, eps, 1 - eps)
        inside = (out > eps) & (out < 1 - eps)
        scale = (1.0 / (n * out.shape[1])) * (1.0 if weights is None else weights[:, None])
        dout[...] = (p - targets) / (p * (1 - p)) * inside * scale
        return dout
