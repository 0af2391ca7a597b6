"""Each C kernel against the float64 reference, on the workloads' shapes and on odd ones."""
import zlib

import numpy as np
import pytest

import reference as ref
from fastnet import _kernels
from helpers import assert_close, rand


def close(actual, expected, name, rel=2e-5):
    """float32 against float64: error bounded relative to the result's magnitude."""
    scale = max(1.0, float(np.abs(expected).max())) if np.size(expected) else 1.0
    return assert_close(actual, expected, rtol=rel, atol=rel * scale, name=name)


GEMM_SHAPES = [(1, 1, 1), (1, 10, 784), (7, 13, 5), (17, 33, 300), (128, 512, 784), (9, 31, 257),
               (128, 512, 10), (13, 37, 19)]  # shallow: the MLP's last dx, and an edge of rows and a tail of K


@pytest.mark.parametrize("M,N,Kd", GEMM_SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_gemm(isa, rng, M, N, Kd, trans_a, trans_b):
    a = rand(rng, *((Kd, M) if trans_a else (M, Kd)))
    b = rand(rng, *((N, Kd) if trans_b else (Kd, N)))
    expected = ref.gemm(a, b, trans_a, trans_b)
    close(_kernels.gemm(a, b, trans_a=trans_a, trans_b=trans_b), expected, f"gemm[{isa}]")


@pytest.mark.parametrize("alpha,beta", [(0.5, 0.0), (1.0, 1.0), (-2.0, 0.25)])
def test_gemm_alpha_beta(isa, rng, alpha, beta):
    a, b, c = rand(rng, 19, 45), rand(rng, 45, 37), rand(rng, 19, 37)
    out = _kernels.gemm(a, b, out=c.copy(), alpha=alpha, beta=beta)
    close(out, ref.gemm(a, b, alpha=alpha, beta=beta, c=c), "gemm alpha/beta")


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5])
def test_a_few_rows_read_b_in_place_bit_for_bit_like_a_batch(isa, rng, rows):
    """A product of fewer rows than the micro-kernel's reads B in place, unpacked (AVX2's fn_ukernel rows); the
    same rows inside a larger batch take the packed panels: the same sums, bit for bit, across K blocks (1031),
    ragged columns (70), columns few enough to keep their sums in registers (13, 10, 5) and both thread counts,
    with beta = 1 and the dense kernel's bias and ReLU."""
    for K, N in ((784, 512), (1031, 70), (9, 13), (512, 10), (37, 5)):
        x, w, b, c = rand(rng, 12, K), rand(rng, K, N), rand(rng, N), rand(rng, 12, N)
        batch = _kernels.dense_forward(x, w, b, activation="relu")
        summed = _kernels.gemm(x, w, out=c.copy(), beta=1.0)
        for nt in (1, 2):
            np.testing.assert_array_equal(_kernels.dense_forward(x[:rows], w, b, activation="relu", n_threads=nt),
                                          batch[:rows])
            np.testing.assert_array_equal(_kernels.gemm(x[:rows], w, out=c[:rows].copy(), beta=1.0, n_threads=nt),
                                          summed[:rows])


# Rows of each path's micro-kernel (float32, bfloat16 operands): the unit a GEMM's row blocks are made of.
MICRO_ROWS = {"generic": (4, 4), "avx2": (6, 6), "avx512": (8, 8), "avx512_bf16": (8, 8), "amx_bf16": (8, 32)}


@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("edge", [1, 2, 4])
def test_an_edge_of_rows_gives_the_bits_whole_micro_panels_give(isa, rng, edge, trans_b):
    """The last rows of a batch that are fewer than the micro-kernel's (AVX2's 6 x 16 kernel leaves 2 of a batch
    of 128) take the edge kernel, on two B panels at once where the kernel has one (edge_pair: 2 rows or fewer),
    with B (row-major or transposed) packed as the tile uses it (AVX2: 12 to 16 rows) or up front (602 rows of
    depth 1031 are past one L2 block of rows): the same rows at the top of whole micro-panels give the same bits,
    across K blocks (784, 1031), ragged columns (70, 40), beta = 1 and both thread counts."""
    mr = MICRO_ROWS[isa][0]
    for above, K, N in ((2 * mr, 784, 512), (2 * mr, 1031, 70), (2 * mr, 37, 40), (100 * mr, 1031, 70),
                        (100 * mr, 37, 40)):
        tail = slice(above, above + edge)
        x, w, c = rand(rng, above + edge, K), rand(rng, K, N), rand(rng, above + edge, N)
        whole_x, whole_c = np.concatenate([x[tail], x[: above - edge]]), np.concatenate([c[tail], c[: above - edge]])
        b = np.ascontiguousarray(w.T) if trans_b else w
        for nt in (1, 2):
            for beta in (0.0, 1.0):
                out = _kernels.gemm(x, b, trans_b=trans_b, out=c.copy(), beta=beta, n_threads=nt)
                whole = _kernels.gemm(whole_x, b, trans_b=trans_b, out=whole_c.copy(), beta=beta, n_threads=nt)
                np.testing.assert_array_equal(out[tail], whole[:edge], f"{above + edge} x {N} x {K}, {nt} threads, "
                                                                       f"beta {beta}")


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_gemm_tiles_cover_c_once_and_share_rows_evenly(isa, precision):
    """The tiles a GEMM splits C into cover every element once, start on micro-panels of rows, and share the
    panels out evenly: row blocks of a fixed 24 rows cut 128 rows into 24 x 5 + 8, and one of 2 threads took 72
    rows of the MLP's 512 x 10 output layer while the other took 56."""
    mr = MICRO_ROWS[isa][precision == "bfloat16"]
    for M, N, K in ((1, 1, 1), (5, 512, 512), (7, 10, 3), (128, 10, 512), (128, 512, 784), (130, 33, 64),
                    (784, 512, 128), (2048, 2048, 64), (73728, 32, 288)):
        for threads in (1, 2, 3, 4, 16):
            tiles = _kernels.gemm_tiles(M, N, K, n_threads=threads, isa=isa, precision=precision)
            seen = np.zeros((M, N), np.int32)
            for m0, m1, j0, j1 in tiles:
                seen[m0:m1, j0:j1] += 1
            assert (seen == 1).all(), (M, N, K, threads)
            blocks = {(m0, m1) for m0, m1, _, _ in tiles}
            assert all(m0 % mr == 0 for m0, _ in blocks), (M, N, K, threads, blocks)
            panels = [-(-(m1 - m0) // mr) for m0, m1 in blocks]
            assert max(panels) - min(panels) <= 1, (M, N, K, threads, sorted(blocks))


def test_gemm_beta_zero_ignores_nan_in_out(rng):
    a, b = rand(rng, 5, 6), rand(rng, 6, 7)
    out = np.full((5, 7), np.nan, dtype=np.float32)
    close(_kernels.gemm(a, b, out=out), ref.gemm(a, b), "gemm over NaN")


@pytest.mark.parametrize("N,I,O", [(1, 784, 512), (128, 784, 512), (128, 512, 10), (5, 3, 17), (3, 33, 1)])
@pytest.mark.parametrize("act", ["linear", "relu"])
def test_dense(isa, rng, N, I, O, act):
    x, w, b = rand(rng, N, I), rand(rng, I, O, scale=0.1), rand(rng, O)
    close(_kernels.dense_forward(x, w, b, activation=act), ref.dense_forward(x, w, b, act), "dense forward")
    dy = rand(rng, N, O)
    dx, dw, db = _kernels.dense_backward(dy, x, w)
    rdx, rdw, rdb = ref.dense_backward(dy, x, w)
    close(dx, rdx, "dx")
    close(dw, rdw, "dw")
    close(db, rdb, "db")
    assert _kernels.dense_backward(dy, x, w, need_dx=False)[0] is None


@pytest.mark.parametrize("N,I,O", [(1, 784, 512), (128, 512, 512), (37, 300, 45), (3, 33, 1)])
def test_dense_forward_with_weights_packed_once_is_bit_identical(isa, rng, N, I, O):
    x, w, b = rand(rng, N, I), rand(rng, I, O, scale=0.1), rand(rng, O)
    packed = _kernels.PackedWeights(w)
    for act in ("linear", "relu"):
        np.testing.assert_array_equal(_kernels.dense_forward(x, w, b, activation=act, packed=packed),
                                      _kernels.dense_forward(x, w, b, activation=act))


def test_packed_weights_refuse_another_shape_or_isa(rng):
    x, w = rand(rng, 4, 6), rand(rng, 6, 3)
    with pytest.raises(ValueError, match="packed weights of shape \\(6, 5\\)"):
        _kernels.dense_forward(x, w, packed=_kernels.PackedWeights(rand(rng, 6, 5)))
    if len(_kernels.supported_isas()) > 1:
        packed = _kernels.PackedWeights(w)
        _kernels.set_isa("generic")
        try:
            with pytest.raises(ValueError, match="pack them again"):
                _kernels.dense_forward(x, w, packed=packed)
        finally:
            _kernels.set_isa("best")


def test_dense_without_bias(rng):
    x, w = rand(rng, 4, 6), rand(rng, 6, 3)
    close(_kernels.dense_forward(x, w), ref.dense_forward(x, w), "dense no bias")


CONV_CASES = [
    # (N, H, W, C, OC, KH, KW, strides, padding)
    (2, 28, 28, 1, 32, 3, 3, (1, 1), "valid"),   # the CNN's first layer
    (2, 26, 26, 32, 32, 3, 3, (1, 1), "valid"),  # the CNN's second layer
    (1, 7, 9, 3, 5, 3, 2, (1, 1), "same"),
    (3, 8, 7, 2, 3, 3, 3, (2, 2), "same"),
    (2, 9, 11, 4, 6, 3, 3, (2, 3), "valid"),
    (1, 5, 5, 3, 17, 1, 1, (1, 1), "valid"),     # 1x1 kernel
    (2, 4, 4, 1, 1, 4, 4, (1, 1), "valid"),      # kernel covers the whole image
    (1, 6, 6, 2, 4, 2, 2, (2, 2), "same"),       # even kernel, asymmetric padding
    # channels a multiple of the micro-tile width: backward-data accumulates straight into dx
    (2, 9, 8, 32, 5, 3, 3, (2, 2), "same"),
    (1, 7, 7, 16, 3, 3, 3, (1, 2), "same"),
    (1, 6, 5, 32, 7, 2, 2, (1, 1), "same"),
    (2, 5, 13, 64, 3, 3, 3, (1, 1), "valid"),    # 11 output columns: a partial micro-tile
]


# 3x3 stride-1 kernels, the shapes Winograd F(4x4, 3x3) takes: output sizes off a multiple of 4 leave part-empty
# 4x4 tiles, 'same' padding puts every border tile partly in the padding, channels off the vector width.
WINOGRAD_CASES = [
    (2, 26, 26, 32, 32, "valid"),  # the CNN's second layer
    (1, 3, 3, 1, 1, "valid"),      # one output, one channel
    (1, 3, 3, 4, 2, "same"),
    (3, 5, 6, 17, 19, "valid"),    # 3x4 outputs
    (2, 9, 7, 32, 32, "same"),     # 9x7 outputs: the last tile row holds 1 output row, the last column 3
    (1, 8, 7, 20, 16, "same"),
    (2, 4, 11, 33, 5, "valid"),
    (1, 6, 6, 16, 48, "same"),     # more than one micro-tile of output channels
]


def check_conv2d(case):
    """All three conv kernels (and the fused ReLU backward) against the float64 reference."""
    N, H, W, C, OC, KH, KW, strides, padding = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x, w, b = rand(rng, N, H, W, C), rand(rng, KH, KW, C, OC, scale=0.3), rand(rng, OC)
    for act in ("linear", "relu"):
        y = _kernels.conv2d_forward(x, w, b, strides, padding, activation=act)
        close(y, ref.conv2d_forward(x, w, b, strides, padding, act), f"conv forward {act}")
    close(_kernels.conv2d_forward(x, w, None, strides, padding), ref.conv2d_forward(x, w, None, strides, padding),
          "conv forward without bias")
    dy = rand(rng, *y.shape)
    rdx = ref.conv2d_backward_data(dy, w, x.shape, strides, padding)
    rdw, rdb = ref.conv2d_backward_filter(dy, x, w.shape[:2], strides, padding)
    close(_kernels.conv2d_backward_data(dy, w, x.shape, strides, padding), rdx, "conv dx")
    close(_kernels.conv2d_backward_data(dy, w, x.shape, strides, padding, relu_input=x),
          ref.activation_backward(rdx, np.maximum(x, 0), "relu"), "conv dx + relu mask")
    dw, db = _kernels.conv2d_backward_filter(dy, x, (KH, KW), strides, padding)
    close(dw, rdw, "conv dw")
    close(db, rdb, "conv db")


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d(isa, conv_algo, case):
    check_conv2d(case)


@pytest.mark.parametrize("case", WINOGRAD_CASES)
def test_conv2d_winograd(isa, case):
    N, H, W, C, OC, padding = case
    _kernels.set_conv_algo("winograd")
    try:
        assert _kernels.conv2d_uses_winograd((N, H, W, C), (3, 3, C, OC), (1, 1), padding)
        check_conv2d((N, H, W, C, OC, 3, 3, (1, 1), padding))
    finally:
        _kernels.set_conv_algo("auto")


# (N, H, W, C, OC, kernel, strides, padding). im2col tiles hold whole pairs of output rows: 24 wide, 2 tiles of 4
# pairs per image; 10 wide, tiles of 4 pairs and then 1; 48 wide, one pair per tile; C = 1 (no pairs of channels).
MAXPOOL_CASES = [(2, 26, 26, 32, 32, 3, 1, "valid"), (3, 10, 8, 16, 17, 3, 1, "same"), (1, 6, 4, 20, 33, 3, 1, "valid"),
                 (2, 10, 10, 3, 8, 1, 1, "valid"), (1, 8, 50, 2, 5, 3, 1, "valid"), (2, 28, 28, 1, 32, 3, 1, "valid"),
                 (2, 8, 8, 4, 6, 3, 2, "same")]


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("case", MAXPOOL_CASES, ids=str)
def test_conv2d_forward_maxpool_is_bit_identical_to_the_two_kernels(isa, conv_algo, precision, case):
    N, H, W, C, OC, k, stride, padding = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x, w, b = rand(rng, N, H, W, C), rand(rng, k, k, C, OC, scale=0.3), rand(rng, OC)
    strides = (stride, stride)
    if not _kernels.conv2d_forward_maxpool_fits(x.shape, w.shape, strides, padding, precision=precision):
        assert conv_algo == "winograd" and (k, stride) != (3, 1)  # a shape Winograd does not take
        return
    y, arg = _kernels.conv2d_forward_maxpool(x, w, b, strides, padding, precision=precision)
    conv = _kernels.conv2d_forward(x, w, b, strides, padding, activation="relu", precision=precision)
    assert (conv == 0).mean() > 0.3  # many ReLU zeros: ties, which the first maximum must win in both
    y2, arg2 = _kernels.maxpool2d_forward(conv)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(arg, arg2)


@pytest.mark.parametrize("case", MAXPOOL_CASES + [(1, 30, 30, 16, 8, 3, 1, "valid"),  # 28 outputs: whole tiles
                                                  (2, 12, 14, 5, 32, 3, 1, "same")],  # 12x14: a tile of two windows
                         ids=str)
def test_conv2d_backward_in_one_call(isa, conv_algo, case):
    """conv2d_backward (the CNN's step: the pool's, the ReLU's and the convolution's backward, and the previous
    ReLU's mask, in one call) against the float64 reference of each, with a pooled dy and a plain one, with and
    without dx; Winograd takes both gradients from one transform of dy on the forward's tiles."""
    N, H, W, C, OC, k, stride, padding = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x, w, b = rand(rng, N, H, W, C), rand(rng, k, k, C, OC, scale=0.3), rand(rng, OC)
    strides = (stride, stride)
    fits = _kernels.conv2d_forward_maxpool_fits(x.shape, w.shape, strides, padding)
    assert fits or conv_algo == "winograd" and (k, stride) != (3, 1)
    conv = ref.conv2d_forward(x, w, b, strides, padding, "relu")
    dz = rand(rng, *conv.shape)
    if fits:  # the pooled form: dz from the pool's gradient, as the unfused step computes it
        y, arg = _kernels.conv2d_forward_maxpool(x, w, b, strides, padding)
        dyp = rand(rng, *y.shape)
        dz = ref.activation_backward(ref.maxpool2d_backward(dyp, arg, conv.shape), conv, "relu")
    rdx, rdw, rdb = ref._conv2d_backward(dz, x, w, strides, padding)
    rdx = ref.activation_backward(rdx, np.maximum(x, 0), "relu")
    plain = _kernels.conv2d_backward(dz.astype(np.float32), x, w, strides, padding, db=np.empty(OC, np.float32),
                                     dx=True, relu_input=x)
    for got, want, what in zip(plain, (rdw, rdb, rdx), ("dw", "db", "dx")):
        close(got, want, f"conv2d_backward {what}")
    dw, db, dx = _kernels.conv2d_backward(dz.astype(np.float32), x, w, strides, padding)  # dx=False: none
    assert db is None and dx is None
    np.testing.assert_array_equal(dw, plain[0])
    if fits:
        pooled = _kernels.conv2d_backward(dyp, x, w, strides, padding, db=np.empty(OC, np.float32), dx=True,
                                          relu_input=x, argmax=arg, pooled=y)
        for got, want, what in zip(pooled, (rdw, rdb, rdx), ("dw", "db", "dx")):
            close(got, want, f"conv2d_backward from the pool's gradient: {what}")


def test_conv2d_backward_gives_every_thread_count_the_same_bits(conv_algo):
    rng = np.random.default_rng(5)
    x, w, b = rand(rng, 7, 26, 26, 32), rand(rng, 3, 3, 32, 32, scale=0.3), rand(rng, 32)
    y, arg = _kernels.conv2d_forward_maxpool(x, w, b)
    dy = rand(rng, *y.shape)
    runs = [_kernels.conv2d_backward(dy, x, w, db=np.empty(32, np.float32), dx=True, relu_input=x, argmax=arg,
                                     pooled=y, n_threads=t) for t in (1, 2, 3, 8)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


def test_conv2d_backward_refuses_what_does_not_fit(rng):
    x, w = rand(rng, 2, 10, 10, 4), rand(rng, 3, 3, 4, 6)
    y, arg = _kernels.conv2d_forward_maxpool(x, w)
    dy = rand(rng, *y.shape)
    with pytest.raises(ValueError, match="needs both argmax and pooled"):
        _kernels.conv2d_backward(dy, x, w, argmax=arg)
    with pytest.raises(ValueError, match=r"dy has shape \(2, 4, 4, 6\), expected \(2, 8, 8, 6\)"):
        _kernels.conv2d_backward(dy, x, w)
    with pytest.raises(ValueError, match="conv2d_forward_maxpool runs"):
        _kernels.conv2d_backward(rand(rng, 2, 4, 4, 6), rand(rng, 2, 11, 11, 4), w, argmax=arg, pooled=y)
    with pytest.raises(ValueError, match="relu_input has shape"):
        _kernels.conv2d_backward(dy, x, w, argmax=arg, pooled=y, relu_input=x[:1])
    bad = arg.copy()
    bad[0, 0, 0, 0] = 10**6
    with pytest.raises(ValueError, match="argmax holds offsets outside"):
        _kernels.conv2d_backward(dy, x, w, argmax=bad, pooled=y, conv_algo="im2col")


# (N, H, W, C, OC, KH, KW, strides, padding): kernels of few taps (KH * KW * C <= 32), which 'auto' runs direct. The
# 3x3 one-channel stride-1 kernel reads padded rows; the others gather their taps.
DIRECT_CASES = [(2, 28, 28, 1, 32, 3, 3, (1, 1), "valid"),  # the CNN's first layer
                (1, 7, 9, 1, 16, 3, 3, (1, 1), "same"),     # padding on every side, an odd row of pixels
                (3, 9, 8, 1, 24, 3, 3, (2, 1), "same"),     # a row stride: still padded rows
                (2, 8, 7, 3, 40, 3, 3, (1, 1), "same"),     # 27 taps, 40 channels (16 + 16 + 8)
                (1, 6, 6, 2, 8, 2, 2, (1, 2), "valid"),     # a column stride: gathered
                (1, 5, 5, 32, 8, 1, 1, (1, 1), "valid"),    # 32 taps, all channels
                (1, 70, 3, 1, 8, 3, 1, (1, 1), "same")]     # an output row longer than a run of 64 pixels


@pytest.mark.parametrize("case", DIRECT_CASES, ids=str)
def test_direct_convolution(isa, case):
    """The direct kernels (where the GEMM path is float32 FMAs; im2col elsewhere) against the float64 reference,
    and bit for bit against im2col's forward: the same FMAs in the same order."""
    N, H, W, C, OC, KH, KW, strides, padding = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x, w, b = rand(rng, N, H, W, C), rand(rng, KH, KW, C, OC, scale=0.3), rand(rng, OC)
    assert _kernels.conv2d_workspace_floats(x.shape, w.shape, strides, padding) > 0
    for act in ("linear", "relu"):
        y = _kernels.conv2d_forward(x, w, b, strides, padding, activation=act, conv_algo="direct")
        close(y, ref.conv2d_forward(x, w, b, strides, padding, act), f"direct forward {act}")
        if isa != "generic":
            np.testing.assert_array_equal(y, _kernels.conv2d_forward(x, w, b, strides, padding, activation=act,
                                                                     conv_algo="im2col"))
    dy = rand(rng, *y.shape)
    rdw, rdb = ref.conv2d_backward_filter(dy, x, (KH, KW), strides, padding)
    dw, db = _kernels.conv2d_backward_filter(dy, x, (KH, KW), strides, padding, conv_algo="direct")
    close(dw, rdw, "direct dw")
    close(db, rdb, "direct db")
    runs = [_kernels.conv2d_backward_filter(dy, x, (KH, KW), strides, padding, conv_algo="direct", n_threads=t)
            for t in (1, 3)]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_conv2d_forward_maxpool_refuses_shapes_it_cannot_pool(rng):
    x, w = rand(rng, 1, 7, 8, 16), rand(rng, 3, 3, 16, 16)  # 5x6 outputs: odd rows
    assert not _kernels.conv2d_forward_maxpool_fits(x.shape, w.shape)
    with pytest.raises(ValueError, match="gives an output of 5x6: the fused pool takes an even output size"):
        _kernels.conv2d_forward_maxpool(x, w)
    x, w = rand(rng, 1, 4, 52, 2), rand(rng, 3, 3, 2, 4)  # 2x50 outputs: too wide for im2col's tiles
    assert _kernels.conv2d_forward_maxpool_fits(x.shape, w.shape, conv_algo="winograd")
    assert not _kernels.conv2d_forward_maxpool_fits(x.shape, w.shape, conv_algo="im2col")
    with pytest.raises(ValueError, match="at most 48 wide unless it takes Winograd"):
        _kernels.conv2d_forward_maxpool(x, w, conv_algo="im2col")


def test_conv2d_algorithm_choice():
    """'auto' takes Winograd where it pays (3x3, stride 1, >= 16 channels each way), im2col elsewhere."""
    assert _kernels.get_conv_algo() == "auto"
    assert _kernels.conv2d_uses_winograd((128, 26, 26, 32), (3, 3, 32, 32))
    assert not _kernels.conv2d_uses_winograd((128, 28, 28, 1), (3, 3, 1, 32))       # the CNN's first layer
    assert not _kernels.conv2d_uses_winograd((2, 26, 26, 32), (3, 3, 32, 32), (2, 2))
    assert not _kernels.conv2d_uses_winograd((2, 26, 26, 32), (5, 5, 32, 32))
    _kernels.set_conv_algo("im2col")
    try:
        assert not _kernels.conv2d_uses_winograd((128, 26, 26, 32), (3, 3, 32, 32))
    finally:
        _kernels.set_conv_algo("auto")
    with pytest.raises(ValueError, match="unknown convolution algorithm"):
        _kernels.set_conv_algo("fft")


def test_conv2d_batch_chunks_more_than_64_images(conv_algo, rng):
    x, w = rand(rng, 70, 5, 5, 2), rand(rng, 3, 3, 2, 3)
    dy = rand(rng, 70, 3, 3, 3)
    dw, db = _kernels.conv2d_backward_filter(dy, x, (3, 3))
    rdw, rdb = ref.conv2d_backward_filter(dy, x, w.shape[:2])
    close(dw, rdw, "dw over 70 images")
    close(db, rdb, "db over 70 images")


@pytest.mark.parametrize("shape,pool,strides,padding", [
    ((2, 24, 24, 32), (2, 2), None, "valid"),   # the CNN's pooling
    ((1, 5, 7, 3), (2, 2), None, "valid"),      # odd sizes drop the last row/column
    ((2, 5, 7, 3), (3, 3), (2, 2), "same"),
    ((1, 6, 6, 1), (3, 2), (1, 1), "valid"),    # overlapping windows
])
def test_maxpool(rng, shape, pool, strides, padding):
    x = rand(rng, *shape)
    y, arg = _kernels.maxpool2d_forward(x, pool, strides, padding)
    ry, rarg = ref.maxpool2d_forward(x, pool, strides, padding)
    close(y, ry, "maxpool y")
    np.testing.assert_array_equal(arg, rarg)
    dy = rand(rng, *y.shape)
    close(_kernels.maxpool2d_backward(dy, arg, x.shape, pool, strides, padding), ref.maxpool2d_backward(dy, rarg, x.shape),
          "maxpool dx")


def test_maxpool_ties_go_to_first_maximum():
    x = np.zeros((1, 4, 4, 2), dtype=np.float32)  # every window is a tie
    y, arg = _kernels.maxpool2d_forward(x)
    _, rarg = ref.maxpool2d_forward(x)
    np.testing.assert_array_equal(arg, rarg)
    assert arg[0, 1, 1, 1] == (2 * 4 + 2) * 2 + 1  # top-left of the window at (2, 2), channel 1
    dx = _kernels.maxpool2d_backward(np.ones_like(y), arg, x.shape)
    assert dx.sum() == y.size and dx[0, ::2, ::2].min() == 1.0


@pytest.mark.parametrize("act", ["linear", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("shape", [(1,), (3, 17), (128, 512), (2, 5, 5, 3)])
def test_activations(rng, act, shape):
    x = rand(rng, *shape, scale=3)
    y = _kernels.activation_forward(x, act)
    close(y, ref.activation_forward(x, act), f"{act} forward", rel=1e-6)
    dy = rand(rng, *shape)
    close(_kernels.activation_backward(dy, y, act), ref.activation_backward(dy, y, act), f"{act} backward", rel=1e-6)


def test_activation_in_place(rng):
    x = rand(rng, 9, 13)
    expected = ref.activation_forward(x, "relu")
    _kernels.activation_forward(x, "relu", out=x)
    close(x, expected, "relu in place")


@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (128, 10), (7, 33)])
def test_softmax(rng, shape):
    x = rand(rng, *shape, scale=5)
    y = _kernels.softmax_forward(x)
    close(y, ref.softmax_forward(x), "softmax", rel=1e-6)
    dy = rand(rng, *shape)
    close(_kernels.softmax_backward(dy, y), ref.softmax_backward(dy, y), "softmax backward", rel=1e-6)


def test_bias_act_and_bias_backward(rng):
    y, b = rand(rng, 37, 19), rand(rng, 19)
    expected = ref.activation_forward(y.astype(np.float64) + b, "relu")
    close(_kernels.bias_act_forward(y.copy(), b, "relu"), expected, "bias+relu")
    close(_kernels.bias_backward(y), y.astype(np.float64).sum(axis=0), "bias backward")


@pytest.mark.parametrize("N,C", [(1, 10), (128, 10), (5, 3), (3, 1)])
def test_softmax_xent(rng, N, C):
    z = rand(rng, N, C, scale=4)
    t = np.eye(C, dtype=np.float32)[rng.integers(0, C, N)]
    p, loss = _kernels.softmax_xent_forward(z, t)
    rp, rloss = ref.softmax_xent_forward(z, t)
    close(p, rp, "probs", rel=1e-6)
    close(loss, rloss, "loss", rel=1e-6)
    close(_kernels.softmax_xent_backward(p, t, 1.0 / N), ref.softmax_xent_backward(rp, t, 1.0 / N), "dlogits", rel=1e-6)


def test_softmax_xent_huge_logits():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [3e4, 3e4, -3e4]], dtype=np.float32)
    t = np.eye(3, dtype=np.float32)[[1, 2, 0]]
    p, loss = _kernels.softmax_xent_forward(z, t)
    rp, rloss = ref.softmax_xent_forward(z, t)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(loss))
    close(p, rp, "probs", rel=1e-6)
    close(loss, rloss, "loss", rel=1e-6)
    assert loss[0] == pytest.approx(2e4, rel=1e-6) and loss[1] == pytest.approx(np.log(3), rel=1e-6)


@pytest.mark.parametrize("kind", ["squared", "absolute", "sigmoid_xent"])
@pytest.mark.parametrize("N,C", [(1, 1), (3, 17), (130, 10)])
@pytest.mark.parametrize("weighted", [False, True])
def test_pointwise_loss(rng, kind, N, C, weighted):
    z = rand(rng, N, C, scale=4)
    t = rng.random((N, C)).astype(np.float32) if kind == "sigmoid_xent" else rand(rng, N, C)
    w = rng.random(N).astype(np.float32) if weighted else None
    loss, probs = _kernels.pointwise_loss_forward(kind, z, t, w)
    rloss, rprobs = ref.pointwise_loss_forward(kind, z, t, w)
    close(loss, rloss, "loss", rel=1e-6)
    if kind == "sigmoid_xent":
        close(probs, rprobs, "probs", rel=1e-6)
    else:
        assert probs is None
    d = _kernels.pointwise_loss_backward(kind, z, t, 1.0 / N, w, probs=probs)
    close(d, ref.pointwise_loss_backward(kind, z, t, 1.0 / N, w, probs), "dout", rel=1e-6)


def test_pointwise_loss_extremes():
    """Binary cross-entropy from huge logits stays finite (the log1p(exp(-|z|)) form); |x - t|'s gradient at
    x == t is 0, as TensorFlow's and PyTorch's."""
    z = np.array([[1e4, -1e4, 0.0, 88.0, -88.0]], dtype=np.float32)
    t = np.array([[0.0, 1.0, 1.0, 1.0, 0.0]], dtype=np.float32)
    loss, probs = _kernels.pointwise_loss_forward("sigmoid_xent", z, t)
    assert np.isfinite(loss).all() and np.isfinite(probs).all()
    close(loss, ref.pointwise_loss_forward("sigmoid_xent", z, t)[0], "loss", rel=1e-6)
    assert loss[0] == pytest.approx((2e4 + np.log(2)) / 5, rel=1e-6)
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    np.testing.assert_array_equal(_kernels.pointwise_loss_backward("absolute", x, x.copy(), 1.0), np.zeros((1, 3)))


@pytest.mark.parametrize("shape, dtype", [((300, 784), np.float32), ((50,), np.float32), ((40, 3, 5, 2), np.uint8),
                                          ((1000, 10), np.float64)])
@pytest.mark.parametrize("n_threads", [1, 2, 7])
def test_gather_rows_is_numpy_take(rng, shape, dtype, n_threads):
    """A batch's rows (shuffled, repeated, the first and the last) copied exactly, on any thread count; a batch of
    300 x 3136 bytes splits among threads, one of 50 floats does not."""
    src = (rng.random(shape) * 200).astype(dtype)
    for idx in (rng.permutation(shape[0])[:128], np.array([shape[0] - 1, 0, 0, 3], np.int64), np.array([2], np.int64)):
        out = np.full((len(idx),) + shape[1:], 7, dtype)
        assert _kernels.gather_rows(src, idx.astype(np.int64), out, n_threads=n_threads) is out
        np.testing.assert_array_equal(out, np.take(src, idx, axis=0))
    empty = np.empty((0,) + shape[1:], dtype)
    assert _kernels.gather_rows(src, np.empty(0, np.int64), empty) is empty


def test_gather_rows_checks_every_row_number_and_the_arrays(rng):
    src, out = rand(rng, 10, 4), np.empty((3, 4), np.float32)
    for bad in (10, -1):
        with pytest.raises(IndexError, match=rf"idx\[1\] = {bad} is out of range for src with 10 rows"):
            _kernels.gather_rows(src, np.array([0, bad, 2], np.int64), out)
    with pytest.raises(TypeError, match="idx must be a C-contiguous 1-D int64 array"):
        _kernels.gather_rows(src, np.array([0, 1, 2], np.int32), out)
    with pytest.raises(ValueError, match=r"out has shape \(3, 4\), expected \(2, 4\)"):
        _kernels.gather_rows(src, np.array([0, 1], np.int64), out)
    with pytest.raises(TypeError, match="out has dtype float64, src float32"):
        _kernels.gather_rows(src, np.array([0, 1, 2], np.int64), out.astype(np.float64))
    with pytest.raises(ValueError, match="out must not overlap src or idx"):
        _kernels.gather_rows(src, np.array([0, 1, 2], np.int64), src[4:7])
    with pytest.raises(ValueError, match="src with shape .* must be C-contiguous"):
        _kernels.gather_rows(np.ones((10, 8), np.float32)[:, ::2], np.array([0, 1, 2], np.int64), out)


@pytest.mark.parametrize("n", [1, 7, 1000, 100_003])
def test_dropout(rng, n):
    rate = 0.3
    x = rand(rng, n)
    y, keep = _kernels.dropout_forward(x, rate, seed=42, stream=7)
    close(y, ref.dropout_forward(x, keep, rate), "dropout forward", rel=1e-6)
    dy = rand(rng, n)
    close(_kernels.dropout_backward(dy, keep, rate), ref.dropout_backward(dy, keep, rate), "dropout backward", rel=1e-6)
    if n >= 1000:
        assert abs(keep.mean() - (1 - rate)) < 5 / np.sqrt(n)


def test_dropout_zeroes_what_it_drops_exactly_and_scales_the_rest_exactly(rng):
    """A dropped element is +0.0 even where the input is inf or NaN (0 * inf would be NaN); a kept one is
    x * (1 / (1 - rate)) in float32, bit for bit, on every vector width (n past a few vectors, odd tails)."""
    rate, n = 0.25, 1003
    x = rand(rng, n)
    x[::7], x[3::11], x[5::13] = np.inf, -np.inf, np.nan
    scale = np.float32(1) / (np.float32(1) - np.float32(rate))
    y, keep = _kernels.dropout_forward(x, rate, seed=5, stream=1)
    dx = _kernels.dropout_backward(x, keep, rate)
    for out in (y, dx):
        dropped = keep == 0
        assert dropped.any() and (x[dropped] != x[dropped]).any()  # NaNs among the dropped
        np.testing.assert_array_equal(out[dropped].view(np.uint32), 0)  # +0.0, bit for bit
        np.testing.assert_array_equal(out[~dropped], x[~dropped] * scale)


def test_dropout_masks_are_keyed_by_seed_and_stream(rng):
    x = np.ones(10_000, dtype=np.float32)
    _, k1 = _kernels.dropout_forward(x, 0.5, seed=1, stream=0)
    _, k2 = _kernels.dropout_forward(x, 0.5, seed=1, stream=0)
    _, k3 = _kernels.dropout_forward(x, 0.5, seed=1, stream=1)
    _, k4 = _kernels.dropout_forward(x, 0.5, seed=2, stream=0)
    np.testing.assert_array_equal(k1, k2)
    assert (k1 != k3).mean() > 0.4 and (k1 != k4).mean() > 0.4
    _, none_dropped = _kernels.dropout_forward(x, 0.0, seed=1, stream=0)
    assert none_dropped.all()


@pytest.mark.parametrize("first", [1, 7, 4096, 2**32 + 5])
def test_dropout_from_a_later_stream_position_is_that_slice_of_the_whole_mask(rng, first):
    """A data-parallel rank holding rows r.. of a batch passes first = r * (elements per row) and must draw exactly
    the single-process mask of those rows; positions count modulo 2^32, as the header says."""
    x, skip = rand(rng, 3000), first % 2**32
    _, keep_whole = _kernels.dropout_forward(np.ones(skip + 3000, np.float32), 0.4, seed=9, stream=2)
    y, keep = _kernels.dropout_forward(x, 0.4, seed=9, stream=2, first=first)
    np.testing.assert_array_equal(keep, keep_whole[skip:])
    close(y, ref.dropout_forward(x, keep, 0.4), "dropout forward from a position", rel=1e-6)
    u = _kernels.random_uniform(3000, seed=9, stream=2, first=first)
    np.testing.assert_array_equal(u, _kernels.random_uniform(skip + 3000, seed=9, stream=2)[skip:])
    assert (keep != keep_whole[:3000]).mean() > 0.3  # not the mask from position 0


@pytest.mark.parametrize("N,I,O,first", [(1, 3, 1, 0), (128, 784, 512, 0), (37, 70, 513, 2**32 + 5),
                                         (128, 512, 10, 7)])
@pytest.mark.parametrize("act", ["relu", "linear"])
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_dense_forward_with_dropout_is_the_forward_then_dropout_bit_for_bit(rng, N, I, O, first, act, precision):
    """Each tile of y, dropped out as the kernel makes it, draws the mask dropout_forward draws over all of y (its
    own elements of the stream, from a later position too); dropout_relu_backward, from that output alone, is
    dropout_backward then the ReLU's backward, infs and NaNs in dy included. On 1 and 3 threads: tiles split rows
    and columns."""
    x, w, b, dy = rand(rng, N, I), rand(rng, I, O, scale=0.1), rand(rng, O), rand(rng, N, O)
    dy.flat[::13], dy.flat[5::17] = np.inf, np.nan
    kw = dict(activation=act, precision=precision)
    for nt in (1, 3):
        y = _kernels.dense_forward(x, w, b, n_threads=nt, **kw)
        expected, keep = _kernels.dropout_forward(y, 0.3, 9, 17, first=first)
        fused = _kernels.dense_forward(x, w, b, n_threads=nt, dropout=(0.3, 9, 17, first), **kw)
        np.testing.assert_array_equal(fused, expected)
        np.testing.assert_array_equal(_kernels.dense_forward(x, w, b, n_threads=nt, dropout=(0.0, 9, 17, first), **kw),
                                      y)
        if act == "relu":
            through = _kernels.activation_backward(_kernels.dropout_backward(dy, keep, 0.3), y, "relu")
            np.testing.assert_array_equal(_kernels.dropout_relu_backward(dy, fused, 0.3, n_threads=nt), through)
    if N * O > 1000:
        assert abs(keep.mean() - 0.7) < 0.05


def test_dense_forward_with_dropout_refuses_what_does_not_fit(rng):
    x, w = rand(rng, 4, 6), rand(rng, 6, 3)
    with pytest.raises(ValueError, match="dropout is for training and packed weights for inference"):
        _kernels.dense_forward(x, w, packed=_kernels.PackedWeights(w), dropout=(0.5, 1, 2, 0))
    with pytest.raises(TypeError, match="dropout must be a tuple \\(rate, seed, stream, first\\)"):
        _kernels.dense_forward(x, w, dropout=0.5)
    with pytest.raises(ValueError, match="dropout rate must be in \\[0, 1\\)"):
        _kernels.dense_forward(x, w, dropout=(1.0, 1, 2, 0))
    with pytest.raises(ValueError, match="y has shape"):
        _kernels.dropout_relu_backward(rand(rng, 4, 3), rand(rng, 3, 4), 0.5)


def test_random_uniform_statistics():
    u = _kernels.random_uniform(200_000, seed=3, stream=9)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    hist = np.histogram(u, bins=16, range=(0, 1))[0]
    assert hist.min() > 0.9 * hist.mean()


@pytest.mark.parametrize("shape,pool,strides", [((3, 6, 6, 5), (2, 2), None),     # windows tile the image
                                                ((2, 7, 6, 3), (3, 3), (2, 1))])  # overlapping windows
def test_maxpool_backward_with_the_relu_before_it(rng, shape, pool, strides):
    """The fused form: a ReLU's backward applied through the pooled output."""
    z = rand(rng, *shape)
    a = np.maximum(z, 0)
    y, arg = _kernels.maxpool2d_forward(a, pool, strides)
    dy = rand(rng, *y.shape)
    unfused = ref.activation_backward(ref.maxpool2d_backward(dy, arg, a.shape), a, "relu")
    close(_kernels.maxpool2d_backward(dy, arg, a.shape, pool, strides, relu_output=y), unfused, "maxpool+relu backward")


def test_conv_backward_data_with_the_relu_before_it(rng):
    x = np.maximum(rand(rng, 2, 7, 6, 3), 0)  # a ReLU's output
    w, dy = rand(rng, 3, 3, 3, 4), rand(rng, 2, 5, 4, 4)
    rdx = ref.conv2d_backward_data(dy, w, x.shape)
    close(_kernels.conv2d_backward_data(dy, w, x.shape, relu_input=x), ref.activation_backward(rdx, x, "relu"),
          "conv dx + relu")


@pytest.mark.parametrize("n,bad", [(1, []), (1, [0]), (10_000, []), (100_003, [99_999, 100_002]),
                                   (50_000, [8191, 8192, 30_000])])
def test_first_nonfinite(n, bad):
    x = np.ones(n, dtype=np.float32)
    for i, v in zip(bad, [np.nan, np.inf, -np.inf]):
        x[i] = v
    assert _kernels.first_nonfinite(x) == (min(bad) if bad else -1)
    assert all(_kernels.first_nonfinite(x, n_threads=t) == _kernels.first_nonfinite(x) for t in (1, 2, 3))
