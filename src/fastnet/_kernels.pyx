# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Checked entry points to the C kernels.

Glue only: every function validates dtypes, shapes and contiguity (raising ValueError/TypeError that name
the arrays and shapes), allocates outputs the caller did not pass, releases the GIL around the C call and
turns a bad status into an exception. Activations are NHWC here; the layers convert at the model's edges.
"""
import os
import threading

import numpy as np

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

from fastnet._fastnet_c cimport *

ACTIVATIONS = {"linear": FN_ACT_LINEAR, "relu": FN_ACT_RELU, "sigmoid": FN_ACT_SIGMOID, "tanh": FN_ACT_TANH}
ISA_NAMES = ("generic", "avx2", "avx512")
CONV_ALGOS = ("auto", "im2col", "winograd")  # index = FN_CONV_* code

cdef int _num_threads = 1

fn_gemm_set_isa(-1)


# ---- threads and instruction sets ----

def set_num_threads(int n):
    """Threads every kernel uses from now on (n >= 1)."""
    global _num_threads
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    _num_threads = n


def get_num_threads():
    return _num_threads


def have_openmp():
    return bool(fn_have_openmp())


def set_isa(isa):
    """Select the GEMM micro-kernel: 'generic', 'avx2', 'avx512' or 'best'."""
    level = -1 if isa == "best" else ISA_NAMES.index(isa) if isa in ISA_NAMES else None
    if level is None:
        raise ValueError(f"unknown ISA {isa!r}; expected one of {ISA_NAMES + ('best',)}")
    if fn_gemm_set_isa(level) != FN_OK:
        raise RuntimeError(f"this CPU does not support {isa!r}; it supports up to {ISA_NAMES[fn_gemm_cpu_max_isa()]!r}")


def get_isa():
    return fn_gemm_isa_name().decode()


def supported_isas():
    return ISA_NAMES[: fn_gemm_cpu_max_isa() + 1]


def set_conv_algo(algo):
    """Convolution algorithm: 'auto' (Winograd F(4x4, 3x3) for 3x3 stride-1 kernels with >= 16 input and
    output channels, im2col + GEMM elsewhere), 'winograd' (every 3x3 stride-1 kernel) or 'im2col'."""
    if algo not in CONV_ALGOS:
        raise ValueError(f"unknown convolution algorithm {algo!r}; expected one of {CONV_ALGOS}")
    fn_conv2d_set_algo(CONV_ALGOS.index(algo))


def get_conv_algo():
    return CONV_ALGOS[fn_conv2d_algo()]


def conv2d_uses_winograd(x_shape, w_shape, strides=(1, 1), padding="valid"):
    """Whether the conv kernels take the Winograd path for this shape under the current algorithm."""
    cdef fn_conv2d_shape s = _conv_shape(tuple(x_shape), tuple(w_shape), strides, padding)
    return bool(fn_conv2d_uses_winograd(&s))


# ---- argument checking ----

cdef int _threads(n_threads) except -1:
    if n_threads is None:
        return _num_threads
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    return n_threads


def _array(a, name, ndim=None, dtype=np.float32):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {a.dtype} "
                        f"(convert with {name}.astype(np.{np.dtype(dtype).name}))")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} with shape {a.shape} must be C-contiguous (use np.ascontiguousarray)")
    return a


def _expect(a, name, shape):
    if a.shape != tuple(shape):
        raise ValueError(f"{name} has shape {a.shape}, expected {tuple(shape)}")


def _output(out, name, shape, inputs=(), dtype=np.float32):
    if out is None:
        return np.empty(shape, dtype=dtype)
    _array(out, name, len(shape), dtype)
    _expect(out, name, shape)
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    for other in inputs:
        if other is not None and np.may_share_memory(out, other):
            raise ValueError(f"{name} must not overlap the kernel's inputs")
    return out


def _status(int status, what):
    if status == FN_EINVAL:
        raise ValueError(f"{what}: invalid argument")
    if status != FN_OK:
        raise RuntimeError(f"{what} failed with status {status}")


def _activation(act):
    if isinstance(act, str):
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
        return ACTIVATIONS[act]
    if act not in ACTIVATIONS.values():
        raise ValueError(f"unknown activation code {act!r}")
    return act


cdef inline const float *_cp(const float[::1] v):
    return &v[0] if v.shape[0] else NULL


cdef inline float *_mp(float[::1] v):
    return &v[0] if v.shape[0] else NULL


cdef inline float *_opt(v):
    return NULL if v is None else _mp(v.reshape(-1))


_local = threading.local()


# FASTNET_EXACT_WORKSPACE=1 (set by .ci/sanitize): a fresh buffer of exactly the queried size for every call,
# so AddressSanitizer catches a kernel that writes past what its workspace query promised.
_EXACT_WORKSPACE = os.environ.get("FASTNET_EXACT_WORKSPACE") == "1"


def _workspace(int64_t nfloats):
    """A scratch buffer of at least nfloats, reused per Python thread (kernels never allocate)."""
    buf = getattr(_local, "ws", None)
    if _EXACT_WORKSPACE:  # held by _local until the next call, like the shared buffer: callers keep a pointer
        buf = None
    if buf is None or buf.shape[0] < nfloats:
        buf = np.empty(max(nfloats, 1), dtype=np.float32)
        _local.ws = buf
    return buf


# ---- GEMM ----

def gemm(a, b, out=None, trans_a=False, trans_b=False, float alpha=1.0, float beta=0.0, n_threads=None,
         naive=False):
    """out = alpha * op(a) @ op(b) + beta * out (out must be given when beta != 0)."""
    _array(a, "a", 2)
    _array(b, "b", 2)
    cdef int64_t M = a.shape[1] if trans_a else a.shape[0]
    cdef int64_t K = a.shape[0] if trans_a else a.shape[1]
    cdef int64_t Kb = b.shape[1] if trans_b else b.shape[0]
    cdef int64_t N = b.shape[0] if trans_b else b.shape[1]
    if K != Kb:
        raise ValueError(f"gemm: op(a) is {M}x{K} but op(b) is {Kb}x{N}: inner dimensions differ")
    if beta != 0.0 and out is None:
        raise ValueError("gemm: beta != 0 needs out")
    out = _output(out, "out", (M, N), (a, b))
    cdef int nt = _threads(n_threads)
    cdef int ta = bool(trans_a), tb = bool(trans_b), nv = bool(naive)
    cdef const float *pa = _cp(a.reshape(-1))
    cdef const float *pb = _cp(b.reshape(-1))
    cdef float *pc = _mp(out.reshape(-1))
    cdef int64_t lda = a.shape[1], ldb = b.shape[1]
    cdef float *pw = NULL
    cdef int st
    if not nv:
        pw = _mp(_workspace(fn_gemm_workspace(M, N, K, nt)))
    with nogil:
        if nv:
            st = fn_gemm_naive(ta, tb, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, N)
        else:
            st = fn_gemm(ta, tb, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, N, pw, nt)
    _status(st, "gemm")
    return out


# ---- dense ----

class PackedWeights:
    """A dense kernel w [I, O] packed for the GEMM micro-kernel once, for many forward batches (inference).
    Valid for the ISA path that was current when it was made, and for that w's values: pack again after either
    changes."""

    def __init__(self, w, n_threads=None):
        _array(w, "w", 2)
        cdef int64_t I = w.shape[0], O = w.shape[1]
        cdef int nt = _threads(n_threads)
        self.shape, self.isa = (I, O), fn_gemm_isa()
        self.data = np.empty(max(fn_gemm_packed_b_size(I, O), 1), dtype=np.float32)
        cdef float *pp = _mp(self.data)
        cdef const float *pk = _cp(w.reshape(-1))
        with nogil:
            fn_gemm_pack(pp, pk, O, 0, I, O, nt)


def dense_forward(x, w, b=None, out=None, activation="linear", n_threads=None, packed=None):
    """out[N, O] = act(x[N, I] @ w[I, O] + b[O]); packed: PackedWeights(w), to skip packing w again."""
    _array(x, "x", 2)
    _array(w, "w", 2)
    cdef int64_t N = x.shape[0], I = x.shape[1], O = w.shape[1]
    if w.shape[0] != I:
        raise ValueError(f"dense: x has shape {x.shape} but w has shape {w.shape}; expected w of shape ({I}, units)")
    if b is not None:
        _array(b, "b", 1)
        _expect(b, "b", (O,))
    if packed is not None and (packed.shape != (I, O) or packed.isa != fn_gemm_isa()):
        raise ValueError(f"dense: packed weights of shape {packed.shape} for ISA {ISA_NAMES[packed.isa]!r} do not "
                         f"fit w {tuple(w.shape)} on ISA {ISA_NAMES[fn_gemm_isa()]!r}: pack them again")
    out = _output(out, "out", (N, O), (x, w, b))
    cdef int act = _activation(activation), nt = _threads(n_threads), st
    cdef const float *px = _cp(x.reshape(-1))
    cdef const float *pk = _cp(w.reshape(-1))
    cdef const float *pb = NULL if b is None else _cp(b)
    cdef float *py = _mp(out.reshape(-1))
    cdef const float *pp = NULL if packed is None else _cp(packed.data)
    cdef float *pw = NULL
    if packed is None:
        pw = _mp(_workspace(fn_dense_workspace(N, I, O, nt)))
    with nogil:
        if pp != NULL:
            st = fn_dense_forward_prepacked(py, px, pp, pb, N, I, O, act, nt)
        else:
            st = fn_dense_forward(py, px, pk, pb, N, I, O, act, pw, nt)
    _status(st, "dense_forward")
    return out


def dense_backward(dy, x, w, dx=None, dw=None, db=None, need_dx=True, n_threads=None):
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
    dw = _output(dw, "dw", (I, O), inputs)
    db = _output(db, "db", (O,), inputs)
    cdef int nt = _threads(n_threads), st
    cdef float *pw = _mp(_workspace(fn_dense_workspace(N, I, O, nt)))
    cdef float *pdx = _opt(dx)
    cdef float *pdw = _mp(dw.reshape(-1))
    cdef float *pdb = _mp(db)
    cdef const float *pdy = _cp(dy.reshape(-1))
    cdef const float *px = _cp(x.reshape(-1))
    cdef const float *pk = _cp(w.reshape(-1))
    with nogil:
        st = fn_dense_backward(pdx, pdw, pdb, pdy, px, pk, N, I, O, pw, nt)
    _status(st, "dense_backward")
    return dx, dw, db


def bias_backward(dy, db=None, n_threads=None):
    """db[C] = dy[R, C].sum(axis=0), in a fixed order."""
    _array(dy, "dy", 2)
    db = _output(db, "db", (dy.shape[1],), (dy,))
    cdef int nt = _threads(n_threads), st
    cdef float *pdb = _mp(db)
    cdef const float *pdy = _cp(dy.reshape(-1))
    cdef int64_t R = dy.shape[0], C = dy.shape[1]
    with nogil:
        st = fn_bias_backward(pdb, pdy, R, C, nt)
    _status(st, "bias_backward")
    return db


# ---- conv2d ----

def conv_geometry(int64_t size, int64_t kernel, int64_t stride, padding):
    """(output size, padding before) along one axis, as TensorFlow/Keras define 'valid' and 'same'."""
    if kernel < 1 or stride < 1:
        raise ValueError(f"kernel size and stride must be >= 1, got {kernel} and {stride}")
    if padding == "valid":
        if size < kernel:
            raise ValueError(f"input size {size} is smaller than the kernel size {kernel} with padding='valid'")
        return (size - kernel) // stride + 1, 0
    if padding == "same":
        out = -(-size // stride)
        return out, max((out - 1) * stride + kernel - size, 0) // 2
    raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")


cdef fn_conv2d_shape _conv_shape(x_shape, w_shape, strides, padding) except *:
    cdef fn_conv2d_shape s
    s.N, s.H, s.W, s.C = x_shape
    s.KH, s.KW, kc, s.OC = w_shape
    if kc != s.C:
        raise ValueError(f"conv2d: input has {s.C} channels (NHWC shape {tuple(x_shape)}) but the kernel "
                         f"{tuple(w_shape)} expects {kc}")
    s.SH, s.SW = strides
    s.OH, s.PT = conv_geometry(s.H, s.KH, s.SH, padding)
    s.OW, s.PL = conv_geometry(s.W, s.KW, s.SW, padding)
    return s


def conv2d_forward(x, w, b=None, strides=(1, 1), padding="valid", activation="linear", out=None, n_threads=None):
    """out[N, OH, OW, OC] = act(conv(x[N, H, W, C], w[KH, KW, C, OC]) + b[OC])."""
    _array(x, "x", 4)
    _array(w, "w", 4)
    cdef fn_conv2d_shape s = _conv_shape(x.shape, w.shape, strides, padding)
    if b is not None:
        _array(b, "b", 1)
        _expect(b, "b", (s.OC,))
    out = _output(out, "out", (s.N, s.OH, s.OW, s.OC), (x, w, b))
    cdef int act = _activation(activation), nt = _threads(n_threads), st
    cdef float *pw = _mp(_workspace(fn_conv2d_workspace(&s, nt)))
    cdef const float *px = _cp(x.reshape(-1))
    cdef const float *pk = _cp(w.reshape(-1))
    cdef const float *pb = NULL if b is None else _cp(b)
    cdef float *py = _mp(out.reshape(-1))
    with nogil:
        st = fn_conv2d_forward(py, px, pk, pb, &s, act, pw, nt)
    _status(st, "conv2d_forward")
    return out


def conv2d_forward_maxpool_fits(x_shape, w_shape, strides=(1, 1), padding="valid"):
    """Whether conv2d_forward_maxpool takes this shape: a Winograd shape with an even output size."""
    cdef fn_conv2d_shape s = _conv_shape(tuple(x_shape), tuple(w_shape), strides, padding)
    return bool(fn_conv2d_forward_maxpool_fits(&s))


def conv2d_forward_maxpool(x, w, b=None, strides=(1, 1), padding="valid", out=None, argmax=None, n_threads=None):
    """maxpool2d_forward(conv2d_forward(x, w, b, activation='relu')) with a 2x2 window of stride 2, in one pass
    that never stores the convolution: (y [N, OH/2, OW/2, OC], argmax int32), bit-identical to the two calls.
    Only where conv2d_forward_maxpool_fits."""
    _array(x, "x", 4)
    _array(w, "w", 4)
    cdef fn_conv2d_shape s = _conv_shape(x.shape, w.shape, strides, padding)
    if not fn_conv2d_forward_maxpool_fits(&s):
        raise ValueError(f"conv2d_forward_maxpool: input {tuple(x.shape)}, kernel {tuple(w.shape)}, strides "
                         f"{tuple(strides)}, padding {padding!r} is not a Winograd shape with an even output "
                         f"({s.OH}x{s.OW}); run conv2d_forward and maxpool2d_forward instead")
    if b is not None:
        _array(b, "b", 1)
        _expect(b, "b", (s.OC,))
    shape = (s.N, s.OH // 2, s.OW // 2, s.OC)
    out = _output(out, "out", shape, (x, w, b))
    argmax = _output(argmax, "argmax", shape, (x, w, b, out), np.int32)
    cdef int nt = _threads(n_threads), st
    cdef float *pw = _mp(_workspace(fn_conv2d_workspace(&s, nt)))
    cdef int32_t[::1] am = argmax.reshape(-1)
    cdef int32_t *pam = &am[0] if am.shape[0] else NULL
    cdef const float *px = _cp(x.reshape(-1))
    cdef const float *pk = _cp(w.reshape(-1))
    cdef const float *pb = NULL if b is None else _cp(b)
    cdef float *py = _mp(out.reshape(-1))
    with nogil:
        st = fn_conv2d_forward_maxpool(py, pam, px, pk, pb, &s, pw, nt)
    _status(st, "conv2d_forward_maxpool")
    return out, argmax


def conv2d_backward_data(dy, w, input_shape, strides=(1, 1), padding="valid", out=None, relu_input=None,
                         n_threads=None):
    """dL/dx [N, H, W, C] (input_shape) from dy [N, OH, OW, OC].

    relu_input: the convolution's input when it came out of a ReLU; dx is zeroed where it is not positive
    (the ReLU's backward, fused)."""
    _array(dy, "dy", 4)
    _array(w, "w", 4)
    cdef fn_conv2d_shape s = _conv_shape(tuple(input_shape), w.shape, strides, padding)
    _expect(dy, "dy", (s.N, s.OH, s.OW, s.OC))
    if relu_input is not None:
        _array(relu_input, "relu_input", 4)
        _expect(relu_input, "relu_input", tuple(input_shape))
    out = _output(out, "dx", tuple(input_shape), (dy, w, relu_input))
    cdef int nt = _threads(n_threads), st
    cdef float *pw = _mp(_workspace(fn_conv2d_workspace(&s, nt)))
    cdef const float *pdy = _cp(dy.reshape(-1))
    cdef const float *pk = _cp(w.reshape(-1))
    cdef float *pdx = _mp(out.reshape(-1))
    cdef const float *prelu = NULL if relu_input is None else _cp(relu_input.reshape(-1))
    with nogil:
        st = fn_conv2d_backward_data(pdx, pdy, pk, prelu, &s, pw, nt)
    _status(st, "conv2d_backward_data")
    return out


def conv2d_backward_filter(dy, x, kernel_size, strides=(1, 1), padding="valid", dw=None, db=None,
                           n_threads=None):
    """(dL/dw [KH, KW, C, OC], dL/db [OC]) from dy [N, OH, OW, OC] and x [N, H, W, C]."""
    _array(dy, "dy", 4)
    _array(x, "x", 4)
    kh, kw = kernel_size
    w_shape = (kh, kw, x.shape[3], dy.shape[3])
    cdef fn_conv2d_shape s = _conv_shape(x.shape, w_shape, strides, padding)
    _expect(dy, "dy", (s.N, s.OH, s.OW, s.OC))
    dw = _output(dw, "dw", w_shape, (dy, x))
    db = _output(db, "db", (s.OC,), (dy, x))
    cdef int nt = _threads(n_threads), st
    cdef float *pw = _mp(_workspace(fn_conv2d_workspace(&s, nt)))
    cdef const float *pdy = _cp(dy.reshape(-1))
    cdef const float *px = _cp(x.reshape(-1))
    cdef float *pdw = _mp(dw.reshape(-1))
    cdef float *pdb = _mp(db)
    with nogil:
        st = fn_conv2d_backward_filter(pdw, pdb, pdy, px, &s, pw, nt)
    _status(st, "conv2d_backward_filter")
    return dw, db


# ---- max pooling ----

def maxpool2d_forward(x, pool_size=(2, 2), strides=None, padding="valid", out=None, argmax=None,
                      n_threads=None):
    """(y [N, OH, OW, C], argmax int32 [N, OH, OW, C]) for x [N, H, W, C]; ties go to the first maximum."""
    _array(x, "x", 4)
    cdef int64_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef int64_t PH = pool_size[0], PW = pool_size[1]
    strides = pool_size if strides is None else strides
    cdef int64_t SH = strides[0], SW = strides[1]
    OH, PT = conv_geometry(H, PH, SH, padding)
    OW, PL = conv_geometry(W, PW, SW, padding)
    if H * W * C >= 2**31:
        raise ValueError(f"maxpool2d: an image of {H}x{W}x{C} is too large for int32 argmax offsets")
    out = _output(out, "out", (N, OH, OW, C), (x,))
    argmax = _output(argmax, "argmax", (N, OH, OW, C), (x, out), np.int32)
    cdef int nt = _threads(n_threads), st
    cdef int32_t[::1] am = argmax.reshape(-1)
    cdef int32_t *pam = &am[0] if am.shape[0] else NULL
    cdef const float *px = _cp(x.reshape(-1))
    cdef float *py = _mp(out.reshape(-1))
    cdef int64_t oh = OH, ow = OW, pt = PT, pl = PL
    with nogil:
        st = fn_maxpool2d_forward(py, pam, px, N, H, W, C, PH, PW, SH, SW, pt, pl, oh, ow, nt)
    _status(st, "maxpool2d_forward")
    return out, argmax


def maxpool2d_backward(dy, argmax, input_shape, pool_size=(2, 2), strides=None, padding="valid", out=None,
                       relu_output=None, n_threads=None):
    """dL/dx [N, H, W, C] (input_shape): dy [N, OH, OW, C] routed through the forward's argmax; pool_size,
    strides and padding must be the forward's.

    relu_output: the pooling's forward output, when a ReLU came before the pooling: outputs that are not
    positive pass no gradient (the ReLU's backward, fused)."""
    _array(dy, "dy", 4)
    _array(argmax, "argmax", 4, np.int32)
    _expect(argmax, "argmax", dy.shape)
    N, H, W, C = input_shape
    cdef int64_t PH = pool_size[0], PW = pool_size[1]
    strides = pool_size if strides is None else strides
    cdef int64_t SH = strides[0], SW = strides[1]
    OH, PT = conv_geometry(H, PH, SH, padding)
    OW, PL = conv_geometry(W, PW, SW, padding)
    _expect(dy, "dy", (N, OH, OW, C))
    if relu_output is not None:
        _array(relu_output, "relu_output", 4)
        _expect(relu_output, "relu_output", dy.shape)
    if argmax.size and (argmax.min() < 0 or argmax.max() >= H * W * C):
        raise ValueError("maxpool2d: argmax holds offsets outside the input image")
    out = _output(out, "dx", (N, H, W, C), (dy, argmax, relu_output))
    cdef int nt = _threads(n_threads), st
    cdef const int32_t[::1] am = argmax.reshape(-1)
    cdef const int32_t *pam = &am[0] if am.shape[0] else NULL
    cdef const float *pdy = _cp(dy.reshape(-1))
    cdef const float *py = NULL if relu_output is None else _cp(relu_output.reshape(-1))
    cdef float *pdx = _mp(out.reshape(-1))
    cdef int64_t n = N, h = H, w = W, c = C, oh = OH, ow = OW, pt = PT, pl = PL
    with nogil:
        st = fn_maxpool2d_backward(pdx, pdy, pam, py, n, h, w, c, PH, PW, SH, SW, pt, pl, oh, ow, nt)
    _status(st, "maxpool2d_backward")
    return out


# ---- activations, softmax, bias ----

def _same(out, name, like, inputs=()):
    """Elementwise output: any shape equal to like's; out may be like itself (in place)."""
    if out is None:
        return np.empty_like(like)
    _array(out, name)
    _expect(out, name, like.shape)
    return out


def activation_forward(x, activation, out=None, n_threads=None):
    _array(x, "x")
    out = _same(out, "out", x)
    cdef int act = _activation(activation), nt = _threads(n_threads), st
    cdef const float *px = _cp(x.reshape(-1))
    cdef float *py = _mp(out.reshape(-1))
    cdef int64_t n = x.size
    with nogil:
        st = fn_activation_forward(py, px, n, act, nt)
    _status(st, "activation_forward")
    return out


def activation_backward(dy, y, activation, out=None, n_threads=None):
    """dL/dx from dy and the forward OUTPUT y."""
    _array(dy, "dy")
    _array(y, "y")
    _expect(y, "y", dy.shape)
    out = _same(out, "dx", dy)
    cdef int act = _activation(activation), nt = _threads(n_threads), st
    cdef const float *pdy = _cp(dy.reshape(-1))
    cdef const float *py = _cp(y.reshape(-1))
    cdef float *pdx = _mp(out.reshape(-1))
    cdef int64_t n = dy.size
    with nogil:
        st = fn_activation_backward(pdx, pdy, py, n, act, nt)
    _status(st, "activation_backward")
    return out


def softmax_forward(x, out=None, n_threads=None):
    _array(x, "x", 2)
    out = _same(out, "out", x)
    cdef int nt = _threads(n_threads), st
    cdef const float *px = _cp(x.reshape(-1))
    cdef float *py = _mp(out.reshape(-1))
    cdef int64_t N = x.shape[0], C = x.shape[1]
    with nogil:
        st = fn_softmax_forward(py, px, N, C, nt)
    _status(st, "softmax_forward")
    return out


def softmax_backward(dy, y, out=None, n_threads=None):
    _array(dy, "dy", 2)
    _array(y, "y", 2)
    _expect(y, "y", dy.shape)
    out = _same(out, "dx", dy)
    cdef int nt = _threads(n_threads), st
    cdef const float *pdy = _cp(dy.reshape(-1))
    cdef const float *py = _cp(y.reshape(-1))
    cdef float *pdx = _mp(out.reshape(-1))
    cdef int64_t N = dy.shape[0], C = dy.shape[1]
    with nogil:
        st = fn_softmax_backward(pdx, pdy, py, N, C, nt)
    _status(st, "softmax_backward")
    return out


def first_nonfinite(x, n_threads=None):
    """Flat index of the first NaN or inf in x (float32, contiguous), or -1 when every value is finite."""
    _array(x, "x")
    cdef int nt = _threads(n_threads)
    cdef const float *px = _cp(x.reshape(-1))
    cdef int64_t n = x.size, r
    with nogil:
        r = fn_first_nonfinite(px, n, nt)
    return r


def bias_act_forward(y, b=None, activation="linear", n_threads=None):
    """In place: y[R, C] = act(y + b[C]) (activation 'linear' or 'relu')."""
    _array(y, "y", 2)
    if not y.flags.writeable:
        raise ValueError("y is read-only")
    if b is not None:
        _array(b, "b", 1)
        _expect(b, "b", (y.shape[1],))
    cdef int act = _activation(activation), nt = _threads(n_threads), st
    cdef const float *pb = NULL if b is None else _cp(b)
    cdef float *py = _mp(y.reshape(-1))
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
    cdef const float *pz = _cp(logits.reshape(-1))
    cdef const float *pt = _cp(targets.reshape(-1))
    cdef float *pp = _mp(probs.reshape(-1))
    cdef float *pl = _mp(loss)
    cdef int64_t N = logits.shape[0], C = logits.shape[1]
    with nogil:
        st = fn_softmax_xent_forward(pp, pl, pz, pt, N, C, nt)
    _status(st, "softmax_xent_forward")
    return probs, loss


def softmax_xent_backward(probs, targets, float scale, out=None, n_threads=None):
    """dL/dlogits = scale * (probs * sum(targets) - targets)."""
    _array(probs, "probs", 2)
    _array(targets, "targets", 2)
    _expect(targets, "targets", probs.shape)
    out = _output(out, "dlogits", probs.shape, (targets,))
    cdef int nt = _threads(n_threads), st
    cdef const float *pp = _cp(probs.reshape(-1))
    cdef const float *pt = _cp(targets.reshape(-1))
    cdef float *pd = _mp(out.reshape(-1))
    cdef int64_t N = probs.shape[0], C = probs.shape[1]
    with nogil:
        st = fn_softmax_xent_backward(pd, pp, pt, N, C, scale, nt)
    _status(st, "softmax_xent_backward")
    return out


# ---- dropout and counter-based random numbers ----

def _rate(float rate):
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")


def dropout_forward(x, float rate, uint64_t seed, uint64_t stream, out=None, keep=None, n_threads=None):
    """(y, keep): inverted dropout whose mask is a pure function of (seed, stream, element)."""
    _array(x, "x")
    _rate(rate)
    out = _same(out, "out", x)
    keep = _output(keep, "keep", x.shape, (x, out), np.uint8)
    cdef int nt = _threads(n_threads), st
    cdef uint8_t[::1] kv = keep.reshape(-1)
    cdef uint8_t *pk = &kv[0] if kv.shape[0] else NULL
    cdef const float *px = _cp(x.reshape(-1))
    cdef float *py = _mp(out.reshape(-1))
    cdef int64_t n = x.size
    with nogil:
        st = fn_dropout_forward(py, pk, px, n, rate, seed, stream, nt)
    _status(st, "dropout_forward")
    return out, keep


def dropout_backward(dy, keep, float rate, out=None, n_threads=None):
    _array(dy, "dy")
    _array(keep, "keep", dtype=np.uint8)
    _expect(keep, "keep", dy.shape)
    _rate(rate)
    out = _same(out, "dx", dy)
    cdef int nt = _threads(n_threads), st
    cdef const uint8_t[::1] kv = keep.reshape(-1)
    cdef const uint8_t *pk = &kv[0] if kv.shape[0] else NULL
    cdef const float *pdy = _cp(dy.reshape(-1))
    cdef float *pdx = _mp(out.reshape(-1))
    cdef int64_t n = dy.size
    with nogil:
        st = fn_dropout_backward(pdx, pdy, pk, n, rate, nt)
    _status(st, "dropout_backward")
    return out


def random_uniform(int64_t n, uint64_t seed, uint64_t stream, n_threads=None):
    """n floats in [0, 1): element i is a pure function of (seed, stream, i)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out = np.empty(n, dtype=np.float32)
    cdef int nt = _threads(n_threads), st
    cdef float *pu = _mp(out)
    with nogil:
        st = fn_random_uniform(pu, n, seed, stream, nt)
    _status(st, "random_uniform")
    return out


# ---- optimizer updates (in place on p and the slots) ----

def _param_args(p, g, *slots):
    _array(p, "param")
    if not p.flags.writeable:
        raise ValueError("param is read-only")
    _array(g, "grad")
    _expect(g, "grad", p.shape)
    for i, s in enumerate(slots):
        _array(s, f"slot {i}")
        _expect(s, f"slot {i}", p.shape)
        if not s.flags.writeable:
            raise ValueError(f"slot {i} is read-only")


def sgd_update(p, v, g, float lr, float momentum=0.0, nesterov=False, n_threads=None):
    _param_args(p, g, *(() if v is None else (v,)))
    if momentum != 0.0 and v is None:
        raise ValueError("sgd_update: momentum needs a velocity slot v")
    cdef int nt = _threads(n_threads), nes = bool(nesterov), st
    cdef float *pp = _mp(p.reshape(-1))
    cdef float *pv = _opt(v)
    cdef const float *pg = _cp(g.reshape(-1))
    cdef int64_t n = p.size
    with nogil:
        st = fn_sgd_update(pp, pv, pg, n, lr, momentum, nes, nt)
    _status(st, "sgd_update")


def rmsprop_update(p, a, g, float lr, float rho, float eps, n_threads=None):
    _param_args(p, g, a)
    cdef int nt = _threads(n_threads), st
    cdef float *pp = _mp(p.reshape(-1))
    cdef float *pa = _mp(a.reshape(-1))
    cdef const float *pg = _cp(g.reshape(-1))
    cdef int64_t n = p.size
    with nogil:
        st = fn_rmsprop_update(pp, pa, pg, n, lr, rho, eps, nt)
    _status(st, "rmsprop_update")


def adadelta_update(p, a, d, g, float lr, float rho, float eps, n_threads=None):
    _param_args(p, g, a, d)
    cdef int nt = _threads(n_threads), st
    cdef float *pp = _mp(p.reshape(-1))
    cdef float *pa = _mp(a.reshape(-1))
    cdef float *pd = _mp(d.reshape(-1))
    cdef const float *pg = _cp(g.reshape(-1))
    cdef int64_t n = p.size
    with nogil:
        st = fn_adadelta_update(pp, pa, pd, pg, n, lr, rho, eps, nt)
    _status(st, "adadelta_update")


def adam_update(p, m, v, g, float lr, float beta1, float beta2, float eps, int64_t t, n_threads=None):
    _param_args(p, g, m, v)
    if t < 1:
        raise ValueError(f"adam_update: step t counts from 1, got {t}")
    cdef int nt = _threads(n_threads), st
    cdef float *pp = _mp(p.reshape(-1))
    cdef float *pm = _mp(m.reshape(-1))
    cdef float *pv = _mp(v.reshape(-1))
    cdef const float *pg = _cp(g.reshape(-1))
    cdef int64_t n = p.size
    with nogil:
        st = fn_adam_update(pp, pm, pv, pg, n, lr, beta1, beta2, eps, t, nt)
    _status(st, "adam_update")
