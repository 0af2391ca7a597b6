"""A property-based fuzz of the public API: random small Sequential models from random (mostly valid, sometimes
invalid) layer arguments and input shapes, compiled and run through fit, predict, evaluate, save and load_model.

Every call either runs correctly (outputs of the right shape, finite, probabilities that sum to 1, a saved and
reloaded model predicting the same) or raises a clear Python exception: ValueError, TypeError, RuntimeError or
FloatingPointError with a message of fastnet's own, never an internal exception type (IndexError, AttributeError,
KeyError, ZeroDivisionError, OverflowError, ...) or a message from numpy or the interpreter ("cannot reshape",
"could not broadcast", "invalid literal", ...). A crash would end the whole test run.

FASTNET_FUZZ_EXAMPLES sets the examples (default 300); FASTNET_FUZZ_RANDOM=1 draws new ones each run.
"""
import math
import os
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import fastnet
from fastnet import layers, optimizers

EXAMPLES = int(os.environ.get("FASTNET_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("FASTNET_FUZZ_RANDOM") != "1",
                suppress_health_check=list(HealthCheck), database=None, report_multiple_bugs=False)

CLEAR = (ValueError, TypeError, RuntimeError, FloatingPointError)
# Messages that come from numpy or the interpreter, not from a check that names the user's argument.
INTERNAL = re.compile("|".join([
    r"cannot reshape", r"could not broadcast", r"operands could not be broadcast", r"invalid literal for",
    r"could not convert", r"values to unpack", r"is not subscriptable", r"object is not iterable",
    r"unhashable type", r"unsupported operand", r"not supported between instances", r"has no len",
    r"must be real number, not", r"an integer is required", r"only integer scalar arrays", r"ufunc",
    r"truth value of an array", r"index \d+ is out of bounds", r"zero-size array",
    r"every dimension must be >= 1",  # the kernel boundary's own check: the API should have caught it first
]))


class Draw:
    """Arguments for one model: each valid 24 times in 25 (so about half the models get only valid ones), one of
    its invalid values otherwise."""

    def __init__(self, data):
        self.data = data

    def pick(self, options, label=None):
        return self.data.draw(st.sampled_from(options), label=label)

    def arg(self, valid, invalid, label=None):
        if self.data.draw(st.integers(0, 24), label=f"{label} valid?") < 24 or not invalid:
            return self.pick(valid, label)
        return self.pick(invalid, label)


ACTIVATIONS = [None, "relu", "linear", "tanh", "sigmoid", "softmax"]
BAD_ACTIVATIONS = ["gelu", 3, ["relu"]]


def dense(d, **kw):
    return layers.Dense(d.arg([1, 3, 4, 5.0], [0, -2, 2.5, "3", None, True, 2**40], "units"),
                        activation=d.arg(ACTIVATIONS, BAD_ACTIVATIONS, "activation"), **kw)


def conv(d, fmt, **kw):
    return layers.Conv2D(d.arg([1, 2, 3], [0, -1, "2", 1.5], "filters"),
                         d.arg([1, 2, 3, (1, 2), (3, 1)], [0, (0, 1), (2,), "3", 2.5, (2, -1), None], "kernel_size"),
                         strides=d.arg([1, 2, (1, 2)], [0, -1, (1, 0), "1"], "strides"),
                         padding=d.arg(["valid", "same", "SAME"], ["full", None, 1], "padding"),
                         data_format=fmt, activation=d.arg(ACTIVATIONS, BAD_ACTIVATIONS, "activation"), **kw)


def pool(d, fmt, **kw):
    return layers.MaxPooling2D(d.arg([2, (1, 2), 3, 1], [0, (2, 0), "2", (1, 1, 1)], "pool_size"),
                               strides=d.arg([None, 1, 2], [0, -2, "x"], "strides"),
                               padding=d.arg(["valid", "same"], ["full"], "padding"), data_format=fmt, **kw)


def small_model(d):
    """A Sequential of 1-5 random layers on a random input shape; returns (model, input shape)."""
    image = d.pick([True, False], "image input")
    fmt = d.arg([None, "channels_last", "channels_first"], ["nchw", 0], "data_format") if image else None
    dims = [1, 2, 3, 5, 6]
    shape = tuple(d.arg(dims, [0, -1, 2.5, "4"], "dim") for _ in range(3 if image else 1))
    kinds = ["conv", "pool", "dropout", "activation", "flatten", "dense"] if image else ["dropout", "activation", "dense"]
    names = [d.pick(kinds, "layer") for _ in range(d.data.draw(st.integers(1, 4), label="depth"))]
    made = []
    for i, kind in enumerate(names):
        kw = {"input_shape": shape} if i == 0 else {}
        if kind == "conv":
            made.append(conv(d, fmt, **kw))
        elif kind == "pool":
            made.append(pool(d, fmt, **kw))
        elif kind == "dropout":
            made.append(layers.Dropout(d.arg([0.0, 0.2, 0.5], [1.0, -0.1, math.nan, "x", None], "rate"), **kw))
        elif kind == "activation":
            made.append(layers.Activation(d.arg(ACTIVATIONS[1:], BAD_ACTIVATIONS, "activation"), **kw))
        elif kind == "flatten":
            made.append(layers.Flatten(**kw))
        else:
            made.append(dense(d, **kw))
    if d.pick([True, False], "ends in a classifier"):
        if image:
            made.append(layers.Flatten())
        made.append(layers.Dense(d.pick([1, 2, 3]), activation="softmax"))
    model = fastnet.Sequential()
    for layer in made:
        model.add(layer)
    return model, shape


def check_clear(exc, record=True):
    if record:
        event(type(exc).__name__)
    assert isinstance(exc, CLEAR), f"internal exception type {type(exc).__name__}: {exc}"
    assert not INTERNAL.search(str(exc)), f"an internal message, naming nothing the user wrote: {exc}"


def data_for(d, model, n):
    shape = model.input_shape[1:]
    x = np.random.default_rng(n).standard_normal((n,) + shape).astype(np.float32)
    bad = d.arg(["none"], ["transposed", "flat", "strings", "nan", "empty", "3-D", "list"], "bad x")
    if bad == "transposed" and len(shape) == 3:
        x = np.ascontiguousarray(np.moveaxis(x, 1, 3))
    elif bad == "flat":
        x = x.reshape(n, -1)
    elif bad == "strings":
        x = x.astype(str)
    elif bad == "nan":
        x.reshape(-1)[0] = np.nan
    elif bad == "empty":
        x = x[:0]
    elif bad == "3-D":
        x = x.reshape(n, -1)[:, :, None]
    elif bad == "list":
        x = x.tolist()
    return x


@FUZZ
@given(data=st.data())
def test_fuzz_public_api(data, tmp_path_factory):
    d = Draw(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model, _ = small_model(d)
        except Exception as e:  # noqa: BLE001 - the point is which exception it is
            check_clear(e)
            return
        run_model(d, model, tmp_path_factory)


def run_model(d, model, tmp_path_factory):
    n = d.pick([1, 2, 5, 8], "samples")
    x = data_for(d, model, n)
    try:
        out = model.predict(x, batch_size=d.arg([None, 1, 3, 64], [0, -1, 2.5, "4"], "batch_size"))
    except Exception as e:  # noqa: BLE001
        check_clear(e)
        return
    expected = (np.shape(x)[0],) + model.output_shape[1:]
    assert out.shape == expected and out.dtype == np.float32 and np.isfinite(out).all()
    last = model.layers[-1]
    if getattr(last, "activation", None) == "softmax":
        np.testing.assert_allclose(out.reshape(-1, out.shape[-1]).sum(axis=1), 1.0, rtol=1e-5)

    loss = d.arg(["categorical_crossentropy", "sparse_categorical_crossentropy", "mse", "mae", "binary_crossentropy"],
                 ["hinge", None, 3], "loss")
    optimizer = d.arg(["rmsprop", "adam", "sgd", "adadelta", optimizers.SGD(lr=0.05, momentum=0.5)],
                      ["nope", 3, {"class_name": "Foo"}, {"config": {}}], "optimizer")
    metrics = d.arg([None, ["accuracy"], ["acc"], ["binary_accuracy", "mse"]], ["accuracy", ["auc"], 5], "metrics")
    try:
        model.compile(loss=loss, optimizer=optimizer, metrics=metrics)
        classes = model.output_shape[-1]
        labels = np.arange(np.shape(x)[0]) % classes
        y = labels if loss == "sparse_categorical_crossentropy" else np.eye(classes, dtype=np.float32)[labels]
        y = d.arg([y], [y[:-1] if len(y) > 1 else y[:0], labels + classes, np.zeros((len(labels), classes + 1)),
                        np.array(["a"] * len(labels))], "y")
        history = model.fit(x, y, batch_size=d.arg([None, 1, 2, 3], [0, -1, 2.5, 10**6], "fit batch_size"),
                            epochs=d.arg([1, 2], [-1, 1.5, "2"], "epochs"), verbose=0,
                            validation_split=d.arg([0.0, 0.5], [1.0, -0.1, math.nan, "x"], "validation_split"),
                            shuffle=d.arg([True, False], ["yes"], "shuffle"))
        assert len(history.epoch) >= 1 and all(np.isfinite(v).all() for v in history.history.values())
        result = model.evaluate(x, y, verbose=0)
        assert np.isfinite(result).all()
        path = tmp_path_factory.mktemp("model") / d.pick(["m.npz", "m.keras"], "file")
        model.save(path)
        again = fastnet.load_model(path)
        np.testing.assert_array_equal(again.predict(x), model.predict(x))
        event("trained, evaluated, saved and loaded")
    except Exception as e:  # noqa: BLE001
        check_clear(e)


def test_the_fuzzer_flags_internal_errors():
    """The fuzzer's own oracle: an internal exception type or a numpy message fails it."""
    for exc in (IndexError("list index out of range"), ValueError("cannot reshape array of size 0 into shape (0)"),
                ZeroDivisionError("division by zero"), TypeError("'int' object is not iterable")):
        with pytest.raises(AssertionError):
            check_clear(exc, record=False)
    check_clear(ValueError("Dense: units must be >= 1, got 0"), record=False)
