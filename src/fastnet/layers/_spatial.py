"""What Conv2D and MaxPooling2D share: data-format resolution and the errors for shapes that do not fit."""
import warnings

from fastnet import _check, _kernels
from fastnet import backend
from fastnet.layers.base import Layer, internal_shape, public_shape

OTHER = {"channels_first": "channels_last", "channels_last": "channels_first"}


def check_padding(padding, where):
    """'valid' or 'same' (any case, as Keras takes it)."""
    return _check.choice(padding.lower() if isinstance(padding, str) else padding, "padding", ("valid", "same"), where)


class SpatialLayer(Layer):
    """A layer over (rows, cols, channels) images whose public shapes follow its data_format."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = None if data_format is None else backend.normalize_data_format(data_format)

    window = (1, 1)  # the kernel or pooling window (rows, cols); subclasses set it
    padding = "valid"

    def input_data_format(self):
        """The ordering this first layer reads its input_shape in: its own, else the default, unless no ordering
        was chosen (none on the layer, none set in code) and only the other reading of the shape can work."""
        default = backend.image_data_format()
        shape = self.input_shape_arg
        if self.data_format or backend.image_data_format_chosen() or shape is None or len(shape) != 3:
            return self.data_format or default
        other = OTHER[default]
        if self._fits(internal_shape(shape, default)) or not self._fits(internal_shape(shape, other)):
            return default  # the default works (or nothing does: building raises the usual error)
        h, w, c = internal_shape(shape, default)
        oh, ow, oc = internal_shape(shape, other)
        warnings.warn(
            f"{self._where()}: input_shape {shape} read as {default} ({h} rows x {w} cols with {c} channel(s)) is "
            f"smaller than its {self.window[0]}x{self.window[1]} window, so it is read as {other} ({oc} channel(s) "
            f"of {oh}x{ow}); pass data_format={other!r} (or call fastnet.backend.set_image_data_format({other!r})) "
            "to make it explicit", backend.DataFormatWarning, stacklevel=3)
        self.data_format = other
        return other

    def _fits(self, in_shape):
        h, w, _ = in_shape
        return self.padding == "same" or (h >= self.window[0] and w >= self.window[1])

    def resolve_format(self, in_shape, in_fmt):
        """The format of this layer: its own, else the incoming tensor's, else the global default."""
        if len(in_shape) != 3:
            shown = (None,) + public_shape(in_shape, in_fmt)
            raise ValueError(f"{self._where()} expects 4-D input (batch, rows, cols, channels) or (batch, channels, "
                             f"rows, cols) but receives {shown}: reshape the data, e.g. x.reshape(-1, 28, 28, 1)")
        fmt = self.data_format or in_fmt or backend.image_data_format()
        if in_fmt is not None and fmt != in_fmt:
            raise ValueError(f"{self._where()} has data_format={fmt!r} but the layers before it are {in_fmt!r}: "
                             f"a model uses one image ordering; pass data_format={in_fmt!r} (or none) here")
        return fmt

    def output_size(self, in_shape, fmt, window, strides, padding, what):
        """(rows, cols) out, with an error that names the shapes, the reading and the fix when it fails."""
        h, w, c = in_shape
        if padding == "same" or (h >= window[0] and w >= window[1]):
            return (_kernels.conv_geometry(h, window[0], strides[0], padding)[0],
                    _kernels.conv_geometry(w, window[1], strides[1], padding)[0])
        shown = (None,) + public_shape(in_shape, fmt)
        msg = (f"{self._where()}: input {shown} read as {fmt} is {h} rows x {w} cols with {c} channel(s), smaller "
               f"than the {window[0]}x{window[1]} {what} with padding={padding!r}.")
        if self.index == 0:
            other = OTHER[fmt]
            pub = public_shape(in_shape, fmt)
            # The same numbers in the other ordering:
            alt = (pub[1], pub[2], pub[0]) if other == "channels_first" else (pub[2], pub[0], pub[1])
            alt_h, alt_w = alt[0], alt[1]
            if alt_h >= window[0] and alt_w >= window[1]:
                msg += (f" The shape looks {other} ({alt[2]} channel(s) of {alt_h}x{alt_w}): pass "
                        f"data_format={other!r} to this layer (or call "
                        f"fastnet.backend.set_image_data_format({other!r}) before building), or give "
                        f"input_shape={tuple(public_shape(alt, fmt))} and data of that shape.")
        raise ValueError(msg)

    def warn_if_suspicious(self, in_shape, fmt):
        """A first layer whose input looks like the other ordering builds, but probably by mistake."""
        if self.index != 0:
            return
        pub = public_shape(in_shape, fmt)
        if fmt == "channels_last" and pub[0] in (1, 3, 4) and pub[2] > 4:
            warnings.warn(f"{self._where()}: input_shape {pub} is read as channels_last ({pub[0]} rows, {pub[2]} "
                          f"channels); if it means {pub[0]} channel(s) of {pub[1]}x{pub[2]}, pass "
                          "data_format='channels_first'", stacklevel=4)
        elif fmt == "channels_first" and pub[2] in (1, 3, 4) and pub[0] > 4:
            warnings.warn(f"{self._where()}: input_shape {pub} is read as channels_first ({pub[0]} channels); if it "
                          f"means {pub[2]} channel(s) of {pub[0]}x{pub[1]}, pass data_format='channels_last'",
                          stacklevel=4)
