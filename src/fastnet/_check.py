"""Argument checks shared by the public API and the kernel boundary.

Every check raises before anything reaches C, with a message that names the argument, the value given and what
is allowed: TypeError for a value of the wrong kind, ValueError for one out of range. `where` prefixes the message
with the function or layer that received the argument.
"""
import math
import os

import numpy as np

INT_MAX = 2**31 - 1  # the largest size, window or stride fastnet takes


def _shown(value):
    """A value for a message: its type and repr ("str '512'"), or None."""
    return "None" if value is None else f"{type(value).__name__} {value!r}"


def _prefix(where):
    return f"{where}: " if where else ""


def _range_text(lo, hi, lo_open=False, hi_open=False):
    lo, hi = (f"{v:g}" if isinstance(v, float) else v for v in (lo, hi))
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo}"
    if lo is None:
        return f"{'<' if hi_open else '<='} {hi}"
    return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def integer(value, name, lo=None, hi=None, where=None, allow_float=False):
    """An int in [lo, hi]: a Python or numpy int (allow_float: also a float without a fraction, as Keras takes
    Dense(512.0)), never a bool."""
    if type(value) is int and (lo is None or value >= lo) and (hi is None or value <= hi):
        return value  # the common case, first: this runs on every kernel call
    if allow_float and isinstance(value, (float, np.floating)):
        if not (math.isfinite(value) and float(value).is_integer()):
            raise ValueError(f"{_prefix(where)}{name} must be a whole number, got {value!r}")
        value = int(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{_prefix(where)}{name} must be an int, got {_shown(value)}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        shown_hi = None if hi == INT_MAX and value <= hi else hi  # a size too small: its upper limit is noise
        raise ValueError(f"{_prefix(where)}{name} must be {_range_text(lo, shown_hi)}, got {value}")
    return value


def ints(value, name, n=None, lo=1, hi=INT_MAX, where=None, allow_float=False):
    """A tuple of ints in [lo, hi] (n of them when n is given, else at least one): shapes, windows, strides."""
    if type(value) is tuple and len(value) == n:  # the common case, first: this runs on every kernel call
        for v in value:
            if type(v) is not int or v < lo or v > hi:
                break
        else:
            return value
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or not hasattr(value, "__iter__"):
        count = f"{n} ints" if n else "ints"
        raise TypeError(f"{_prefix(where)}{name} must be a tuple of {count}, got {_shown(value)}")
    value = tuple(value)
    if (n is not None and len(value) != n) or not value:
        raise ValueError(f"{_prefix(where)}{name} must have {n or 'at least 1'} entries, got {value!r}")
    return tuple(integer(v, f"{name}[{i}]", lo, hi, where, allow_float) for i, v in enumerate(value))


def pair(value, name, where=None):
    """An int or a pair of ints, each in [1, INT_MAX] (kernel sizes, strides, pool sizes)."""
    if isinstance(value, (int, np.integer, float, np.floating)) and not isinstance(value, (bool, np.bool_)):
        value = integer(value, name, 1, INT_MAX, where, allow_float=True)
        return (value, value)
    return ints(value, name, 2, 1, INT_MAX, where, allow_float=True)


def real(value, name, lo=None, hi=None, lo_open=False, hi_open=False, where=None, finite=True):
    """A float in the range; finite (NaN and inf are never a valid setting) unless finite=False (the kernels
    carry them through their arithmetic)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{_prefix(where)}{name} must be a real number, got {_shown(value)}")
    try:
        value = float(value)
    except OverflowError:
        raise ValueError(f"{_prefix(where)}{name}={value} is too large for a float") from None
    if finite and not math.isfinite(value):
        raise ValueError(f"{_prefix(where)}{name} must be a finite number, got {value}")
    if ((lo is not None and (value < lo or (lo_open and value == lo)))
            or (hi is not None and (value > hi or (hi_open and value == hi)))):
        raise ValueError(f"{_prefix(where)}{name} must be {_range_text(lo, hi, lo_open, hi_open)}, got {value}")
    return value


def boolean(value, name, where=None):
    """True or False (also numpy bools and the ints 0 and 1)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{_prefix(where)}{name} must be True or False, got {_shown(value)}")


def choice(value, name, options, where=None):
    """One of the strings in options."""
    if not isinstance(value, str) or value not in options:
        allowed = ", ".join(repr(o) for o in options)
        raise ValueError(f"{_prefix(where)}{name} must be one of {allowed}; got {value!r}")
    return value


def path(value, name, where=None):
    """A file path: a str or an os.PathLike."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise TypeError(f"{_prefix(where)}{name} must be a file path (str or os.PathLike), got "
                        f"{_shown(value)}")
    return os.fspath(value)
