"""Categorical cross-entropy, fused with the model's final softmax when there is one.

With a final softmax the loss is computed from the logits (stable for any magnitude); otherwise from the
probabilities, clipped to [eps, 1 - eps] as Keras does. Both return per-sample losses and dL/d(output)
for the batch mean.
"""
import numpy as np

from fastnet import _kernels
from fastnet import backend

NAMES = ("categorical_crossentropy", "sparse_categorical_crossentropy")


def check(name, where="compile"):
    if not isinstance(name, str) or name not in NAMES:
        raise ValueError(f"{where}: unknown loss {name!r}; fastnet has {', '.join(NAMES)}")
    return name


class CrossEntropy:
    """Per-sample losses and dL/d(output) of the batch mean, into arrays the caller owns (the plan's)."""

    def __init__(self, from_logits):
        self.from_logits = from_logits

    def forward(self, out, targets, probs, loss, n_threads=None):
        """Fills probs [N, C] (the softmax of out, or out itself) and loss [N]; returns (loss, probs)."""
        if self.from_logits:
            _kernels.softmax_xent_forward(out, targets, probs, loss, n_threads=n_threads)
            return loss, probs
        eps = backend.epsilon()
        p = np.clip(out, eps, 1 - eps)
        loss[...] = -(targets * np.log(p)).sum(axis=1)
        return loss, out

    def backward(self, out, probs, targets, dout, n_threads=None, batch=None):
        """dL/d(out) for the mean over a batch of `batch` samples (default: out's rows; a data-parallel rank
        holds a share of the batch, and its gradient is its share of the batch mean's)."""
        n = out.shape[0] if batch is None else batch
        if self.from_logits:
            return _kernels.softmax_xent_backward(probs, targets, 1.0 / n, out=dout, n_threads=n_threads)
        eps = backend.epsilon()
        inside = (out > eps) & (out < 1 - eps)  # clipping stops the gradient, as in Keras
        dout[...] = -targets / np.clip(out, eps, 1 - eps) * inside / n
        return dout
