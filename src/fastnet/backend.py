"""Global defaults that Keras kept in ~/.keras/keras.json; here they are set in code and nowhere else.

The image data format decides how a layer without an explicit data_format reads a 4-D batch:
'channels_last' (N, H, W, C) like TensorFlow, or 'channels_first' (N, C, H, W) like Theano ('th').

Until the default is set in code, a first layer whose input_shape cannot work under it (a window larger than
the image) but works under the other ordering is read in the other one, with a DataFormatWarning (see
fastnet.layers._spatial). Once set, the default is never second-guessed.
"""
from fastnet._legacy import legacy

_ALIASES = {"channels_last": "channels_last", "tf": "channels_last",
            "channels_first": "channels_first", "th": "channels_first"}
_data_format = "channels_last"
_data_format_chosen = False  # set_image_data_format was called: the default is the user's, not ours
_EPSILON = 1e-7


class DataFormatWarning(UserWarning):
    """A layer's image ordering was inferred from its input shape (only one reading of it could work)."""


def normalize_data_format(value):
    """'channels_first' / 'channels_last' for any accepted spelling (None: the global default)."""
    if value is None or value == "default":
        return _data_format
    if not isinstance(value, str) or value not in _ALIASES:
        raise ValueError(f"data_format must be 'channels_first' or 'channels_last' (or 'th' / 'tf'), got {value!r}")
    return _ALIASES[value]


def image_data_format():
    return _data_format


def set_image_data_format(data_format):
    global _data_format, _data_format_chosen
    _data_format = normalize_data_format(data_format)
    _data_format_chosen = True


def image_data_format_chosen():
    """Whether the default ordering was set in code (set_image_data_format / set_image_dim_ordering)."""
    return _data_format_chosen


def image_dim_ordering():
    """Keras 1 spelling: 'th' or 'tf'."""
    return "th" if _data_format == "channels_first" else "tf"


def set_image_dim_ordering(ordering):
    legacy("set_image_dim_ordering is the Keras 1 spelling; use set_image_data_format")
    set_image_data_format(ordering)


def epsilon():
    return _EPSILON
