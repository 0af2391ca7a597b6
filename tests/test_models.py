"""Sequential end to end: shapes and summaries, channel orders, save/load, seeds and threads, legacy spellings."""
import io
import os
import threading

import numpy as np
import pytest

import fastnet
from fastnet import backend, networks
from fastnet.layers import (Activation, Conv2D, Convolution2D, Dense, Dropout, Flatten, LegacyAPIWarning,
                            MaxPooling2D)
from fastnet.models import Sequential, load_model
from fastnet.plan import Plan
from fastnet.saving import ModelFileError
from fastnet.utils import np_utils, to_categorical


def tiny_cnn(data_format="channels_last"):
    shape = (1, 10, 10) if data_format == "channels_first" else (10, 10, 1)
    m = Sequential()
    m.add(Conv2D(4, (3, 3), input_shape=shape, data_format=data_format))
    m.add(Activation("relu"))
    m.add(MaxPooling2D((2, 2)))
    m.add(Dropout(0.25))
    m.add(Flatten())
    m.add(Dense(8, activation="relu"))
    m.add(Dropout(0.5))
    m.add(Dense(3, activation="softmax"))
    m.compile(loss="categorical_crossentropy", optimizer="adadelta", metrics=["accuracy"])
    return m


def data(n=40, data_format="channels_last", seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 10, 10, 1)).astype(np.float32)
    if data_format == "channels_first":
        x = x.transpose(0, 3, 1, 2).copy()
    return x, to_categorical(rng.integers(0, 3, n), 3)


def test_summary_matches_keras_counts():
    fastnet.set_seed(0)
    lines = []
    networks.mlp().summary(print_fn=lines.append)
    text = lines[0]
    assert "Total params: 669,706" in text and "Trainable params: 669,706" in text
    assert "dense (Dense)" in text and "(None, 512)" in text and "401920" in text and "262656" in text
    lines.clear()
    for fmt, shape in (("channels_last", "(None, 26, 26, 32)"), ("channels_first", "(None, 32, 26, 26)")):
        cnn = networks.cnn(fmt)
        assert cnn.count_params() == 600_810
        cnn.summary(print_fn=lines.append)
        assert "Total params: 600,810" in lines[-1] and shape in lines[-1] and "(None, 4608)" in lines[-1]
    assert [l.count_params() for l in cnn.layers if l.params] == [320, 9248, 589952, 1290]


def test_keras_weight_layouts():
    m = tiny_cnn()
    assert [w.shape for w in m.get_weights()] == [(3, 3, 1, 4), (4,), (64, 8), (8,), (8, 3), (3,)]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_fit_evaluate_predict(data_format):
    fastnet.set_seed(1)
    m = tiny_cnn(data_format)
    x, y = data(data_format=data_format)
    h = m.fit(x, y, batch_size=16, epochs=3, verbose=0, validation_data=(x, y))
    assert h.epoch == [0, 1, 2]
    for key in ("loss", "accuracy", "acc", "val_loss", "val_accuracy", "val_acc"):
        assert len(h.history[key]) == 3
    loss, acc = m.evaluate(x, y)
    assert loss == pytest.approx(h.history["val_loss"][-1], rel=1e-6)
    p = m.predict(x)
    assert p.shape == (40, 3) and np.allclose(p.sum(1), 1, atol=1e-6)
    assert acc == pytest.approx((p.argmax(1) == y.argmax(1)).mean())
    np.testing.assert_array_equal(m.predict_classes(x), p.argmax(1))


def test_channels_first_and_last_models_agree():
    """The same weights give the same predictions whichever ordering the model reads."""
    a, b = tiny_cnn("channels_last"), tiny_cnn("channels_first")
    x, _ = data()
    w = a.get_weights()
    # Flatten reads (H, W, C) in one and (C, H, W) in the other: permute the Dense rows to match.
    w[2] = w[2].reshape(4, 4, 4, 8).transpose(2, 0, 1, 3).reshape(64, 8)
    b.set_weights(w)
    np.testing.assert_allclose(a.predict(x), b.predict(x.transpose(0, 3, 1, 2)), rtol=1e-5, atol=1e-6)


def test_wrong_channel_order_at_fit_names_shapes_and_fix():
    m = tiny_cnn("channels_first")
    x, y = data()  # channels_last data
    with pytest.raises(ValueError) as info:
        m.fit(x, y, verbose=0)
    text = str(info.value)
    assert "(N, 1, 10, 10)" in text and "(40, 10, 10, 1)" in text and "looks channels_last" in text
    assert "transpose(0, 3, 1, 2)" in text
    m2 = tiny_cnn("channels_last")
    with pytest.raises(ValueError, match=r"looks channels_first.*transpose\(0, 2, 3, 1\)"):
        m2.predict(x.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match=r"Reshape it with x.reshape\(-1, 10, 10, 1\)"):
        m2.predict(x.reshape(40, 100))


def test_the_articles_trap_is_explained_at_build_time():
    """Keras read 'tf' ordering from keras.json and failed with 'Negative dimension size'."""
    backend.set_image_data_format("channels_last")
    m = Sequential()
    with pytest.raises(ValueError) as info:
        m.add(Conv2D(32, (3, 3), input_shape=(1, 28, 28)))
    text = str(info.value)
    assert "(None, 1, 28, 28)" in text and "channels_last" in text and "1 rows x 28 cols with 28 channel(s)" in text
    assert "looks channels_first" in text and "data_format='channels_first'" in text
    assert not m.layers  # a failed add leaves the model unchanged


def test_global_default_data_format_is_set_in_code():
    try:
        backend.set_image_data_format("th")
        m = Sequential([Conv2D(2, (3, 3), input_shape=(1, 8, 8)), Flatten(), Dense(2, activation="softmax")])
        assert m.layers[0].output_shape == (None, 2, 6, 6) and backend.image_dim_ordering() == "th"
    finally:
        backend.set_image_data_format("channels_last")
    with pytest.raises(ValueError, match="data_format must be"):
        backend.set_image_data_format("nchw")


def test_mixed_orderings_rejected():
    m = Sequential([Conv2D(2, (3, 3), input_shape=(1, 8, 8), data_format="channels_first")])
    with pytest.raises(ValueError, match="layers before it are 'channels_first'"):
        m.add(MaxPooling2D(data_format="channels_last"))


def test_suspicious_first_layer_warns():
    with pytest.warns(UserWarning, match="if it means 3 channel"):
        Sequential([Conv2D(2, (3, 3), input_shape=(3, 32, 32))])


def test_build_errors_are_clear():
    with pytest.raises(ValueError, match="first layer needs its input shape"):
        Sequential().add(Dense(3))
    with pytest.raises(ValueError, match=r"expects flat input.*add Flatten\(\)"):
        Sequential([Conv2D(2, (3, 3), input_shape=(8, 8, 1)), Dense(3)])
    with pytest.raises(ValueError, match="expects 4-D input"):
        Sequential([Dense(3, input_shape=(5,)), Conv2D(2, (3, 3))])
    with pytest.raises(RuntimeError, match="call model.compile"):
        Sequential([Dense(3, input_shape=(5,))]).fit(np.zeros((4, 5)), np.zeros((4, 3)))


def test_target_errors():
    m = tiny_cnn()
    x, y = data()
    with pytest.raises(ValueError, match=r"one-hot targets of shape \(N, 3\).*to_categorical"):
        m.fit(x, y.argmax(1), verbose=0)
    with pytest.raises(ValueError, match="x has 40 samples but y has 39"):
        m.fit(x, y[:39], verbose=0)
    m.compile(loss="sparse_categorical_crossentropy", optimizer="sgd", metrics=["acc"])
    m.fit(x, y.argmax(1), batch_size=8, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        m.fit(x, y.argmax(1) + 1, verbose=0)


def test_nan_input_rejected_and_divergence_stops_fit():
    m = tiny_cnn()
    x, y = data()
    bad = x.copy()
    bad[3, 2, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf \(first at index \(3, 2, 2, 0\)\)"):
        m.fit(bad, y, verbose=0)
    m.compile(loss="categorical_crossentropy", optimizer=fastnet.optimizers.SGD(lr=1e30))
    with pytest.raises(FloatingPointError, match="epoch 1, batch"):
        m.fit(x * 1e4, y, batch_size=8, epochs=2, verbose=0)


def test_save_load_roundtrip(tmp_path):
    fastnet.set_seed(2)
    m = tiny_cnn("channels_first")
    x, y = data(data_format="channels_first")
    m.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "model.npz"
    m.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]  # no temporary file left
    m2 = load_model(path)
    np.testing.assert_array_equal(m.predict(x), m2.predict(x))
    assert m2.layers[0].data_format == "channels_first" and m2.optimizer.iterations == m.optimizer.iterations
    # Training on continues identically: weights, optimizer slots and the dropout step counter were saved.
    m.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    m2.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(m.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_load_rejects_bad_files(tmp_path):
    m = tiny_cnn()
    path = tmp_path / "m.npz"
    m.save(path)
    raw = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelFileError, match="truncated, corrupted"):
        load_model(tmp_path / "trunc.npz")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with pytest.raises(ModelFileError, match="not a fastnet model"):
        load_model(tmp_path / "foreign.npz")
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    (tmp_path / "single.npz").write_bytes(buf.getvalue())
    with pytest.raises(ModelFileError, match="a single .npy array"):
        load_model(tmp_path / "single.npz")
    with pytest.raises(ValueError, match=r"fastnet saves models as \.keras \(Keras 3's format\) or \.npz"):
        load_model(tmp_path / "single.npy")
    weights = m.get_weights()
    weights[0] = weights[0][:, :, :, :2]
    with pytest.raises(ValueError, match=r"conv2d/kernel has shape \(3, 3, 1, 4\), got \(3, 3, 1, 2\)"):
        m.set_weights(weights)


def test_same_seed_same_weights_any_thread_count():
    x, y = data(64)
    results = []
    for threads in (1, 2, 1):
        fastnet.set_num_threads(threads)
        fastnet.set_seed(11)
        m = tiny_cnn()
        m.fit(x, y, batch_size=16, epochs=2, verbose=0)
        results.append(m.get_weights())
    fastnet.set_num_threads(None)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
    fastnet.set_seed(12)
    m = tiny_cnn()
    assert not np.array_equal(m.get_weights()[0], tiny_cnn().get_weights()[0])  # next model, new weights


def two_conv_net(data_format, relu_as_layer):
    """conv(1->16)-relu-conv(16->16)-relu-pool: the second convolution has an even output, so its kernel also
    does the ReLU and the max-pool."""
    shape = (1, 10, 10) if data_format == "channels_first" else (10, 10, 1)
    m = Sequential()
    m.add(Conv2D(16, (3, 3), activation="relu", input_shape=shape, data_format=data_format))
    if relu_as_layer:
        m.add(Conv2D(16, (3, 3)))
        m.add(Activation("relu"))
    else:
        m.add(Conv2D(16, (3, 3), activation="relu"))
    m.add(MaxPooling2D((2, 2)))
    m.add(Dropout(0.25))
    m.add(Flatten())
    m.add(Dense(3, activation="softmax"))
    m.compile(loss="categorical_crossentropy", optimizer="adadelta", metrics=["accuracy"])
    return m


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("relu_as_layer", [True, False])
def test_conv_relu_pool_in_one_kernel_trains_bit_for_bit_like_the_layers(data_format, relu_as_layer):
    x, y = data(48, data_format)
    weights, predictions = [], []
    for fused in (True, False):
        fastnet.set_seed(3)
        m = two_conv_net(data_format, relu_as_layer)
        ops = [s.op for s in m.plan().steps]
        assert ops[:2] == ["conv2d", "conv2d_maxpool"] and m.plan().steps[1].masks_relu_input
        if not fused:  # every layer on its own
            m._plan = Plan(m.layers, by_loss="softmax", conv_algo=m.plan().conv_algo, fuse=False)
            assert "conv2d_maxpool" not in [s.op for s in m.plan().steps]
        m.fit(x, y, batch_size=16, epochs=2, verbose=0)
        weights.append(m.get_weights())
        predictions.append(m.predict(x))
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(*predictions)


@pytest.mark.parametrize("pool", [(3, 3), (2, 2)])
def test_a_relu_backward_moved_to_the_next_step_trains_bit_for_bit_like_the_layers(pool):
    """Conv + ReLU, Conv + ReLU, a max-pool its convolution does not fuse (3x3), or does (2x2 by im2col): the
    first ReLU's backward runs in the second convolution's data gradient, the second's in the pool's backward
    (or the fused kernel's); trained like the layers one by one, each applying its own, to the last bit."""
    x, y = data(32)
    weights = []
    for fused in (True, False):
        fastnet.set_seed(7)
        m = Sequential([Conv2D(4, (3, 3), activation="relu", input_shape=(10, 10, 1)),
                        Conv2D(5, (3, 3), activation="relu"), MaxPooling2D(pool), Flatten(),
                        Dense(3, activation="softmax")])
        m.compile(loss="categorical_crossentropy", optimizer="sgd")
        if fused:
            assert m.plan().steps[1].masks_relu_input and not m.plan().steps[0].relu_backward
        else:
            m._plan = Plan(m.layers, by_loss="softmax", conv_algo=m.plan().conv_algo, fuse=False)
        m.fit(x, y, batch_size=16, epochs=2, verbose=0)
        weights.append(m.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_dense_relu_dropout_in_one_kernel_trains_bit_for_bit_like_the_layers(policy):
    """A Dense + ReLU (its own or a layer's) + Dropout is one step whose kernel drops out the output as it makes
    it; trained like the layers one by one (their masks, their gradients), to the last bit, in both precisions.
    A Dropout(0.0) fuses too (nothing dropped), a Dropout after a linear Dense does not."""
    rng = np.random.default_rng(1)
    x, y = rng.random((70, 30)).astype(np.float32), to_categorical(rng.integers(0, 4, 70), 4)
    weights, predictions = [], []
    fastnet.mixed_precision.set_global_policy(policy)
    try:
        for fused in (True, False):
            fastnet.set_seed(5)
            m = Sequential([Dense(40, activation="relu", input_shape=(30,)), Dropout(0.3), Dense(33), Activation("relu"),
                            Dropout(0.0), Dense(20), Dropout(0.5), Dense(4, activation="softmax")])
            m.compile(loss="categorical_crossentropy", optimizer="rmsprop")
            assert [(s.op, s.dropout) for s in m.plan().steps] == [
                ("dense", True), ("dense", True), ("dense", False), ("dropout", False), ("dense", False)]
            if not fused:  # every layer on its own
                m._plan = Plan(m.layers, by_loss="softmax", conv_algo=m.plan().conv_algo, fuse=False)
                assert not any(s.dropout for s in m.plan().steps)
            m.fit(x, y, batch_size=16, epochs=2, verbose=0)
            weights.append(m.get_weights())
            predictions.append(m.predict(x))
    finally:
        fastnet.mixed_precision.set_global_policy("float32")
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(*predictions)


def test_conv_pool_fusion_only_where_it_fits():
    m = two_conv_net("channels_last", False)
    assert [s.op for s in m.plan().steps][:3] == ["conv2d", "conv2d_maxpool", "dropout"]
    m.layers[2].strides = (1, 1)  # overlapping windows: not a 2x2 tiling
    m._plan = None
    assert [s.op for s in m.plan().steps][:3] == ["conv2d", "conv2d", "maxpool2d"]
    assert m.plan().steps[2].masks_relu_input and not m.plan().steps[1].relu_backward
    x, y = data(16)
    m = two_conv_net("channels_last", False)
    fastnet._kernels.set_conv_algo("im2col")  # im2col pools its tiles too (6 wide): the plan is built again
    try:
        assert [s.op for s in m.plan().steps][:3] == ["conv2d", "conv2d_maxpool", "dropout"]
        assert m.plan().conv_algo == "im2col"
        m.fit(x, y, batch_size=16, epochs=1, verbose=0)
    finally:
        fastnet._kernels.set_conv_algo("auto")
    assert [s.op for s in m.plan().steps][:2] == ["conv2d", "conv2d_maxpool"] and m.plan().conv_algo == "auto"


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_predict_and_evaluate_with_weights_packed_once_match_the_plain_forward(policy):
    """Calls of many batches pack each Dense kernel once (and, for bfloat16 products, convert each batch's rows
    into the workspace the program sized for it: .ci/sanitize runs this with AddressSanitizer)."""
    x, y = data(40)
    fastnet.set_seed(4)
    fastnet.mixed_precision.set_global_policy(policy)
    try:
        m = tiny_cnn()
    finally:
        fastnet.mixed_precision.set_global_policy("float32")
    m.fit(x, y, batch_size=16, epochs=1, verbose=0)
    plan = m._begin_call(16)
    plain = np.concatenate([plan.forward(x[i:i + 16], False).copy() for i in range(0, 40, 16)])
    probs = fastnet._kernels.softmax_forward(plain)
    np.testing.assert_array_equal(m.predict(x, batch_size=16), probs)
    loss, acc = m.evaluate(x, y, batch_size=16)
    expected_loss = -np.log(probs.astype(np.float64)[y.astype(bool)]).mean()
    assert abs(loss - expected_loss) < 1e-5 * expected_loss
    assert acc == np.mean(probs.argmax(1) == y.argmax(1))


def test_keras1_spellings_work_with_a_warning():
    with pytest.warns(LegacyAPIWarning, match="Conv2D"):
        conv = Convolution2D(32, 3, 3, border_mode="valid", input_shape=(1, 28, 28), dim_ordering="th")
    m = Sequential([conv, Activation("relu"), Flatten(), Dense(10), Activation("softmax")])
    assert m.layers[0].output_shape == (None, 32, 26, 26)
    m.compile(loss="categorical_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    with pytest.warns(LegacyAPIWarning):
        y = np_utils.to_categorical(np.arange(4) % 10, nb_classes=10)
    with pytest.warns(LegacyAPIWarning, match="epochs"):
        m.fit(np.zeros((4, 1, 28, 28), np.float32), y, nb_epoch=1, verbose=0)
    from fastnet.layers.convolutional import MaxPooling2D as MP  # Keras 1 import paths
    from fastnet.layers.core import Dense as D  # noqa: F401
    assert MP is MaxPooling2D


def test_to_categorical():
    np.testing.assert_array_equal(to_categorical([0, 2, 1]), np.eye(3)[[0, 2, 1]])
    assert to_categorical([1, 0], 4).dtype == np.float32
    with pytest.raises(ValueError, match="out of range"):
        to_categorical([5], 3)


def test_progress_output(capsys):
    m = tiny_cnn()
    x, y = data()
    m.fit(x, y, batch_size=16, epochs=2, verbose=2, validation_data=(x, y))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[1].startswith("3/3 - ") and "val_accuracy:" in out[1]
    m.fit(x, y, batch_size=16, epochs=1, verbose=1)
    assert "[==============================]" in capsys.readouterr().out


# ---- the everyday Keras 3 API (issue 15, part 2) ----

def _mlp(first):
    fastnet.set_seed(4)
    model = Sequential(first + [Dense(6, activation="relu"), Dropout(0.2), Dense(3, activation="softmax")])
    model.compile(optimizer="rmsprop", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("spelling", ["Input", "InputLayer", "batch_shape", "add"])
def test_an_input_first_builds_the_model_input_shape_builds(tmp_path, spelling):
    """Sequential([Input(shape=...), ...]), as Keras 3 documents every model: the same model, weights, training
    and file as input_shape= on the first layer; the Input is not one of model.layers."""
    from fastnet.layers import Input, InputLayer

    first = {"Input": [Input(shape=(5,))], "InputLayer": [InputLayer(shape=(5,))],
             "batch_shape": [Input(batch_shape=(None, 5))], "add": []}[spelling]
    reference = _mlp([Dense(4, input_shape=(5,))])
    if spelling != "add":
        model = _mlp(first + [Dense(4)])
    else:
        fastnet.set_seed(4)
        model = Sequential()
        model.add(Input(shape=(5,)))
        for layer in (Dense(4), Dense(6, activation="relu"), Dropout(0.2), Dense(3, activation="softmax")):
            model.add(layer)
        model.compile(optimizer="rmsprop", metrics=["accuracy"])
    assert len(model.layers) == 4 and model.input_shape == (None, 5)
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 5), dtype=np.float32), to_categorical(rng.integers(0, 3, 40), 3)
    for m in (reference, model):
        m.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(load_model(tmp_path / "m.npz").predict(x), model.predict(x))


def test_an_input_gives_an_image_model_its_shape_in_either_ordering():
    from fastnet.layers import Input

    for shape, fmt in (((10, 10, 1), "channels_last"), ((1, 10, 10), "channels_first")):
        model = Sequential([Input(shape=shape), Conv2D(4, (3, 3), data_format=fmt), Flatten(),
                            Dense(3, activation="softmax")])
        assert model.input_shape == (None,) + shape and model.output_shape == (None, 3)


def test_pop_removes_the_last_layer_and_the_model_trains_with_a_new_head():
    model = tiny_cnn()
    head = model.layers[-1]
    assert model.pop() is head and len(model.layers) == 7 and model.output_shape == (None, 8)
    with pytest.raises(RuntimeError, match="fit needs a compiled model"):
        model.fit(np.zeros((2, 10, 10, 1)), np.zeros((2, 8)), verbose=0)
    model.add(Dense(5, activation="softmax", name=head.name))  # its name is free again
    model.compile(optimizer="adadelta", metrics=["accuracy"])
    rng = np.random.default_rng(1)
    x, y = rng.random((16, 10, 10, 1), dtype=np.float32), to_categorical(rng.integers(0, 5, 16), 5)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert model.predict(x).shape == (16, 5) and np.isfinite(history.history["loss"]).all()
    for _ in range(len(model.layers)):
        model.pop()
    with pytest.raises(TypeError, match="there are no layers in the model"):
        model.pop()


def test_a_batch_size_larger_than_the_data_trains_one_batch_of_all_of_it():
    """Keras: fit(x[:100], y[:100], batch_size=128) takes one step of 100 samples."""
    rng = np.random.default_rng(2)
    x, y = rng.random((100, 5), dtype=np.float32), to_categorical(rng.integers(0, 3, 100), 3)
    large, exact = _mlp([Dense(4, input_shape=(5,))]), _mlp([Dense(4, input_shape=(5,))])
    large.fit(x, y, batch_size=128, epochs=3, verbose=0)
    exact.fit(x, y, batch_size=100, epochs=3, verbose=0)
    assert large.step == exact.step == 3
    for a, b in zip(large.get_weights(), exact.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_return_dict_gives_keras_dicts():
    rng = np.random.default_rng(3)
    x, y = rng.random((12, 5), dtype=np.float32), to_categorical(rng.integers(0, 3, 12), 3)
    model = _mlp([Dense(4, input_shape=(5,))])
    loss, acc = model.evaluate(x, y)
    assert model.evaluate(x, y, return_dict=True) == {"loss": loss, "accuracy": acc}
    assert model.test_on_batch(x, y, return_dict=True) == {"loss": loss, "accuracy": acc}
    step = model.train_on_batch(x, y, return_dict=True)
    assert step == {"loss": pytest.approx(step["loss"]), "accuracy": step["accuracy"]} and model.step == 1
    bare = Sequential([Dense(3, input_shape=(5,), activation="softmax")])
    bare.compile(optimizer="sgd")
    assert bare.evaluate(x, y, return_dict=True) == {"loss": bare.evaluate(x, y)}


def _sgd_mlp(seed=6):
    fastnet.set_seed(seed)
    model = Sequential([Dense(7, input_shape=(5,), activation="relu"), Dense(3, activation="softmax")])
    model.compile(optimizer=fastnet.optimizers.SGD(lr=0.1), metrics=["accuracy"])
    return model


def _data(n=24, seed=5):
    rng = np.random.default_rng(seed)
    return rng.random((n, 5), dtype=np.float32), to_categorical(rng.integers(0, 3, n), 3), rng


def test_evaluate_weighs_each_samples_loss_as_keras_does():
    """Keras: loss = sum(weight * per-sample loss) / number of samples; accuracy (a plain metric) unweighted."""
    x, y, rng = _data()
    model = _sgd_mlp()
    w = rng.random(24) * 3
    w[:5] = 0.0
    p = model.predict(x).astype(np.float64)
    per_sample = -(y * np.log(p)).sum(1)
    loss, acc = model.evaluate(x, y, sample_weight=w)
    assert loss == pytest.approx((w * per_sample).sum() / 24, rel=1e-5)
    assert acc == model.evaluate(x, y)[1] == np.mean(p.argmax(1) == y.argmax(1))
    assert model.evaluate(x, y, sample_weight=w.reshape(-1, 1))[0] == loss  # (N, 1) reads as (N,)


def test_sample_weights_scale_the_gradient_of_each_sample():
    x, y, rng = _data()
    plain, ones, doubled, twice_lr = _sgd_mlp(), _sgd_mlp(), _sgd_mlp(), _sgd_mlp()
    twice_lr.optimizer = fastnet.optimizers.SGD(lr=0.2)
    twice_lr.compile(optimizer=twice_lr.optimizer, metrics=["accuracy"])
    plain.fit(x, y, batch_size=8, epochs=2, verbose=0)
    ones.fit(x, y, batch_size=8, epochs=2, verbose=0, sample_weight=np.ones(24))
    doubled.fit(x, y, batch_size=8, epochs=2, verbose=0, sample_weight=np.full(24, 2.0))
    twice_lr.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for a, b, c, d in zip(plain.get_weights(), ones.get_weights(), doubled.get_weights(), twice_lr.get_weights()):
        np.testing.assert_array_equal(a, b)  # weight 1: exactly the unweighted run
        np.testing.assert_array_equal(c, d)  # weight 2 with SGD: exactly twice the learning rate
    # Zero weights: the other samples' gradient, still divided by the whole batch (one batch, no dropout).
    keep = rng.random(24) < 0.6
    zeroed, subset = _sgd_mlp(), _sgd_mlp()
    subset.compile(optimizer=fastnet.optimizers.SGD(lr=0.1 * keep.sum() / 24), metrics=["accuracy"])
    zeroed.fit(x, y, batch_size=24, epochs=3, verbose=0, sample_weight=keep.astype(float))
    subset.fit(x[keep], y[keep], batch_size=24, epochs=3, verbose=0)
    for a, b in zip(zeroed.get_weights(), subset.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_class_weight_is_the_sample_weight_of_each_samples_class():
    x, y, _ = _data()
    by_class, by_sample = _sgd_mlp(), _sgd_mlp()
    h1 = by_class.fit(x, y, batch_size=8, epochs=2, verbose=0, class_weight={0: 3.0, 2: 0.25},
                      validation_data=(x, y, np.linspace(0, 1, 24)))
    h2 = by_sample.fit(x, y, batch_size=8, epochs=2, verbose=0,
                       sample_weight=np.array([3.0, 1.0, 0.25])[y.argmax(1)],
                       validation_data=(x, y, np.linspace(0, 1, 24)))
    for a, b in zip(by_class.get_weights(), by_sample.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert h1.history == h2.history
    assert h1.history["val_loss"][-1] == pytest.approx(by_class.evaluate(x, y, sample_weight=np.linspace(0, 1, 24))[0])


def test_threads_calling_one_model_each_get_their_own_results():
    """Two Python threads predicting and evaluating with one model at once (a server's request threads) each get
    what the model gives them alone: the plan's arrays hold one call's activations, so the model runs one call at
    a time. Without that, 93 % of the predictions were another thread's or a mix."""
    fastnet.set_seed(2)
    model = networks.mlp()
    model.compile(loss="categorical_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    rng = np.random.default_rng(3)
    xs = [rng.random((7, 784), dtype=np.float32) for _ in range(2)]
    ys = [np.eye(10, dtype=np.float32)[rng.integers(0, 10, 7)] for _ in range(2)]
    expected = [(model.predict(x), model.evaluate(x, y)) for x, y in zip(xs, ys)]
    wrong = [0, 0]

    def calls(i):
        for _ in range(150):
            wrong[i] += not np.array_equal(model.predict(xs[i]), expected[i][0])
            wrong[i] += model.evaluate(xs[i], ys[i]) != expected[i][1]

    threads = [threading.Thread(target=calls, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == [0, 0]
