"""The Layer base class and the shape helpers layers share.

Inside fastnet, 4-D batches are NHWC whatever the data format; a layer's `data_format` only says how its
public shapes read (Keras semantics). The model converts the input once at its edge.

A layer is what a Keras layer is: its configuration, its output shape and its weights, nothing else. Which
kernels compute it, what they fuse and which arrays hold the activations is decided by the model's execution
plan (fastnet.plan), never by a layer; its math's float64 reference is tests/reference.py.
"""
import os

import numpy as np

from fastnet import _check, mixed_precision
from fastnet._legacy import LegacyAPIWarning, legacy  # noqa: F401  (re-exported)

ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax")
INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "zeros", "ones")


def public_shape(shape, fmt):
    """The shape a user sees (no batch axis): internal (H, W, C) reads (C, H, W) under channels_first."""
    if fmt == "channels_first" and len(shape) == 3:
        return (shape[2], shape[0], shape[1])
    return tuple(shape)


def internal_shape(shape, fmt):
    if fmt == "channels_first" and len(shape) == 3:
        return (shape[1], shape[2], shape[0])
    return tuple(shape)


def check_activation(name, where=None):
    name = "linear" if name is None else name
    if not isinstance(name, str):
        raise TypeError(f"{where + ': ' if where else ''}activation must be a name, one of {', '.join(ACTIVATIONS)}; "
                        f"got {type(name).__name__} {name!r}")
    if name not in ACTIVATIONS:
        raise ValueError(f"{where + ': ' if where else ''}unknown activation {name!r}; fastnet has "
                         f"{', '.join(ACTIVATIONS)}")
    return name


def check_initializer(value, name, where):
    return _check.choice(value, name, INITIALIZERS, where)


def _memory_bytes():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def initial_value(init, shape, fan_in, fan_out, rng):
    if init == "zeros":
        return np.zeros(shape, np.float32)
    if init == "ones":
        return np.ones(shape, np.float32)
    fan = {"glorot": (fan_in + fan_out) / 2.0, "he": float(fan_in)}[init.split("_")[0]]
    if init.endswith("uniform"):
        limit = np.sqrt(3.0 / fan)
        return rng.uniform(-limit, limit, shape).astype(np.float32)
    return rng.normal(0.0, np.sqrt(1.0 / fan), shape).astype(np.float32)  # untruncated, as Keras 2.0


def by_class(table, layer):
    """table's entry for the layer's class, or for its nearest base class in the table (Convolution2D: Conv2D's,
    LeakyReLU: Activation's); None when neither is there. The plan's steps, Keras's class names and ONNX's writers
    are such tables."""
    return next((table[cls] for cls in type(layer).__mro__ if cls in table), None)


class Layer:
    """A layer: configuration in __init__, shapes in build(), weights in init_weights(); the plan's steps
    (fastnet.plan) compute it.

    build(in_shape, in_fmt) receives the internal input shape (no batch axis) and the data format of the
    incoming tensor (None for flat tensors) and returns the same pair for its output.
    """

    kind = "layer"  # the base of automatic names: dense, dense_1, ...

    def __init__(self, name=None, input_shape=None, input_dim=None, batch_input_shape=None, trainable=True,
                 dtype=None):
        where = type(self).__name__
        self.dtype_policy = mixed_precision.policy_of(dtype, where)  # None: the global policy now (Keras)
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"{where}: name must be a non-empty string, got {type(name).__name__} {name!r}")
        if batch_input_shape is not None:
            if not isinstance(batch_input_shape, (tuple, list)) or len(batch_input_shape) < 2:
                raise TypeError(f"{where}: batch_input_shape must be a tuple (batch size or None, *input_shape), got "
                                f"{batch_input_shape!r}")
            if batch_input_shape[0] is not None:
                _check.integer(batch_input_shape[0], "batch_input_shape[0]", 1, where=where)
            input_shape = tuple(batch_input_shape[1:])
        if input_dim is not None:
            input_shape = (_check.integer(input_dim, "input_dim", 1, _check.INT_MAX, where, allow_float=True),)
        self.input_shape_arg = None if input_shape is None else _check.ints(input_shape, "input_shape", where=where,
                                                                               allow_float=True)
        self.name = name
        self.trainable = trainable
        self.built = False
        self.index = 0     # position in the model, given by the model when it adds the layer
        self.params = []   # weight arrays in Keras order (views into the model's arena once compiled)
        self.grads = []    # their gradients, written (not accumulated) by backward
        self.weight_names = []

    @property
    def trainable(self):
        return True

    @trainable.setter
    def trainable(self, value):
        if not value:
            raise ValueError(f"{type(self).__name__}: trainable=False is not supported: fastnet trains every layer "
                             "(one fused optimizer step updates all weights); build a model without this layer's "
                             "weights, or train another model")

    @property
    def dtype(self):
        """The variables' dtype: always float32 (a mixed policy changes only how products compute)."""
        return self.dtype_policy.variable_dtype

    @property
    def compute_dtype(self):
        return self.dtype_policy.compute_dtype

    # -- shapes and weights --
    def input_data_format(self):
        """The data format this layer reads a 4-D model input in (None: it takes flat or any input)."""
        return None

    def build(self, in_shape, in_fmt):
        self.in_shape, self.in_fmt = tuple(in_shape), in_fmt
        self.out_shape, self.out_fmt = self.compute_output_shape(self.in_shape, in_fmt)
        self.built = True
        return self.out_shape, self.out_fmt

    def compute_output_shape(self, in_shape, in_fmt):
        return in_shape, in_fmt

    def weight_specs(self):
        """[(name, shape, initializer, fan_in, fan_out)] for the weights build() creates."""
        return []

    def init_weights(self, rng):
        """The weights weight_specs() declares, drawn by their initializers from rng; rng None: allocated but not
        set (a model read from a file, whose loader checked every shape first and sets them next)."""
        specs = self.weight_specs()
        nbytes = sum(4 * int(np.prod(shape, dtype=object)) for _, shape, _, _, _ in specs)
        memory = _memory_bytes()
        if memory is not None and nbytes > memory:
            raise MemoryError(f"{self._where()}: its weights {[tuple(s[1]) for s in specs]} need "
                              f"{nbytes / 2**30:.1f} GiB, more than this machine's {memory / 2**30:.1f} GiB")
        self.weight_names = [s[0] for s in specs]
        self.params = [np.empty(shape, np.float32) if rng is None else initial_value(init, shape, fi, fo, rng)
                       for _, shape, init, fi, fo in specs]
        self.grads = []

    @property
    def input_shape(self):
        return (None,) + public_shape(self.in_shape, self.in_fmt)

    @property
    def output_shape(self):
        return (None,) + public_shape(self.out_shape, self.out_fmt)

    def count_params(self):
        return int(sum(p.size for p in self.params))

    def get_weights(self):
        return [p.copy() for p in self.params]

    def get_config(self):
        config = {"name": self.name, "dtype": self.dtype_policy.name}
        if self.index == 0 and self.input_shape_arg is not None:
            config["batch_input_shape"] = [None, *self.input_shape_arg]
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def _where(self):
        return f"{self.name} ({type(self).__name__})"

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"
