"""The AVX-512 float32 micro-kernel (csrc/gemm_avx512.c) on every CPU: built a second time against SIMDe's portable
AVX-512 (libsimde-dev, header-only; each 512-bit operation done as two AVX2 ones, its FMAs as FMAs), into a
library of its own called through ctypes, as tests/test_native_bf16.py does for the bfloat16 kernels.

The AVX-512 and AVX2 kernels compute every element of C the same way (from zero, one FMA per k in order, then
stored or added to C, K cut into the same blocks), so the emulated AVX-512 GEMM must equal the AVX2 GEMM of the
same library bit for bit, on every shape, edge and transposition; the convolutions built on it are checked
against the float64 reference. Where the CPU has AVX-512 the suite's `isa` fixture runs the real kernel as well,
and the last test here holds the emulation to it, bit for bit.
"""
import ctypes
import os

import numpy as np
import pytest

import reference as ref
import kernel_library
from helpers import assert_close, rand
from kernel_library import Shape

FN_ISA_GENERIC, FN_ISA_AVX2, FN_ISA_AVX512 = 0, 1, 2
FN_FLOAT32 = 0  # the precision argument after each isa
IM2COL, WINOGRAD = 1, 2


def close(actual, expected, name, rel=2e-5):
    """float32 against float64, as tests/test_kernels.py bounds it."""
    scale = max(1.0, float(np.abs(expected).max()))
    return assert_close(actual, expected, rtol=rel, atol=rel * scale, name=name)


def _simde():
    """The SIMDe include folder, or None."""
    for root in [os.environ.get("SIMDE_INCLUDE", ""), "/usr/include", "/usr/local/include"]:
        if root and os.path.exists(os.path.join(root, "simde", "x86", "avx512.h")):
            return root
    return None


def _cpu_has(*flags):
    try:
        with open("/proc/cpuinfo") as f:
            have = set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return False
    return all(flag in have for flag in flags)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """The C kernels with the AVX-512 micro-kernel on SIMDe. CI installs libsimde-dev, and FASTNET_REQUIRE_SIMDE=1
    there turns a missing SIMDe into a failure instead of a skip."""
    include = _simde()
    missing = ("a C compiler" if kernel_library.compiler() is None else
               "SIMDe (apt-get install libsimde-dev)" if include is None else
               "fastnet's source tree (csrc/)" if not kernel_library.have_sources() else
               "a CPU with AVX2 and FMA (what the emulation runs on)" if not _cpu_has("avx2", "fma") else None)
    if missing:
        if os.environ.get("FASTNET_REQUIRE_SIMDE") == "1":
            pytest.fail(f"the emulated AVX-512 tests need {missing}")
        pytest.skip(f"needs {missing}")
    return kernel_library.build(tmp_path_factory.mktemp("emu512") / "libfastnet_emu512.so",
                                ["-mavx2", "-mfma", "-DFN_EMULATE_AVX512"], include=[include])


def gemm(lib, a, b, trans_a=0, trans_b=0, alpha=1.0, beta=0.0, c=None, isa=FN_ISA_AVX512, n_threads=2):
    M, K = (a.shape[1], a.shape[0]) if trans_a else a.shape
    N = b.shape[0] if trans_b else b.shape[1]
    c = np.full((M, N), np.nan, np.float32) if c is None else c.copy()
    ws = np.empty(lib.fn_gemm_workspace(M, N, K, isa, FN_FLOAT32), np.float32)
    assert lib.fn_gemm(trans_a, trans_b, M, N, K, alpha, a, a.shape[1], b, b.shape[1], beta, c, N, isa, FN_FLOAT32,
                       ws, n_threads) == 0
    return c


GEMM_SHAPES = [(1, 1, 1), (1, 5, 3), (7, 13, 5), (9, 33, 2), (17, 33, 300), (8, 32, 512), (3, 70, 1031),
               (128, 512, 784), (130, 10, 512), (128, 512, 10), (13, 37, 19)]


@pytest.mark.parametrize("M,N,K", GEMM_SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_emulated_avx512_gemm_is_the_avx2_gemm_bit_for_bit(lib, rng, M, N, K, trans_a, trans_b):
    a, b = rand(rng, M, K), rand(rng, K, N)
    A = np.ascontiguousarray(a.T) if trans_a else a
    B = np.ascontiguousarray(b.T) if trans_b else b
    c0 = rand(rng, M, N)
    for alpha, beta in ((1.0, 0.0), (0.75, 1.0), (1.0, -0.5)):
        got = gemm(lib, A, B, trans_a, trans_b, alpha, beta, c0)
        np.testing.assert_array_equal(got, gemm(lib, A, B, trans_a, trans_b, alpha, beta, c0, isa=FN_ISA_AVX2))
        want = alpha * ref.gemm(a, b) + (beta * c0.astype(np.float64) if beta else 0.0)
        close(got, want, "emulated AVX-512 gemm")
    for threads in (1, 3):
        np.testing.assert_array_equal(gemm(lib, A, B, trans_a, trans_b, n_threads=threads),
                                      gemm(lib, A, B, trans_a, trans_b))


@pytest.mark.parametrize("algo", [IM2COL, WINOGRAD])
@pytest.mark.parametrize("case", [(2, 26, 26, 32, 32, "valid"), (1, 9, 7, 17, 20, "same"), (3, 6, 5, 3, 33, "valid")])
def test_emulated_avx512_convolutions_match_the_reference(lib, rng, algo, case):
    """Forward and the one-call backward (dw, db, dx with the previous ReLU's mask) on the emulated kernel."""
    N, H, W, C, OC, padding = case
    x, w, b = rand(rng, N, H, W, C), rand(rng, 3, 3, C, OC, scale=0.3), rand(rng, OC)
    OH, PT = (H - 2, 0) if padding == "valid" else (H, 1)
    OW, PL = (W - 2, 0) if padding == "valid" else (W, 1)
    s = Shape(N, H, W, C, OC, 3, 3, 1, 1, PT, PL, OH, OW)
    nt = 2
    ws = np.empty(lib.fn_conv2d_backward_workspace(ctypes.byref(s), 0, algo, FN_ISA_AVX512, FN_FLOAT32, nt) + 64,
                  np.float32)
    y = np.empty((N, OH, OW, OC), np.float32)
    assert lib.fn_conv2d_forward(y, x, w, b.ctypes.data, ctypes.byref(s), 1, algo, FN_ISA_AVX512, FN_FLOAT32, None,
                                 ws, nt) == 0
    close(y, ref.conv2d_forward(x, w, b, padding=padding, act="relu"), "emulated AVX-512 conv forward")
    dy = rand(rng, N, OH, OW, OC)
    dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(OC, np.float32)
    relu_x = np.ascontiguousarray(np.maximum(x, 0))
    assert lib.fn_conv2d_backward(dx, dw, db, dy, None, None, x, w, relu_x.ctypes.data, ctypes.byref(s), algo,
                                  FN_ISA_AVX512, FN_FLOAT32, ws, nt) == 0
    rdx, rdw, rdb = ref._conv2d_backward(dy, x, w, (1, 1), padding)
    close(dw, rdw, "emulated AVX-512 conv dw")
    close(db, rdb, "emulated AVX-512 conv db")
    close(dx, ref.activation_backward(rdx, relu_x, "relu"), "emulated AVX-512 conv dx")


def test_the_emulation_is_the_cpus_avx512_bit_for_bit(lib, rng):
    """Where the CPU has AVX-512: the installed extension's real kernel against the emulated one."""
    from fastnet import _kernels

    if "avx512" not in _kernels.supported_isas():
        pytest.skip("this CPU has no AVX-512 (the emulated tests above stand in for it)")
    for M, N, K in GEMM_SHAPES:
        a, b = rand(rng, M, K), rand(rng, K, N)
        np.testing.assert_array_equal(gemm(lib, a, b), _kernels.gemm(a, b, isa="avx512", n_threads=2))
