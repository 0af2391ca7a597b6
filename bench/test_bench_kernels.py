"""Kernel micro-benchmarks at the reference networks' shapes (batch 128).

    pytest bench/test_bench_kernels.py --benchmark-columns=median,iqr,ops

GFLOP/s (from the median) is stored in each benchmark's extra_info (see --benchmark-json).
"""
import numpy as np
import pytest

from conftest import report
from fastnet import _kernels

B = 128


def r(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def bf16_paths():
    """(id, isa) of the bfloat16 paths this CPU has besides its default one, so the table shows them side by side:
    VDPBF16PS where AMX is the default, and the portable path where a native one is."""
    isas, best = _kernels.supported_isas(), _kernels.get_isa()
    return ([("bfloat16-vdpbf16ps", "avx512_bf16")] if "avx512_bf16" in isas and best != "avx512_bf16" else []) + \
        ([("bfloat16-portable", "avx512")] if best in ("amx_bf16", "avx512_bf16") else [])


PRECISIONS = [("float32", None, None), ("bfloat16", "bfloat16", None)] + [(i, "bfloat16", isa) for i, isa in bf16_paths()]


@pytest.mark.parametrize("precision,isa", [p[1:] for p in PRECISIONS], ids=[p[0] for p in PRECISIONS])
@pytest.mark.parametrize("M,N,Kd", [(B, 512, 784), (B, 512, 512), (B, 10, 512), (B, 128, 4608),
                                    (1024, 1024, 1024), (2048, 2048, 2048)])
def test_gemm(benchmark, rng, M, N, Kd, precision, isa):
    """float32 and bfloat16 operands (mixed_bfloat16's products) on the default path: native AMX (amx_bf16) or
    VDPBF16PS (avx512_bf16) where the CPU has them, the portable path elsewhere; then the CPU's other bf16 paths."""
    a, b, c = r(rng, M, Kd), r(rng, Kd, N), np.empty((M, N), np.float32)
    benchmark(_kernels.gemm, a, b, out=c, precision=precision, isa=isa)
    report(benchmark, 2 * M * N * Kd)


@pytest.mark.parametrize("I,O", [(784, 512), (512, 512), (512, 10), (4608, 128), (128, 10)])
def test_dense_forward(benchmark, rng, I, O):
    x, w, b, y = r(rng, B, I), r(rng, I, O), r(rng, O), np.empty((B, O), np.float32)
    benchmark(_kernels.dense_forward, x, w, b, out=y, activation="relu")
    report(benchmark, 2 * B * I * O)


@pytest.mark.parametrize("I,O", [(784, 512), (512, 512), (512, 10), (4608, 128)])
def test_dense_backward(benchmark, rng, I, O):
    x, w, dy = r(rng, B, I), r(rng, I, O), r(rng, B, O)
    dx, dw, db = np.empty((B, I), np.float32), np.empty((I, O), np.float32), np.empty(O, np.float32)
    benchmark(_kernels.dense_backward, dy, x, w, dx, dw, db)
    report(benchmark, 4 * B * I * O)


CONVS = {"conv1": (28, 1, 32), "conv2": (26, 32, 32)}
# Each convolution on the path 'auto' gives it, and conv2 on the other path too. GFLOP/s count the work of a
# direct convolution, so Winograd's (4x fewer multiplications in its GEMMs) are effective figures.
CONV_RUNS = [("conv1", "auto"), ("conv2", "auto"), ("conv2", "im2col")]


@pytest.fixture
def conv_algo(request):
    _kernels.set_conv_algo(request.param)
    yield request.param
    _kernels.set_conv_algo("auto")


def conv_flops(H, C, OC):
    return 2 * B * (H - 2) ** 2 * 9 * C * OC


@pytest.mark.parametrize("layer,conv_algo", CONV_RUNS, indirect=["conv_algo"])
def test_conv2d_forward(benchmark, rng, layer, conv_algo):
    H, C, OC = CONVS[layer]
    x, w, b = r(rng, B, H, H, C), r(rng, 3, 3, C, OC), r(rng, OC)
    y = np.empty((B, H - 2, H - 2, OC), np.float32)
    benchmark(_kernels.conv2d_forward, x, w, b, activation="relu", out=y)
    report(benchmark, conv_flops(H, C, OC))


@pytest.mark.parametrize("layer,conv_algo", CONV_RUNS, indirect=["conv_algo"])
def test_conv2d_backward_filter(benchmark, rng, layer, conv_algo):
    H, C, OC = CONVS[layer]
    x, dy = r(rng, B, H, H, C), r(rng, B, H - 2, H - 2, OC)
    dw, db = np.empty((3, 3, C, OC), np.float32), np.empty(OC, np.float32)
    benchmark(_kernels.conv2d_backward_filter, dy, x, (3, 3), dw=dw, db=db)
    report(benchmark, conv_flops(H, C, OC))


@pytest.mark.parametrize("conv_algo", ["auto", "im2col"], indirect=True)
def test_conv2d_backward_data(benchmark, rng, conv_algo):
    """conv2's data gradient with conv1's ReLU mask fused, as the CNN runs it."""
    H, C, OC = CONVS["conv2"]
    w, dy, dx = r(rng, 3, 3, C, OC), r(rng, B, H - 2, H - 2, OC), np.empty((B, H, H, C), np.float32)
    relu_input = np.maximum(r(rng, B, H, H, C), 0)
    benchmark(_kernels.conv2d_backward_data, dy, w, dx.shape, out=dx, relu_input=relu_input)
    report(benchmark, conv_flops(H, C, OC))


def test_maxpool_forward_backward(benchmark, rng):
    x, dy = r(rng, B, 24, 24, 32), r(rng, B, 12, 12, 32)
    y, arg = _kernels.maxpool2d_forward(x)
    dx = np.empty_like(x)

    def step():
        _kernels.maxpool2d_forward(x, out=y, argmax=arg)
        _kernels.maxpool2d_backward(dy, arg, x.shape, out=dx)

    benchmark(step)


@pytest.mark.parametrize("n", [B * 512, B * 24 * 24 * 32])
def test_relu_and_dropout(benchmark, rng, n):
    x = r(rng, n)
    y, keep = np.empty_like(x), np.empty(n, np.uint8)

    def step():
        _kernels.activation_forward(x, "relu", out=y)
        _kernels.dropout_forward(y, 0.25, 1, 2, out=y, keep=keep)

    benchmark(step)


def test_softmax_xent(benchmark, rng):
    z, t = r(rng, B, 10), np.eye(10, dtype=np.float32)[rng.integers(0, 10, B)]
    p, loss, dz = np.empty_like(z), np.empty(B, np.float32), np.empty_like(z)

    def step():
        _kernels.softmax_xent_forward(z, t, p, loss)
        _kernels.softmax_xent_backward(p, t, 1 / B, out=dz)

    benchmark(step)


@pytest.mark.parametrize("name", ["rmsprop", "adadelta"])
def test_optimizer_update(benchmark, rng, name):
    n = 669_706  # the MLP's parameters
    p, g, a, d = r(rng, n), r(rng, n), np.zeros(n, np.float32), np.zeros(n, np.float32)
    if name == "rmsprop":
        benchmark(_kernels.rmsprop_update, p, a, g, 0.001, 0.9, 1e-7)
    else:
        benchmark(_kernels.adadelta_update, p, a, d, g, 1.0, 0.95, 1e-7)
