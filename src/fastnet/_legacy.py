"""Keras 1 spellings (nb_epoch, Convolution2D, border_mode, nb_classes, ...) keep working, with a warning."""
import warnings


class LegacyAPIWarning(DeprecationWarning):
    """A Keras 1 spelling was used; it works, and the message gives the Keras 2 spelling."""


def legacy(message, stacklevel=3):
    warnings.warn(message, LegacyAPIWarning, stacklevel=stacklevel)
