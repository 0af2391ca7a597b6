# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Checked entry points to the C kernels.

Glue only: every function validates dtypes, shapes and contiguity (raising ValueError/TypeError that name
the arrays and shapes), allocates outputs the caller did not pass, releases the GIL around the C call and
turns a bad status into an exception. Activations are NHWC here; the layers convert at the model's edges.

The settings a kernel runs with are resolved per call, here, under the GIL, and passed to C as arguments:
threads (the count set with set_num_threads, else OpenMP's current maximum, so OMP_NUM_THREADS and
threadpoolctl's limits apply), the GEMM instruction-set path (set_isa) and the convolution algorithm
(set_conv_algo). Each kernel also takes them explicitly (n_threads=, isa=, conv_algo=), as an execution plan
does, and scratch memory from a caller-owned Workspace (else a temporary one).

The kernels by op family: _kernels_dense.pxi (gemm, dense), _kernels_conv.pxi (conv2d, maxpool2d),
_kernels_elementwise.pxi (activations, softmax, cross-entropy, dropout, gathering a batch's rows),
_kernels_optim.pxi (optimizers).
"""
import math
import os

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

from fastnet._check import INT_MAX, integer as _int, ints as _ints, real as _real_number
from fastnet._fastnet_c cimport *

cnp.import_array()

cdef dict _activation_codes():
    """Every elementwise activation the C kernels have, by name (they say which: fn_activation_name)."""
    codes, act = {}, 0
    while fn_activation_name(act) != NULL:
        codes[fn_activation_name(act).decode()] = act
        act += 1
    return codes


ACTIVATIONS = _activation_codes()
# "avx512_bf16" is "avx512" with its bfloat16 products on VDPBF16PS, "amx_bf16" with them on AMX tiles (TDPBF16PS);
# "avx512" then forces the portable bf16 path.
ISAS = {"generic": FN_ISA_GENERIC, "avx2": FN_ISA_AVX2, "avx512": FN_ISA_AVX512, "avx512_bf16": FN_ISA_AVX512_BF16,
        "amx_bf16": FN_ISA_AMX_BF16}
CONV_ALGOS = {"auto": FN_CONV_AUTO, "im2col": FN_CONV_IM2COL, "winograd": FN_CONV_WINOGRAD, "direct": FN_CONV_DIRECT}
_ISA_NAMES = {code: name for name, code in ISAS.items()}
_ALGO_NAMES = {code: name for name, code in CONV_ALGOS.items()}
MAX_THREADS = 1024  # larger requests are clamped: no kernel gains from more, and each thread costs scratch

cdef int _num_threads = 0  # 0: not set; each call then uses OpenMP's current maximum
_isa = fn_gemm_cpu_max_isa()  # FASTNET_ISA may lower it: see the end of this file
_conv_algo = FN_CONV_AUTO


# ---- threads, instruction sets and convolution algorithms ----

def set_num_threads(n):
    """Threads every kernel uses from now on (n >= 1); None: OpenMP's current maximum, resolved per call."""
    global _num_threads
    _num_threads = 0 if n is None else _threads(n)


def get_num_threads():
    """The threads a kernel called now would use."""
    return _threads(None)


def num_threads_is_set():
    """Whether set_num_threads fixed the count (else each call follows OpenMP's current maximum)."""
    return _num_threads > 0


def have_openmp():
    return bool(fn_have_openmp())


def set_isa(isa):
    """Select the GEMM micro-kernel of every later call: 'generic', 'avx2', 'avx512', 'avx512_bf16', 'amx_bf16' or
    'best'."""
    global _isa
    _isa = fn_gemm_cpu_max_isa() if isa == "best" else _isa_code(isa)


def _isa_from_environment():
    """FASTNET_ISA (as oneDNN's ONEDNN_MAX_CPU_ISA and OpenBLAS's OPENBLAS_CORETYPE): the path every call takes
    unless set_isa says otherwise, so a whole run, its worker processes included, measures one path: an AVX2
    machine's kernels on an AVX-512 CPU, say. Unset, empty or 'best': the best this CPU supports."""
    value = os.environ.get("FASTNET_ISA", "")
    if value in ("", "best"):
        return
    try:
        set_isa(value)
    except (ValueError, RuntimeError) as e:
        raise RuntimeError(f"FASTNET_ISA={value!r}: {e}") from None


def get_isa():
    return _ISA_NAMES[_isa]


def supported_isas():
    return tuple(name for name, code in ISAS.items() if code <= fn_gemm_cpu_max_isa())


def set_conv_algo(algo):
    """Convolution algorithm of every later call: 'auto' (Winograd F(4x4, 3x3) for 3x3 stride-1 kernels with
    >= 16 input and output channels, direct for kernels of at most 32 taps (KH * KW * C) and output channels a
    multiple of 8, im2col + GEMM elsewhere), 'winograd' (every 3x3 stride-1 kernel), 'direct' (every kernel of few
    taps; it runs beside the AVX2 and AVX-512 float32 GEMM paths, im2col elsewhere) or 'im2col'."""
    global _conv_algo
    _conv_algo = _algo_code(algo)


def get_conv_algo():
    return _ALGO_NAMES[_conv_algo]


def settings():
    """(threads, ISA, convolution algorithm): what every kernel called now runs with, in one call (a call's
    configuration: fastnet.plan.KernelConfig)."""
    return (_threads(None), _ISA_NAMES[_isa], _ALGO_NAMES[_conv_algo])


# ---- argument checking ----
#
# The C kernels trust their arguments; everything here makes that safe. Arrays: the dtype, the number of
# dimensions, C order, and no empty dimension (C divides by and allocates from sizes). Outputs: the exact shape,
# writeable, and no overlap with an input, except an elementwise output that may BE its input (in place).
# Scalars: Python ints and floats, range-checked here so no value reaches C through an overflowing conversion.

FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_ELEMENTS = 2**48  # the most elements any array a kernel works with may hold (1 PiB of floats)

cdef int _threads(n_threads) except -1:
    """The thread count of one call: the argument, else the set count, else OpenMP's current maximum;
    clamped to [1, MAX_THREADS] the same way for every kernel."""
    cdef int n
    if n_threads is None:
        n = _num_threads if _num_threads > 0 else fn_omp_max_threads()
    elif type(n_threads) is int and 1 <= <object>n_threads <= MAX_THREADS:  # the plan's calls: no Python call
        n = n_threads
    else:
        n = min(_int(n_threads, "n_threads", 1), MAX_THREADS)
    return max(1, min(n, MAX_THREADS))


cdef int _isa_code(isa) except -1:
    if isa is None:
        return _isa
    if not isinstance(isa, str) or isa not in ISAS:
        raise ValueError(f"unknown ISA {isa!r}; expected one of {tuple(ISAS) + ('best',)}")
    if ISAS[isa] > fn_gemm_cpu_max_isa():
        raise RuntimeError(f"this CPU does not support {isa!r}; it supports up to "
                           f"{_ISA_NAMES[fn_gemm_cpu_max_isa()]!r}")
    return ISAS[isa]


PRECISIONS = ("float32", "bfloat16")


cdef int _precision_code(precision) except -1:
    """FN_BFLOAT16 for bfloat16 product operands (Keras's mixed_bfloat16 compute dtype), FN_FLOAT32 for float32
    (and None)."""
    if precision is None or (isinstance(precision, str) and precision == "float32"):
        return FN_FLOAT32
    if isinstance(precision, str) and precision == "bfloat16":
        return FN_BFLOAT16
    raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")


def _precision_name(int code):
    return "bfloat16" if code == FN_BFLOAT16 else "float32"


cdef int _algo_code(algo) except -1:
    if algo is None:
        return _conv_algo
    if not isinstance(algo, str) or algo not in CONV_ALGOS:
        raise ValueError(f"unknown convolution algorithm {algo!r}; expected one of {tuple(CONV_ALGOS)}")
    return CONV_ALGOS[algo]


cdef _real(value, name):
    """A float argument within float32's range (NaN and inf pass: the arithmetic then carries them)."""
    if type(value) is float and -FLOAT32_MAX <= <double>value <= FLOAT32_MAX:
        return value  # the common case, first: no Python call
    value = _real_number(value, name, finite=False)
    if math.isfinite(value) and abs(value) > FLOAT32_MAX:
        raise ValueError(f"{name}={value} is outside float32's range (|x| <= {FLOAT32_MAX:.4g})")
    return value


# Each check below first reads the array's header through numpy's C API (a few loads): an array that passes there
# is exactly one the numpy-level checks after it would pass, and anything else takes those checks, which say what is
# wrong. Python-level attribute reads and np.may_share_memory cost 0.2-0.5 us each, on every kernel call.
cdef dict _TYPENUMS = {np.float32: cnp.NPY_FLOAT32, np.uint8: cnp.NPY_UINT8, np.int32: cnp.NPY_INT32,
                       np.int64: cnp.NPY_INT64}


cdef inline bint _fits(a, int ndim, int typenum):
    """Whether a is a non-empty C-contiguous ndarray of this native item type (and ndim dimensions, unless < 0)."""
    if not cnp.PyArray_Check(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    return (cnp.PyArray_TYPE(arr) == typenum and cnp.PyArray_ISNOTSWAPPED(arr) and cnp.PyArray_IS_C_CONTIGUOUS(arr)
            and (ndim < 0 or cnp.PyArray_NDIM(arr) == ndim) and cnp.PyArray_SIZE(arr) > 0)


cdef inline bint _bounds(a, char **lo, char **hi):
    """The bytes [lo, hi) a C-contiguous array's data spans; False for anything else."""
    if not cnp.PyArray_Check(a) or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a):
        return False
    lo[0] = <char *>cnp.PyArray_DATA(<cnp.ndarray>a)
    hi[0] = lo[0] + cnp.PyArray_NBYTES(<cnp.ndarray>a)
    return True


cdef _array(a, name, ndim=None, dtype=np.float32):
    typenum = _TYPENUMS.get(dtype)
    if typenum is not None and _fits(a, -1 if ndim is None else ndim, typenum):
        return a
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {a.dtype} "
                        f"(convert with {name}.astype(np.{np.dtype(dtype).name}))")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} with shape {a.shape} must be C-contiguous (use np.ascontiguousarray)")
    if a.size == 0:
        raise ValueError(f"{name} has shape {a.shape}: every dimension must be >= 1 (the kernels take no empty "
                         "arrays)")
    return a


cdef _expect(a, name, shape):
    if a.shape != tuple(shape):
        raise ValueError(f"{name} has shape {a.shape}, expected {tuple(shape)}")


cdef _writable(a, name):
    """a (an array _array passed) must be writeable."""
    if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>a):
        raise ValueError(f"{name} is read-only")


cdef int _overlap(a, b) except -1:
    """0: the data of a and b do not meet (np.may_share_memory's answer: their bounds); 2: they are the very same
    bytes; 1: they meet otherwise."""
    cdef char *alo
    cdef char *ahi
    cdef char *blo
    cdef char *bhi
    if _bounds(a, &alo, &ahi) and _bounds(b, &blo, &bhi):
        if not (alo < bhi and blo < ahi):
            return 0
        return 2 if alo == blo and ahi == bhi else 1
    if not np.may_share_memory(a, b):
        return 0
    same = a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.nbytes == b.nbytes
    return 2 if same else 1


cdef inline bint _may_share(a, b) except -1:
    return _overlap(a, b) != 0


cdef _empty(shape, dtype):
    """np.empty(shape, dtype) through numpy's C API (a third of the Python call's cost)."""
    cdef cnp.npy_intp dims[32]
    typenum = _TYPENUMS.get(dtype)
    if typenum is None or len(shape) > 32:
        return np.empty(shape, dtype=dtype)
    for i in range(len(shape)):
        dims[i] = shape[i]
    return cnp.PyArray_EMPTY(len(shape), dims, typenum, 0)


cdef _output(out, name, shape, inputs=(), dtype=np.float32, in_place=()):
    """The output array: a new one, or out checked to have exactly this shape and dtype, to be writeable and to
    overlap none of the inputs; in_place: inputs out may be exactly (an elementwise kernel's), never partly."""
    if out is None:
        return _empty(shape, dtype)
    _array(out, name, len(shape), dtype)
    _expect(out, name, shape)
    _writable(out, name)
    cdef bint in_place_exactly = False
    for other in in_place:
        overlap = _overlap(out, other)
        if overlap == 1:
            raise ValueError(f"{name} partly overlaps an input: pass the input itself (in place) or a separate array")
        in_place_exactly = in_place_exactly or overlap == 2
    if not in_place_exactly:
        for other in inputs:
            if other is not None and _may_share(out, other):
                raise ValueError(f"{name} must not overlap the kernel's inputs")
    return out


cdef _disjoint(arrays):
    """Arrays a kernel writes (and reads) through separate pointers: no two may share memory."""
    items = [(name, a) for name, a in arrays if a is not None]
    for i, (name, a) in enumerate(items):
        for other, b in items[i + 1:]:
            if _may_share(a, b):
                raise ValueError(f"{name} and {other} must not overlap")


cdef _status(int status, what):
    if status == FN_EINVAL:
        raise ValueError(f"{what}: invalid argument")
    if status != FN_OK:
        raise RuntimeError(f"{what} failed with status {status}")


cdef _fused_activation(act, what):
    """The activations a dense or conv kernel applies itself: 'linear' and 'relu' (the plan runs others after)."""
    code = _activation(act)
    if code not in (FN_ACT_LINEAR, FN_ACT_RELU):
        raise ValueError(f"{what} applies activation 'linear' or 'relu' itself, got {act!r}: run "
                         "activation_forward after it")
    return code


cdef _activation(act):
    if isinstance(act, str):
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
        return ACTIVATIONS[act]
    if isinstance(act, (bool, np.bool_)) or act not in ACTIVATIONS.values():
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
    return act


cdef void *_data(a, bint writable, Py_ssize_t itemsize) except? NULL:
    """The data of an array the checks above passed (dtype, shape, C order, writeable for an output), asserted once
    more here (C order, writability, item size) before C gets the pointer."""
    if not cnp.PyArray_Check(a) or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a):
        raise TypeError("expected a C-contiguous numpy.ndarray")
    if writable and not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>a):
        raise ValueError("expected a writeable array")
    if cnp.PyArray_ITEMSIZE(<cnp.ndarray>a) != itemsize:
        raise TypeError(f"expected an array of {itemsize}-byte items, got {cnp.PyArray_ITEMSIZE(<cnp.ndarray>a)}-byte ones")
    return cnp.PyArray_DATA(<cnp.ndarray>a) if cnp.PyArray_SIZE(<cnp.ndarray>a) else NULL


cdef inline const float *_cp(a) except? NULL:
    return <const float *>_data(a, False, 4)


cdef inline float *_mp(a) except? NULL:
    return <float *>_data(a, True, 4)


cdef inline float *_opt(v) except? NULL:
    return NULL if v is None else _mp(v)


# ---- scratch memory ----

# FASTNET_EXACT_WORKSPACE=1 (set by .ci/sanitize): a fresh buffer of exactly the queried size for every call,
# so AddressSanitizer catches a kernel that writes past what its workspace query promised.
_EXACT_WORKSPACE = os.environ.get("FASTNET_EXACT_WORKSPACE") == "1"


cdef class Workspace:
    """Scratch memory for kernel calls, owned by whoever makes them (an execution plan): one buffer that grows
    to the largest request and is dropped by release(). Kernels never allocate."""

    cdef object _buf

    def __init__(self):
        self._buf = None

    cpdef get(self, int64_t nfloats):
        if _EXACT_WORKSPACE:
            return np.empty(max(nfloats, 1), dtype=np.float32)
        if self._buf is None or self._buf.shape[0] < nfloats:
            self._buf = None  # the old buffer goes before the new one comes
            self._buf = np.empty(max(nfloats, 1), dtype=np.float32)
        return self._buf

    def release(self):
        self._buf = None

    @property
    def nbytes(self):
        return 0 if self._buf is None else self._buf.nbytes


cdef _scratch(workspace, int64_t nfloats):
    """nfloats of scratch from the caller's Workspace, or a temporary buffer for this call alone."""
    if workspace is None:
        return np.empty(max(nfloats, 1), dtype=np.float32)
    if type(workspace) is Workspace:
        return (<Workspace>workspace).get(nfloats)
    return workspace.get(nfloats)


include "_kernels_dense.pxi"
include "_kernels_conv.pxi"
include "_kernels_elementwise.pxi"
include "_kernels_optim.pxi"
include "_kernels_program.pxi"


_isa_from_environment()
