"""Mixed precision (Keras's mixed_bfloat16): bfloat16 product operands, float32 everything else.

Tolerances. On the bfloat16 path every product takes operands rounded to bfloat16 (8 significant bits), and the
product of two such values is exact in float32 (16 significant bits <= 24); the only other error is float32
accumulation. So a GEMM-based kernel fed x, w equals the float64 reference fed round_bf16(x), round_bf16(w) up to
the float32 summation bound |error| <= gamma_K * sum_k |a_k| |b_k|, gamma_K = K u / (1 - K u), u = 2^-24, for a
sum of K products in any order. That is what bf16_close checks, per element, for GEMM, Dense and the im2col
convolutions (whose operands are x, w and dy themselves, copied by im2col).
The Winograd convolution rounds its transformed operands V = B^T d B and U = G g G^T instead, which no rounding of
x and w reproduces: each product then carries a relative error of at most (1 + 2^-9)^2 - 1 < 2^-8 + 2^-17, so the
forward output is off by at most 2^-8.9 * A^T (sum_c |U| . |V|) |A| (plus float32 terms), which
test_winograd_forward_bf16_error_is_bounded computes with a float64 Winograd in numpy.
"""
import numpy as np
import pytest

import fastnet
import reference as ref
from fastnet import _kernels, mixed_precision
from fastnet.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from fastnet.models import Sequential, load_model
from helpers import bf16_close, gemm_terms, rand, winograd_abs_bound

R = ref.round_bf16


@pytest.fixture(autouse=True)
def float32_after():
    yield
    mixed_precision.set_global_policy("float32")


SHAPES = [(1, 1, 1), (7, 13, 5), (17, 33, 300), (128, 512, 784), (9, 31, 257)]


@pytest.mark.parametrize("M,N,Kd", SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_gemm_bf16(isa, rng, M, N, Kd, trans_a, trans_b):
    a = rand(rng, *((Kd, M) if trans_a else (M, Kd)))
    b = rand(rng, *((N, Kd) if trans_b else (Kd, N)))
    c = _kernels.gemm(a, b, trans_a=trans_a, trans_b=trans_b, precision="bfloat16")
    bf16_close(c, gemm_terms(a.T if trans_a else a, b.T if trans_b else b), f"gemm bf16 [{isa}]", Kd)
    if Kd > 1:  # the rounding happened: float32 operands give another result
        assert not np.array_equal(c, _kernels.gemm(a, b, trans_a=trans_a, trans_b=trans_b))


@pytest.mark.parametrize("N,I,O", [(1, 1, 1), (3, 17, 5), (128, 784, 512), (33, 100, 10)])
def test_dense_bf16(isa, rng, N, I, O):
    x, w, b, dy = rand(rng, N, I), rand(rng, I, O), rand(rng, O), rand(rng, N, O)
    y = _kernels.dense_forward(x, w, b, precision="bfloat16")
    e, m = gemm_terms(x, w)
    bf16_close(y, (e + b, m + np.abs(b)), "dense forward", I + 1)
    packed = _kernels.PackedWeights(w, precision="bfloat16")
    assert np.array_equal(_kernels.dense_forward(x, w, b, packed=packed, precision="bfloat16"), y)
    with pytest.raises(ValueError, match=r"\(bfloat16\) do not fit .* \(float32\): pack them again"):
        _kernels.dense_forward(x, w, b, packed=packed)
    dx, dw, db = _kernels.dense_backward(dy, x, w, precision="bfloat16")
    bf16_close(dx, gemm_terms(dy, w.T), "dense dx", O)
    bf16_close(dw, gemm_terms(x.T, dy), "dense dw", N)
    np.testing.assert_array_equal(db, _kernels.dense_backward(dy, x, w)[2])  # a float32 reduction, not a product


IM2COL_CASES = [(2, 28, 28, 1, 32, 3, 3, (1, 1), "valid"), (1, 7, 9, 3, 5, 3, 2, (1, 1), "same"),
                (3, 8, 7, 2, 3, 3, 3, (2, 2), "same"), (1, 5, 5, 3, 17, 1, 1, (1, 1), "valid"),
                (2, 9, 8, 32, 5, 3, 3, (2, 2), "same")]


@pytest.mark.parametrize("case", IM2COL_CASES)
def test_im2col_conv_bf16(isa, rng, case):
    N, H, W, C, OC, KH, KW, strides, padding = case
    x, w, b = rand(rng, N, H, W, C), rand(rng, KH, KW, C, OC, scale=0.3), rand(rng, OC)
    kw = dict(precision="bfloat16", conv_algo="im2col")
    y = _kernels.conv2d_forward(x, w, b, strides, padding, **kw)
    rx, rw = R(x), R(w)
    expected = ref.conv2d_forward(rx, rw, b, strides, padding)
    magnitude = ref.conv2d_forward(np.abs(rx), np.abs(rw), np.abs(b), strides, padding)
    bf16_close(y, (expected, magnitude), "im2col forward", KH * KW * C + 1)
    dy = rand(rng, *y.shape)
    dx = _kernels.conv2d_backward_data(dy, w, x.shape, strides, padding, **kw)
    bf16_close(dx, (ref.conv2d_backward_data(R(dy), rw, x.shape, strides, padding),
                    ref.conv2d_backward_data(np.abs(R(dy)), np.abs(rw), x.shape, strides, padding)),
               "im2col dx", KH * KW * OC)
    dw, db = _kernels.conv2d_backward_filter(dy, x, (KH, KW), strides, padding, **kw)
    bf16_close(dw, (ref.conv2d_backward_filter(R(dy), rx, (KH, KW), strides, padding)[0],
                    ref.conv2d_backward_filter(np.abs(R(dy)), np.abs(rx), (KH, KW), strides, padding)[0]),
               "im2col dw", N * y.shape[1] * y.shape[2])
    np.testing.assert_array_equal(db, _kernels.conv2d_backward_filter(dy, x, (KH, KW), strides, padding,
                                                                      conv_algo="im2col")[1])


@pytest.mark.parametrize("N,H,C,OC", [(2, 26, 32, 32), (1, 10, 16, 16), (3, 14, 17, 19)])
def test_winograd_forward_bf16_error_is_bounded(isa, rng, N, H, C, OC):
    x, w = rand(rng, N, H, H, C), rand(rng, 3, 3, C, OC, scale=0.3)
    y = _kernels.conv2d_forward(x, w, None, conv_algo="winograd", precision="bfloat16")
    y32 = _kernels.conv2d_forward(x, w, None, conv_algo="winograd")
    exact = ref.conv2d_forward(x, w)
    bound = (2 ** -8 + 2 ** -17) * winograd_abs_bound(x, w) + 1e-4 * np.abs(exact).max()  # + float32's 2e-5
    err = np.abs(y - exact)
    assert (err <= bound).all(), f"Winograd bf16: error {float((err / bound).max()):.2f}x its bound"
    assert np.abs(y - exact).max() > 10 * np.abs(y32 - exact).max()  # the transformed operands were rounded


@pytest.mark.parametrize("N,H,C,OC", [(2, 26, 32, 32), (3, 9, 17, 19)])
def test_winograd_backward_bf16_near_reference(isa, rng, N, H, C, OC):
    """The backward passes run the same transforms (the data gradient is the forward engine on dy, the filter
    gradient its adjoint), so their error has the forward's size: rms error within 2^-4 of the result's rms
    (measured: 2.3-2.5 %, ten times im2col's, which is why 'auto' takes im2col for bfloat16), and shown to
    round."""
    x, w = rand(rng, N, H, H, C), rand(rng, 3, 3, C, OC, scale=0.3)
    dy = rand(rng, N, H - 2, H - 2, OC)
    kw = dict(conv_algo="winograd", precision="bfloat16")
    for name, got, f32, exact in (
            ("dx", _kernels.conv2d_backward_data(dy, w, x.shape, **kw),
             _kernels.conv2d_backward_data(dy, w, x.shape, conv_algo="winograd"), ref.conv2d_backward_data(dy, w, x.shape)),
            ("dw", _kernels.conv2d_backward_filter(dy, x, (3, 3), **kw)[0],
             _kernels.conv2d_backward_filter(dy, x, (3, 3), conv_algo="winograd")[0],
             ref.conv2d_backward_filter(dy, x, (3, 3))[0])):
        rms = np.sqrt(((got - exact) ** 2).mean() / (exact ** 2).mean())
        assert rms <= 2 ** -4, f"{name}: rms error {rms:.3g}"
        assert np.abs(got - exact).max() > 10 * np.abs(f32 - exact).max(), name


def test_auto_takes_im2col_for_bf16_operands(rng):
    """Winograd's transforms amplify the operands' rounding about tenfold: with bfloat16 operands 'auto' takes
    im2col, whose error is the rounding's own (~2^-9 relative per operand)."""
    shape, kernel = (2, 26, 26, 32), (3, 3, 32, 32)
    assert _kernels.conv2d_uses_winograd(shape, kernel)
    assert not _kernels.conv2d_uses_winograd(shape, kernel, precision="bfloat16")
    assert _kernels.conv2d_uses_winograd(shape, kernel, conv_algo="winograd", precision="bfloat16")
    x, w = rand(rng, *shape), rand(rng, *kernel, scale=0.3)
    exact = ref.conv2d_forward(x, w)

    def rms(y):
        return np.sqrt(((y - exact) ** 2).mean() / (exact ** 2).mean())

    auto = _kernels.conv2d_forward(x, w, precision="bfloat16")
    np.testing.assert_array_equal(auto, _kernels.conv2d_forward(x, w, precision="bfloat16", conv_algo="im2col"))
    assert rms(auto) < 2 ** -8 and rms(_kernels.conv2d_forward(x, w, precision="bfloat16",
                                                                conv_algo="winograd")) > 4 * rms(auto)


def test_bf16_kernels_are_bit_identical_across_thread_counts(rng):
    x, w, b = rand(rng, 67, 26, 26, 32), rand(rng, 3, 3, 32, 32), rand(rng, 32)
    dy = rand(rng, 67, 24, 24, 32)
    xd, wd, dyd = rand(rng, 128, 784), rand(rng, 784, 70), rand(rng, 128, 70)

    def run(nt):
        kw = dict(precision="bfloat16", n_threads=nt)
        return [_kernels.conv2d_forward(x, w, b, activation="relu", **kw),
                _kernels.conv2d_backward_data(dy, w, x.shape, **kw), *_kernels.conv2d_backward_filter(dy, x, (3, 3), **kw),
                _kernels.conv2d_forward(x, w, b, conv_algo="im2col", **kw),
                *_kernels.conv2d_backward_filter(dy, x, (3, 3), conv_algo="im2col", **kw),
                _kernels.dense_forward(xd, wd, **kw), *_kernels.dense_backward(dyd, xd, wd, **kw)[:2]]

    first = run(1)
    for nt in (2, 3, 7):
        for a, b_ in zip(first, run(nt)):
            assert np.array_equal(a, b_), f"{nt} threads"


def test_rounding_is_to_nearest_even():
    x = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -(1 + 2 ** -8), 3.4e38, np.inf,
                  -np.inf, np.nan, 1e-40], np.float32)
    r = R(x)
    assert list(r[:5]) == [1.0, 1.0, 1 + 2 ** -6, 1 + 2 ** -7, -1.0]  # ties to even; above a tie rounds up
    assert r[5] == np.inf and r[6] == np.inf and r[7] == -np.inf and np.isnan(r[8])
    a = x[:6, None].copy()
    b = np.ones((1, 1), np.float32)
    np.testing.assert_array_equal(_kernels.gemm(a, b, precision="bfloat16", isa="generic")[:5, 0], r[:5])


# ---------------------------------------------------------------- the policy API and the model
def mlp():
    return Sequential([Dense(64, activation="relu", input_shape=(30,)), Dropout(0.2), Dense(10, activation="softmax")])


def test_policy_api():
    assert mixed_precision.global_policy().name == "float32"
    mixed_precision.set_global_policy("mixed_bfloat16")
    p = mixed_precision.global_policy()
    assert (p.name, p.compute_dtype, p.variable_dtype) == ("mixed_bfloat16", "bfloat16", "float32")
    layer = Dense(3)  # takes the global policy when created (Keras)
    mixed_precision.set_global_policy("float32")
    assert layer.dtype_policy == p and layer.dtype == "float32" and layer.compute_dtype == "bfloat16"
    assert Dense(3).compute_dtype == "float32" and Dense(3, dtype="mixed_bfloat16").compute_dtype == "bfloat16"
    assert Dense(3, dtype=mixed_precision.Policy("mixed_bfloat16")).dtype_policy.name == "mixed_bfloat16"
    with pytest.raises(ValueError, match="unknown dtype policy 'mixed_float16'.*use 'mixed_bfloat16'"):
        mixed_precision.set_global_policy("mixed_float16")
    with pytest.raises(ValueError, match="Dense: unknown dtype policy 'float64'"):
        Dense(3, dtype="float64")


def test_the_plan_gives_each_product_step_its_layers_precision():
    m = Sequential([Conv2D(4, (3, 3), activation="relu", input_shape=(8, 8, 1), dtype="mixed_bfloat16"),
                    MaxPooling2D(), Flatten(), Dense(5, dtype="mixed_bfloat16"), Activation("relu"), Dense(3)])
    m.compile(loss="mse", optimizer="sgd")
    assert [(s.op, s.precision) for s in m.plan().steps if s.op in ("conv2d", "conv2d_maxpool", "dense")] == [
        ("conv2d_maxpool", "bfloat16"), ("dense", "bfloat16"), ("dense", "float32")]
    assert all(s.precision == "float32" for s in m.plan().steps if s.op not in ("conv2d_maxpool", "dense"))
    lines = []
    m.summary(print_fn=lines.append)
    path = mixed_precision.bf16_path()  # 'portable' on a CPU without AVX512_BF16
    assert f"Dtype policy: mixed_bfloat16 ({path} bfloat16 products): conv2d, dense; float32: " in lines[0]


def test_a_mixed_model_runs_the_bf16_kernels_bit_for_bit(rng):
    """predict and one training step equal the kernels called by hand with precision='bfloat16'."""
    mixed_precision.set_global_policy("mixed_bfloat16")
    fastnet.set_seed(3)
    m = Sequential([Dense(16, activation="relu", input_shape=(30,)), Dense(4)])
    m.compile(loss="mse", optimizer=fastnet.optimizers.SGD(lr=0.0))
    x, y = rand(rng, 8, 30), rand(rng, 8, 4)
    w1, b1, w2, b2 = m.get_weights()
    h = _kernels.dense_forward(x, w1, b1, activation="relu", precision="bfloat16")
    out = _kernels.dense_forward(h, w2, b2, precision="bfloat16")
    np.testing.assert_array_equal(m.predict(x), out)
    assert not np.array_equal(out, _kernels.dense_forward(_kernels.dense_forward(x, w1, b1, activation="relu"), w2, b2))
    m.train_on_batch(x, y)
    dz = _kernels.pointwise_loss_backward("squared", out, y, 1 / 8)
    dh, dw2, db2 = _kernels.dense_backward(dz, h, w2, precision="bfloat16")
    _, dw1, db1 = _kernels.dense_backward(dh * (h > 0), x, w1, need_dx=False, precision="bfloat16")
    for got, want in zip([g for layer in m.layers for g in layer.grads], [dw1, db1, dw2, db2]):
        np.testing.assert_array_equal(got, want)


def test_float32_policy_is_the_float32_engine(rng):
    """Setting 'float32' explicitly changes nothing, bit for bit (and is the default)."""
    x, y = rand(rng, 64, 30), np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)]
    results = []
    for policy in (None, "float32"):
        if policy:
            mixed_precision.set_global_policy(policy)
        fastnet.set_seed(5)
        m = mlp()
        m.compile(loss="categorical_crossentropy", optimizer="adam")
        m.fit(x, y, batch_size=16, epochs=2, verbose=0)
        results.append(m.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_mixed_training_learns_and_stays_close_to_float32(rng):
    x = rand(rng, 256, 30)
    y = np.eye(10, dtype=np.float32)[(x[:, :10].argmax(1))]
    losses = {}
    for policy in ("float32", "mixed_bfloat16"):
        mixed_precision.set_global_policy(policy)
        fastnet.set_seed(5)
        m = mlp()
        m.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        h = m.fit(x, y, batch_size=32, epochs=8, verbose=0)
        losses[policy] = h.history["loss"]
    assert losses["mixed_bfloat16"][-1] < 0.8 * losses["mixed_bfloat16"][0]
    assert losses["mixed_bfloat16"] != losses["float32"]
    np.testing.assert_allclose(losses["mixed_bfloat16"], losses["float32"], rtol=0.02)


@pytest.mark.parametrize("ext", [".npz", ".keras"])
def test_saved_models_keep_their_policy(tmp_path, rng, ext):
    if ext == ".keras":
        pytest.importorskip("h5py")
    mixed_precision.set_global_policy("mixed_bfloat16")
    m = Sequential([Dense(8, input_shape=(5,)), Dense(2, dtype="float32")])
    m.compile(loss="mse")
    m.save(tmp_path / f"m{ext}")
    mixed_precision.set_global_policy("float32")
    back = load_model(tmp_path / f"m{ext}")
    assert [l.dtype_policy.name for l in back.layers] == ["mixed_bfloat16", "float32"]
    x = rand(rng, 4, 5)
    np.testing.assert_array_equal(back.predict(x), m.predict(x))
    f32 = Sequential([Dense(3, input_shape=(5,))])
    f32.save(tmp_path / f"f{ext}")
    mixed_precision.set_global_policy("mixed_bfloat16")  # a float32 file stays float32 under another policy
    assert load_model(tmp_path / f"f{ext}").layers[0].dtype_policy.name == "float32"


def test_info_names_the_policy_and_path():
    assert "dtype policy float32" in fastnet.info()
    mixed_precision.set_global_policy("mixed_bfloat16")
    path = {"amx_bf16": "native AMX", "avx512_bf16": "native VDPBF16PS"}.get(_kernels.get_isa(), "portable")
    assert f"dtype policy mixed_bfloat16 ({path} bfloat16 products)" in fastnet.info()
    assert mixed_precision.native_bf16() is (path != "portable") and mixed_precision.bf16_path() == path
    for isa, name in [("avx512", "portable"), ("avx512_bf16", "native VDPBF16PS"), ("amx_bf16", "native AMX")]:
        if isa in _kernels.supported_isas():
            _kernels.set_isa(isa)
            try:
                assert f"({name} bfloat16 products)" in fastnet.info()
                assert mixed_precision.native_bf16() is (name != "portable")
            finally:
                _kernels.set_isa("best")
