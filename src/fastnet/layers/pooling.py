"""MaxPooling2D: the maximum of each window; the gradient flows to the first maximum of each window."""
from fastnet import _check
from fastnet.layers._spatial import SpatialLayer, check_padding
from fastnet.layers.base import legacy


class MaxPooling2D(SpatialLayer):
    kind = "max_pooling2d"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, border_mode=None,
                 dim_ordering=None, **kwargs):
        if border_mode is not None:
            legacy("MaxPooling2D(border_mode=...) is the Keras 1 spelling; use padding=")
            padding = border_mode
        if dim_ordering is not None:
            legacy("MaxPooling2D(dim_ordering=...) is the Keras 1 spelling; use data_format=")
            data_format = _check.choice(dim_ordering, "dim_ordering", ("th", "tf", "default"), "MaxPooling2D")
            data_format = {"th": "channels_first", "tf": "channels_last"}.get(data_format)
        super().__init__(data_format=data_format, **kwargs)
        where = type(self).__name__
        self.pool_size = _check.pair(pool_size, "pool_size", where)
        self.strides = self.pool_size if strides is None else _check.pair(strides, "strides", where)
        self.padding = check_padding(padding, where)

    @property
    def window(self):
        return self.pool_size

    def compute_output_shape(self, in_shape, in_fmt):
        fmt = self.resolve_format(in_shape, in_fmt)
        oh, ow = self.output_size(in_shape, fmt, self.pool_size, self.strides, self.padding, "pooling window")
        return (oh, ow, in_shape[2]), fmt

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": self.data_format}

    def is_2x2_tiling(self):
        """2x2 windows of stride 2 without padding: the pooling a Conv2D kernel can do itself."""
        return self.pool_size == (2, 2) and self.strides == (2, 2) and self.padding == "valid"


MaxPool2D = MaxPooling2D
