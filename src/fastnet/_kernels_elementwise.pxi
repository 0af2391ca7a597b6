# Included by _kernels.pyx (one extension module; the C declarations come from _fastnet_c.pxd there).

# ---- activations, softmax, bias ----

cdef _same(out, name, like, inputs):
    """An elementwise output: like's shape; out may be exactly one of the inputs (in place), never part of one."""
    if out is None:
        return np.empty_like(like)
    return _output(out, name, like.shape, inputs, like.dtype, in_place=inputs)


def activation_forward(x, activation, out=None, n_threads=None, alpha=0.0):
    """out = activation(x), elementwise; alpha: a parametric activation's parameter."""
    _array(x, "x")
    out = _same(out, "out", x, (x,))
    cdef int act = _activation(activation), nt = _threads(n_threads), st
    cdef float a = _real(alpha, "alpha")
    cdef const float *px = _cp(x)
    cdef float *py = _mp(out)
    cdef int64_t n = x.size
    with nogil:
        st = fn_activation_forward(py, px, n, act, a, nt)
    _status(st, "activation_forward")
    return out


def activation_backward(dy, y, activation, out=None, n_threads=None, alpha=0.0):
    """dL/dx from dy and the forward OUTPUT y."""
    _array(dy, "dy")
    _array(y, "y")
    _expect(y, "y", dy.shape)
    out = _same(out, "dx", dy, (dy, y))
    cdef int act = _activation(activation), nt = _threads(n_threads), st
    cdef float a = _real(alpha, "alpha")
    cdef const float *pdy = _cp(dy)
    cdef const float *py = _cp(y)
    cdef float *pdx = _mp(out)
    cdef int64_t n = dy.size
    with nogil:
        st = fn_activation_backward(pdx, pdy, py, n, act, a, nt)
    _status(st, "activation_backward")
    return out


def softmax_forward(x, out=None, n_threads=None):
    _array(x, "x", 2)
    out = _same(out, "out", x, (x,))
    cdef int nt = _threads(n_threads), st
    cdef const float *px = _cp(x)
    cdef float *py = _mp(out)
    cdef int64_t N = x.shape[0], C = x.shape[1]
    with nogil:
        st = fn_softmax_forward(py, px, N, C, nt)
    _status(st, "softmax_forward")
    return out


def softmax_backward(dy, y, out=None, n_threads=None):
    _array(dy, "dy", 2)
    _array(y, "y", 2)
    _expect(y, "y", dy.shape)
    out = _same(out, "dx", dy, (dy, y))
    cdef int nt = _threads(n_threads), st
    cdef const float *pdy = _cp(dy)
    cdef const float *py = _cp(y)
    cdef float *pdx = _mp(out)
    cdef int64_t N = dy.shape[0], C = dy.shape[1]
    with nogil:
        st = fn_softmax_backward(pdx, pdy, py, N, C, nt)
    _status(st, "softmax_backward")
    return out


def first_nonfinite(x, n_threads=None):
    """Flat index of the first NaN or inf in x (float32, contiguous), or -1 when every value is finite."""
    _array(x, "x")
    cdef int nt = _threads(n_threads)
    cdef const float *px = _cp(x)
    cdef int64_t n = x.size, r
    with nogil:
        r = fn_first_nonfinite(px, n, nt)
    return r


def bias_act_forward(y, b=None, activation="linear", n_threads=None):
    """In place: y[R, C] = act(y + b[C]) (activation 'linear' or 'relu')."""
    _array(y, "y", 2)
    _writable(y, "y")
    if b is not None:
        _array(b, "b", 1)
        _expect(b, "b", (y.shape[1],))
        _disjoint((("y", y), ("b", b)))
    cdef int act = _fused_activation(activation, "bias_act_forward"), nt = _threads(n_threads), st
    cdef const float *pb = NULL if b is None else _cp(b)
    cdef float *py = _mp(y)
    cdef int64_t R = y.shape[0], C = y.shape[1]
    with nogil:
        st = fn_bias_act_forward(py, pb, R, C, act, nt)
    _status(st, "bias_act_forward")
    return y


# ---- softmax + cross-entropy ----

def softmax_xent_forward(logits, targets, probs=None, loss=None, n_threads=None):
    """(probs [N, C], per-sample loss [N]) of softmax + categorical cross-entropy."""
    _array(logits, "logits", 2)
    _array(targets, "targets", 2)
    _expect(targets, "targets", logits.shape)
    probs = _output(probs, "probs", logits.shape, (logits, targets))
    loss = _output(loss, "loss", (logits.shape[0],), (logits, targets, probs))
    cdef int nt = _threads(n_threads), st
    cdef const float *pz = _cp(logits)
    cdef const float *pt = _cp(targets)
    cdef float *pp = _mp(probs)
    cdef float *pl = _mp(loss)
    cdef int64_t N = logits.shape[0], C = logits.shape[1]
    with nogil:
        st = fn_softmax_xent_forward(pp, pl, pz, pt, N, C, nt)
    _status(st, "softmax_xent_forward")
    return probs, loss


def softmax_xent_backward(probs, targets, scale, out=None, n_threads=None):
    """dL/dlogits = scale * (probs * sum(targets) - targets); out may be probs itself."""
    cdef float sc = _real(scale, "scale")
    _array(probs, "probs", 2)
    _array(targets, "targets", 2)
    _expect(targets, "targets", probs.shape)
    out = _output(out, "dlogits", probs.shape, (probs, targets), np.float32, in_place=(probs,))
    cdef int nt = _threads(n_threads), st
    cdef const float *pp = _cp(probs)
    cdef const float *pt = _cp(targets)
    cdef float *pd = _mp(out)
    cdef int64_t N = probs.shape[0], C = probs.shape[1]
    with nogil:
        st = fn_softmax_xent_backward(pd, pp, pt, N, C, sc, nt)
    _status(st, "softmax_xent_backward")
    return out


POINTWISE_LOSSES = {"squared": FN_LOSS_SQUARED, "absolute": FN_LOSS_ABSOLUTE, "sigmoid_xent": FN_LOSS_SIGMOID_XENT}


cdef _pointwise_kind(kind):
    if not isinstance(kind, str) or kind not in POINTWISE_LOSSES:
        raise ValueError(f"unknown pointwise loss {kind!r}; expected one of {tuple(POINTWISE_LOSSES)}")
    return POINTWISE_LOSSES[kind]


cdef _sample_weights(weights, n):
    if weights is None:
        return None
    _array(weights, "weights", 1)
    _expect(weights, "weights", (n,))
    return weights


def pointwise_loss_forward(kind, out, targets, weights=None, loss=None, probs=None, n_threads=None):
    """(per-sample loss [N], probs) of 'squared' (mean squared error), 'absolute' (mean absolute error) or
    'sigmoid_xent' (binary cross-entropy from logits; probs = sigmoid(out), else None): each row's mean over its
    outputs, times weights[row] when given."""
    cdef int k = _pointwise_kind(kind)
    _array(out, "out", 2)
    _array(targets, "targets", 2)
    _expect(targets, "targets", out.shape)
    _sample_weights(weights, out.shape[0])
    loss = _output(loss, "loss", (out.shape[0],), (out, targets, weights))
    if k == FN_LOSS_SIGMOID_XENT:
        probs = _output(probs, "probs", out.shape, (out, targets, weights, loss))
    else:
        probs = None
    cdef int nt = _threads(n_threads), st
    cdef const float *po = _cp(out)
    cdef const float *pt = _cp(targets)
    cdef const float *pw = NULL if weights is None else _cp(weights)
    cdef float *pl = _mp(loss)
    cdef float *pp = _opt(probs)
    cdef int64_t N = out.shape[0], C = out.shape[1]
    with nogil:
        st = fn_pointwise_loss_forward(k, pl, pp, po, pt, pw, N, C, nt)
    _status(st, "pointwise_loss_forward")
    return loss, probs


def pointwise_loss_backward(kind, out, targets, scale, weights=None, probs=None, dout=None, n_threads=None):
    """dL/d(out) of pointwise_loss_forward's losses summed and times scale (1/N: the batch mean); 'sigmoid_xent'
    needs the forward's probs (dout may be probs itself)."""
    cdef int k = _pointwise_kind(kind)
    cdef float sc = _real(scale, "scale")
    _array(out, "out", 2)
    _array(targets, "targets", 2)
    _expect(targets, "targets", out.shape)
    _sample_weights(weights, out.shape[0])
    if k == FN_LOSS_SIGMOID_XENT:
        if probs is None:
            raise ValueError("pointwise_loss_backward('sigmoid_xent') needs the forward's probs")
        _array(probs, "probs", 2)
        _expect(probs, "probs", out.shape)
    else:
        probs = None
    dout = _output(dout, "dout", out.shape, (out, targets, weights), np.float32, in_place=(probs,) if probs is not None else ())
    cdef int nt = _threads(n_threads), st
    cdef const float *po = _cp(out)
    cdef const float *pt = _cp(targets)
    cdef const float *pw = NULL if weights is None else _cp(weights)
    cdef const float *pp = NULL if probs is None else _cp(probs)
    cdef float *pd = _mp(dout)
    cdef int64_t N = out.shape[0], C = out.shape[1]
    with nogil:
        st = fn_pointwise_loss_backward(k, pd, po, pp, pt, pw, N, C, sc, nt)
    _status(st, "pointwise_loss_backward")
    return dout


# ---- dropout and counter-based random numbers ----

cdef _rate(rate):
    rate = _real(rate, "rate")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    return rate


_MASK64 = 2**64 - 1


def key64(*parts):
    """A 64-bit key for a tuple of non-negative integers of any size: each part is folded in 64 bits at a time,
    then its number of 64-bit chunks, so a value and its 64-bit truncation are hashed differently. Distinct tuples
    collide with the probability of a 64-bit hash (about n^2 / 2^65 for n keys). Keys every dropout mask, once
    per layer and step: here, not in Python, because Python's big-int arithmetic took 10-17 us a key."""
    cdef uint64_t h = 0, chunks
    for part in parts:
        if type(part) is not int:
            part = int(part)
        if part < 0:
            raise ValueError(f"key parts must be >= 0, got {part}")
        chunks = 0
        while True:
            h = fn_splitmix64(h ^ <uint64_t>(part & _MASK64))
            part >>= 64
            chunks += 1
            if not part:
                break
        h = fn_splitmix64(h ^ chunks)
    return h


cdef _key(seed, stream):
    return _int(seed, "seed", 0, 2**64 - 1), _int(stream, "stream", 0, 2**64 - 1)


def dropout_forward(x, rate, seed, stream, out=None, keep=None, n_threads=None, first=0):
    """(y, keep): inverted dropout whose mask is a pure function of (seed, stream, element); first: the stream
    position of x's first element (a data-parallel rank's rows start inside the batch)."""
    _array(x, "x")
    cdef float r = _rate(rate)
    cdef uint64_t sd, sm, f = _int(first, "first", 0, 2**62)
    sd, sm = _key(seed, stream)
    out = _same(out, "out", x, (x,))
    keep = _output(keep, "keep", x.shape, (x, out), np.uint8)
    cdef int nt = _threads(n_threads), st
    cdef uint8_t *pk = <uint8_t *>_data(keep, True, 1)
    cdef const float *px = _cp(x)
    cdef float *py = _mp(out)
    cdef int64_t n = x.size
    with nogil:
        st = fn_dropout_forward(py, pk, px, n, r, sd, sm, f, nt)
    _status(st, "dropout_forward")
    return out, keep


def dropout_backward(dy, keep, rate, out=None, n_threads=None):
    _array(dy, "dy")
    _array(keep, "keep", None, np.uint8)
    _expect(keep, "keep", dy.shape)
    cdef float r = _rate(rate)
    out = _same(out, "dx", dy, (dy,))
    _disjoint((("dx", out), ("keep", keep)))
    cdef int nt = _threads(n_threads), st
    cdef const uint8_t *pk = <const uint8_t *>_data(keep, False, 1)
    cdef const float *pdy = _cp(dy)
    cdef float *pdx = _mp(out)
    cdef int64_t n = dy.size
    with nogil:
        st = fn_dropout_backward(pdx, pdy, pk, n, r, nt)
    _status(st, "dropout_backward")
    return out


def dropout_relu_backward(dy, y, rate, out=None, n_threads=None):
    """dL/dx of y = dropout(relu(x)) at rate from its output y alone: dy / (1 - rate) where y > 0, else 0
    (dense_forward with dropout keeps no mask)."""
    _array(dy, "dy")
    _array(y, "y")
    _expect(y, "y", dy.shape)
    cdef float r = _rate(rate)
    out = _output(out, "dx", dy.shape, (dy, y), np.float32, (dy,))
    cdef int nt = _threads(n_threads), st
    cdef const float *pdy = _cp(dy)
    cdef const float *py = _cp(y)
    cdef float *pdx = _mp(out)
    cdef int64_t n = dy.size
    with nogil:
        st = fn_dropout_relu_backward(pdx, pdy, py, n, r, nt)
    _status(st, "dropout_relu_backward")
    return out


def random_uniform(n, seed, stream, n_threads=None, first=0):
    """n floats in [0, 1) (n >= 1): element i is a pure function of (seed, stream, first + i)."""
    n = _int(n, "n", 1, 2**62)
    cdef uint64_t sd, sm, f = _int(first, "first", 0, 2**62)
    sd, sm = _key(seed, stream)
    out = np.empty(n, dtype=np.float32)
    cdef int nt = _threads(n_threads), st
    cdef float *pu = _mp(out)
    cdef int64_t count = n
    with nogil:
        st = fn_random_uniform(pu, count, sd, sm, f, nt)
    _status(st, "random_uniform")
    return out




# ---- batches ----

def gather_rows(src, idx, out, n_threads=None):
    """out[r] = src[idx[r]] for every r: numpy.take(src, idx, axis=0, out=out), rows copied by several threads
    (fn_gather_rows says how many). src and out: C-contiguous arrays of one dtype; idx: int64 row numbers."""
    for name, a in (("src", src), ("out", out)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} with shape {a.shape} must be C-contiguous (use np.ascontiguousarray)")
    if src.ndim < 1:
        raise ValueError("src must have at least one dimension (its rows)")
    if out.dtype != src.dtype:
        raise TypeError(f"out has dtype {out.dtype}, src {src.dtype}: they must match")
    if not isinstance(idx, np.ndarray) or idx.dtype != np.int64 or idx.ndim != 1 or not idx.flags.c_contiguous:
        raise TypeError("idx must be a C-contiguous 1-D int64 array of row numbers")
    _expect(out, "out", (idx.shape[0],) + src.shape[1:])
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if out.size and (_may_share(out, src) or _may_share(out, idx)):
        raise ValueError("out must not overlap src or idx")
    cdef int64_t n = idx.shape[0], rows = src.shape[0], r
    if n == 0 or out.size == 0:
        return out
    cdef const int64_t *pi = <const int64_t *>_data(idx, False, 8)
    for r in range(n):
        if pi[r] < 0 or pi[r] >= rows:
            raise IndexError(f"idx[{r}] = {pi[r]} is out of range for src with {rows} rows")
    cdef int64_t row_bytes = out.nbytes // n
    cdef int nt = _threads(n_threads), st
    cdef void *pd = _data(out, True, out.itemsize)
    cdef const void *ps = _data(src, False, src.itemsize)
    with nogil:
        st = fn_gather_rows(pd, ps, pi, n, row_bytes, nt)
    _status(st, "gather_rows")
    return out
