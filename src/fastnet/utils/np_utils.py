"""Keras 1's `keras.utils.np_utils`, kept so the article's scripts run unchanged."""
import warnings


def to_categorical(y, nb_classes=None, num_classes=None, dtype="float32"):
    from fastnet.utils import to_categorical as _to_categorical

    if nb_classes is not None:
        warnings.warn("to_categorical(nb_classes=...) is the Keras 1 spelling; use num_classes",
                      DeprecationWarning, stacklevel=2)
        num_classes = nb_classes
    return _to_categorical(y, num_classes, dtype)
