"""The execution plan: a model's layers compiled into the kernel calls that run them.

A plan is an immutable tuple of steps. Each step is one kernel call (or a view) covering one or more layers,
and says what it fuses:

    dense / conv2d    Dense or Conv2D, with the ReLU of an Activation('relu') after it (or its own) applied by
                      the kernel; other activations (sigmoid, tanh, softmax) run after it. A Dense + ReLU also
                      covers a Dropout right after it: while training, the kernel drops out each block of its
                      output as it is made, and the backward reads the mask off that output (no mask is kept).
    conv2d_maxpool    Conv2D + ReLU + MaxPooling2D(2x2, stride 2) in one kernel that never stores the
                      convolution (Winograd shapes with an even output).
    maxpool2d, activation, dropout, flatten
    identity          a layer with nothing to do: Activation('linear'), or the final softmax or sigmoid when the
                      loss takes it over (cross-entropy from the logits).

A ReLU's backward is applied where it is cheapest: by the next step when that is a max-pool (its forward output
is positive exactly where the ReLU passed the gradient) or a convolution (it masks its data gradient by its own
input), else by the step that applied the ReLU. Each step records which (relu_backward, masks_relu_input).

The plan owns the memory it runs in: activation buffers sized for one batch capacity (a smaller batch uses the
first rows of each), and the kernels' workspace. A model builds a new plan whenever its structure, its loss or
the convolution algorithm changes; layers never see the plan, the model or each other.
"""
import dataclasses
from dataclasses import dataclass

import numpy as np

from fastnet import _kernels, _seed
from fastnet.layers.base import activation_backward, activation_forward
from fastnet.layers.convolutional import Conv2D
from fastnet.layers.core import Activation, Dense, Dropout, Flatten
from fastnet.layers.pooling import MaxPooling2D


@dataclass(frozen=True)
class StepContext:
    """What one call of the model runs with, resolved once per call: threads, GEMM path, convolution algorithm,
    the plan's workspace, the random key (seed, model, training step), the global batch row of this process's
    first row (nonzero only on a data-parallel rank) and, for inference, packed weights."""

    n_threads: int
    isa: str
    conv_algo: str
    workspace: object
    seed: int
    model_id: int
    step: int = 0
    row0: int = 0  # dropout masks are keyed by a row's place in the global batch, so every rank draws its share
    packed: tuple = ()  # per plan step: its Dense kernel packed once for many batches (inference), or None

    def __post_init__(self):
        gemm = {"n_threads": self.n_threads, "isa": self.isa, "workspace": self.workspace}
        object.__setattr__(self, "gemm", gemm)  # keyword arguments of the GEMM-based kernels
        object.__setattr__(self, "conv", {**gemm, "conv_algo": self.conv_algo})
        object.__setattr__(self, "_variants", {})  # with_precision's contexts, made once per call

    def with_precision(self, precision):
        """This context for a step whose products take `precision` operands (the kernels' precision=)."""
        if precision == "float32":
            return self
        ctx = self._variants.get(precision)
        if ctx is None:
            ctx = self._copy()
            object.__setattr__(ctx, "gemm", {**self.gemm, "precision": precision})
            object.__setattr__(ctx, "conv", {**self.conv, "precision": precision})
            self._variants[precision] = ctx
        return ctx

    def _copy(self):
        """A shallow copy: dataclasses.replace would run __init__ again and copy.copy goes through __reduce_ex__,
        10x and 5x slower, once per batch."""
        ctx = object.__new__(StepContext)
        ctx.__dict__.update(self.__dict__)
        return ctx

    def at_step(self, step, row0=0):
        ctx = self._copy()
        object.__setattr__(ctx, "step", step)
        object.__setattr__(ctx, "row0", row0)
        object.__setattr__(ctx, "_variants", {})
        return ctx

    def dropout_stream(self, layer_index):
        """The random stream of a Dropout layer's mask at this training step."""
        return _seed.key64(self.model_id, self.step, layer_index)


@dataclass(frozen=True)
class Step:
    op: str                      # dense, conv2d, conv2d_maxpool, maxpool2d, activation, dropout, flatten, identity
    layers: tuple                # the layers it covers, in model order
    activation: str = "linear"   # what a dense/conv kernel applies itself: 'linear' or 'relu'
    post_activation: str = None  # applied after a dense/conv kernel: 'sigmoid', 'tanh', 'softmax' or None
    precision: str = "float32"   # a dense/conv step's product operands: 'float32' or 'bfloat16' (mixed_bfloat16)
    relu_backward: bool = False  # the backward applies the ReLU's backward itself (no later step does)
    masks_relu_input: bool = False  # the backward also applies the ReLU backward of the step before
    dropout: bool = False        # a dense step's last layer is a Dropout after its ReLU, applied by the kernel

    @property
    def layer(self):
        return self.layers[0]

    def describe(self):
        names = " + ".join(layer.name for layer in self.layers)
        extra = [f"activation={self.activation}"] if self.op in ("dense", "conv2d") else []
        extra += [f"{self.precision} products"] if self.precision != "float32" else []
        extra += [f"then {self.post_activation}"] if self.post_activation else []
        extra += ["applies its ReLU's backward"] if self.relu_backward else []
        extra += ["masks its input gradient by the previous ReLU"] if self.masks_relu_input else []
        extra += ["drops out while training"] if self.dropout else []
        return f"{self.op}({names})" + (f" [{', '.join(extra)}]" if extra else "")


def final_activation(layers):
    """The activation a model with flat outputs ends in, if a loss could compute it from the logits
    ('softmax' or 'sigmoid'; cross-entropy takes over a softmax, binary cross-entropy a sigmoid), else None."""
    last = layers[-1]
    if not isinstance(last, (Activation, Dense, Conv2D)) or len(last.out_shape) != 1:
        return None
    return last.activation if last.activation in ("softmax", "sigmoid") else None


def _is_relu(layer):
    return isinstance(layer, Activation) and layer.activation == "relu"


def compile_steps(layers, by_loss, conv_algo, fuse=True):
    """The steps for a layer list; by_loss: the final activation the loss computes from the logits (None, or
    final_activation(layers)), which no step then runs;
    fuse=False: no step covers two layers or applies another's backward (the same arithmetic, for tests)."""
    steps, i = [], 0
    while i < len(layers):
        layer, final = layers[i], i == len(layers) - 1
        if isinstance(layer, (Dense, Conv2D)):
            act, covered = layer.activation, [layer]
            if fuse and act == "linear" and i + 1 < len(layers) and _is_relu(layers[i + 1]):
                act, covered = "relu", [layer, layers[i + 1]]
            post = None if act in ("linear", "relu") else act
            precision = layer.compute_dtype  # 'bfloat16' under mixed_bfloat16: the step's products only
            if final and post is not None and post == by_loss:
                post = None
            nxt = layers[i + len(covered)] if i + len(covered) < len(layers) else None
            if (fuse and act == "relu" and isinstance(layer, Conv2D) and isinstance(nxt, MaxPooling2D) and nxt.is_2x2_tiling()
                    and layer.can_forward_maxpool(conv_algo)):
                steps.append(Step("conv2d_maxpool", tuple(covered) + (nxt,), "relu", precision=precision))
                i += len(covered) + 1
                continue
            op = "dense" if isinstance(layer, Dense) else "conv2d"
            dropout = fuse and op == "dense" and act == "relu" and isinstance(nxt, Dropout)
            covered += [nxt] if dropout else []
            steps.append(Step(op, tuple(covered), "relu" if act == "relu" else "linear", post, precision,
                              relu_backward=act == "relu", dropout=dropout))
            i += len(covered)
        elif isinstance(layer, Activation):
            idle = layer.activation == "linear" or (final and layer.activation == by_loss)
            steps.append(Step("identity" if idle else "activation", (layer,)))
            i += 1
        elif isinstance(layer, MaxPooling2D):
            steps.append(Step("maxpool2d", (layer,)))
            i += 1
        elif isinstance(layer, Dropout):
            steps.append(Step("dropout", (layer,)))
            i += 1
        elif isinstance(layer, Flatten):
            steps.append(Step("flatten", (layer,)))
            i += 1
        else:
            raise TypeError(f"{layer.name}: no kernel runs layers of type {type(layer).__name__}")
    # A ReLU right before a max-pool or a convolution: that step applies the ReLU's backward.
    for k in range(1, len(steps)):
        prev, step = steps[k - 1], steps[k]
        if fuse and prev.relu_backward and step.op in ("maxpool2d", "conv2d", "conv2d_maxpool"):
            steps[k - 1] = dataclasses.replace(prev, relu_backward=False)
            steps[k] = dataclasses.replace(step, masks_relu_input=True)
    return tuple(steps)


class Buffers:
    """A plan's activation arrays, for one batch capacity at a time: a batch of n <= capacity uses the first n
    rows of each array (a contiguous view), so every batch size up to the capacity shares one set of memory.
    reserve() changes the capacity, releasing the old arrays first."""

    def __init__(self):
        self.capacity = 0
        self._arrays = {}
        self._views = {}  # (key, n) -> the first n rows of the array: made once per batch size, not per batch

    def reserve(self, n, shrink=False):
        if n > self.capacity or (shrink and n < self.capacity):
            self._views.clear()
            self._arrays.clear()
            self.capacity = n

    def get(self, key, tail, n, dtype=np.float32):
        view = self._views.get((key, n))
        if view is None:
            arr = self._arrays.get(key)
            if arr is None:
                arr = self._arrays[key] = np.empty((self.capacity,) + tuple(tail), dtype=dtype)
            view = self._views[(key, n)] = arr[:n]
        return view

    @property
    def nbytes(self):
        return sum(a.nbytes for a in self._arrays.values())


class Plan:
    """Runs a model's layers as compiled steps, forward and in reverse, in memory of its own."""

    def __init__(self, layers, by_loss, conv_algo, fuse=True):
        self.steps = compile_steps(layers, by_loss, conv_algo, fuse)
        self.conv_algo = conv_algo
        self.buffers = Buffers()
        self.workspace = _kernels.Workspace()
        self._saved = [None] * len(self.steps)  # per step, what its backward needs from the last forward

    def begin_call(self, batch_size):
        """Memory for a call of this batch size (shrinking from a larger one, releasing the workspace)."""
        if batch_size != self.buffers.capacity:
            self.workspace.release()
        self.buffers.reserve(batch_size, shrink=True)
        self._saved = [None] * len(self.steps)

    def release(self):
        self.buffers.reserve(0, shrink=True)
        self.workspace.release()
        self._saved = [None] * len(self.steps)

    @property
    def nbytes(self):
        return self.buffers.nbytes + self.workspace.nbytes

    def packed_weights(self, ctx):
        """Each Dense kernel packed once for a call that runs many batches with fixed weights (inference)."""
        return tuple(_kernels.PackedWeights(s.layer.params[0], isa=ctx.isa, n_threads=ctx.n_threads,
                                            precision=s.precision)
                     if s.op == "dense" else None for s in self.steps)

    def loss_arrays(self, n, classes):
        """(probabilities, per-sample losses, dL/d(output)) for a batch of n."""
        b = self.buffers
        return b.get("probs", (classes,), n), b.get("loss", (), n), b.get("dout", (classes,), n)

    def __repr__(self):
        return "Plan(\n" + "".join(f"  {s.describe()}\n" for s in self.steps) + ")"

    # ---- forward ----
    def forward(self, ctx, x, training):
        n = x.shape[0]
        self.buffers.reserve(n)
        for i, step in enumerate(self.steps):
            x = self._forward(i, step, ctx, x, n, training)
        if not training:  # nothing to keep for a backward: hold no view of the caller's input past the call
            self._saved = [None] * len(self.steps)
        return x

    def _buf(self, i, name, tail, n, dtype=np.float32):
        return self.buffers.get((i, name), tail, n, dtype)

    def _forward(self, i, step, ctx, x, n, training):
        layer, op = step.layer, step.op
        ctx = ctx.with_precision(step.precision)
        if op in ("dense", "conv2d"):
            y = self._buf(i, "y", layer.out_shape, n)
            if op == "dense":
                drop = step.layers[-1].mask_key(ctx, y.shape[1]) if step.dropout and training else None
                layer.forward(ctx, x, y, step.activation, packed=ctx.packed[i] if ctx.packed else None, dropout=drop)
            else:
                layer.forward(ctx, x, y, step.activation)
            if step.post_activation:
                y = activation_forward(ctx, step.post_activation, y, self._buf(i, "a", layer.out_shape, n))
            self._saved[i] = (x, y)
            return y
        if op == "conv2d_maxpool":
            pool = step.layers[-1]
            y = self._buf(i, "y", pool.out_shape, n)
            argmax = self._buf(i, "argmax", pool.out_shape, n, np.int32)
            layer.forward_maxpool(ctx, x, y, argmax)
            self._saved[i] = (x, y, argmax)
            return y
        if op == "maxpool2d":
            y = self._buf(i, "y", layer.out_shape, n)
            argmax = self._buf(i, "argmax", layer.out_shape, n, np.int32)
            layer.forward(ctx, x, y, argmax)
            self._saved[i] = (x.shape, y, argmax)
            return y
        if op == "activation":
            y = layer.forward(ctx, x, self._buf(i, "y", layer.out_shape, n))
            self._saved[i] = y
            return y
        if op == "dropout":
            if not training or layer.rate == 0.0:
                self._saved[i] = None
                return x
            keep = self._buf(i, "keep", layer.out_shape, n, np.uint8)
            self._saved[i] = keep
            return layer.forward(ctx, x, self._buf(i, "y", layer.out_shape, n), keep)
        if op == "flatten":
            return layer.forward(ctx, x, self._buf(i, "y", layer.out_shape, n) if layer.reorders else None)
        return x  # identity

    # ---- backward ----
    def backward(self, ctx, dy, done=None):
        """Writes every layer's weight gradients from dy = dL/d(plan output); the first step skips its dx.
        done(i), if given, is called as soon as step i's gradients are final (a data-parallel run starts their
        allreduce there, while the earlier steps' backward runs)."""
        for i in range(len(self.steps) - 1, -1, -1):
            dy = self._backward(i, self.steps[i], ctx, dy, dy.shape[0], need_dx=i > 0)
            if done is not None:
                done(i)

    def _backward(self, i, step, ctx, dy, n, need_dx):
        layer, op, saved = step.layer, step.op, self._saved[i]
        ctx = ctx.with_precision(step.precision)
        if op in ("dense", "conv2d"):
            x, y = saved
            dz = dy
            if step.relu_backward and step.dropout:
                dz = step.layers[-1].backward_through_relu(ctx, dy, y, self._buf(i, "dz", layer.out_shape, n))
            elif step.relu_backward:
                dz = activation_backward(ctx, "relu", dy, y, self._buf(i, "dz", layer.out_shape, n))
            elif step.post_activation:
                dz = activation_backward(ctx, step.post_activation, dy, y, self._buf(i, "dz", layer.out_shape, n))
            dx = self._buf(i, "dx", layer.in_shape, n) if need_dx else None
            if op == "dense":
                return layer.backward(ctx, dz, x, dx)
            return layer.backward(ctx, dz, x, dx, relu_input=step.masks_relu_input)
        if op == "conv2d_maxpool":
            x, y, argmax = saved
            dx = self._buf(i, "dx", layer.in_shape, n) if need_dx else None
            return layer.backward(ctx, dy, x, dx, relu_input=step.masks_relu_input, pooled=(argmax, y))
        if not need_dx:
            return None
        if op == "maxpool2d":
            _, y, argmax = saved
            return layer.backward(ctx, dy, argmax, self._buf(i, "dx", layer.in_shape, n),
                                  relu_output=y if step.masks_relu_input else None)
        if op == "activation":
            return layer.backward(ctx, dy, saved, self._buf(i, "dx", layer.in_shape, n))
        if op == "dropout":
            return dy if saved is None else layer.backward(ctx, dy, saved, self._buf(i, "dx", layer.in_shape, n))
        if op == "flatten":
            return layer.backward(ctx, dy, self._buf(i, "dx", layer.in_shape, n) if layer.reorders else None)
        return dy  # identity
