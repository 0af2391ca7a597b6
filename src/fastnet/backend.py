"""Global defaults that Keras kept in ~/.keras/keras.json; here they are set in code and nowhere else.

The image data format decides how a layer without an explicit data_format reads a 4-D batch:
'channels_last' (N, H, W, C) like TensorFlow, or 'channels_first' (N, C, H, W) like Theano ('th').
"""
from fastnet._legacy import legacy

_ALIASES = {"channels_last": "channels_last", "tf": "channels_last",
            "channels_first": "channels_first", "th": "channels_first"}
_data_format = "channels_last"
_EPSILON = 1e-7


def normalize_data_format(value):
    """'channels_first' / 'channels_last' for any accepted spelling (None: the global default)."""
    if value is None or value == "default":
        return _data_format
    if value not in _ALIASES:
        raise ValueError(f"data_format must be 'channels_first' or 'channels_last' (or 'th' / 'tf'), got {value!r}")
    return _ALIASES[value]


def image_data_format():
    return _data_format


def set_image_data_format(data_format):
    global _data_format
    _data_format = normalize_data_format(data_format)


def image_dim_ordering():
    """Keras 1 spelling: 'th' or 'tf'."""
    return "th" if _data_format == "channels_first" else "tf"


def set_image_dim_ordering(ordering):
    legacy("set_image_dim_ordering is the Keras 1 spelling; use set_image_data_format")
    set_image_data_format(ordering)


def epsilon():
    return _EPSILON
