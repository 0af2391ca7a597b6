"""Dense, Activation, Dropout and Flatten (Keras 1 kept these in keras.layers.core)."""
import numpy as np

from fastnet import _kernels as K
from fastnet.layers.base import (INITIALIZERS, KernelActivation, Layer, activation_backward, activation_forward,
                                 check_activation, legacy, public_shape)


class Dense(KernelActivation, Layer):
    """out = activation(x @ kernel + bias); kernel (input_dim, units), bias (units,)."""

    kind = "dense"
    packed = None  # the kernel packed for the GEMM, while the model runs many batches with fixed weights

    def __init__(self, units=None, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", output_dim=None, init=None, **kwargs):
        if output_dim is not None:
            legacy("Dense(output_dim=...) is the Keras 1 spelling; use Dense(units)")
            units = output_dim
        if init is not None:
            legacy("Dense(init=...) is the Keras 1 spelling; use kernel_initializer")
            kernel_initializer = init
        super().__init__(**kwargs)
        if units is None or int(units) < 1:
            raise ValueError(f"Dense needs a positive number of units, got {units!r}")
        for init_name in (kernel_initializer, bias_initializer):
            if init_name not in INITIALIZERS:
                raise ValueError(f"unknown initializer {init_name!r}; fastnet has {', '.join(INITIALIZERS)}")
        self.units = int(units)
        self.activation = check_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

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

    def forward(self, x, training):
        bias = self.params[1] if self.use_bias else None
        y = K.dense_forward(x, self.params[0], bias, out=self.buffer("y", (x.shape[0], self.units)),
                            activation=self.kernel_activation(), packed=None if training else self.packed)
        return self.finish_forward(x, y)

    def backward(self, dy, need_dx=True):
        dy = self.pre_activation_grad(dy)
        dx, _, _ = K.dense_backward(dy, self._x, self.params[0], dx=self.buffer("dx", self._x.shape) if need_dx else None,
                                    dw=self.grads[0], db=self.grads[1] if self.use_bias else None, need_dx=need_dx)
        return dx


class Activation(Layer):
    kind = "activation"

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = check_activation(activation)
        self.passthrough = False  # set by the model when the previous layer's kernel applies us (or the loss does)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}

    def forward(self, x, training):
        if self.passthrough or self.activation == "linear":
            return x
        self._y = activation_forward(self.activation, x, self.buffer("y", x.shape))
        return self._y

    def backward(self, dy, need_dx=True):
        if self.passthrough or self.activation == "linear":
            return dy
        return activation_backward(self.activation, dy, self._y, self.buffer("dx", dy.shape))


class Dropout(Layer):
    """Inverted dropout: at training time zeroes a fraction `rate` of the inputs and scales the rest by
    1/(1-rate); at inference time it is the identity. Masks are keyed by (seed, model, step, layer, element)."""

    kind = "dropout"

    def __init__(self, rate=None, p=None, seed=None, **kwargs):
        if p is not None:
            legacy("Dropout(p=...) is the Keras 1 spelling; use Dropout(rate)")
            rate = p
        super().__init__(**kwargs)
        if rate is None or not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.seed = seed

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}

    def forward(self, x, training):
        if not training or self.rate == 0.0:
            self._keep = None
            return x
        seed = self.model.seed if self.seed is None else int(self.seed)
        stream = (self.model.model_id << 48) ^ (self.model.step << 12) ^ self.index
        y, self._keep = K.dropout_forward(x, self.rate, seed, stream, out=self.buffer("y", x.shape),
                                          keep=self.buffer("keep", x.shape, np.uint8))
        return y

    def backward(self, dy, need_dx=True):
        if self._keep is None:
            return dy
        return K.dropout_backward(dy, self._keep, self.rate, out=self.buffer("dx", dy.shape))


class Flatten(Layer):
    """(N, ...) -> (N, prod(...)), in the order of the data format (channels_first flattens (C, H, W))."""

    kind = "flatten"

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}

    def compute_output_shape(self, in_shape, in_fmt):
        return (int(np.prod(in_shape)),), None

    def forward(self, x, training):
        n = x.shape[0]
        if self.in_fmt == "channels_first" and x.ndim == 4:  # Keras's order: weights stay compatible
            out = self.buffer("y", (n, x.shape[3], x.shape[1], x.shape[2]))
            np.copyto(out, x.transpose(0, 3, 1, 2))
            return out.reshape(n, -1)
        return x.reshape(n, -1)

    def backward(self, dy, need_dx=True):
        n = dy.shape[0]
        if self.in_fmt == "channels_first" and len(self.in_shape) == 3:
            h, w, c = self.in_shape
            out = self.buffer("dx", (n, h, w, c))
            np.copyto(out, dy.reshape(n, c, h, w).transpose(0, 2, 3, 1))
            return out
        return dy.reshape((n,) + self.in_shape)
