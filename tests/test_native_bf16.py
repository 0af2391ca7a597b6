"""The native bfloat16 paths, on every CPU: csrc/gemm_avx512bf16.c (VDPBF16PS, GEMM path 'avx512_bf16') and
csrc/gemm_amx.c (AMX tiles, TDPBF16PS, GEMM path 'amx_bf16'), both on operands packed as bfloat16 pairs along K.

Where the CPU has them the whole suite also runs them for real: they are then among the GEMM paths the `isa`
fixture takes, and test_the_cpus_own_instructions_follow_the_models checks the real instructions against the
models below. Everywhere else these tests build the C kernels into a library of their own, with the micro-kernels'
intrinsics written out lane by lane and tile by tile (tests/native_bf16_emulation.h, after the Intel SDM's
pseudocode), and call it through ctypes. That proves the new code itself (the pair packing of both operands, the
odd-K padding, the edges, the AMX kernel's tail configuration, every caller of the micro-kernels) on this CPU, down
to the bit: the GEMM is compared with a numpy model of the exact order in which each instruction rounds.
"""
import os

import numpy as np
import pytest

import kernel_library
import reference as ref
from helpers import bf16_close, gemm_terms, rand, winograd_abs_bound
from kernel_library import Shape

FN_ISA_AVX2, FN_ISA_AVX512_BF16, FN_ISA_AMX_BF16, FN_BFLOAT16 = 1, 3, 4, 1
PORTABLE = (FN_ISA_AVX2, FN_BFLOAT16)  # a kernel's (isa, precision) arguments
NATIVE_PATHS = {"avx512_bf16": (FN_ISA_AVX512_BF16, FN_BFLOAT16), "amx_bf16": (FN_ISA_AMX_BF16, FN_BFLOAT16)}
IM2COL, WINOGRAD = 1, 2


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """The C kernels built with the emulated native micro-kernels (needs a C compiler and the source tree)."""
    if kernel_library.compiler() is None or not kernel_library.have_sources():
        pytest.skip("needs a C compiler and fastnet's source tree (csrc/)")
    return kernel_library.build(tmp_path_factory.mktemp("emu") / "libfastnet_emu.so", ["-DFN_EMULATE_AVX512BF16"],
                                include=[os.path.join(kernel_library.ROOT, "tests")])


@pytest.fixture(params=list(NATIVE_PATHS))
def path(request):
    """A native path: its name and C (isa, precision) arguments."""
    return request.param, NATIVE_PATHS[request.param]


def gemm(lib, a, b, trans_a=0, trans_b=0, alpha=1.0, beta=0.0, c=None, isa=PORTABLE, n_threads=2):
    M, K = (a.shape[1], a.shape[0]) if trans_a else a.shape
    N = b.shape[0] if trans_b else b.shape[1]
    c = np.full((M, N), np.nan, np.float32) if c is None else c.copy()
    ws = np.empty(lib.fn_gemm_workspace(M, N, K, *isa), np.float32)
    status = lib.fn_gemm(trans_a, trans_b, M, N, K, alpha, a, a.shape[1], b, b.shape[1], beta, c, N, *isa, ws,
                         n_threads)
    assert status == 0
    return c


def kc_of(K):
    """fn_gemm_kc: K cut into equal blocks of at most 512, each a multiple of 8."""
    blocks = max(1, -(-K // 512))
    return -(-(-(-K // blocks)) // 8) * 8


def vdpbf16ps_block(products, pairs, zero):
    """One K block on VDPBF16PS: each pair p adds its odd-k product, then its even-k one, to the accumulator."""
    acc = zero
    for p in range(pairs):
        acc = acc + products(2 * p + 1)
        acc = acc + products(2 * p)
    return acc


def tdpbf16ps_block(products, pairs, zero):
    """One K block on AMX: per TDPBF16PS (16 pairs), the even-k and the odd-k products are summed from zero
    separately, then the accumulator adds (even + odd)."""
    acc = zero
    for s in range(0, pairs, 16):
        even, odd = zero, zero
        for p in range(s, min(pairs, s + 16)):
            even = even + products(2 * p)
            odd = odd + products(2 * p + 1)
        acc = acc + (even + odd)
    return acc


BLOCKS = {"avx512_bf16": vdpbf16ps_block, "amx_bf16": tdpbf16ps_block}


def model(path, a, b, alpha=1.0, beta=0.0, c=None):
    """C = alpha op(A) op(B) + beta C exactly as a native path rounds it, in float32 numpy. a (M, K) and b (K, N)
    are op(A) and op(B); beta is 0 or 1. K is cut into fn_gemm_kc's blocks, each summed from zero in the
    instruction's order (BLOCKS; every product is exact in float32, and k past the block is a zero pad), and the
    blocks are added to C in order."""
    ra = ref.round_bf16(np.float32(alpha) * a).astype(np.float32)
    rb = ref.round_bf16(b).astype(np.float32)
    M, K = a.shape
    out = c.copy() if beta else None
    kc = kc_of(K)
    zero = np.zeros((M, b.shape[1]), np.float32)
    for pc in range(0, K, kc):
        kcb = min(kc, K - pc)

        def products(k):
            return np.outer(ra[:, pc + k], rb[pc + k]) if k < kcb else zero

        acc = BLOCKS[path](products, (kcb + 1) // 2, zero)
        out = acc if out is None else out + acc
    return out


GEMM_SHAPES = [(1, 1, 1), (1, 5, 3), (7, 13, 5), (9, 33, 2), (17, 33, 300), (8, 32, 512), (3, 70, 1031),
               (128, 512, 784)]


@pytest.mark.parametrize("M,N,K", GEMM_SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_native_gemm_is_its_instructions_order_bit_for_bit(lib, rng, path, M, N, K, trans_a, trans_b):
    name, isa = path
    a, b = rand(rng, M, K), rand(rng, K, N)
    A = np.ascontiguousarray(a.T) if trans_a else a
    B = np.ascontiguousarray(b.T) if trans_b else b
    np.testing.assert_array_equal(gemm(lib, A, B, trans_a, trans_b, isa=isa), model(name, a, b))
    c0 = rand(rng, M, N)
    np.testing.assert_array_equal(gemm(lib, A, B, trans_a, trans_b, alpha=0.75, beta=1.0, c=c0, isa=isa),
                                  model(name, a, b, alpha=0.75, beta=1.0, c=c0))
    bf16_close(gemm(lib, A, B, trans_a, trans_b, isa=isa), gemm_terms(a, b), "native gemm", K)


@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (7, 13, 5), (17, 33, 300), (3, 70, 1031), (128, 512, 784)])
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 1)])
def test_the_cpus_own_instructions_follow_the_models(rng, path, M, N, K, trans_a, trans_b):
    """The installed extension on a CPU with the instructions: the real VDPBF16PS or TDPBF16PS, not the emulation,
    must round as the model (and so as tests/native_bf16_emulation.h) says, or the emulated proofs above prove
    nothing."""
    from fastnet import _kernels

    name = path[0]
    if name not in _kernels.supported_isas():
        pytest.skip(f"this CPU has no {name} path (the emulated tests above stand in for it)")
    a, b = rand(rng, M, K), rand(rng, K, N)
    A = np.ascontiguousarray(a.T) if trans_a else a
    B = np.ascontiguousarray(b.T) if trans_b else b
    got = _kernels.gemm(A, B, trans_a=bool(trans_a), trans_b=bool(trans_b), alpha=0.75, isa=name,
                        precision="bfloat16", n_threads=2)
    np.testing.assert_array_equal(got, model(name, a, b, alpha=0.75))


@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_native_gemm_reads_nothing_past_its_operands(lib, rng, path, trans_a, trans_b):
    """A and B stored with leading dimensions wider than they are, the gap filled with NaN: the pairs padding an
    odd K and the edges of rows and columns must come from zeros, never from the neighbouring memory."""
    M, N, K = 11, 37, 301

    def strided(x):  # x inside a NaN-filled array 3 columns wider
        wide = np.full((x.shape[0], x.shape[1] + 3), np.nan, np.float32)
        wide[:, :x.shape[1]] = x
        return wide

    a, b = rand(rng, M, K), rand(rng, K, N)
    A, B = strided(a.T if trans_a else a), strided(b.T if trans_b else b)
    c = np.full((M, N), np.nan, np.float32)
    ws = np.empty(lib.fn_gemm_workspace(M, N, K, *path[1]), np.float32)
    assert lib.fn_gemm(trans_a, trans_b, M, N, K, 1.0, A, A.shape[1], B, B.shape[1], 0.0, c, N, *path[1], ws, 2) == 0
    np.testing.assert_array_equal(c, model(path[0], a, b))


def test_native_path_is_not_the_portable_one(lib, rng, path):
    """Both round the operands alike but accumulate in another order: for long K the last bits differ."""
    a, b = rand(rng, 64, 784), rand(rng, 784, 64)
    native, portable = gemm(lib, a, b, isa=path[1]), gemm(lib, a, b)
    bf16_close(portable, gemm_terms(a, b), "portable gemm", 784)
    assert not np.array_equal(native, portable)
    assert np.abs(native - portable).max() <= 2 ** -14 * np.abs(portable).max()


def test_native_gemm_is_bit_identical_across_thread_counts_and_prepacking(lib, rng, path):
    isa = path[1]
    a, b = rand(rng, 130, 700), rand(rng, 700, 75)
    first = gemm(lib, a, b, isa=isa, n_threads=1)
    for nt in (2, 3, 7):
        np.testing.assert_array_equal(gemm(lib, a, b, isa=isa, n_threads=nt), first)
    bp = np.zeros(lib.fn_gemm_packed_b_size(700, 75), np.float32)
    assert lib.fn_gemm_pack(bp, b, 75, 0, 700, 75, *isa, 2) == 0
    c = np.full((130, 75), np.nan, np.float32)
    ws = np.empty(max(1, lib.fn_gemm_prepacked_workspace(130, 700, *isa)), np.float32)
    assert lib.fn_gemm_prepacked(0, 130, 75, 700, 1.0, a, 700, bp, 0.0, c, 75, *isa, ws, 3) == 0
    np.testing.assert_array_equal(c, first)


def conv_shape(x_shape, w_shape, strides, padding):
    N, H, W, C = x_shape
    KH, KW, _, OC = w_shape
    OH, PT, _ = ref.conv_geometry(H, KH, strides[0], padding)
    OW, PL, _ = ref.conv_geometry(W, KW, strides[1], padding)
    return Shape(N, H, W, C, OC, KH, KW, strides[0], strides[1], PT, PL, OH, OW)


def conv(lib, x, w, dy, s, algo, isa):
    """The three passes through an emulated native path: y, dx, dw."""
    ws = np.empty(lib.fn_conv2d_workspace(s, algo, *isa, 2), np.float32)
    y = np.empty((s.N, s.OH, s.OW, s.OC), np.float32)
    dx, dw = np.empty(x.shape, np.float32), np.empty(w.shape, np.float32)
    assert lib.fn_conv2d_forward(y, x, w, None, s, 0, algo, *isa, None, ws, 2) == 0
    assert lib.fn_conv2d_backward_data(dx, dy, w, None, s, algo, *isa, ws, 2) == 0
    assert lib.fn_conv2d_backward_filter(dw, None, dy, x, s, algo, *isa, ws, 2) == 0
    return y, dx, dw


# (N, H, W, C, OC, KH, KW, strides, padding): the article CNN's two layers (the second one's data gradient takes
# the direct path: C a multiple of 32; on AMX, the tap path, as its forward does), odd channels, strides, 'same'
# padding, a 1x1 kernel.
CONV_CASES = [(2, 28, 28, 1, 32, 3, 3, (1, 1), "valid"), (2, 12, 12, 32, 32, 3, 3, (1, 1), "valid"),
              (1, 7, 9, 3, 5, 3, 2, (1, 1), "same"), (3, 8, 7, 2, 3, 3, 3, (2, 2), "same"),
              (1, 5, 5, 3, 17, 1, 1, (1, 1), "valid"), (2, 9, 8, 64, 5, 3, 3, (2, 2), "same")]


@pytest.mark.parametrize("case", CONV_CASES)
def test_native_im2col_conv(lib, rng, path, case):
    N, H, W, C, OC, KH, KW, strides, padding = case
    x, w = rand(rng, N, H, W, C), rand(rng, KH, KW, C, OC, scale=0.3)
    s = conv_shape(x.shape, w.shape, strides, padding)
    dy = rand(rng, N, s.OH, s.OW, OC)
    y, dx, dw = conv(lib, x, w, dy, s, IM2COL, path[1])
    rx, rw, rdy = ref.round_bf16(x), ref.round_bf16(w), ref.round_bf16(dy)
    a = np.abs
    bf16_close(y, (ref.conv2d_forward(rx, rw, None, strides, padding),
                   ref.conv2d_forward(a(rx), a(rw), None, strides, padding)), "forward", KH * KW * C)
    bf16_close(dx, (ref.conv2d_backward_data(rdy, rw, x.shape, strides, padding),
                    ref.conv2d_backward_data(a(rdy), a(rw), x.shape, strides, padding)), "dx", KH * KW * OC)
    bf16_close(dw, (ref.conv2d_backward_filter(rdy, rx, (KH, KW), strides, padding)[0],
                    ref.conv2d_backward_filter(a(rdy), a(rx), (KH, KW), strides, padding)[0]), "dw",
               N * s.OH * s.OW)


def im2col(x, s):
    """The im2col matrix of x [N, H, W, C] for shape s: one row per output position, (kh, kw, c) along it."""
    xp = np.pad(x, ((0, 0), (s.PT, (s.OH - 1) * s.SH + s.KH - s.H - s.PT), (s.PL, (s.OW - 1) * s.SW + s.KW - s.W - s.PL),
                    (0, 0)))
    taps = [xp[:, kh:kh + s.SH * (s.OH - 1) + 1:s.SH, kw:kw + s.SW * (s.OW - 1) + 1:s.SW, :]
            for kh in range(s.KH) for kw in range(s.KW)]
    return np.concatenate(taps, axis=3).reshape(s.N * s.OH * s.OW, s.KH * s.KW * s.C)


def tap_filter_model(x, dy, s):
    """dW on AMX's tap path: per image (each its own chunk below 65 images) and tap, X_t^T . DY over the image's
    "wide" positions p = oh * Wp + ow (dy zero where ow >= OW, X_t's row p the padded pixel p + kh * Wp + kw), in
    TDPBF16PS's order over all of them; the images' partials added from zero in order."""
    N, C, OC, Wp = s.N, s.C, s.OC, s.OW + s.KW - 1
    pairs = 16 * -(-(s.OH * Wp) // 32)
    xpad = np.zeros((N, (s.OH + s.KH - 1) * Wp + 2 * pairs + 2 * Wp * s.KH, C), np.float32)
    pad = np.pad(x, ((0, 0), (s.PT, s.OH + s.KH - 1 - s.H - s.PT), (s.PL, Wp - s.W - s.PL), (0, 0)))
    xpad[:, :pad.shape[1] * Wp] = pad.reshape(N, -1, C)
    dyw = np.zeros((N, 2 * pairs, OC), np.float32)
    dyw[:, :s.OH * Wp] = np.pad(dy, ((0, 0), (0, 0), (0, Wp - s.OW), (0, 0))).reshape(N, -1, OC)
    zero = np.zeros((C, OC), np.float32)
    dw = np.zeros((s.KH * s.KW * C, OC), np.float32)
    for n in range(N):
        rb = ref.round_bf16(dyw[n]).astype(np.float32)
        for kh in range(s.KH):
            for kw in range(s.KW):
                off, t = kh * Wp + kw, kh * s.KW + kw
                ra = ref.round_bf16(xpad[n, off:off + 2 * pairs].T).astype(np.float32)
                part = BLOCKS["amx_bf16"](lambda k: np.outer(ra[:, k], rb[k]), pairs, zero)
                dw[t * C:(t + 1) * C] = dw[t * C:(t + 1) * C] + (zero + part)
    return dw


# The CNN's second layer, in both paddings, with and without a 2x2 pool after it, on the AMX path takes the direct
# convolution (32 channels: no im2col at all); 64 filters are two panels; 5x5 taps, a wider image, and C = 16 and
# a stride of 2 (im2col) around it.
DIRECT_CASES = [(2, 26, 26, 32, 32, 3, 3, (1, 1), "valid"), (2, 12, 12, 32, 32, 3, 3, (1, 1), "same"),
                (1, 9, 30, 32, 64, 3, 3, (1, 1), "valid"), (1, 10, 8, 32, 32, 5, 3, (1, 1), "same"),
                (1, 8, 8, 16, 32, 3, 3, (1, 1), "valid"), (1, 9, 9, 32, 32, 3, 3, (2, 2), "same")]


@pytest.mark.parametrize("case", DIRECT_CASES, ids=str)
def test_native_conv_passes_are_their_instructions_order_bit_for_bit(lib, rng, path, case):
    """The forward is the GEMM of its im2col matrix on the path, bit for bit, whether the path builds that matrix
    or (AMX, 32 channels, stride 1: the tap path) reads the image directly; pooled, it is the max-pool of the ReLU
    of that. On the tap path the data gradient (32 channels each way) is the GEMM of dy's im2col matrix for the
    flipped pass, and the filter gradient follows tap_filter_model."""
    N, H, W, C, OC, KH, KW, strides, padding = case
    x, w = rand(rng, N, H, W, C), rand(rng, KH, KW, C, OC, scale=0.3)
    x[0, 1, 2] = 0.0  # a zero pixel beside the padding
    s = conv_shape(x.shape, w.shape, strides, padding)
    ws = np.empty(lib.fn_conv2d_workspace(s, IM2COL, *path[1], 2), np.float32)
    y = np.empty((N, s.OH, s.OW, OC), np.float32)
    assert lib.fn_conv2d_forward(y, x, w, None, s, 0, IM2COL, *path[1], None, ws, 2) == 0
    want = model(path[0], im2col(x, s), w.reshape(-1, OC)).reshape(y.shape)
    np.testing.assert_array_equal(y, want)
    if s.OH % 2 or s.OW % 2 or 2 * s.OW > 96:
        return
    if path[0] == "amx_bf16" and C == OC == 32 and strides == (1, 1):
        # the data gradient takes the same path: the flipped pass over dy, with the previous ReLU's mask
        dy = rand(rng, N, s.OH, s.OW, OC)
        d = Shape(N, s.OH, s.OW, OC, C, KH, KW, 1, 1, KH - 1 - s.PT, KW - 1 - s.PL, H, W)
        dx = np.empty(x.shape, np.float32)
        assert lib.fn_conv2d_backward_data(dx, dy, w, x.ctypes.data, s, IM2COL, *path[1], ws, 2) == 0
        flipped = w[::-1, ::-1].transpose(0, 1, 3, 2).reshape(-1, C)
        np.testing.assert_array_equal(dx, np.where(x > 0, model(path[0], im2col(dy, d), flipped).reshape(x.shape), 0))
    if path[0] == "amx_bf16" and C == 32 and OC % 32 == 0 and strides == (1, 1) and N <= 64:
        # and the filter gradient: per image and tap, one instruction sequence over the image's wide positions
        dy = rand(rng, N, s.OH, s.OW, OC)
        dw = np.empty(w.shape, np.float32)
        assert lib.fn_conv2d_backward_filter(dw, None, dy, x, s, IM2COL, *path[1], ws, 2) == 0
        np.testing.assert_array_equal(dw.reshape(-1, OC), tap_filter_model(x, dy, s))
    pooled = np.empty((N, s.OH // 2, s.OW // 2, OC), np.float32)
    arg = np.empty(pooled.shape, np.int32)
    assert lib.fn_conv2d_forward_maxpool(pooled, arg.ctypes.data, x, w, None, s, IM2COL, *path[1], None, ws,
                                         2) == 0
    want_y, want_arg = ref.maxpool2d_forward(np.maximum(want, 0), (2, 2))
    np.testing.assert_array_equal(pooled, want_y)
    np.testing.assert_array_equal(arg, want_arg)


def test_native_winograd_conv(lib, rng, path):
    """Winograd's products take the native path too: the forward within its analytic bfloat16 bound, the
    backward passes within test_mixed_precision's 2^-4 rms."""
    x, w = rand(rng, 2, 26, 26, 32), rand(rng, 3, 3, 32, 32, scale=0.3)
    s = conv_shape(x.shape, w.shape, (1, 1), "valid")
    dy = rand(rng, 2, 24, 24, 32)
    y, dx, dw = conv(lib, x, w, dy, s, WINOGRAD, path[1])
    exact = ref.conv2d_forward(x, w)
    bound = (2 ** -8 + 2 ** -17) * winograd_abs_bound(x, w) + 1e-4 * np.abs(exact).max()
    assert (np.abs(y - exact) <= bound).all()
    for got, want in ((dx, ref.conv2d_backward_data(dy, w, x.shape)), (dw, ref.conv2d_backward_filter(dy, x, (3, 3))[0])):
        assert np.sqrt(((got - want) ** 2).mean() / (want ** 2).mean()) <= 2 ** -4
