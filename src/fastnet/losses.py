"""Categorical cross-entropy, fused with the model's final softmax when there is one.

With a final softmax the loss is computed from the logits (stable for any magnitude); otherwise from the
probabilities, clipped to [eps, 1 - eps] as Keras does. Both return per-sample losses and dL/d(output)
for the batch mean.
"""
import numpy as np

from fastnet import _kernels as K
from fastnet import backend

NAMES = ("categorical_crossentropy", "sparse_categorical_crossentropy")


def check(name):
    if name not in NAMES:
        raise ValueError(f"unknown loss {name!r}; fastnet has {', '.join(NAMES)}")
    return name


class CrossEntropy:
    def __init__(self, from_logits):
        self.from_logits = from_logits
        self._buffers = {}

    def _buf(self, key, shape):
        k = (key, shape)
        if k not in self._buffers:
            self._buffers[k] = np.empty(shape, np.float32)
        return self._buffers[k]

    def forward(self, out, targets):
        """(per-sample loss, probabilities) for one batch."""
        if self.from_logits:
            probs, loss = K.softmax_xent_forward(out, targets, self._buf("p", out.shape), self._buf("l", out.shape[:1]))
            return loss, probs
        eps = backend.epsilon()
        p = np.clip(out, eps, 1 - eps)
        return -(targets * np.log(p)).sum(axis=1).astype(np.float32), out

    def backward(self, out, probs, targets):
        n = out.shape[0]
        if self.from_logits:
            return K.softmax_xent_backward(probs, targets, 1.0 / n, out=self._buf("d", out.shape))
        eps = backend.epsilon()
        inside = (out > eps) & (out < 1 - eps)  # clipping stops the gradient, as in Keras
        return (-targets / np.clip(out, eps, 1 - eps) * inside / n).astype(np.float32)
