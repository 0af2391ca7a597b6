"""The losses and metrics through a model: float64 references, finite differences, Keras's target shapes,
weighting and metric names. (Keras's own numbers on the same samples: tests/test_keras_format.py.)"""
import numpy as np
import pytest

import reference as ref
from fastnet import optimizers
from fastnet.layers import Activation, Dense
from fastnet.models import Sequential
from helpers import assert_close, numeric_grad

EPS = 1e-7


def np_loss(loss, out, t):
    """Per-sample losses in float64 from the model's output probabilities, as Keras computes them."""
    if loss in ("mse", "mean_squared_error"):
        return ((out - t) ** 2).mean(1)
    if loss in ("mae", "mean_absolute_error"):
        return np.abs(out - t).mean(1)
    p = np.clip(out, EPS, 1 - EPS)
    if loss == "binary_crossentropy":
        return -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(1)
    return -(t * np.log(p)).sum(1)


def np_model(x, w, b, act):
    z = x @ w + b
    if act == "softmax":
        return ref.softmax_forward(z)
    return ref.activation_forward(z, act)


# (loss, final activation): sigmoid + binary cross-entropy and softmax + cross-entropy run from the logits;
# the others read probabilities (or plain outputs)
CASES = [("mse", "linear"), ("mean_absolute_error", "tanh"), ("binary_crossentropy", "sigmoid"),
         ("binary_crossentropy", "softmax"), ("categorical_crossentropy", "softmax"), ("mse", "sigmoid")]


@pytest.mark.parametrize("loss,act", CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_value_and_gradient_through_a_model(rng, loss, act, weighted):
    """One SGD step (lr 1) moves the weights by minus the gradient of the batch's weighted mean loss; that
    gradient and the reported loss match float64 numpy, the gradient by finite differences."""
    n, c = 5, 3
    x = rng.standard_normal((n, 4)).astype(np.float32)
    t = (np.eye(c)[rng.integers(0, c, n)] if loss == "categorical_crossentropy"
         else rng.random((n, c)) if loss == "binary_crossentropy" else rng.standard_normal((n, c))).astype(np.float32)
    sw = rng.random(n).astype(np.float32) if weighted else None
    m = Sequential([Dense(c, input_shape=(4,)), Activation(act)])
    m.compile(loss=loss, optimizer=optimizers.SGD(lr=1.0))
    w0, b0 = (v.astype(np.float64) for v in m.get_weights())
    weights = np.ones(n) if sw is None else sw.astype(np.float64)

    def f(w, b):
        return (weights * np_loss(loss, np_model(x.astype(np.float64), w, b, act), t)).sum() / n

    reported = m.train_on_batch(x, t, sample_weight=sw)
    assert reported == pytest.approx(f(w0, b0), rel=1e-5)
    w1, b1 = m.get_weights()
    assert_close(w0 - w1, numeric_grad(lambda v: f(v, b0), w0, h=1e-4), rtol=1e-3, atol=2e-6, name="dW")
    assert_close(b0 - b1, numeric_grad(lambda v: f(w0, v), b0, h=1e-4), rtol=1e-3, atol=2e-6, name="db")


def test_loss_takes_over_the_final_sigmoid_and_predict_applies_it(rng):
    m = Sequential([Dense(2, activation="sigmoid", input_shape=(3,))])
    m.compile(loss="binary_crossentropy")
    assert m.plan().steps[0].post_activation is None  # the loss computes it from the logits
    x = rng.standard_normal((4, 3)).astype(np.float32)
    w, b = m.get_weights()
    assert_close(m.predict(x), 1 / (1 + np.exp(-(x @ w + b))), rtol=1e-6, atol=1e-7, name="predict")
    m.compile(loss="mse")
    assert m.plan().steps[0].post_activation == "sigmoid"


def test_huge_logits_keep_binary_crossentropy_finite():
    m = Sequential([Dense(1, activation="sigmoid", input_shape=(1,), kernel_initializer="ones")])
    m.compile(loss="binary_crossentropy", optimizer=optimizers.SGD(lr=1e-6))
    loss = m.train_on_batch(np.array([[200.0], [-200.0]], np.float32), np.array([0.0, 1.0], np.float32))
    assert loss == pytest.approx(200.0, rel=1e-6)  # from the logits; probabilities would clip to ~16.1


def test_targets_of_a_single_output_may_be_flat(rng):
    m = Sequential([Dense(1, input_shape=(2,))])
    m.compile(loss="mse")
    x = rng.standard_normal((6, 2)).astype(np.float32)
    y = rng.standard_normal(6).astype(np.float32)
    assert m.evaluate(x, y) == m.evaluate(x, y[:, None])


@pytest.mark.parametrize("outputs,name,kind", [(1, "accuracy", "binary"), (3, "accuracy", "categorical"),
                                               (3, "acc", "categorical"), (3, "binary_accuracy", "binary"),
                                               (1, "mae", "absolute"), (2, "mse", "squared")])
def test_metric_names_resolve_as_in_keras(outputs, name, kind):
    m = Sequential([Dense(outputs, input_shape=(2,))])
    m.compile(loss="mse", metrics=[name])
    assert m._metrics[0].kind == kind and m.metrics == [name]


def test_metrics_in_history_and_evaluate(rng):
    x = rng.standard_normal((40, 3)).astype(np.float32)
    y = (rng.random((40, 2)) > 0.5).astype(np.float32)
    m = Sequential([Dense(2, activation="sigmoid", input_shape=(3,))])
    m.compile(loss="binary_crossentropy", optimizer="adam", metrics=["binary_accuracy", "mae"])
    h = m.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0)
    assert set(h.history) == {"loss", "binary_accuracy", "mae", "val_loss", "val_binary_accuracy", "val_mae"}
    loss, acc, mae = m.evaluate(x, y)
    p = m.predict(x)
    assert acc == pytest.approx(((p > 0.5) == y).mean(), abs=1e-12)
    assert mae == pytest.approx(np.abs(p - y).mean(), rel=1e-6)
    assert m.evaluate(x, y, return_dict=True) == {"loss": loss, "binary_accuracy": acc, "mae": mae}


def test_class_weight_of_a_single_sigmoid_output(rng):
    """Keras: a single output's class is its rounded target (0 or 1)."""
    x = rng.standard_normal((8, 3)).astype(np.float32)
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1], np.float32)
    m = Sequential([Dense(1, activation="sigmoid", input_shape=(3,))])
    m.compile(loss="binary_crossentropy", optimizer=optimizers.SGD(lr=0.0))
    by_class = m.train_on_batch(x, y, class_weight={0: 0.5, 1: 3.0})
    by_sample = m.train_on_batch(x, y, sample_weight=np.where(y == 1, 3.0, 0.5))
    assert by_class == by_sample and by_class != m.train_on_batch(x, y)


@pytest.mark.parametrize("name, keys", [("acc", {"acc"}), ("accuracy", {"accuracy", "acc"}),
                                        ("categorical_accuracy", {"categorical_accuracy"}), ("mae", {"mae"})])
def test_metrics_keep_the_name_they_were_given(rng, capsys, name, keys):
    """Keras 3 logs a metric under the name compile got ('acc' stays 'acc'); 'accuracy' also under 'acc', the
    Keras 2.0 key, in History only: evaluate and the progress line show each value once, by its name."""
    x = rng.standard_normal((40, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
    m = Sequential([Dense(3, activation="softmax", input_shape=(3,))])
    m.compile(loss="categorical_crossentropy", optimizer="adam", metrics=[name])
    h = m.fit(x, y, epochs=2, batch_size=16, validation_data=(x, y), verbose=2)
    assert set(h.history) == {"loss", "val_loss"} | keys | {"val_" + k for k in keys}
    assert set(m.evaluate(x, y, return_dict=True)) == {"loss", name}
    last = capsys.readouterr().out.splitlines()[-1]
    assert f" - {name}: " in last and f" - val_{name}: " in last
    assert last.count(" - ") == 5, last  # timing, loss, the metric, val_loss, val_ the metric
