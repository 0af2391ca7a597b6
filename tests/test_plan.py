"""The execution plan: built from the layers, rebuilt when they change, and the memory and threads it runs with."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnet
import reference as ref
from fastnet import _kernels, networks
from fastnet.layers import Conv2D, Dense, Flatten, MaxPooling2D
from fastnet.models import Sequential
from helpers import assert_close


def ops(model):
    return [s.op for s in model.plan().steps]


def test_article_networks_compile_to_their_fused_steps():
    cnn = networks.cnn()
    assert [s.describe() for s in cnn.plan().steps] == [
        "conv2d(conv2d + activation) [activation=relu]",
        "conv2d_maxpool(conv2d_1 + activation_1 + max_pooling2d) [masks its input gradient by "
        "the previous ReLU]",
        "dropout(dropout)", "flatten(flatten)",
        "dense(dense + activation_2 + dropout_1) [activation=relu, applies its ReLU's backward, drops out while "
        "training]",
        "dense(dense_1) [activation=linear]", "identity(activation_3)"]
    assert ops(networks.mlp()) == ["dense", "dense", "dense", "identity"]
    assert [s.dropout for s in networks.mlp().plan().steps] == [True, True, False, False]


def test_add_after_compile_computes_the_layers_math():
    """A softmax the loss took over at compile is the first layer's again once another layer follows it."""
    rng = np.random.default_rng(0)
    x = rng.random((5, 784)).astype(np.float32)
    m = Sequential([Dense(10, activation="softmax", input_shape=(784,))])
    m.compile(loss="categorical_crossentropy", optimizer="rmsprop")
    assert ops(m) == ["dense"] and m.plan().steps[0].post_activation is None  # the loss applies the softmax
    m.add(Dense(3))
    assert m.plan().steps[0].post_activation == "softmax"
    w1, b1, w2, b2 = m.get_weights()
    expected = ref.softmax_forward(x @ w1.astype(np.float64) + b1) @ w2 + b2
    assert_close(m.predict(x), expected, rtol=1e-5, atol=1e-6, name="predict after add")
    with pytest.raises(RuntimeError, match="compile"):
        m.fit(x, np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1]], verbose=0)
    m.compile(loss="categorical_crossentropy", optimizer="rmsprop")  # the new last layer has no softmax
    assert_close(m.predict(x), expected, rtol=1e-5, atol=1e-6, name="predict after compile")


def test_plan_follows_the_convolution_algorithm():
    """An 8x58 output: Winograd pools it in its kernel, im2col's tiles (at most 96 positions, whole pairs of rows)
    cannot, so the plan changes with the algorithm."""
    m = Sequential([Conv2D(16, (3, 3), activation="relu", input_shape=(10, 60, 16)), MaxPooling2D(), Flatten(),
                    Dense(2, activation="softmax")])
    assert ops(m)[0] == "conv2d_maxpool"
    try:
        _kernels.set_conv_algo("im2col")
        assert ops(m)[:2] == ["conv2d", "maxpool2d"] and m.plan().conv_algo == "im2col"
    finally:
        _kernels.set_conv_algo("auto")
    assert ops(m)[0] == "conv2d_maxpool"


def test_trainable_false_is_refused_clearly():
    with pytest.raises(ValueError, match="trainable=False is not supported"):
        Dense(3, trainable=False)
    layer = Dense(3)
    with pytest.raises(ValueError, match="trainable=False"):
        layer.trainable = False
    assert layer.trainable


def test_buffers_are_sized_for_the_batch_of_the_call():
    m = networks.mlp()
    x = np.random.default_rng(0).random((3000, 784)).astype(np.float32)
    m.predict(x, batch_size=3000)
    big = m.plan().buffers.nbytes
    assert big >= 3000 * (512 + 512 + 10) * 4  # the activations of one batch of 3000
    m.predict(x[:100], batch_size=100)
    assert m.plan().buffers.nbytes <= big / 25  # released, not kept beside the small ones
    m.predict(x[:50], batch_size=100)  # a smaller batch than the call's size uses the same arrays
    assert m.plan().buffers.capacity == 50


def test_a_smaller_batch_runs_in_the_workspace_of_the_plans_capacity(isa):
    """A plan's workspace is sized for its batch capacity and smaller batches run in it. On the AVX2 path a GEMM
    packs op(A) where it holds at most 4 Mi floats: the last 4,000 of 10,000 images in batches of 6,000 are packed
    (4,000 x 784), the 6,000 before them are not (4.7 Mi floats), so the room must be there all the same (the
    sanitized run catches a write past the workspace; here, the last batch predicts what it predicts alone). One
    layer: in the MLP the next layer's room (6,000 x 512 packed) covers the first's."""
    m = Sequential([Dense(64, input_shape=(784,))])
    x = np.random.default_rng(0).random((10000, 784)).astype(np.float32)
    both = m.predict(x, batch_size=6000)
    np.testing.assert_array_equal(both[6000:], m.predict(x[6000:], batch_size=4000))


def test_winograd_filter_gradient_scratch_is_bounded():
    """A 512 -> 512 3x3 layer at batch 128 with 16 threads: the partial sums of the filter gradient are capped
    (they took 1.3 GiB before), and im2col's scratch does not include Winograd's."""
    shape, kernel = (128, 14, 14, 512), (3, 3, 512, 512)
    wino = _kernels.conv2d_workspace_floats(shape, kernel, n_threads=16, conv_algo="winograd") * 4
    im2col = _kernels.conv2d_workspace_floats(shape, kernel, n_threads=16, conv_algo="im2col") * 4
    assert wino < 400 * 2**20 and im2col < 100 * 2**20
    # the CNN's second layer keeps its 64 chunks: a small fraction of that
    assert _kernels.conv2d_workspace_floats((128, 26, 26, 32), (3, 3, 32, 32), n_threads=16) * 4 < 20 * 2**20


def run_python(code, unset=()):
    env = {k: v for k, v in os.environ.items() if k not in unset}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads peak memory from Linux /proc")
def test_predict_on_many_batch_sizes_keeps_peak_memory_bounded():
    """predict on 40 batch sizes from 1,000 to 40,000 (the whole input as one batch): the peak grows by about
    one batch's activations (~170 MiB at 40,000), not by the sum over the sizes (3.2 GiB before)."""
    out = run_python("""
        import numpy as np
        from fastnet import networks

        def peak_mib():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024

        x = np.random.default_rng(0).random((40000, 784), dtype=np.float32)  # no float64 temporary
        m = networks.mlp()
        m.predict(x[:100])
        before = peak_mib()
        for n in np.linspace(1000, 40000, 40).astype(int):
            m.predict(x[:n], batch_size=int(n))
        print(peak_mib() - before, m.plan().buffers.nbytes / 2**20)
    """)
    grown, held = map(float, out.split())
    assert grown < 400, f"peak memory grew by {grown:.0f} MiB"
    assert held < 200, f"the plan holds {held:.0f} MiB after the calls"


def test_threadpool_limits_apply_per_call():
    """Inside threadpoolctl.threadpool_limits(1) fastnet runs on one thread and starts no OpenMP worker; after
    the limit is lifted it uses every core again. set_num_threads still wins over both."""
    pytest.importorskip("threadpoolctl")
    if not fastnet.openmp:
        pytest.skip("built without OpenMP")
    out = run_python("""
        import os
        import numpy as np
        from threadpoolctl import threadpool_limits
        import fastnet
        from fastnet import networks

        def threads():
            return len(os.listdir("/proc/self/task"))

        x = np.random.default_rng(0).random((256, 784)).astype(np.float32)
        y = np.eye(10, dtype=np.float32)[np.arange(256) % 10]
        m = networks.mlp()
        start = threads()
        with threadpool_limits(limits=1):
            inside = fastnet.get_num_threads()
            m.fit(x, y, batch_size=128, epochs=1, verbose=0)
            after_limited_fit = threads()
        lifted = fastnet.get_num_threads()
        m.fit(x, y, batch_size=128, epochs=1, verbose=0)
        after_fit = threads()
        fastnet.set_num_threads(3)
        with threadpool_limits(limits=1):
            explicit = fastnet.get_num_threads()
        print(inside, after_limited_fit - start, lifted, after_fit - start, explicit)
    """, unset=("OMP_NUM_THREADS", "FASTNET_NUM_THREADS"))
    inside, new_limited, lifted, new_after, explicit = map(int, out.split())
    assert inside == 1 and new_limited == 0, "fit inside threadpool_limits(1) started OpenMP threads"
    assert lifted == len(os.sched_getaffinity(0))
    if lifted > 1:
        assert new_after == lifted - 1  # the OpenMP team: the main thread and lifted - 1 workers
    assert explicit == 3


@pytest.mark.parametrize("loss,final", [("categorical_crossentropy", "softmax"), ("binary_crossentropy", "sigmoid"),
                                        ("mse", None)])
def test_predict_runs_the_final_activation_a_loss_takes_over_in_the_same_call(loss, final):
    """Program.predict: the forward and then the softmax or sigmoid the loss took over (no op runs it), in one
    call into C; the same bits as the forward followed by that kernel."""
    fastnet.set_seed(5)
    act = final or "linear"
    model = Sequential([Dense(7, activation="relu", input_shape=(5,)), Dense(4, activation=act)])
    model.compile(loss=loss, optimizer="sgd")
    x = np.random.default_rng(6).standard_normal((9, 5)).astype(np.float32)
    got = model.predict(x)
    plan = model.plan()
    assert plan.steps[-1].post_activation is None  # the plan leaves the final activation out
    logits = plan.forward(x, False).copy()
    expected = {"softmax": lambda z: _kernels.softmax_forward(z), "sigmoid": lambda z: _kernels.activation_forward(
        z, "sigmoid"), None: lambda z: z}[final](logits)
    np.testing.assert_array_equal(got, expected)
    if final:
        reference = ref.softmax_forward if final == "softmax" else lambda z: ref.activation_forward(z, "sigmoid")
        assert_close(got, reference(logits.astype(np.float64)),
                     rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="final must be None, or 'softmax' or 'sigmoid'"):
        plan.program.predict(x, np.empty((9, 4), np.float32), "tanh")
    with pytest.raises(ValueError, match="out has shape"):
        plan.program.predict(x, np.empty((9, 5), np.float32), final)


@pytest.mark.parametrize("pooled", [False, True])
def test_inference_keeps_the_winograd_filters_until_any_weight_changes(pooled):
    """Inference runs keep the filters Winograd transformed from the weights (program.h's memo) and transform them
    again when any weight differs: after a write in place to the last element, set_weights or a training step,
    predict gives what a fresh model with those weights gives, bit for bit (the kept transform would not)."""
    def build():
        layers = [Conv2D(16, 3, activation="relu", input_shape=(10, 10, 3)), Conv2D(16, 3, activation="relu")]
        model = Sequential(layers + [MaxPooling2D()] * pooled + [Flatten(), Dense(4, activation="softmax")])
        model.compile(loss="categorical_crossentropy", optimizer="sgd")
        return model

    def fresh(model):
        other = build()
        other.set_weights(model.get_weights())
        return other.predict(x)

    fastnet.set_seed(3)
    model = build()
    assert ops(model)[1] == ("conv2d_maxpool" if pooled else "conv2d")
    assert _kernels.conv2d_uses_winograd((1, 8, 8, 16), (3, 3, 16, 16))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 10, 10, 3)).astype(np.float32)
    first = model.predict(x)
    np.testing.assert_array_equal(model.predict(x), first)
    np.testing.assert_array_equal(first, fresh(model))
    model.weights[2].flat[-1] += 0.5  # conv 2's kernel, in place
    changed = model.predict(x)
    assert not np.array_equal(changed, first)
    np.testing.assert_array_equal(changed, fresh(model))
    model.set_weights([w * 0.75 for w in model.get_weights()])
    np.testing.assert_array_equal(model.predict(x), fresh(model))
    model.train_on_batch(x, np.eye(4, dtype=np.float32)[rng.integers(0, 4, 5)])
    np.testing.assert_array_equal(model.predict(x), fresh(model))


@pytest.mark.parametrize("rows", [1, 64])
def test_dense_ops_sharing_a_parallel_region_pass_on_what_their_activations_made(rows):
    """Consecutive dense ops that each run on several threads share one parallel region (program.c's
    dense_forward); one with an activation after it (tanh) ends the run, and the next op reads the activation's
    output, not the product's. The same bits as the layers' kernels called one by one, on 1 and 2 threads."""
    fastnet.set_seed(8)
    model = Sequential([Dense(512, activation="relu", input_shape=(784,)), Dense(512, activation="tanh"),
                        Dense(256, activation="relu"), Dense(10, activation="softmax")])
    x = np.random.default_rng(9).random((rows, 784), dtype=np.float32)
    w = model.get_weights()
    h = _kernels.dense_forward(x, w[0], w[1], activation="relu")
    h = _kernels.activation_forward(_kernels.dense_forward(h, w[2], w[3]), "tanh")
    h = _kernels.dense_forward(h, w[4], w[5], activation="relu")
    expected = _kernels.softmax_forward(_kernels.dense_forward(h, w[6], w[7]))
    try:
        for n in (1, 2):
            fastnet.set_num_threads(n)
            np.testing.assert_array_equal(model.predict(x), expected)
    finally:
        fastnet.set_num_threads(None)
