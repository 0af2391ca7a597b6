"""Input / InputLayer: how Keras 3 gives a Sequential model its input shape (`Sequential([Input(shape=(784,)),
Dense(512), ...])`), instead of `input_shape=` on the first layer. Both spellings build the same model."""
from fastnet import _check


class InputLayer:
    """The model's input shape (no batch axis). A Sequential model takes it as its first element and gives its
    shape to the first layer; it computes nothing and is not one of model.layers (as in Keras 3)."""

    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None, name=None, input_shape=None):
        where = type(self).__name__
        if dtype not in (None, "float32"):
            raise ValueError(f"{where}: fastnet computes in float32; got dtype={dtype!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"{where}: name must be a non-empty string, got {type(name).__name__} {name!r}")
        given = [k for k, v in (("shape", shape), ("batch_shape", batch_shape), ("input_shape", input_shape))
                 if v is not None]
        if len(given) != 1:
            raise TypeError(f"{where} needs exactly one of shape, batch_shape (or Keras 2's input_shape), got "
                            f"{', '.join(given) or 'none'}: e.g. Input(shape=(784,)) or Input(shape=(28, 28, 1))")
        if batch_shape is not None:
            if not isinstance(batch_shape, (tuple, list)) or len(batch_shape) < 2:
                raise TypeError(f"{where}: batch_shape must be (batch size or None, *shape), got {batch_shape!r}")
            batch_size, shape = batch_shape[0], tuple(batch_shape[1:])
        if batch_size is not None:
            _check.integer(batch_size, "batch_size", 1, where=where)
        self.shape = _check.ints(shape if shape is not None else input_shape, "shape", where=where, allow_float=True)
        self.batch_size = batch_size
        self.name = name

    def __repr__(self):
        return f"<InputLayer shape={self.shape}>"


def Input(shape=None, batch_size=None, dtype=None, batch_shape=None, name=None):
    """Keras's `Input(shape=...)`: the model's input, as the first element of a Sequential model."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape, name=name)
