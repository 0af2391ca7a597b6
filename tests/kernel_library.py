"""fastnet's C kernels built into a library of the tests' own and called through ctypes: how the tests run a
micro-kernel the CPU cannot (tests/test_native_bf16.py: the bfloat16 instructions written out lane by lane;
tests/test_emulated_avx512.py: the AVX-512 kernel on SIMDe). Every kernel of fastnet.h is declared here once.
FASTNET_EMU_CFLAGS adds compiler flags (.ci/sanitize: AddressSanitizer + UBSan)."""
import ctypes
import os
import shutil
import subprocess

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
F32P = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
I64 = ctypes.c_int64
INT, FLOAT, PTR = ctypes.c_int, ctypes.c_float, ctypes.c_void_p


class Shape(ctypes.Structure):
    """fn_conv2d_shape."""
    _fields_ = [(name, I64) for name in ("N", "H", "W", "C", "OC", "KH", "KW", "SH", "SW", "PT", "PL", "OH", "OW")]


SHAPE = ctypes.POINTER(Shape)
# name: (argument types, result type)
# (an isa argument is followed by the products' precision: PATH, two ints)
PATH = [INT, INT]
SIGNATURES = {
    "fn_gemm": ([INT, INT, I64, I64, I64, FLOAT, F32P, I64, F32P, I64, FLOAT, F32P, I64, *PATH, F32P, INT], INT),
    "fn_gemm_workspace": ([I64, I64, I64, *PATH], I64),
    "fn_gemm_packed_b_size": ([I64, I64], I64),
    "fn_gemm_pack": ([F32P, F32P, I64, INT, I64, I64, *PATH, INT], INT),
    "fn_gemm_prepacked": ([INT, I64, I64, I64, FLOAT, F32P, I64, F32P, FLOAT, F32P, I64, *PATH, F32P, INT], INT),
    "fn_gemm_prepacked_workspace": ([I64, I64, *PATH], I64),
    "fn_conv2d_workspace": ([SHAPE, INT, *PATH, INT], I64),
    "fn_conv2d_backward_workspace": ([SHAPE, INT, INT, *PATH, INT], I64),
    "fn_conv2d_forward": ([F32P, F32P, F32P, PTR, SHAPE, INT, INT, *PATH, PTR, F32P, INT], INT),
    "fn_conv2d_forward_maxpool": ([F32P, PTR, F32P, F32P, PTR, SHAPE, INT, *PATH, PTR, F32P, INT], INT),
    "fn_conv2d_backward_data": ([F32P, F32P, F32P, PTR, SHAPE, INT, *PATH, F32P, INT], INT),
    "fn_conv2d_backward_filter": ([F32P, PTR, F32P, F32P, SHAPE, INT, *PATH, F32P, INT], INT),
    "fn_conv2d_backward": ([F32P, F32P, F32P, F32P, PTR, PTR, F32P, F32P, PTR, SHAPE, INT, *PATH, F32P, INT], INT),
}


def compiler():
    """The C compiler, or None."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def have_sources():
    return os.path.isdir(os.path.join(ROOT, "csrc"))


def build(out, flags, include=()):
    """Every csrc/*.c compiled with flags (defines, -m options) into the shared library out, loaded, declared."""
    sources = sorted(os.path.join(ROOT, "csrc", f) for f in os.listdir(os.path.join(ROOT, "csrc")) if f.endswith(".c"))
    includes = [arg for d in (os.path.join(ROOT, "csrc"), *include) for arg in ("-I", d)]
    subprocess.run([compiler(), "-O2", "-std=gnu11", "-Wno-psabi", "-fopenmp", "-shared", "-fPIC", *flags, *includes,
                    *os.environ.get("FASTNET_EMU_CFLAGS", "").split(), *sources, "-o", str(out), "-lm"],
                   check=True, capture_output=True)
    so = ctypes.CDLL(str(out))
    for name, (args, result) in SIGNATURES.items():
        getattr(so, name).argtypes, getattr(so, name).restype = args, result
    return so
