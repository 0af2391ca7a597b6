"""Conv2D (and Keras 1's Convolution2D); MaxPooling2D is importable from here too, as in Keras 1."""
from fastnet import _check, _kernels
from fastnet.layers._spatial import SpatialLayer, check_padding
from fastnet.layers.base import check_activation, check_initializer, legacy
from fastnet.layers.pooling import MaxPool2D, MaxPooling2D  # noqa: F401  (Keras 1 import path)

_DIM_ORDERING = {"th": "channels_first", "tf": "channels_last", "default": None}


class Conv2D(SpatialLayer):
    """2-D convolution; kernel (rows, cols, in_channels, filters) as in Keras, bias (filters,)."""

    kind = "conv2d"

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        where = type(self).__name__
        self.filters = _check.integer(filters, "filters", 1, _check.INT_MAX, where, allow_float=True)
        self.kernel_size = _check.pair(kernel_size, "kernel_size", where)
        self.strides = _check.pair(strides, "strides", where)
        self.padding = check_padding(padding, where)
        self.activation = check_activation(activation, where)
        self.use_bias = _check.boolean(use_bias, "use_bias", where)
        self.kernel_initializer = check_initializer(kernel_initializer, "kernel_initializer", where)
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer", where)

    @property
    def window(self):
        return self.kernel_size

    def compute_output_shape(self, in_shape, in_fmt):
        fmt = self.resolve_format(in_shape, in_fmt)
        oh, ow = self.output_size(in_shape, fmt, self.kernel_size, self.strides, self.padding, "kernel")
        self.warn_if_suspicious(in_shape, fmt)
        return (oh, ow, self.filters), fmt

    def weight_specs(self):
        kh, kw = self.kernel_size
        c = self.in_shape[2]
        fan_in, fan_out = kh * kw * c, kh * kw * self.filters
        specs = [("kernel", (kh, kw, c, self.filters), self.kernel_initializer, fan_in, fan_out)]
        if self.use_bias:
            specs.append(("bias", (self.filters,), self.bias_initializer, fan_in, fan_out))
        return specs

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "data_format": self.data_format,
                "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer, "bias_initializer": self.bias_initializer}

    def can_forward_maxpool(self, conv_algo):
        """Whether forward_maxpool runs for this layer's input with the convolution algorithm conv_algo (and the
        layer's compute dtype: 'auto' takes no Winograd for bfloat16 operands)."""
        return _kernels.conv2d_forward_maxpool_fits((1,) + self.in_shape, (*self.kernel_size, self.in_shape[2],
                                                    self.filters), self.strides, self.padding, conv_algo=conv_algo,
                                                    precision=self.compute_dtype)


class Convolution2D(Conv2D):
    """Keras 1: Convolution2D(nb_filter, nb_row, nb_col, border_mode='valid', subsample=(1, 1), dim_ordering=...)."""

    def __init__(self, nb_filter, nb_row=None, nb_col=None, border_mode=None, subsample=None, dim_ordering=None,
                 init=None, **kwargs):
        legacy("Convolution2D(nb_filter, nb_row, nb_col, border_mode=...) is the Keras 1 spelling; use "
               "Conv2D(filters, (rows, cols), padding=...)")
        if nb_row is not None:
            kwargs.setdefault("kernel_size", (nb_row, nb_col if nb_col is not None else nb_row))
        if border_mode is not None:
            kwargs["padding"] = border_mode
        if subsample is not None:
            kwargs["strides"] = subsample
        if dim_ordering is not None:
            if not isinstance(dim_ordering, str) or dim_ordering not in _DIM_ORDERING:
                raise ValueError(f"dim_ordering must be 'th', 'tf' or 'default', got {dim_ordering!r}")
            kwargs["data_format"] = _DIM_ORDERING[dim_ordering]
        if init is not None:
            kwargs["kernel_initializer"] = init
        super().__init__(nb_filter, **kwargs)
