"""Every kernel gives bit-identical results with 1, 2, 3, 7 and 16 threads (and on repeated calls), and so
does training a model whose convolution takes the Winograd path. A kernel takes no more threads than its work
keeps busy (a grain each, csrc/internal.h: 32 K elements, 1 K where each takes an exp, or 256 K multiply-adds of a
GEMM), so the inputs here are large enough for several threads; and small calls wake no thread at all."""
import os
import subprocess
import sys
import textwrap

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
    x, dy = rand(rng, 300_001), rand(rng, 300_001)
    z, t = rand(rng, 10_007, 10), np.eye(10, dtype=np.float32)[rng.integers(0, 10, 10_007)]

    def run(nt):
        out = []
        for act in ("relu", "sigmoid", "tanh"):
            y = _kernels.activation_forward(x, act, n_threads=nt)
            out += [y, _kernels.activation_backward(dy, y, act, n_threads=nt)]
        out += list(_kernels.dropout_forward(x, 0.2, 5, 11, n_threads=nt))
        out += list(_kernels.softmax_xent_forward(z, t, n_threads=nt))
        out.append(_kernels.softmax_xent_backward(out[-2], t, 1 / 10_007, n_threads=nt))
        out.append(_kernels.bias_backward(z, n_threads=nt))
        return out

    same_for_all_thread_counts(run)


def test_optimizers(rng):
    g = rand(rng, 250_001)

    def run(nt):
        p, a, d = rand(np.random.default_rng(0), 250_001), np.zeros(250_001, np.float32), np.zeros(250_001, np.float32)
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


SMALL_CALLS = textwrap.dedent("""
    import os, numpy as np
    from fastnet import _kernels as K

    def tasks():
        return len(os.listdir("/proc/self/task"))

    rng, nt = np.random.default_rng(0), 4
    def r(*shape):
        return rng.random(shape, dtype=np.float32)
    z, t = r(64, 10), np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)]
    x, w, b, dy, v, img = r(128, 64), r(64, 10), r(10), r(128, 10), r(20_000), r(2, 8, 8, 4)
    pooled, argmax = K.maxpool2d_forward(img, n_threads=1)
    calls = {  # each under a grain: 640 elements with an exp each, 20,000 without, a GEMM of 82 K multiply-adds
        "softmax_xent": lambda: K.softmax_xent_backward(K.softmax_xent_forward(z, t, n_threads=nt)[0], t, 1.0,
                                                        n_threads=nt),
        "softmax": lambda: K.softmax_backward(z, K.softmax_forward(z, n_threads=nt), n_threads=nt),
        "pointwise_loss": lambda: (K.pointwise_loss_forward("sigmoid_xent", z, t, n_threads=nt),
                                   K.pointwise_loss_backward("squared", z, t, 1.0, n_threads=nt)),
        "activation": lambda: (K.activation_forward(z, "tanh", n_threads=nt),
                               K.activation_backward(v, K.activation_forward(v, "relu", n_threads=nt), "relu",
                                                     n_threads=nt)),
        "bias_act_forward": lambda: K.bias_act_forward(z.copy(), t[0], "relu", n_threads=nt),
        "dropout": lambda: K.dropout_backward(v, K.dropout_forward(v, 0.5, 1, 2, n_threads=nt)[1], 0.5,
                                              n_threads=nt),
        "random_uniform": lambda: K.random_uniform(20_000, 1, 2, n_threads=nt),
        "first_nonfinite": lambda: K.first_nonfinite(v, n_threads=nt),
        "gemm": lambda: K.gemm(x, w, n_threads=nt),
        "dense": lambda: (K.dense_forward(x, w, b, activation="relu", n_threads=nt),
                          K.dense_backward(dy, x, w, n_threads=nt)),
        "bias_backward": lambda: K.bias_backward(z, n_threads=nt),
        "maxpool2d": lambda: K.maxpool2d_backward(pooled, argmax, img.shape, n_threads=nt),
        "optimizer": lambda: K.rmsprop_update(v.copy(), np.zeros_like(v), v, 0.001, 0.9, 1e-7, n_threads=nt),
        "gather_rows": lambda: K.gather_rows(x, np.arange(4, dtype=np.int64), np.empty((4, 64), np.float32),
                                             n_threads=nt),
    }
    before = tasks()
    for name, call in calls.items():
        call()
        print(name, tasks() - before)
    K.dropout_forward(r(1_000_000), 0.5, 1, 2, n_threads=nt)  # 31 grains: all 4 threads
    print("large", tasks() - before)
""")


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or not _kernels.have_openmp(),
                    reason="counts the process's threads in /proc (Linux) and needs OpenMP")
def test_small_calls_wake_no_thread():
    """A kernel call of less than a grain of work runs on the calling thread: OpenMP starts no thread for it,
    though it is given 4. The process's thread count (libgomp keeps a team's threads) proves it, and grows by 3
    after the one large call."""
    out = subprocess.run([sys.executable, "-c", SMALL_CALLS], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    added = dict((name, int(n)) for name, n in (line.split() for line in out.stdout.splitlines()))
    assert added.pop("large") == 3, out.stdout
    assert added == dict.fromkeys(added, 0), f"threads started by small calls: {added}"
