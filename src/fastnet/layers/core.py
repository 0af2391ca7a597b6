"""Dense, Activation, Dropout and Flatten (Keras 1 kept these in keras.layers.core)."""
import numpy as np

from fastnet import _check, _kernels, backend
from fastnet.layers.base import (Layer, activation_backward, activation_forward, check_activation, check_initializer,
                                 legacy, public_shape)


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

    def forward(self, ctx, x, y, activation="linear", packed=None, dropout=None):
        """y = activation(x @ kernel + bias) for the activation the kernel fuses ('linear' or 'relu');
        packed: the kernel packed once for many batches (inference); dropout: a Dropout's mask_key, to drop out
        y as the kernel makes it (training)."""
        _kernels.dense_forward(x, self.params[0], self.params[1] if self.use_bias else None, out=y,
                               activation=activation, packed=packed, dropout=dropout, **ctx.gemm)
        return y

    def backward(self, ctx, dz, x, dx=None):
        """Weight gradients into self.grads from dz = dL/d(x @ kernel + bias); dx = dL/dx when dx is given."""
        _kernels.dense_backward(dz, x, self.params[0], dx=dx, dw=self.grads[0],
                                db=self.grads[1] if self.use_bias else None, need_dx=dx is not None, **ctx.gemm)
        return dx


class Activation(Layer):
    kind = "activation"

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = check_activation(activation, "Activation")

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}

    def forward(self, ctx, x, y):
        return activation_forward(ctx, self.activation, x, y)

    def backward(self, ctx, dy, y, dx):
        """dL/dx from dy and this layer's forward output y."""
        return activation_backward(ctx, self.activation, dy, y, dx)


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

    def mask_key(self, ctx, features):
        """(rate, seed, stream, first): what draws this training step's mask over rows of `features` elements."""
        seed = ctx.seed if self.seed is None else self.seed
        return self.rate, seed, ctx.dropout_stream(self.index), ctx.row0 * features

    def forward(self, ctx, x, y, keep):
        """Training only (at inference the layer is the identity): y and the kept-element mask keep."""
        rate, seed, stream, first = self.mask_key(ctx, x.size // x.shape[0])
        _kernels.dropout_forward(x, rate, seed, stream, out=y, keep=keep, n_threads=ctx.n_threads, first=first)
        return y

    def backward(self, ctx, dy, keep, dx):
        return _kernels.dropout_backward(dy, keep, self.rate, out=dx, n_threads=ctx.n_threads)

    def backward_through_relu(self, ctx, dy, y, dx):
        """dL/d(the ReLU's input) from this layer's output y, when a dense kernel applied the ReLU and the mask."""
        return _kernels.dropout_relu_backward(dy, y, self.rate, out=dx, n_threads=ctx.n_threads)


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

    def forward(self, ctx, x, y=None):
        """(N, prod(in_shape)); y [N, prod] holds the copy when the layer reorders."""
        n = x.shape[0]
        if self.reorders:
            np.copyto(y.reshape(n, x.shape[3], x.shape[1], x.shape[2]), x.transpose(0, 3, 1, 2))
            return y
        return x.reshape(n, -1)

    def backward(self, ctx, dy, dx=None):
        """dL/dx in the input's (NHWC) shape; dx holds the copy when the layer reorders."""
        n = dy.shape[0]
        if self.reorders:
            h, w, c = self.in_shape
            np.copyto(dx, dy.reshape(n, c, h, w).transpose(0, 2, 3, 1))
            return dx
        return dy.reshape((n,) + self.in_shape)
