"""Every kernel gives bit-identical results with 1, 2, 3, 7 and 16 threads (and on repeated calls), and so
does training a model whose convolution takes the Winograd path."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastnet
import reference
from fastnet import _kernels, _seed
from fastnet.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from fastnet.models import Sequential
from helpers import rand

THREADS = (1, 2, 3, 7, 16)


def same_for_all_thread_counts(fn):
    results = [fn(nt) for nt in THREADS]
    for nt, res in zip(THREADS[1:], results[1:]):
        for a, b in zip(results[0], res):
            assert np.array_equal(a, b), f"{nt} threads differ from 1 thread (max diff {np.abs(a - b).max()})"
    repeat = fn(THREADS[-1])
    for a, b in zip(results[-1], repeat):
        assert np.array_equal(a, b), "repeated call differs"


@given(st.lists(st.integers(0, 2**200), max_size=5))
def test_stream_keys_are_the_reference_hash(parts):
    """The key of every dropout mask (written in Cython) is the Python reference's hash, parts past 64 bits too."""
    assert _seed.key64(*parts) == reference.key64(*parts)
    assert _seed.key64(*map(np.uint64, [p for p in parts if p < 2**64])) == reference.key64(*[p for p in parts if p < 2**64])


def test_stream_keys_tell_a_part_from_its_truncation():
    assert _seed.key64(2**64 + 5) != _seed.key64(5)
    assert _seed.key64(1, 2) != _seed.key64(2, 1)
    with pytest.raises(ValueError, match="key parts must be >= 0"):
        _seed.key64(3, -1)


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm(isa, rng, trans_a, trans_b):
    a = rand(rng, 300, 131) if trans_a else rand(rng, 131, 300)
    b = rand(rng, 77, 300) if trans_b else rand(rng, 300, 77)
    same_for_all_thread_counts(lambda nt: [_kernels.gemm(a, b, trans_a=trans_a, trans_b=trans_b, n_threads=nt)])


def test_dense(rng):
    x, w, b, dy = rand(rng, 128, 784), rand(rng, 784, 70), rand(rng, 70), rand(rng, 128, 70)
    same_for_all_thread_counts(
        lambda nt: [_kernels.dense_forward(x, w, b, activation="relu", n_threads=nt),
                    *_kernels.dense_backward(dy, x, w, n_threads=nt)])


@pytest.mark.parametrize("N", [1, 5, 67])
def test_conv2d(conv_algo, rng, N):
    x, w, b = rand(rng, N, 12, 11, 5), rand(rng, 3, 3, 5, 7), rand(rng, 7)
    dy = rand(rng, N, 10, 9, 7)
    same_for_all_thread_counts(
        lambda nt: [_kernels.conv2d_forward(x, w, b, activation="relu", n_threads=nt),
                    _kernels.conv2d_backward_data(dy, w, x.shape, n_threads=nt),
                    *_kernels.conv2d_backward_filter(dy, x, (3, 3), n_threads=nt)])


@pytest.mark.parametrize("N", [1, 67])
def test_conv2d_second_layer(rng, N):
    """The CNN's second convolution, on the path 'auto' gives it (Winograd)."""
    x, w, b = rand(rng, N, 26, 26, 32), rand(rng, 3, 3, 32, 32), rand(rng, 32)
    dy = rand(rng, N, 24, 24, 32)
    same_for_all_thread_counts(
        lambda nt: [_kernels.conv2d_forward(x, w, b, activation="relu", n_threads=nt),
                    _kernels.conv2d_backward_data(dy, w, x.shape, relu_input=x, n_threads=nt),
                    *_kernels.conv2d_backward_filter(dy, x, (3, 3), n_threads=nt),
                    *_kernels.conv2d_forward_maxpool(x, w, b, n_threads=nt)])


def test_maxpool(rng):
    x = rand(rng, 9, 24, 24, 32)
    dy = rand(rng, 9, 12, 12, 32)
    same_for_all_thread_counts(
        lambda nt: [*_kernels.maxpool2d_forward(x, n_threads=nt),
                    _kernels.maxpool2d_backward(dy, _kernels.maxpool2d_forward(x)[1], x.shape, n_threads=nt)])


def test_elementwise(rng):
    x, dy = rand(rng, 100_001), rand(rng, 100_001)
    z, t = rand(rng, 129, 10), np.eye(10, dtype=np.float32)[rng.integers(0, 10, 129)]

    def run(nt):
        out = []
        for act in ("relu", "sigmoid", "tanh"):
            y = _kernels.activation_forward(x, act, n_threads=nt)
            out += [y, _kernels.activation_backward(dy, y, act, n_threads=nt)]
        out += list(_kernels.dropout_forward(x, 0.2, 5, 11, n_threads=nt))
        out += list(_kernels.softmax_xent_forward(z, t, n_threads=nt))
        out.append(_kernels.softmax_xent_backward(out[-2], t, 1 / 129, n_threads=nt))
        out.append(_kernels.bias_backward(z, n_threads=nt))
        return out

    same_for_all_thread_counts(run)


def test_optimizers(rng):
    g = rand(rng, 50_001)

    def run(nt):
        p, a, d = rand(np.random.default_rng(0), 50_001), np.zeros(50_001, np.float32), np.zeros(50_001, np.float32)
        for _ in range(3):
            _kernels.adadelta_update(p, a, d, g, 1.0, 0.95, 1e-7, n_threads=nt)
            _kernels.rmsprop_update(p, a, g, 0.001, 0.9, 1e-7, n_threads=nt)
        return [p, a, d]

    same_for_all_thread_counts(run)


def test_training_a_winograd_model(rng):
    """Two epochs of a conv net whose second convolution runs Winograd with the fused ReLU + max-pool, its
    filter gradient summed over chunks: the same weights with every thread count."""
    x = rng.random((40, 12, 12, 3)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 40)]

    def train(nt):
        fastnet.set_num_threads(nt)
        try:
            fastnet.set_seed(9)
            m = Sequential([Conv2D(16, (3, 3), activation="relu", input_shape=(12, 12, 3)),
                            Conv2D(16, (3, 3), activation="relu"), MaxPooling2D((2, 2)), Dropout(0.25), Flatten(),
                            Dense(4, activation="softmax")])
            m.compile(loss="categorical_crossentropy", optimizer="adadelta")
            assert [s.op for s in m.plan().steps][:2] == ["conv2d", "conv2d_maxpool"]
            assert _kernels.conv2d_uses_winograd((1, 12, 12, 16), (3, 3, 16, 16))
            m.fit(x, y, batch_size=16, epochs=2, verbose=0)
            return m.get_weights() + [m.predict(x)]
        finally:
            fastnet.set_num_threads(None)

    same_for_all_thread_counts(train)
