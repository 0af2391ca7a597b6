"""The spec: plain float64 numpy forward and backward of every kernel.

Slow and obviously correct. Activations are NHWC, conv kernels (KH, KW, C, OC), as in the C kernels.
Backward functions take the upstream gradient and return gradients of every input.
"""
import numpy as np

ACTS = ("linear", "relu", "sigmoid", "tanh")


def f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def round_bf16(x):
    """float32 values rounded to the nearest bfloat16, ties to even (as float32 arrays with the low 16 bits
    zero): what mixed_bfloat16 makes of every product operand."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    u = np.where(nan, u | 0x00400000, u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None):
    a, b = f64(a, b)
    out = alpha * ((a.T if trans_a else a) @ (b.T if trans_b else b))
    if beta != 0.0:
        out = out + beta * np.asarray(c, dtype=np.float64)
    return out


# ---- activations ----

def activation_forward(x, act, alpha=0.0):
    """act(x); alpha: a parametric activation's parameter."""
    (x,) = f64(x)
    if act == "relu":
        return np.maximum(x, 0.0)
    if act == "leaky_relu":
        return np.where(x > 0, x, alpha * x)
    if act == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if act == "tanh":
        return np.tanh(x)
    return x.copy()


def activation_backward(dy, y, act, alpha=0.0):
    """dL/dx from dy and the forward's output y."""
    dy, y = f64(dy, y)
    if act == "relu":
        return dy * (y > 0)
    if act == "leaky_relu":
        return np.where(y > 0, dy, alpha * dy)
    if act == "sigmoid":
        return dy * y * (1.0 - y)
    if act == "tanh":
        return dy * (1.0 - y * y)
    return dy.copy()


def softmax_forward(x):
    (x,) = f64(x)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_backward(dy, y):
    dy, y = f64(dy, y)
    return y * (dy - (dy * y).sum(axis=1, keepdims=True))


# ---- dense ----

def dense_forward(x, w, b=None, act="linear"):
    x, w = f64(x, w)
    z = x @ w + (0.0 if b is None else np.asarray(b, dtype=np.float64))
    return activation_forward(z, act)


def dense_backward(dy, x, w):
    """Gradients of z = x w + b given dy = dL/dz."""
    dy, x, w = f64(dy, x, w)
    return dy @ w.T, x.T @ dy, bias_backward(dy)


def bias_backward(dy):
    """dL/db of z = y + b (b broadcast over the rows of a 2-D dy)."""
    (dy,) = f64(dy)
    return dy.sum(axis=0)


# ---- conv2d (TensorFlow's 'valid' / 'same' geometry) ----

def conv_geometry(size, kernel, stride, padding):
    if padding == "valid":
        return (size - kernel) // stride + 1, 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _conv_setup(x_shape, w_shape, strides, padding):
    _, H, W, _ = x_shape
    KH, KW, _, _ = w_shape
    OH, pt, pb = conv_geometry(H, KH, strides[0], padding)
    OW, pl, pr = conv_geometry(W, KW, strides[1], padding)
    return OH, OW, ((0, 0), (pt, pb), (pl, pr), (0, 0))


def _window(xp, kh, kw, OH, OW, strides):
    sh, sw = strides
    return xp[:, kh:kh + sh * (OH - 1) + 1:sh, kw:kw + sw * (OW - 1) + 1:sw, :]


def conv2d_forward(x, w, b=None, strides=(1, 1), padding="valid", act="linear"):
    x, w = f64(x, w)
    OH, OW, pads = _conv_setup(x.shape, w.shape, strides, padding)
    xp = np.pad(x, pads)
    y = np.zeros((x.shape[0], OH, OW, w.shape[3]))
    for kh in range(w.shape[0]):
        for kw in range(w.shape[1]):
            y += _window(xp, kh, kw, OH, OW, strides) @ w[kh, kw]
    if b is not None:
        y += np.asarray(b, dtype=np.float64)
    return activation_forward(y, act)


def conv2d_backward_data(dy, w, x_shape, strides=(1, 1), padding="valid"):
    """dL/dx of y = conv(x, w) + b given dy = dL/dy."""
    return _conv2d_backward(dy, np.zeros(x_shape), w, strides, padding)[0]


def conv2d_backward_filter(dy, x, kernel_size, strides=(1, 1), padding="valid"):
    """(dL/dw, dL/db) of y = conv(x, w) + b given dy = dL/dy."""
    w = np.zeros((*kernel_size, x.shape[3], dy.shape[3]))
    return _conv2d_backward(dy, x, w, strides, padding)[1:]


def conv2d_forward_maxpool(x, w, b=None, strides=(1, 1), padding="valid"):
    """(y, argmax): a 2x2 max-pool of stride 2 of relu(conv(x, w) + b)."""
    return maxpool2d_forward(conv2d_forward(x, w, b, strides, padding, "relu"), (2, 2))


def _conv2d_backward(dy, x, w, strides, padding):
    """(dx, dw, db) of y = conv(x, w) + b given dy = dL/dy."""
    dy, x, w = f64(dy, x, w)
    OH, OW, pads = _conv_setup(x.shape, w.shape, strides, padding)
    xp = np.pad(x, pads)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for kh in range(w.shape[0]):
        for kw in range(w.shape[1]):
            _window(dxp, kh, kw, OH, OW, strides)[...] += dy @ w[kh, kw].T
            dw[kh, kw] = np.einsum("nhwc,nhwo->co", _window(xp, kh, kw, OH, OW, strides), dy)
    (pt, _), (pl, _) = pads[1], pads[2]
    dx = dxp[:, pt:pt + x.shape[1], pl:pl + x.shape[2], :]
    return dx, dw, dy.sum(axis=(0, 1, 2))


# ---- max pooling ----

def maxpool2d_forward(x, pool=(2, 2), strides=None, padding="valid"):
    """(y, argmax) with argmax the flat NHWC offset inside each image; ties go to the first maximum."""
    (x,) = f64(x)
    strides = strides or pool
    N, H, W, C = x.shape
    OH, pt, _ = conv_geometry(H, pool[0], strides[0], padding)
    OW, pl, _ = conv_geometry(W, pool[1], strides[1], padding)
    y = np.zeros((N, OH, OW, C))
    arg = np.zeros((N, OH, OW, C), dtype=np.int64)
    for oh in range(OH):
        h0, h1 = max(0, oh * strides[0] - pt), min(H, oh * strides[0] - pt + pool[0])
        for ow in range(OW):
            w0, w1 = max(0, ow * strides[1] - pl), min(W, ow * strides[1] - pl + pool[1])
            win = x[:, h0:h1, w0:w1, :].reshape(N, -1, C)
            k = win.argmax(axis=1)  # first maximum in row-major window order
            y[:, oh, ow, :] = np.take_along_axis(win, k[:, None, :], axis=1)[:, 0, :]
            ih, iw = h0 + k // (w1 - w0), w0 + k % (w1 - w0)
            arg[:, oh, ow, :] = (ih * W + iw) * C + np.arange(C)
    return y, arg


def maxpool2d_backward(dy, argmax, x_shape):
    (dy,) = f64(dy)
    N = x_shape[0]
    dx = np.zeros((N, int(np.prod(x_shape[1:]))))
    for n in range(N):
        np.add.at(dx[n], argmax[n].ravel(), dy[n].ravel())
    return dx.reshape(x_shape)


# ---- softmax + cross-entropy ----

def softmax_xent_forward(logits, targets):
    z, t = f64(logits, targets)
    m = z.max(axis=1, keepdims=True)
    logp = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    return np.exp(logp), -(t * logp).sum(axis=1)


def softmax_xent_backward(probs, targets, scale):
    p, t = f64(probs, targets)
    return scale * (p * t.sum(axis=1, keepdims=True) - t)


def pointwise_loss_forward(kind, out, targets, weights=None):
    """(per-sample loss, probs or None): each row's mean over its outputs, times its weight (Keras's
    mean_squared_error, mean_absolute_error, binary_crossentropy from logits)."""
    o, t = f64(out, targets)
    w = np.ones(o.shape[0]) if weights is None else f64(weights)[0]
    probs = None
    if kind == "squared":
        per = (o - t) ** 2
    elif kind == "absolute":
        per = np.abs(o - t)
    else:
        probs = 1.0 / (1.0 + np.exp(-o))
        per = np.maximum(o, 0) - o * t + np.log1p(np.exp(-np.abs(o)))
    return per.mean(axis=1) * w, probs


def pointwise_loss_backward(kind, out, targets, scale, weights=None, probs=None):
    """d(scale * sum of the per-sample losses)/d(out)."""
    o, t = f64(out, targets)
    w = (np.ones(o.shape[0]) if weights is None else f64(weights)[0])[:, None] * scale / o.shape[1]
    if kind == "squared":
        return w * 2 * (o - t)
    if kind == "absolute":
        return w * np.sign(o - t)
    return w * (f64(probs)[0] - t)


# ---- dropout (given the mask) ----

def dropout_forward(x, keep, rate):
    (x,) = f64(x)
    return x * keep / (1.0 - rate)


def dropout_backward(dy, keep, rate):
    (dy,) = f64(dy)
    return dy * keep / (1.0 - rate)


# ---- optimizers: one update of the Keras 2 formulas, returning the new (param, *slots) ----

def sgd_update(p, v, g, lr, momentum=0.0, nesterov=False):
    p, v, g = f64(p, v, g)
    v = momentum * v - lr * g
    p = p + (momentum * v - lr * g if nesterov else v)
    return p, v


def rmsprop_update(p, a, g, lr, rho, eps):
    p, a, g = f64(p, a, g)
    a = rho * a + (1 - rho) * g * g
    return p - lr * g / (np.sqrt(a) + eps), a


def adadelta_update(p, a, d, g, lr, rho, eps):
    p, a, d, g = f64(p, a, d, g)
    a = rho * a + (1 - rho) * g * g
    u = g * np.sqrt(d + eps) / np.sqrt(a + eps)
    return p - lr * u, a, rho * d + (1 - rho) * u * u


def adam_update(p, m, v, g, lr, b1, b2, eps, t):
    p, m, v, g = f64(p, m, v, g)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    return p - lr_t * m / (np.sqrt(v) + eps), m, v


# ---- keys of the random streams (fastnet._seed.key64, written in Cython) ----

_MASK64 = 2**64 - 1


def splitmix64(z):
    """The splitmix64 finalizer: a bijection of 64-bit integers that mixes every input bit into every output bit."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def key64(*parts):
    """Each part folded in 64 bits at a time, then its number of 64-bit chunks."""
    h = 0
    for part in parts:
        part, chunks = int(part), 0
        while True:
            h = splitmix64(h ^ (part & _MASK64))
            part >>= 64
            chunks += 1
            if not part:
                break
        h = splitmix64(h ^ chunks)
    return h
