"""One-hot encoding (fastnet.utils.to_categorical, and Keras 1's np_utils spelling of it)."""
import numpy as np

from fastnet import _check


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot encode integer class labels: shape (..., num_classes)."""
    y = np.asarray(y)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise TypeError(f"to_categorical expects integer class labels, got dtype {y.dtype}")
    if not np.isfinite(y).all():
        raise ValueError("to_categorical: labels contain NaN or inf")
    if num_classes is not None:
        num_classes = _check.integer(num_classes, "num_classes", 1, where="to_categorical", allow_float=True)
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"to_categorical expects integer class labels, got dtype {y.dtype} with fractions")
    y = y.astype(np.int64)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical: labels must be >= 0, got {y.min()}")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    elif y.size and y.max() >= num_classes:
        raise ValueError(f"to_categorical: label {y.max()} is out of range for num_classes={num_classes}")
    out = np.zeros(y.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out
