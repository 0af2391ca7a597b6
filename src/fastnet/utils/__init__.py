"""Keras-style utilities."""
from fastnet.utils import np_utils
from fastnet.utils._categorical import to_categorical

__all__ = ["to_categorical", "np_utils"]
