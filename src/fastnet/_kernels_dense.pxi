# Included by _kernels.pyx (one extension module; the C declarations come from _fastnet_c.pxd there).
# GEMM and dense kernels.

# ---- GEMM ----

def gemm(a, b, out=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, n_threads=None,
         isa=None, precision=None, workspace=None):
    """out = alpha * op(a) @ op(b) + beta * out (out must be given when beta != 0)."""
    cdef float al = _real(alpha, "alpha"), be = _real(beta, "beta")
    _array(a, "a", 2)
    _array(b, "b", 2)
    cdef int64_t M = a.shape[1] if trans_a else a.shape[0]
    cdef int64_t K = a.shape[0] if trans_a else a.shape[1]
    cdef int64_t Kb = b.shape[1] if trans_b else b.shape[0]
    cdef int64_t N = b.shape[0] if trans_b else b.shape[1]
    if K != Kb:
        raise ValueError(f"gemm: op(a) is {M}x{K} but op(b) is {Kb}x{N}: inner dimensions differ")
    if be != 0.0 and out is None:
        raise ValueError("gemm: beta != 0 needs out")
    out = _output(out, "out", (M, N), (a, b))
    cdef int nt = _threads(n_threads), code = _isa_code(isa), prec = _precision_code(precision)
    cdef int ta = bool(trans_a), tb = bool(trans_b)
    cdef const float *pa = _cp(a)
    cdef const float *pb = _cp(b)
    cdef float *pc = _mp(out)
    cdef int64_t lda = a.shape[1], ldb = b.shape[1]
    scratch = _scratch(workspace, fn_gemm_workspace(M, N, K, code, prec))
    cdef float *pw = _mp(scratch)
    cdef int st
    with nogil:
        st = fn_gemm(ta, tb, M, N, K, al, pa, lda, pb, ldb, be, pc, N, code, prec, pw, nt)
    _status(st, "gemm")
    return out


def gemm_tiles(int64_t M, int64_t N, int64_t K, trans_b=False, n_threads=None, isa=None, precision=None):
    """How gemm splits its M x N output among n_threads: an int64 array of rows (m0, m1, j0, j1), one per tile, in
    the order the threads' static schedule takes them (see fn_gemm_tiles). Computes nothing."""
    if M < 0 or N < 0 or K < 0:
        raise ValueError(f"gemm_tiles: M, N and K must be >= 0, got {M}, {N}, {K}")
    cdef int nt = _threads(n_threads), code = _isa_code(isa), prec = _precision_code(precision)
    cdef int tb = bool(trans_b)
    cdef int64_t count = fn_gemm_tiles(tb, M, N, K, code, prec, nt, NULL)
    out = np.zeros((count, 4), np.int64)
    cdef int64_t[:, ::1] view = out
    if count:
        fn_gemm_tiles(tb, M, N, K, code, prec, nt, &view[0, 0])
    return out


# ---- dense ----

class PackedWeights:
    """A dense kernel w [I, O] packed for the GEMM micro-kernel once, for many forward batches (inference).
    Valid for the ISA path it was made for (self.isa) and for that w's values: pack again after either
    changes."""

    def __init__(self, w, isa=None, precision=None, n_threads=None):
        _array(w, "w", 2)
        cdef int64_t I = w.shape[0], O = w.shape[1]
        cdef int nt = _threads(n_threads), code = _isa_code(isa), prec = _precision_code(precision)
        self.shape, self.isa, self.precision = (I, O), _ISA_NAMES[code], _precision_name(prec)
        self.data = np.empty(max(fn_gemm_packed_b_size(I, O), 1), dtype=np.float32)
        cdef float *pp = _mp(self.data)
        cdef const float *pk = _cp(w)
        with nogil:
            fn_gemm_pack(pp, pk, O, 0, I, O, code, prec, nt)


def dense_forward(x, w, b=None, out=None, activation="linear", packed=None, n_threads=None, isa=None, precision=None,
                  workspace=None, dropout=None):
    """out[N, O] = act(x[N, I] @ w[I, O] + b[O]); packed: PackedWeights(w), to skip packing w again;
    dropout: (rate, seed, stream, first), to apply dropout_forward(out, rate, seed, stream, out=out, first=first)
    to each block of out as it is made (training; no mask is kept: dropout_relu_backward needs none)."""
    _array(x, "x", 2)
    _array(w, "w", 2)
    cdef int64_t N = x.shape[0], I = x.shape[1], O = w.shape[1]
    if w.shape[0] != I:
        raise ValueError(f"dense: x has shape {x.shape} but w has shape {w.shape}; expected w of shape ({I}, units)")
    if b is not None:
        _array(b, "b", 1)
        _expect(b, "b", (O,))
    cdef int act = _fused_activation(activation, "dense_forward"), nt = _threads(n_threads), code = _isa_code(isa), prec = _precision_code(precision), st
    if packed is not None and not isinstance(packed, PackedWeights):
        raise TypeError(f"packed must be a PackedWeights, got {type(packed).__name__}")
    cdef float rate = 0.0
    cdef uint64_t seed = 0, stream = 0, first = 0
    if dropout is not None:
        if packed is not None:
            raise ValueError("dense: dropout is for training and packed weights for inference: pass one of them")
        if not isinstance(dropout, tuple) or len(dropout) != 4:
            raise TypeError(f"dropout must be a tuple (rate, seed, stream, first), got {dropout!r}")
        rate = _rate(dropout[0])
        seed, stream = _key(dropout[1], dropout[2])
        first = _int(dropout[3], "first", 0, 2**62)
    if packed is not None and (packed.shape != (I, O) or packed.isa != _ISA_NAMES[code]
                               or packed.precision != _precision_name(prec)):
        raise ValueError(f"dense: packed weights of shape {packed.shape} for ISA {packed.isa!r} "
                         f"({packed.precision}) do not fit w {tuple(w.shape)} on ISA {_ISA_NAMES[code]!r} "
                         f"({_precision_name(prec)}): pack them again")
    out = _output(out, "out", (N, O), (x, w, b))
    cdef const float *px = _cp(x)
    cdef const float *pk = _cp(w)
    cdef const float *pb = NULL if b is None else _cp(b)
    cdef float *py = _mp(out)
    cdef const float *pp = NULL if packed is None else _cp(packed.data)
    scratch = _scratch(workspace, fn_dense_workspace(N, I, O, code, prec) if packed is None
                       else fn_gemm_prepacked_workspace(N, I, code, prec))
    cdef float *pw = _mp(scratch)
    with nogil:
        if pp != NULL:
            st = fn_dense_forward_prepacked(py, px, pp, pb, N, I, O, act, code, prec, pw, nt)
        else:
            st = fn_dense_forward_dropout(py, px, pk, pb, N, I, O, act, rate, seed, stream, first, code, prec, pw, nt)
    _status(st, "dense_forward")
    return out


def dense_backward(dy, x, w, dx=None, dw=None, db=None, need_dx=True, n_threads=None, isa=None, precision=None, workspace=None):
    """Returns (dx or None, dw, db) for out = x @ w + b, given dy = dL/d(out)."""
    _array(dy, "dy", 2)
    _array(x, "x", 2)
    _array(w, "w", 2)
    cdef int64_t N = x.shape[0], I = x.shape[1], O = w.shape[1]
    if w.shape[0] != I:
        raise ValueError(f"dense: x has shape {x.shape} but w has shape {w.shape}")
    _expect(dy, "dy", (N, O))
    inputs = (dy, x, w)
    dx = _output(dx, "dx", (N, I), inputs) if need_dx else None
    dw = _output(dw, "dw", (I, O), inputs + (dx,))
    db = _output(db, "db", (O,), inputs + (dx, dw))
    cdef int nt = _threads(n_threads), code = _isa_code(isa), prec = _precision_code(precision), st
    scratch = _scratch(workspace, fn_dense_workspace(N, I, O, code, prec))
    cdef float *pw = _mp(scratch)
    cdef float *pdx = _opt(dx)
    cdef float *pdw = _mp(dw)
    cdef float *pdb = _mp(db)
    cdef const float *pdy = _cp(dy)
    cdef const float *px = _cp(x)
    cdef const float *pk = _cp(w)
    with nogil:
        st = fn_dense_backward(pdx, pdw, pdb, pdy, px, pk, N, I, O, code, prec, pw, nt)
    _status(st, "dense_backward")
    return dx, dw, db


def bias_backward(dy, db=None, n_threads=None):
    """db[C] = dy[R, C].sum(axis=0), in a fixed order."""
    _array(dy, "dy", 2)
    db = _output(db, "db", (dy.shape[1],), (dy,))
    cdef int nt = _threads(n_threads), st
    cdef float *pdb = _mp(db)
    cdef const float *pdy = _cp(dy)
    cdef int64_t R = dy.shape[0], C = dy.shape[1]
    with nogil:
        st = fn_bias_backward(pdb, pdy, R, C, nt)
    _status(st, "bias_backward")
    return db


