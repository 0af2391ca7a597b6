"""ONNX export: a Sequential as the inference graph ONNX Runtime (and any ONNX consumer) runs (reading ONNX
files: fastnet.onnx_import).

    model.export("model.onnx")                   # Keras 3's call; format="onnx" is the only one fastnet writes

The graph: Gemm (MatMul without a bias), Conv, MaxPool, Relu / Sigmoid / Tanh / Softmax, Flatten, and the
Transposes a channels_last model needs at its edges (ONNX's Conv and MaxPool take NCHW): one after the input,
before the first convolution, and one before a Flatten that must read (H, W, C) order. Dropout is left out (the
identity at inference). The batch dimension is dynamic ("batch"); the input is named "input", the output
"output"; fastnet's version is the producer's and the model's name the graph's.

Opset 17: ONNX Runtime has run it since 1.14 (2023) and every op here has had its current form since opset 13
(Softmax over one axis); IR version 8 is opset 17's, the oldest that carries it, so older runtimes load the file.

Needs the `onnx` package (pip install 'fastnet[onnx]'), imported only when asked to export (require_onnx).
"""
from fastnet import _check, _kernels
from fastnet._io import atomic_write
from fastnet._version import __version__
from fastnet.layers.base import by_class, public_shape
from fastnet.layers.convolutional import Conv2D
from fastnet.layers.core import Activation, Dense, Dropout, Flatten
from fastnet.layers.pooling import MaxPooling2D

OPSET, IR_VERSION = 17, 8
_TO_NCHW, _TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def require_onnx(what="exporting to"):
    """The onnx package, or an ImportError that says how to install it."""
    try:
        import onnx
    except ImportError:
        raise ImportError(f"{what} ONNX needs the onnx package: pip install 'fastnet[onnx]' "
                          "(or pip install onnx)") from None
    return onnx


class _Graph:
    """The nodes and initializers written so far, and the layout of the current tensor: 'flat', or 'nhwc' /
    'nchw' for images."""

    def __init__(self, onnx, layout):
        self.onnx, self.nodes, self.weights, self.layout = onnx, [], [], layout
        self.tensor, self._names = "input", set()

    def name(self, base):
        name, i = base, 0
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def weight(self, base, array):
        name = self.name(base)
        self.weights.append(self.onnx.numpy_helper.from_array(array.astype("float32", copy=False), name))
        return name

    def node(self, op, inputs, base, **attrs):
        out = self.name(base)
        self.nodes.append(self.onnx.helper.make_node(op, [self.tensor, *inputs], [out], name=out, **attrs))
        self.tensor = out
        return out

    def to_layout(self, layout, base):
        if self.layout != layout:
            self.node("Transpose", [], f"{base}/to_{layout}", perm=_TO_NCHW if layout == "nchw" else _TO_NHWC)
            self.layout = layout

    def activation(self, act, base, alpha=None):
        """ONNX's op of the same name (relu: Relu, leaky_relu: LeakyRelu), with a parametric one's alpha."""
        if act in (None, "linear"):
            return
        attrs = {} if alpha is None else {"alpha": float(alpha)}
        if act == "softmax":  # over the features, or an image's channels
            attrs["axis"] = 1 if self.layout == "nchw" else -1
        self.node("".join(w.capitalize() for w in act.split("_")), [], f"{base}/{act}", **attrs)


def keras_pads(in_hw, window, strides, padding):
    """(ONNX's [top, left, bottom, right], the output's (H, W)) for Keras's padding ('valid' or 'same') of a window
    over (H, W) images, as fastnet (TensorFlow/Keras) pads: the export writes these, the import reads them back."""
    begin, end, out_hw = [], [], []
    for size, k, s in zip(in_hw, window, strides):
        out, before = _kernels.conv_geometry(size, k, s, padding)
        total = max((out - 1) * s + k - size, 0)
        begin.append(before)
        end.append(total - before)
        out_hw.append(out)
    return begin + end, out_hw


def _pads(layer, in_hw):
    window = layer.kernel_size if isinstance(layer, Conv2D) else layer.pool_size
    return keras_pads(in_hw, window, layer.strides, layer.padding)[0]


def _conv(g, layer):
    g.to_layout("nchw", layer.name)
    kernel, bias = layer.params[0], layer.params[1] if layer.use_bias else None
    inputs = [g.weight(f"{layer.name}/kernel", kernel.transpose(3, 2, 0, 1))]  # (OC, C, KH, KW)
    if bias is not None:
        inputs.append(g.weight(f"{layer.name}/bias", bias))
    g.node("Conv", inputs, layer.name, kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
           pads=_pads(layer, layer.in_shape[:2]))
    g.activation(layer.activation, layer.name)


def _pool(g, layer):
    g.to_layout("nchw", layer.name)
    g.node("MaxPool", [], layer.name, kernel_shape=list(layer.pool_size), strides=list(layer.strides),
           pads=_pads(layer, layer.in_shape[:2]))


def _flatten(g, layer):
    if g.layout == "flat":
        return
    g.to_layout("nchw" if layer.reorders else "nhwc", layer.name)  # (C, H, W) order, or (H, W, C)
    g.node("Flatten", [], layer.name, axis=1)
    g.layout = "flat"


def _dense(g, layer):
    kernel = g.weight(f"{layer.name}/kernel", layer.params[0])
    if layer.use_bias:
        g.node("Gemm", [kernel, g.weight(f"{layer.name}/bias", layer.params[1])], layer.name)
    else:
        g.node("MatMul", [kernel], layer.name)
    g.activation(layer.activation, layer.name)


_WRITERS = {Conv2D: _conv, MaxPooling2D: _pool, Flatten: _flatten, Dense: _dense,
            Activation: lambda g, layer: g.activation(layer.activation, layer.name, layer.alpha),
            Dropout: lambda g, layer: None}


def to_onnx(model):
    """The model's inference graph as an onnx.ModelProto (checked by onnx.checker)."""
    onnx = require_onnx()
    model._require_layers()
    bf16 = next((layer.name for layer in model.layers if layer.compute_dtype != "float32"), None)
    if bf16 is not None:
        raise ValueError(f"export: layer {bf16!r} computes with bfloat16 products (mixed_bfloat16), which an ONNX "
                         "float32 graph would not reproduce; export a float32 model (set_global_policy('float32') "
                         "and load the weights into it)")
    first, last = model.layers[0], model.layers[-1]
    g = _Graph(onnx, "flat" if len(first.in_shape) != 3 else
               ("nchw" if first.in_fmt == "channels_first" else "nhwc"))
    for layer in model.layers:
        write = by_class(_WRITERS, layer)
        if write is None:
            raise ValueError(f"export: layer {layer.name!r} ({type(layer).__name__}) has no ONNX form in fastnet")
        write(g, layer)
    if g.layout != "flat":  # images out: in the layout the model's user sees
        g.to_layout("nchw" if last.out_fmt == "channels_first" else "nhwc", "output")
    g.nodes.append(onnx.helper.make_node("Identity", [g.tensor], ["output"], name="output"))
    tensor = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(
        g.nodes, model.name,
        [tensor("input", onnx.TensorProto.FLOAT, ["batch", *public_shape(first.in_shape, first.in_fmt)])],
        [tensor("output", onnx.TensorProto.FLOAT, ["batch", *public_shape(last.out_shape, last.out_fmt)])],
        initializer=g.weights)
    proto = onnx.helper.make_model(graph, producer_name="fastnet", producer_version=__version__,
                                   opset_imports=[onnx.helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.helper.set_model_props(proto, {"model_name": model.name})
    onnx.checker.check_model(proto)
    return proto


def export(model, path, format="onnx"):
    """Write the model's inference graph to path (atomically), as Keras 3's model.export(path, format='onnx')."""
    if format != "onnx":
        raise ValueError(f"export: format={format!r}; fastnet exports 'onnx' only")
    proto = to_onnx(model)
    atomic_write(_check.path(path, "filepath", "export"), lambda f: f.write(proto.SerializeToString()))
