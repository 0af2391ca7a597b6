"""Dense, Activation, Dropout and Flatten (Keras 1 kept these in keras.layers.core)."""
import numpy as np

from fastnet import _check, backend
from fastnet.layers.base import Layer, check_activation, check_initializer, legacy, public_shape


class Dense(Layer):
    """out = activation(x @ kernel + bias); kernel (input_dim, units), bias (units,)."""

    kind = "dense"

    def __init__(self, units=None, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", output_dim=None, init=None, **kwargs):
        if output_dim is not None:
            legacy("Dense(output_dim=...) is the Keras 1 spelling; use Dense(units)")
            units = output_dim
        if init is not None:
            legacy("Dense(init=...) is the Keras 1 spelling; use kernel_initializer")
            kernel_initializer = init
        super().__init__(**kwargs)
        if units is None:
            raise TypeError("Dense needs its number of units: Dense(units), e.g. Dense(512)")
        self.units = _check.integer(units, "units", 1, _check.INT_MAX, "Dense", allow_float=True)
        self.activation = check_activation(activation, "Dense")
        self.use_bias = _check.boolean(use_bias, "use_bias", "Dense")
        self.kernel_initializer = check_initializer(kernel_initializer, "kernel_initializer", "Dense")
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer", "Dense")

    def compute_output_shape(self, in_shape, in_fmt):
        if len(in_shape) != 1:
            shown = (None,) + public_shape(in_shape, in_fmt)
            raise ValueError(f"{self._where()} expects flat input (batch, features) but receives {shown}: "
                             "add Flatten() before it, or reshape the input to (N, features)")
        return (self.units,), None

    def weight_specs(self):
        n_in = self.in_shape[0]
        specs = [("kernel", (n_in, self.units), self.kernel_initializer, n_in, self.units)]
        if self.use_bias:
            specs.append(("bias", (self.units,), self.bias_initializer, n_in, self.units))
        return specs

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}


class Activation(Layer):
    kind = "activation"
    alpha = None  # a parametric activation's parameter (a subclass's, LeakyReLU's); None: the activation has none

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = check_activation(activation, "Activation")

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class LeakyReLU(Activation):
    """x where x > 0, else negative_slope * x (Keras 3's LeakyReLU; Keras 2 named the slope alpha)."""

    kind = "leaky_re_lu"

    def __init__(self, negative_slope=0.3, alpha=None, **kwargs):
        if alpha is not None:
            legacy("LeakyReLU(alpha=...) is the Keras 2 spelling; use negative_slope")
            negative_slope = alpha
        super().__init__("linear", **kwargs)
        self.activation = "leaky_relu"
        self.negative_slope = _check.real(negative_slope, "negative_slope", 0.0, where="LeakyReLU")

    @property
    def alpha(self):
        return self.negative_slope

    def get_config(self):
        return {**Layer.get_config(self), "negative_slope": self.negative_slope}


class Dropout(Layer):
    """Inverted dropout: at training time zeroes a fraction `rate` of the inputs and scales the rest by
    1/(1-rate); at inference time it is the identity. Masks are keyed by (seed, model, step, layer, element)."""

    kind = "dropout"

    def __init__(self, rate=None, p=None, seed=None, **kwargs):
        if p is not None:
            legacy("Dropout(p=...) is the Keras 1 spelling; use Dropout(rate)")
            rate = p
        super().__init__(**kwargs)
        if rate is None:
            raise TypeError("Dropout needs its rate: Dropout(rate), e.g. Dropout(0.2)")
        self.rate = _check.real(rate, "rate", 0.0, 1.0, hi_open=True, where="Dropout")
        self.seed = None if seed is None else _check.integer(seed, "seed", 0, 2**64 - 1, "Dropout")

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class Flatten(Layer):
    """(N, ...) -> (N, prod(...)): a reshape of the tensor as the user sees it, so channels_first images flatten
    in (C, H, W) order (Keras 1's, the article's). Flatten(data_format='channels_first') is Keras 3's way to keep
    a channels_last model's weight order: channels_first images flatten in (H, W, C) order."""

    kind = "flatten"

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = None if data_format is None else backend.normalize_data_format(data_format)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}

    def compute_output_shape(self, in_shape, in_fmt):
        if self.data_format == "channels_first" and in_fmt == "channels_last" and len(in_shape) == 3:
            raise ValueError(f"{self._where()}: data_format='channels_first' after channels_last layers would "
                             "flatten (W, C, H) as Keras 3 does; fastnet does not: drop data_format")
        return (int(np.prod(in_shape)),), None

    @property
    def reorders(self):
        """Whether flattening copies: channels_first images in (C, H, W) order (the internal layout is
        (H, W, C)); otherwise it is a view."""
        return self.in_fmt == "channels_first" and len(self.in_shape) == 3 and self.data_format != "channels_first"
