"""Keras 1's `keras.utils.np_utils`, kept so the article's scripts run unchanged."""
from fastnet._legacy import legacy
from fastnet.utils._categorical import to_categorical as _to_categorical


def to_categorical(y, nb_classes=None, num_classes=None, dtype="float32"):
    if nb_classes is not None:
        legacy("to_categorical(nb_classes=...) is the Keras 1 spelling; use num_classes")
        num_classes = nb_classes
    return _to_categorical(y, num_classes, dtype)
