"""The model's edge: what fit, evaluate, predict and train_on_batch receive, checked and converted once.

Inputs become contiguous float32 NHWC arrays (a wrong shape gets an error that names the expected shape and the
fix, channel order included); targets become float32 rows (one-hot for the cross-entropies) with their sample weights.
"""
import numpy as np

from fastnet import _check, _kernels
from fastnet.layers.base import internal_shape, public_shape


def shape_error(model, x_shape, what):
    expected = model.input_shape[1:]
    fmt = model.data_format
    msg = f"{what}: the model expects input of shape (N, {', '.join(map(str, expected))})"
    msg += f" ({fmt})" if fmt else ""
    msg += f", got {tuple(x_shape)}."
    got = tuple(x_shape[1:])
    if len(expected) == 3 and len(got) == 3 and fmt:
        last = internal_shape(expected, fmt) if fmt == "channels_first" else expected
        first = public_shape(expected, "channels_first") if fmt == "channels_last" else expected
        if fmt == "channels_first" and got == last:
            msg += (" This looks channels_last (N, rows, cols, channels): transpose it with "
                    "x.transpose(0, 3, 1, 2), or build the model with data_format='channels_last' and "
                    f"input_shape={got}.")
        elif fmt == "channels_last" and got == first:
            msg += (" This looks channels_first (N, channels, rows, cols): transpose it with "
                    "x.transpose(0, 2, 3, 1), or build the model with data_format='channels_first' and "
                    f"input_shape={got}.")
    if "This looks" not in msg and int(np.prod(got)) == int(np.prod(expected)) and len(x_shape) >= 1:
        msg += f" Reshape it with x.reshape(-1, {', '.join(map(str, expected))})."
    return ValueError(msg)


_FLOAT32 = np.dtype(np.float32)  # compared as a dtype: np.float32, a type, is made a dtype at every comparison


def prepare_x(model, x, what):
    """The input as a contiguous float32 NHWC array (converted once, at the model's edge)."""
    model._require_layers()
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype != _FLOAT32 and (x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool)):
        raise TypeError(f"{what}: x must be numeric, got dtype {x.dtype}")
    first = model.layers[0]
    if x.ndim == 0 or x.shape[1:] != public_shape(first.in_shape, first.in_fmt):
        raise shape_error(model, x.shape, what)
    if x.shape[0] == 0:
        raise ValueError(f"{what}: x is empty (0 samples)")
    x = np.ascontiguousarray(x, dtype=_FLOAT32)
    bad = _kernels.first_nonfinite(x)
    if bad >= 0:
        raise ValueError(f"{what}: x contains NaN or inf (first at index "
                         f"{tuple(int(i) for i in np.unravel_index(bad, x.shape))})")
    if first.in_fmt == "channels_first" and x.ndim == 4:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return x


def prepare_y(model, y, n, what):
    """The loss's targets as float32 rows (N, outputs): one-hot rows for the cross-entropies (sparse labels
    expanded), the targets themselves for the elementwise losses ((N,) too when the model has one output)."""
    outputs = model.layers[-1].out_shape[0]
    y = np.asarray(y)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise TypeError(f"{what}: y must be numeric, got dtype {y.dtype}")
    loss = model._loss.name
    if loss == "sparse_categorical_crossentropy":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or np.all(np.mod(y, 1) == 0)):
            raise ValueError(f"{what}: sparse_categorical_crossentropy needs integer labels of shape (N,), "
                             f"got {y.dtype} {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= outputs):
            raise ValueError(f"{what}: labels must be in [0, {outputs}), got values in [{y.min()}, {y.max()}]")
        onehot = np.zeros((y.shape[0], outputs), np.float32)
        onehot[np.arange(y.shape[0]), y.astype(np.int64)] = 1.0
        y = onehot
    else:
        if loss == "categorical_crossentropy" and (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1
                                                                         and outputs != 1)):
            raise ValueError(f"{what}: categorical_crossentropy needs one-hot targets of shape (N, {outputs}), "
                             f"got {y.shape}: use fastnet.utils.to_categorical(y, {outputs}) or "
                             "loss='sparse_categorical_crossentropy'")
        if y.ndim == 1 and outputs == 1:
            y = y[:, None]  # (N,) against a single output (Keras)
        if y.ndim != 2 or y.shape[1] != outputs:
            raise ValueError(f"{what}: targets have shape {y.shape} but the model outputs "
                             f"{model.output_shape}: expected (N, {outputs})")
        y = y.astype(np.float32, copy=False)
        if not np.isfinite(y).all():
            raise ValueError(f"{what}: y contains NaN or inf")
    if y.shape[0] != n:
        raise ValueError(f"{what}: x has {n} samples but y has {y.shape[0]}; they must match")
    return np.ascontiguousarray(y)


def targets(model, y, n, sample_weight, class_weight, what):
    """(Y, W, T): the loss's targets and per-sample weights (None: all ones) as model._loss takes them, and the
    unweighted targets the metrics compare with. Keras's weighting: a batch's loss is sum(weight * per-sample
    loss) / batch size, and its gradient follows; metrics are not weighted."""
    T = prepare_y(model, y, n, what)
    W = sample_weights(T, sample_weight, class_weight, what)
    Y, W = model._loss.weigh(T, W)
    return Y, W, T


def sample_weights(T, sample_weight, class_weight, what):
    """One float32 weight per sample, or None (no weights given)."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError(f"{what}: pass sample_weight or class_weight, not both (Keras); multiply them into "
                         "sample_weight yourself")
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise TypeError(f"{what}: class_weight must be a dict {{class index: weight}}, got "
                            f"{type(class_weight).__name__}")
        classes = max(T.shape[1], 2)  # one output: classes 0 and 1 (Keras)
        table = np.ones(classes, np.float64)  # a class the dict does not name weighs 1 (Keras)
        for cls, w in class_weight.items():
            cls = _check.integer(cls, "class_weight key", 0, classes - 1, what)
            table[cls] = _check.real(w, f"class_weight[{cls}]", 0.0, where=what)
        labels = T.argmax(1) if T.shape[1] > 1 else np.rint(T[:, 0]).clip(0, 1).astype(np.int64)
        return table[labels].astype(np.float32)
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight)
    if weights.dtype == object or not (np.issubdtype(weights.dtype, np.number) or weights.dtype == bool):
        raise TypeError(f"{what}: sample_weight must be numeric, got dtype {weights.dtype}")
    if weights.ndim == 2 and weights.shape[1] == 1:
        weights = weights[:, 0]
    if weights.shape != (T.shape[0],):
        raise ValueError(f"{what}: sample_weight must have shape ({T.shape[0]},), one weight per sample, got "
                         f"{weights.shape}")
    if not (np.isfinite(weights).all() and (weights >= 0).all()):
        raise ValueError(f"{what}: sample_weight must be finite and >= 0")
    return np.ascontiguousarray(weights, dtype=np.float32)
