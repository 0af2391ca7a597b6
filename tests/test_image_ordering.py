"""Image ordering: inferred only where one reading of the first layer's input_shape alone can work."""
import warnings

import numpy as np
import pytest

from fastnet import backend
from fastnet.backend import DataFormatWarning
from fastnet.layers import Activation, Conv2D, Convolution2D, Dense, Dropout, Flatten, MaxPooling2D
from fastnet.models import Sequential, load_model


def article_cnn(shape=(1, 28, 28), **conv_args):
    m = Sequential()
    m.add(Conv2D(4, (3, 3), input_shape=shape, **conv_args))
    m.add(Activation("relu"))
    m.add(MaxPooling2D((2, 2)))
    m.add(Flatten())
    m.add(Dense(3, activation="softmax"))
    m.compile(loss="categorical_crossentropy", optimizer="adadelta", metrics=["accuracy"])
    return m


def test_channels_first_shape_under_the_built_in_default_is_inferred(tmp_path):
    with pytest.warns(DataFormatWarning) as record:
        m = article_cnn()
    assert len(record) == 1
    text = str(record[0].message)
    assert "(1, 28, 28)" in text and "read as channels_first" in text and "data_format='channels_first'" in text
    assert m.layers[0].data_format == "channels_first" and m.data_format == "channels_first"
    assert m.output_shape == (None, 3) and m.layers[0].output_shape == (None, 4, 26, 26)
    assert m.layers[2].output_shape == (None, 4, 13, 13)  # the layers after it follow
    assert m.get_config()["layers"][0]["config"]["data_format"] == "channels_first"
    lines = []
    m.summary(print_fn=lines.append)
    assert "(None, 4, 26, 26)" in lines[0]
    x = np.random.default_rng(0).random((6, 1, 28, 28), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    m.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="looks channels_last"):
        m.fit(x.transpose(0, 2, 3, 1), y, verbose=0)
    m.save(tmp_path / "m.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataFormatWarning)  # a saved ordering is explicit: no new inference
        loaded = load_model(tmp_path / "m.npz")
    assert loaded.layers[0].data_format == "channels_first"
    np.testing.assert_array_equal(loaded.predict(x), m.predict(x))


def test_keras1_layer_as_printed_in_the_article():
    with pytest.warns(DataFormatWarning, match="read as channels_first"):
        layer = Convolution2D(32, 3, 3, border_mode="valid", input_shape=(1, 28, 28))
        Sequential([layer])
    assert layer.output_shape == (None, 32, 26, 26)


def test_both_readings_valid_keep_the_default():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        m = article_cnn((5, 32, 32))
    assert m.data_format == "channels_last" and m.layers[0].output_shape == (None, 3, 30, 4)
    assert not [w for w in record if issubclass(w.category, DataFormatWarning)]


def test_neither_reading_valid_is_still_an_error():
    with pytest.raises(ValueError, match="smaller than the 3x3 kernel"):
        article_cnn((1, 2, 28))


@pytest.mark.parametrize("how", ["layer", "default", "dim_ordering"])
def test_an_explicit_choice_is_never_overridden(how):
    if how == "layer":
        make = lambda: article_cnn(data_format="channels_last")  # noqa: E731
    elif how == "default":
        backend.set_image_data_format("channels_last")
        make = article_cnn
    else:
        backend.set_image_data_format("tf")
        make = article_cnn
    with pytest.raises(ValueError, match="looks channels_first"):
        make()


def test_a_channels_first_default_infers_channels_last_too():
    backend._data_format = "channels_first"  # as if the built-in default were Theano's, never set in code
    with pytest.warns(DataFormatWarning, match="read as channels_last"):
        m = article_cnn((28, 28, 1))
    assert m.data_format == "channels_last"


def test_a_pooling_first_layer_is_inferred_by_its_window():
    with pytest.warns(DataFormatWarning):
        m = Sequential([MaxPooling2D((2, 2), input_shape=(1, 8, 8))])
    assert m.layers[0].output_shape == (None, 1, 4, 4)



@pytest.mark.parametrize("relu_first", [False, True])
def test_layers_that_take_any_ordering_let_the_first_convolution_say_how_the_input_reads(relu_first):
    """Keras: Dropout or Activation first passes the images through; a Conv2D(data_format='channels_first') after
    them reads (3, 8, 8) as 3 channels of 8x8, exactly as if it came first. (fastnet read the input as 3 rows of
    8x8 with 8 channels until the ONNX import's fuzz test found it.)"""
    first = Sequential([Conv2D(2, (3, 3), data_format="channels_first", input_shape=(3, 8, 8))])
    before = [Activation("relu", input_shape=(3, 8, 8)), Dropout(0.5)] if relu_first else \
        [Dropout(0.2, input_shape=(3, 8, 8))]
    later = Sequential(before + [Conv2D(2, (3, 3), data_format="channels_first")])
    assert later.input_shape == first.input_shape == (None, 3, 8, 8)
    assert later.output_shape == first.output_shape == (None, 2, 6, 6)
    later.set_weights(first.get_weights())
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    expected = first.predict(np.maximum(x, 0) if relu_first else x, verbose=0)
    np.testing.assert_allclose(later.predict(x, verbose=0), expected, rtol=1e-6)
