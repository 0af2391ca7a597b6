"""ONNX import, for load_model('m.onnx'): a Sequential from an ONNX graph that is a chain of the ops fastnet computes,
as fastnet's export, PyTorch's torch.onnx.export (TorchScript and dynamo) and Keras 3's model.export write them. The
file is untrusted input (fastnet._untrusted's rules): nothing outside it is read unless external_data=True (then
only plain files below its folder), every tensor's claimed size is checked against the bytes that hold it before an
array is made, and any error of the protobuf parser is the file's error.

Needs the `onnx` package (pip install 'fastnet[onnx]'), imported only when a .onnx file is loaded.
"""
import os
import re
import stat

import numpy as np

from fastnet import _untrusted
from fastnet._untrusted import ModelFileError
from fastnet.layers.base import public_shape
from fastnet.layers.convolutional import Conv2D
from fastnet.layers.core import Activation, Dense, Flatten, LeakyReLU
from fastnet.layers.pooling import MaxPooling2D
from fastnet.onnx_format import keras_pads, require_onnx

MIN_OPSET = 7                  # Gemm, MatMul, Conv, MaxPool, Relu, Flatten, Reshape in their current meaning
MAX_FILE_BYTES = (1 << 31) - 1  # protobuf's limit: bigger models keep their weights as external data
_TENSOR_TYPES = {1: ("<f4", "float_data"), 11: ("<f8", "double_data"), 10: ("<f2", "int32_data"),
                 6: ("<i4", "int32_data"), 7: ("<i8", "int64_data")}  # ONNX data type -> (dtype, typed field)
_LAYER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax"}
_USER_LAYOUT = {"channels_first": "nchw", "channels_last": "nhwc"}
BATCH = "batch"  # the batch size in shape arithmetic (Shape of the chain, as Keras's Flatten computes it)


class _Layer:
    """A layer read from the graph, made once the whole chain is known: its class and arguments, its weights
    in Keras layouts, and whether its output is still raw (a following bias Add or activation may join it)."""

    def __init__(self, cls, name, kwargs, weights=()):
        self.cls, self.name, self.kwargs, self.weights, self.raw = cls, name, kwargs, list(weights), bool(weights)


class _Reader:
    """Walks the graph's nodes in order: `chain` is the tensor the layers compute (its shape without the batch
    in `dims`, in ONNX's layout `layout`: 'flat', 'nchw', 'nhwc', or None for an image input whose order no
    node has shown yet); other tensors are constants (initializers, Constant nodes, shape arithmetic)."""

    def __init__(self, source, proto, path, external_data):
        self.source, self.external = source, external_data
        self.folder = os.path.dirname(os.path.abspath(path))
        self.graph = proto.graph
        opsets = {o.domain: o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")}
        self.opset = opsets.get("", opsets.get("ai.onnx"))
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.values, self.dead, self.layers = {}, {}, []
        self.fmt = None  # the model's data_format, once a node shows the input's order

    def error(self, what):
        return self.source.error(what)

    # -- tensors ------------------------------------------------------------------------------------------
    def tensor(self, t, what):
        """A TensorProto's values: the size its dims claim checked against the bytes that hold them first."""
        if t.data_type not in _TENSOR_TYPES:
            raise self.error(f"{what} has ONNX data type {t.data_type}; fastnet reads float, double, float16, "
                             "int32 and int64 tensors")
        dtype, field = np.dtype(_TENSOR_TYPES[t.data_type][0]), _TENSOR_TYPES[t.data_type][1]
        dims = tuple(t.dims)
        if len(dims) > 8 or any(d < 0 for d in dims):
            raise self.error(f"{what} has dims {dims}")
        count = int(np.prod(dims, dtype=object))
        if t.segment.ByteSize():
            raise self.error(f"{what} is a segment of a tensor; fastnet reads whole tensors")
        if t.data_location == 1:  # EXTERNAL
            data = self.external_bytes(t, count * dtype.itemsize, what)
        elif t.raw_data:
            data = t.raw_data
        else:
            typed = getattr(t, field)
            if len(typed) != count:
                raise self.error(f"{what} declares {dims} ({count:,} values) but holds {len(typed):,}")
            if t.data_type == 10:  # float16 as the bits of int32s
                bits = np.array(typed, np.int64)
                if bits.size and (bits.min() < 0 or bits.max() > 0xFFFF):
                    raise self.error(f"{what}: float16 values stored as {bits.min()} to {bits.max()}, not 16 bits")
                return bits.astype(np.uint16).view(dtype).reshape(dims)
            return np.array(typed, dtype).reshape(dims)
        if len(data) != count * dtype.itemsize:
            raise self.error(f"{what} declares {dtype.name} {dims} ({count * dtype.itemsize:,} bytes) but holds "
                             f"{len(data):,} bytes")
        return np.frombuffer(data, dtype, count).reshape(dims)

    def external_bytes(self, t, nbytes, what):
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        if not self.external:
            raise self.error(f"{what} is stored outside the file ({location!r:.80}); fastnet reads only the file "
                             "unless asked: load_model(path, external_data=True) reads tensors from files beside it")
        parts = location.replace("\\", "/").split("/")
        if not location or os.path.isabs(location) or any(p in ("", ".", "..") for p in parts):
            raise self.error(f"{what} is stored in {location!r:.80}; external data must be a file beside the model "
                             "or below its folder (no absolute path, no '..')")
        folder = os.path.realpath(self.folder)
        real = os.path.realpath(os.path.join(folder, *parts))
        if os.path.commonpath([real, folder]) != folder:
            raise self.error(f"{what} is stored in {location!r:.80}, a link that leads out of the model's folder")
        try:
            offset, length = int(info.get("offset", "0")), int(info.get("length", str(nbytes)))
        except ValueError:
            raise self.error(f"{what}: external data offset {info.get('offset')!r:.40} and length "
                             f"{info.get('length')!r:.40} are not integers") from None
        if length != nbytes or offset < 0:
            raise self.error(f"{what}: external data of {length:,} bytes at offset {offset:,}; its dims need "
                             f"{nbytes:,}")
        try:  # opened without blocking and checked to be a plain file: a FIFO there would wait forever
            with os.fdopen(os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
                found = os.fstat(f.fileno())
                if not stat.S_ISREG(found.st_mode):
                    raise self.error(f"{what}: external data {location!r} is not a plain file")
                size = found.st_size
                if offset + length > size:
                    raise self.error(f"{what}: external data {location!r} is {size:,} bytes, too short for "
                                     f"{length:,} at offset {offset:,}")
                f.seek(offset)
                return f.read(length)
        except OSError as e:
            raise self.error(f"{what}: external data {location!r}: {e.strerror or e}") from None

    def const(self, name, where):
        """The value of a node's constant input (an initializer, a Constant or shape arithmetic)."""
        if name in self.values:
            return self.values[name]
        if name in self.initializers:
            self.values[name] = self.tensor(self.initializers[name], f"initializer {name!r:.80}")
            return self.values[name]
        raise self.error(f"{where}: input {name!r:.80} is not a constant; fastnet reads a chain, where every input "
                         "but the one tensor flowing through is an initializer")

    def weight(self, name, where, ndim):
        """A float weight of ndim axes (any, for None), all finite, as float32."""
        value = self.const(name, where)
        if value.dtype == object or value.dtype.kind != "f" or ndim not in (None, value.ndim) or \
                not np.isfinite(value).all():
            raise self.error(f"{where}: weight {name!r:.80} is {value.dtype} of shape {value.shape}; a "
                             f"{'' if ndim is None else f'{ndim}-D '}tensor of finite floats was expected")
        return value.astype(np.float32)

    # -- the walk ---------------------------------------------------------------------------------------
    def read(self):
        g, newest = self.graph, require_onnx("loading").defs.onnx_opset_version()
        if self.opset is None or not MIN_OPSET <= self.opset <= newest:
            raise self.error(f"ONNX opset {self.opset}; fastnet reads the default domain's opsets {MIN_OPSET} to "
                             f"{newest} (those of the onnx package installed)")
        if g.sparse_initializer:
            raise self.error("the graph has sparse initializers; fastnet reads dense ones")
        inputs = [i for i in g.input if i.name not in self.initializers]
        if len(inputs) != 1 or len(g.output) != 1:
            raise self.error(f"the graph has {len(inputs)} inputs and {len(g.output)} outputs; fastnet reads "
                             "models of one input and one output")
        self.chain, shape = inputs[0].name, self.declared_shape(inputs[0], "input")
        if len(shape) not in (1, 3):
            raise self.error(f"the input {self.chain!r} has shape (batch, {', '.join(map(str, shape))}); fastnet "
                             "reads (batch, features) and (batch, 3 image axes)")
        self.in_shape, self.dims = shape, list(shape)
        self.layout = "flat" if len(shape) == 1 else None
        for i, node in enumerate(g.node):
            self.node(node, f"node {i} {node.name!r:.60} ({node.op_type:.40})")
        if g.output[0].name != self.chain:
            raise self.error(f"the graph's output {g.output[0].name!r:.80} is not the end of the chain of layers")
        if self.layout not in ("flat", None) and _USER_LAYOUT[self.fmt] != self.layout:
            raise self.error(f"the output images are {self.layout.upper()} but the input's are "
                             f"{_USER_LAYOUT[self.fmt].upper()}; fastnet's images keep one order in and out")
        return self.model(g.output[0])

    def declared_shape(self, info, what):
        """The graph input's shape without the batch: static dims only."""
        t = info.type.tensor_type
        if not info.type.HasField("tensor_type") or t.elem_type != 1 or not t.HasField("shape"):
            raise self.error(f"the {what} {info.name!r:.80} is not a float tensor of known rank")
        dims = t.shape.dim
        if not dims or any(not d.HasField("dim_value") or d.dim_value < 1 for d in dims[1:]):
            shown = ["?" if not d.HasField("dim_value") else d.dim_value for d in dims]
            raise self.error(f"the {what} {info.name!r:.80} has shape {shown}: fastnet reads static shapes "
                             "beyond the batch")
        return tuple(d.dim_value for d in dims[1:])

    def check_output(self, info, mine):
        """The graph output's declared shape (where it declares one: its static dims) against the model's."""
        t = info.type.tensor_type
        if not info.type.HasField("tensor_type") or not t.HasField("shape"):
            return
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim][1:]
        if len(dims) != len(mine) or any(d is not None and d != m for d, m in zip(dims, mine)):
            shown = ", ".join("?" if d is None else str(d) for d in dims)
            raise self.error(f"the graph declares its output as (batch, {shown}); its layers compute (batch, "
                             f"{', '.join(map(str, mine))})")

    def node(self, node, where):
        if node.domain not in ("", "ai.onnx"):
            raise self.error(f"{where}: operator domain {node.domain!r:.60}; fastnet reads ONNX's own ops")
        if not node.output or not node.output[0]:
            raise self.error(f"{where} has no output")
        for name in node.input:
            if name in self.dead:
                raise self.error(f"{where} reads {name!r:.80}, {self.dead[name]}: fastnet reads chains of "
                                 "layers, not branches")
        if self.chain not in node.input:
            self.values[node.output[0]] = self.constant_op(node, where)
            return
        if node.op_type == "Shape":  # of the chain: the batch and the dims, for a Reshape's target
            a = _Attrs(self, node, where)
            start, end = a.get("start", 0), a.get("end", len(self.dims) + 1)
            self.values[node.output[0]] = np.array([BATCH, *self.dims], dtype=object)[start:end]
            return
        op = _CHAIN_OPS.get(node.op_type)
        if op is None:
            raise self.error(f"{where}: fastnet reads chains of {', '.join(sorted(_CHAIN_OPS))}; "
                             f"{node.op_type!r:.40} is not one of them")
        lo, hi = _ARITY.get(node.op_type, (1, 1))
        if not lo <= len(node.input) <= hi or not all(node.input[:lo]):
            raise self.error(f"{where} has {len(node.input)} inputs; {node.op_type} takes {lo}"
                             + (f" to {hi}" if hi > lo else ""))
        if list(node.input).count(self.chain) != 1 or (node.op_type != "Add" and node.input[0] != self.chain):
            raise self.error(f"{where}: the tensor flowing through the chain must be its first input, once")
        op(self, node, where, _Attrs(self, node, where))
        self.dead[self.chain] = f"the tensor {where} already consumed"
        self.chain = node.output[0]
        for extra in node.output[1:]:
            if extra:
                self.dead[extra] = f"an extra output of {where} that fastnet does not compute"

    def constant_op(self, node, where):
        """Constants and the shape arithmetic exporters write beside the chain (Keras's Flatten computes its
        target from Shape, Gather, Unsqueeze and Concat)."""
        a = _Attrs(self, node, where)
        try:
            if node.op_type == "Constant":
                if "value" in a.by_name:
                    return self.tensor(a.get("value", kind="tensor"), f"{where}'s value")
                for key, kind in (("value_int", "int"), ("value_ints", "ints"), ("value_float", "float")):
                    if key in a.by_name:
                        return np.array(a.get(key, kind=kind), np.float32 if kind == "float" else np.int64)
                raise self.error(f"{where}: a Constant of {sorted(a.by_name)}; fastnet reads a tensor, an integer, "
                                 "integers or a number")
            args = [self.const(name, where) for name in node.input if name]
            symbolic = any(arg.dtype == object for arg in args)  # holds the batch: stays an object array
            value = self.fold(node, a, args, symbolic)
        except ModelFileError:
            raise
        except (ValueError, IndexError, TypeError, np.exceptions.AxisError) as e:  # numpy's, on the file's values
            raise self.error(f"{where}: {e}") from None
        if value is None:
            raise self.error(f"{where}: {node.op_type!r:.40} on constants; fastnet folds Constant, Identity, Cast, "
                             "Gather, Unsqueeze, Squeeze and Concat beside the chain")
        return np.asarray(value, dtype=object if symbolic else None)

    @staticmethod
    def fold(node, a, args, symbolic):
        """The value of a constant op, or None for an op fastnet does not fold."""
        op = node.op_type
        if op in ("Identity", "Cast") and args:
            return args[0] if op == "Identity" or symbolic else args[0].astype(_TENSOR_TYPES.get(a.get("to"),
                                                                                                ("<f4",))[0])
        if op == "Gather" and len(args) == 2 and args[0].ndim == 1 and args[1].dtype.kind == "i":
            return np.take(args[0], args[1], mode="raise")
        if op in ("Unsqueeze", "Squeeze") and args:
            axes = a.get("axes", args[1].tolist() if len(args) > 1 else None, "ints")
            if op == "Squeeze":
                return np.squeeze(args[0], axis=None if axes is None else tuple(axes))
            return np.expand_dims(args[0], tuple(axes))
        if op == "Concat" and args:
            return np.concatenate(args, axis=a.get("axis", 0))
        return None

    # -- layouts ----------------------------------------------------------------------------------------
    def image_layout(self, where, need=None):
        """The chain's image layout, deciding the model's data_format where this is the first node to show it:
        an input that reaches a Conv or MaxPool untransposed is NCHW (channels_first)."""
        if len(self.dims) != 3:
            raise self.error(f"{where} takes images (batch, C, H, W); the tensor here is (batch, "
                             f"{', '.join(map(str, self.dims))})")
        if self.layout is None and need is not None:
            self.layout, self.fmt = need, {"nchw": "channels_first", "nhwc": "channels_last"}[need]
        if need is not None and self.layout != need:
            raise self.error(f"{where} takes {need.upper()} images; the tensor here is {self.layout.upper()}")
        return self.layout

    def add_layer(self, cls, node, kwargs, weights=()):
        name = node.name.split("/")[0]
        taken = {layer.name for layer in self.layers}
        layer = _Layer(cls, name if _LAYER_NAME.fullmatch(name) and name not in taken else None, kwargs, weights)
        self.layers.append(layer)
        return layer

    def open_layer(self):
        """The last layer, if the chain is still its raw output (nothing but layout and identity ops since)."""
        return self.layers[-1] if self.layers and self.layers[-1].raw else None

    # -- the model ----------------------------------------------------------------------------------------
    def model(self, output):
        if not self.layers:  # identities only (a model of Dropout): the identity
            self.layers.append(_Layer(Activation, None, {"activation": "linear"}))
        made = []
        for i, spec in enumerate(self.layers):
            kwargs = dict(spec.kwargs, name=spec.name)
            if i == 0:
                kwargs["input_shape"] = self.in_shape
            if spec.cls is Dense or spec.cls is Conv2D:
                kwargs["use_bias"] = len(spec.weights) == 2
            try:
                made.append(spec.cls(**kwargs))
            except (TypeError, ValueError, OverflowError) as e:
                raise self.error(f"layer {i} ({spec.cls.__name__}): {e}") from None
        name = self.graph.name if _LAYER_NAME.fullmatch(self.graph.name) else None
        model = _untrusted.restore(self.source, name, made)
        weights = [w for spec in self.layers for w in spec.weights]
        shapes = [shape for layer in model.layers for _, shape, *_ in layer.weight_specs()]
        for w, shape in zip(weights, shapes):
            if w.shape != tuple(shape):
                raise self.error(f"a weight of shape {w.shape} where the model needs {tuple(shape)}")
        try:
            model._set_restored_weights(weights)
        except (TypeError, ValueError) as e:
            raise self.error(str(e)) from None
        last = model.layers[-1]
        self.check_output(output, public_shape(last.out_shape, last.out_fmt))
        return model


class _Attrs:
    """A node's attributes, each checked when read to be of the kind its op defines ('int', 'float', 'ints',
    'string', 'tensor'): a file may put anything anywhere."""

    _KINDS = {"float": (1, "a number"), "int": (2, "an integer"), "string": (3, "a string"), "tensor": (4, "a tensor"),
              "ints": (7, "a list of integers")}  # AttributeProto's type codes

    def __init__(self, reader, node, where):
        self.reader, self.where = reader, where
        self.by_name = {a.name: a for a in node.attribute}

    def get(self, name, default=None, kind="int", length=None):
        attr = self.by_name.get(name)
        if attr is None:
            return default
        code, words = self._KINDS[kind]
        value = {1: lambda: attr.f, 2: lambda: attr.i, 3: lambda: attr.s.decode("utf-8", "replace"),
                 4: lambda: attr.t, 7: lambda: list(attr.ints)}[code]() if attr.type == code else None
        if value is None or (length is not None and len(value) != length):
            raise self.reader.error(f"{self.where}: attribute {name!r} must be {words}"
                                    + (f" ({length} of them)" if length is not None else ""))
        return value


def _padding(reader, where, dims, kernel, strides, a):
    """Keras's 'valid' or 'same' for an op's pads (or auto_pad) on input (H, W); anything else is refused."""
    auto = a.get("auto_pad", "NOTSET", "string")
    options = {}
    for padding in ("valid", "same"):
        try:
            options[padding] = keras_pads(dims, kernel, strides, padding)
        except ValueError:  # a window larger than the image, with 'valid'
            continue
    if auto == "VALID":
        pads = [0] * 4
    elif auto == "NOTSET":
        pads = a.get("pads", [0] * 4, "ints", 4)
    elif auto in ("SAME_UPPER", "SAME_LOWER") and "same" in options:
        pads = options["same"][0]
        if auto == "SAME_LOWER":  # the odd pixel before, not after: Keras's 'same' only where totals are even
            pads = pads[2:] + pads[:2]
    else:
        raise reader.error(f"{where}: auto_pad {auto!r}")
    for padding, (expected, out) in options.items():
        if pads == expected:
            return padding, out, pads
    raise reader.error(f"{where}: pads {pads} (top, left, bottom, right) on {dims[0]}x{dims[1]} images are neither "
                       f"Keras's 'valid' nor 'same' for kernel {tuple(kernel)} and strides {tuple(strides)}")


def _window(reader, where, a, kernel):
    strides = a.get("strides", [1, 1], "ints", 2)
    if len(kernel) != 2 or len(strides) != 2 or min(*kernel, *strides) < 1:
        raise reader.error(f"{where}: kernel {kernel} and strides {strides}; fastnet reads 2-D windows")
    dilations = a.get("dilations", [1, 1], "ints", 2)
    if dilations != [1, 1]:
        raise reader.error(f"{where}: dilations {dilations}; fastnet has no dilated windows")
    return kernel, strides


def _conv(r, node, where, a):
    r.image_layout(where, "nchw")
    w = r.weight(node.input[1], where, 4)
    oc, c, kh, kw = w.shape
    kernel, strides = _window(r, where, a, a.get("kernel_shape", [kh, kw], "ints", 2))
    if a.get("group", 1) != 1 or c != r.dims[0] or kernel != [kh, kw]:
        raise r.error(f"{where}: weight {w.shape} (group {a.get('group', 1)}) on {r.dims[0]} channels; fastnet "
                      "reads ungrouped convolutions")
    padding, (oh, ow), _ = _padding(r, where, r.dims[1:], kernel, strides, a)
    weights = [np.ascontiguousarray(w.transpose(2, 3, 1, 0))]  # (KH, KW, C, OC), Keras's layout
    if len(node.input) > 2 and node.input[2]:
        weights.append(_bias(r, r.weight(node.input[2], where, 1), oc, where))
    r.add_layer(Conv2D, node, {"filters": oc, "kernel_size": kernel, "strides": strides, "padding": padding,
                               "data_format": r.fmt}, weights)
    r.dims = [oc, oh, ow]


def _bias(r, b, n, where):
    if b.size not in (1, n):
        raise r.error(f"{where}: a bias of shape {b.shape} for {n} outputs")
    return np.broadcast_to(b.reshape(-1), (n,)).astype(np.float32)


def _max_pool(r, node, where, a):
    r.image_layout(where, "nchw")
    kernel, strides = _window(r, where, a, a.get("kernel_shape", [], "ints"))
    if a.get("storage_order", 0) != 0:
        raise r.error(f"{where}: storage_order {a.get('storage_order')}; fastnet's pool has no indices")
    padding, out, pads = _padding(r, where, r.dims[1:], kernel, strides, a)
    if a.get("ceil_mode", 0):
        ceil = [-(-(n + p0 + p1 - k) // s) + 1 for n, k, s, p0, p1 in zip(r.dims[1:], kernel, strides, pads[:2],
                                                                          pads[2:])]
        if ceil != out:
            raise r.error(f"{where}: ceil_mode=1 changes the output size; fastnet pools as Keras (floor)")
    r.add_layer(MaxPooling2D, node, {"pool_size": kernel, "strides": strides, "padding": padding,
                                     "data_format": r.fmt})
    r.dims = [r.dims[0], *out]


def _dense(r, node, where, kernel, bias):
    if r.layout != "flat":
        raise r.error(f"{where} takes (batch, features); the tensor here is (batch, {', '.join(map(str, r.dims))}): "
                      "fastnet's Dense reads flat input")
    if kernel.shape[0] != r.dims[0]:
        raise r.error(f"{where}: a weight of shape {kernel.shape} on {r.dims[0]} features")
    weights = [np.ascontiguousarray(kernel)]
    if bias is not None:
        weights.append(_bias(r, bias, kernel.shape[1], where))
    r.add_layer(Dense, node, {"units": kernel.shape[1]}, weights)
    r.dims = [kernel.shape[1]]


def _gemm(r, node, where, a):
    if a.get("transA", 0):
        raise r.error(f"{where}: the chain's tensor must be Gemm's A, untransposed")
    kernel = r.weight(node.input[1], where, 2)
    kernel = kernel.T if a.get("transB", 0) else kernel
    bias = r.weight(node.input[2], where, None) if len(node.input) > 2 and node.input[2] else None
    if bias is not None and bias.ndim == 2 and bias.shape[0] != 1:
        raise r.error(f"{where}: C of shape {bias.shape}; a bias is (N,) or (1, N)")
    _dense(r, node, where, kernel * np.float32(a.get("alpha", 1.0, "float")),
           None if bias is None else bias * np.float32(a.get("beta", 1.0, "float")))


def _matmul(r, node, where, a):
    _dense(r, node, where, r.weight(node.input[1], where, 2), None)


def _add(r, node, where, a):
    """A bias: a constant added to the raw output of a Dense or Conv2D, per feature or channel (Keras's
    export adds the bias after the product, in the layout of the moment)."""
    other = node.input[1] if node.input[0] == r.chain else node.input[0]
    b, layer = r.weight(other, where, None), r.open_layer()
    axis = {"flat": 1, "nchw": 1, "nhwc": 3}.get(r.layout)
    n = r.dims[0] if r.layout in ("flat", "nchw") else r.dims[-1] if r.layout == "nhwc" else None
    full = (1,) * (len(r.dims) + 1 - b.ndim) + b.shape
    if layer is None or layer.cls not in (Dense, Conv2D) or b.ndim > len(full) or \
            any(d != 1 for i, d in enumerate(full) if i != axis) or full[axis] not in (1, n):
        raise r.error(f"{where}: adds {other!r:.60} of shape {b.shape}; fastnet reads an Add only as the bias of "
                      "the Dense or Conv just before it")
    bias = _bias(r, b, n, where)
    if len(layer.weights) == 2:
        layer.weights[1] = layer.weights[1] + bias
    else:
        layer.weights.append(bias)


def _activation(r, node, where, a):
    name, layer = _ACTIVATIONS[node.op_type], r.open_layer()
    if name == "softmax":
        axis = a.get("axis", 1 if r.opset < 13 else -1)
        rank = len(r.dims) + 1
        axis = axis + rank if axis < 0 else axis
        if rank == 4 and r.opset < 13:
            raise r.error(f"{where}: a Softmax before opset 13 runs over C*H*W; fastnet's runs over the channels")
        if rank == 4:
            r.image_layout(where, "nchw" if axis == 1 else "nhwc" if axis == 3 else None)
        if axis != {"nhwc": 3}.get(r.layout, 1):
            raise r.error(f"{where}: Softmax over axis {a.get('axis')}; fastnet's runs over the features or "
                          "channels")
    if layer is not None and layer.kwargs.get("activation") is None and layer.cls in (Dense, Conv2D):
        layer.kwargs["activation"] = name
        layer.raw = False
    else:
        r.add_layer(Activation, node, {"activation": name})


def _leaky_relu(r, node, where, a):
    r.add_layer(LeakyReLU, node, {"negative_slope": a.get("alpha", 0.01, "float")})


def _flatten(r, node, where, a):
    axis = a.get("axis", 1)
    if axis != 1:
        raise r.error(f"{where}: Flatten(axis={axis}); fastnet flattens all but the batch (axis=1)")
    _to_flat(r, node, where)


def _to_flat(r, node, where):
    """(batch, images) -> (batch, features) in the order of the layout at hand."""
    if r.layout == "flat":
        return
    if r.layout is None or r.layout == _USER_LAYOUT[r.fmt]:
        r.add_layer(Flatten, node, {})                   # the images as the model's user sees them
    elif r.fmt == "channels_first":
        r.add_layer(Flatten, node, {"data_format": "channels_first"})  # (H, W, C) order, as Keras 3 keeps it
    else:
        raise r.error(f"{where} flattens a channels_last model's images in (C, H, W) order; fastnet's Flatten "
                      "reads them in (H, W, C) order")
    r.dims, r.layout = [int(np.prod(r.dims))], "flat"


def _reshape(r, node, where, a):
    """A Reshape that flattens: its target (batch, -1), (0, -1), (-1, features), or computed from the chain's
    Shape (Keras), all meaning (batch, features)."""
    target = r.const(node.input[1], where)
    size = int(np.prod(r.dims))
    zero = 0 if a.get("allowzero", 0) else None
    shown = [str(d) for d in np.ravel(target)]
    first, second = (list(target) + [None, None])[:2] if target.ndim == 1 and len(target) == 2 else (None, None)
    batch = first == BATCH or (zero is not None and not isinstance(first, str) and first == 0)
    ok = (batch and not isinstance(second, str) and second in (-1, size)) or \
        (not isinstance(first, str) and first == -1 and not isinstance(second, str) and second == size)
    if not ok:
        raise r.error(f"{where}: a Reshape to ({', '.join(shown)}); fastnet reads a Reshape only as a flatten to "
                      f"(batch, {size})")
    _to_flat(r, node, where)


def _transpose(r, node, where, a):
    perm = a.get("perm", [], "ints")
    layout = r.image_layout(where)
    if perm == [0, 3, 1, 2] and layout in (None, "nhwc"):
        r.image_layout(where, "nhwc")
        r.layout, r.dims = "nchw", [r.dims[2], r.dims[0], r.dims[1]]
    elif perm == [0, 2, 3, 1] and layout in (None, "nchw"):
        r.image_layout(where, "nchw")
        r.layout, r.dims = "nhwc", [r.dims[1], r.dims[2], r.dims[0]]
    else:
        raise r.error(f"{where}: perm {perm} on {(layout or 'input').upper()} images; fastnet reads the Transposes "
                      "between NHWC and NCHW")


def _same(r, node, where, a):
    """Identity, Dropout (the identity at inference) and a Cast to float: nothing to compute."""
    if node.op_type == "Cast" and a.get("to") != 1:
        raise r.error(f"{where}: a Cast to ONNX data type {a.get('to')}; fastnet computes in float")
    if node.op_type == "Dropout" and len(node.input) > 2 and node.input[2]:
        if r.const(node.input[2], where).any():
            raise r.error(f"{where}: a Dropout in training mode")


_ARITY = {"Gemm": (2, 3), "MatMul": (2, 2), "Add": (2, 2), "Conv": (2, 3), "Reshape": (2, 2), "Dropout": (1, 3)}
_CHAIN_OPS = {"Gemm": _gemm, "MatMul": _matmul, "Add": _add, "Conv": _conv, "MaxPool": _max_pool,
              **{op: _activation for op in _ACTIVATIONS}, "LeakyRelu": _leaky_relu, "Flatten": _flatten,
              "Reshape": _reshape, "Transpose": _transpose, "Identity": _same, "Dropout": _same, "Cast": _same}


def load_onnx(path, external_data=False):
    """A Sequential from an ONNX file (see the section's comment): an uncompiled model; compile it to train on."""
    source = _untrusted.Source(path, ModelFileError)
    onnx = require_onnx("loading")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise source.error(f"{size:,} bytes; an ONNX file holds at most {MAX_FILE_BYTES:,} (bigger models keep "
                               "their weights as external data)")
        data = f.read()
    proto = onnx.ModelProto()
    with source.parsing("truncated, corrupted or not an ONNX model"):
        proto.ParseFromString(data)
    if not proto.HasField("graph"):
        raise source.error("not an ONNX model (no graph)")
    return _Reader(source, proto, path, external_data).read()
