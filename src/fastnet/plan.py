"""The execution plan: a model's layers compiled into steps, run by C as one program.

A plan is a tuple of steps. Each step is one kernel call (or a view) covering one or more layers, and says what
it fuses:

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

Each step describes its op for the C program (csrc/program.h): what it computes, its settings, the weights and
gradients it reads and writes, and the arrays it owns. The plan owns those arrays (sized for one batch capacity;
a smaller batch uses the first rows of each) and the program that runs them: a forward, a backward or a whole
training step is one call into C. A model builds a new plan whenever its structure, its loss or the convolution
algorithm changes; layers never see the plan, the model or each other.
"""
import contextlib
from typing import NamedTuple

import numpy as np

from fastnet import _kernels
from fastnet.layers.base import by_class
from fastnet.layers.convolutional import Conv2D
from fastnet.layers.core import Activation, Dense, Dropout, Flatten
from fastnet.layers.pooling import MaxPooling2D


class KernelConfig(NamedTuple):
    """What every kernel of a call runs with, resolved once per call from the user's settings."""

    n_threads: int
    isa: str
    conv_algo: str

    @classmethod
    def current(cls):
        settings = _kernels.settings()
        config = _CONFIGS.get(settings)  # one instance per combination: made once, not per call
        if config is None:
            config = _CONFIGS[settings] = cls(*settings)
        return config


_CONFIGS = {}


class Step:
    """One kernel call (or a view) covering `layers`, in model order."""

    op = None                   # its name (dense, conv2d, conv2d_maxpool, maxpool2d, activation, ...)
    takes_relu_backward = False  # after a ReLU, this step can apply the ReLU's backward itself

    def __init__(self, layers, activation="linear", post_activation=None, precision="float32", relu_backward=False,
                 dropout=False):
        self.layers = tuple(layers)
        self.activation = activation            # what a dense/conv kernel applies itself: 'linear' or 'relu'
        self.post_activation = post_activation  # applied after the kernel: 'sigmoid', 'tanh', 'softmax' or None
        self.precision = precision              # a dense/conv step's product operands: 'float32' or 'bfloat16'
        self.relu_backward = relu_backward      # the backward applies the ReLU's backward itself
        self.masks_relu_input = False           # the backward also applies the ReLU backward of the step before
        self.dropout = dropout                  # a dense step's last layer is a Dropout after its ReLU

    @property
    def layer(self):
        return self.layers[0]

    @property
    def in_shape(self):
        return self.layers[0].in_shape

    @property
    def out_shape(self):
        return self.layers[-1].out_shape

    def describe(self):
        names = " + ".join(layer.name for layer in self.layers)
        extra = [f"activation={self.activation}"] if self.op in ("dense", "conv2d") else []
        extra += [f"{self.precision} products"] if self.precision != "float32" else []
        extra += [f"then {self.post_activation}"] if self.post_activation else []
        extra += ["applies its ReLU's backward"] if self.relu_backward else []
        extra += ["masks its input gradient by the previous ReLU"] if self.masks_relu_input else []
        extra += ["drops out while training"] if self.dropout else []
        return f"{self.op}({names})" + (f" [{', '.join(extra)}]" if extra else "")

    def spec(self, mem, seed):
        """This step's op for the C program (_kernels.Program). mem.out(name, shape, dtype) is an array of the
        plan's, of `capacity` rows of that shape; mem.grad(...) one that only training needs (None for a program
        that runs inference); mem.first: this is the first step (no data gradient). seed: the model's (a Dropout
        layer may have its own)."""
        return {"kind": self.op, "in_shape": self.in_shape, "out_shape": self.out_shape,
                "dx": None if mem.first else mem.grad("dx", self.in_shape)}


class _KernelStep(Step):
    """A Dense or Conv2D kernel, what it fuses, and what it applies after."""

    def spec(self, mem, seed):
        layer, out = self.layer, self.layer.out_shape
        grads = layer.grads or [None, None]
        spec = {**super().spec(mem, seed), "precision": self.precision, "act": self.activation,
                "post": self.post_activation, "relu_backward": self.relu_backward, "dropout": self.dropout,
                "w": layer.params[0], "dw": grads[0], "y": mem.out("y", out),
                "post_y": mem.out("post_y", out) if self.post_activation else None,
                "dz": mem.grad("dz", out) if self.relu_backward or self.post_activation else None}
        if layer.use_bias:
            spec.update(b=layer.params[1], db=grads[1])
        if self.dropout:
            spec.update(_dropout_key(self.layers[-1], seed))
        return spec


class DenseStep(_KernelStep):
    op = "dense"


class ConvStep(_KernelStep):
    op = "conv2d"
    takes_relu_backward = True  # masks its data gradient by its own input

    def spec(self, mem, seed):
        return {**super().spec(mem, seed), "strides": self.layer.strides, "padding": self.layer.padding,
                "masks_relu_input": self.masks_relu_input}


class ConvPoolStep(Step):
    op = "conv2d_maxpool"
    takes_relu_backward = True

    def spec(self, mem, seed):
        conv = self.layer
        grads = conv.grads or [None, None]
        spec = {**super().spec(mem, seed), "precision": self.precision, "w": conv.params[0],
                "dw": grads[0], "strides": conv.strides, "padding": conv.padding,
                "masks_relu_input": self.masks_relu_input, "y": mem.out("y", self.out_shape),
                "argmax": mem.out("argmax", self.out_shape, np.int32)}
        if conv.use_bias:
            spec.update(b=conv.params[1], db=grads[1])
        return spec


class PoolStep(Step):
    op = "maxpool2d"
    takes_relu_backward = True  # its forward output is positive exactly where the ReLU passed the gradient

    def spec(self, mem, seed):
        pool = self.layer
        return {**super().spec(mem, seed), "pool_size": pool.pool_size, "strides": pool.strides,
                "padding": pool.padding, "masks_relu_input": self.masks_relu_input,
                "y": mem.out("y", self.out_shape), "argmax": mem.out("argmax", self.out_shape, np.int32)}


class ActivationStep(Step):
    op = "activation"

    def spec(self, mem, seed):
        alpha = self.layer.alpha
        return {**super().spec(mem, seed), "post": self.layer.activation, "alpha": 0.0 if alpha is None else alpha,
                "y": mem.out("y", self.out_shape)}


class DropoutStep(Step):
    op = "dropout"

    def spec(self, mem, seed):
        return {**super().spec(mem, seed), **_dropout_key(self.layer, seed),
                "y": mem.grad("y", self.out_shape), "keep": mem.grad("keep", self.out_shape, np.uint8)}


class FlattenStep(Step):
    """A view, or a copy in (C, H, W) order when channels_first images flatten as Keras 1 did."""

    op = "flatten"

    def spec(self, mem, seed):
        if not self.layer.reorders:
            return {**super().spec(mem, seed), "kind": "identity", "dx": None}
        return {**super().spec(mem, seed), "kind": "to_channels_first", "y": mem.out("y", self.out_shape)}


class IdentityStep(Step):
    op = "identity"

    def spec(self, mem, seed):
        return {**super().spec(mem, seed), "dx": None}


def _dropout_key(layer, seed):
    """The key of a Dropout layer's masks (with the model's id and the step, which each run brings)."""
    return {"rate": layer.rate, "seed": seed if layer.seed is None else layer.seed, "layer": layer.index}


def final_activation(layers):
    """The activation a model with flat outputs ends in, if a loss could compute it from the logits
    ('softmax' or 'sigmoid'; cross-entropy takes over a softmax, binary cross-entropy a sigmoid), else None."""
    last = layers[-1]
    if not isinstance(last, (Activation, Dense, Conv2D)) or len(last.out_shape) != 1:
        return None
    return last.activation if last.activation in ("softmax", "sigmoid") else None


def _is_relu(layer):
    return isinstance(layer, Activation) and layer.activation == "relu"


def _kernel_step(layers, i, by_loss, conv_algo, fuse):
    """A Dense or Conv2D, with the ReLU after it, a 2x2 max-pool after that (conv) or a Dropout (dense)."""
    layer, final = layers[i], i == len(layers) - 1
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
        return ConvPoolStep(covered + [nxt], "relu", precision=precision)
    dense = isinstance(layer, Dense)
    dropout = fuse and dense and act == "relu" and isinstance(nxt, Dropout)
    covered += [nxt] if dropout else []
    fused = "relu" if act == "relu" else "linear"
    return (DenseStep if dense else ConvStep)(covered, fused, post, precision, relu_backward=act == "relu",
                                              dropout=dropout)


def _activation_step(layers, i, by_loss, conv_algo, fuse):
    layer = layers[i]
    idle = layer.activation == "linear" or (i == len(layers) - 1 and layer.activation == by_loss)
    return (IdentityStep if idle else ActivationStep)([layer])


def _one_layer(step_class):
    return lambda layers, i, by_loss, conv_algo, fuse: step_class([layers[i]])


# The step a layer starts, by the layer's class (or the nearest base class listed).
_STARTS = {Dense: _kernel_step, Conv2D: _kernel_step, Activation: _activation_step,
           MaxPooling2D: _one_layer(PoolStep), Dropout: _one_layer(DropoutStep), Flatten: _one_layer(FlattenStep)}


def compile_steps(layers, by_loss, conv_algo, fuse=True):
    """The steps for a layer list; by_loss: the final activation the loss computes from the logits (None, or
    final_activation(layers)), which no step then runs;
    fuse=False: no step covers two layers or applies another's backward (the same arithmetic, for tests)."""
    steps, i = [], 0
    while i < len(layers):
        start = by_class(_STARTS, layers[i])
        if start is None:
            raise TypeError(f"{layers[i].name}: no kernel runs layers of type {type(layers[i]).__name__}")
        steps.append(start(layers, i, by_loss, conv_algo, fuse))
        i += len(steps[-1].layers)
    # A ReLU right before a max-pool or a convolution: that step applies the ReLU's backward.
    for prev, step in zip(steps, steps[1:]):
        if fuse and prev.relu_backward and step.takes_relu_backward:
            prev.relu_backward, step.masks_relu_input = False, True
    return tuple(steps)


class Buffers:
    """A plan's arrays, for one batch capacity at a time: a batch of n <= capacity uses the first n rows of each
    array (a contiguous view), so every batch size up to the capacity shares one set of memory. reserve() changes
    the capacity, releasing the old arrays first."""

    def __init__(self):
        self.capacity = 0
        self._arrays = {}
        self._views = {}  # (key, n) -> the first n rows of the array: made once per batch size, not per batch

    def reserve(self, n, shrink=False):
        """True when the capacity changed (the old arrays are gone)."""
        if n > self.capacity or (shrink and n < self.capacity):
            self._views.clear()
            self._arrays.clear()
            self.capacity = n
            return True
        return False

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


class _Memory:
    """The arrays step i of a plan owns (Step.spec's mem)."""

    def __init__(self, buffers, i, training, first):
        self.buffers, self.i, self.training, self.first = buffers, i, training, first

    def out(self, name, shape, dtype=np.float32):
        return self.buffers.get((self.i, name), shape, self.buffers.capacity, dtype)

    def grad(self, name, shape, dtype=np.float32):
        return self.out(name, shape, dtype) if self.training else None


class Plan:
    """A model's layers as compiled steps, and the C program that runs them, in memory of its own."""

    def __init__(self, layers, by_loss, conv_algo, fuse=True):
        self.steps = compile_steps(layers, by_loss, conv_algo, fuse)
        self.conv_algo = conv_algo
        self.buffers = Buffers()
        self.program = None
        self._built_for = None  # (capacity, config, seed) the program was made with
        self._bound = None  # what bind_training last gave the program

    def begin_call(self, batch_size, seed, training=False, config=None):
        """The program for calls of up to batch_size rows with these kernel settings, that trains if asked to
        (made again when any of that changed; a smaller batch size shrinks the memory; a program that trains also
        runs inference). seed: the model's, which keys the dropout masks (with its id and step, given per run).
        The layers' weight arrays must stay those the plan was built with: a model builds a new plan when it
        replaces them (compile, a restored model's weights)."""
        config = config or KernelConfig.current()
        key = (batch_size, config, seed)  # the arrays are sized for batch_size (a smaller one shrinks them)
        program = self.program
        if program is not None and self._built_for == key and not (training and program.inference_only):
            return program  # as the last call made it: the common case, first
        if self.buffers.reserve(batch_size, shrink=True):
            self.program = None  # its arrays are gone
        trains = self.program is not None and not self.program.inference_only
        if self.program is None or self._built_for != key or (training and not trains):
            self.program = None  # the old program lets go of its arrays first
            specs = [step.spec(_Memory(self.buffers, i, training, i == 0), seed)
                     for i, step in enumerate(self.steps)]
            self.program = _kernels.Program(specs, self.buffers.capacity, isa=config.isa,
                                            conv_algo=config.conv_algo, n_threads=config.n_threads)
            self._built_for = key
        return self.program

    def bind_training(self, loss, update, params, grads, slots, counters):
        """What the program's train_step computes after the backward: the loss kernel `loss` (fastnet.losses'
        Loss.kernel) and the optimizer's update (`update`: Optimizer.kernel) of params from grads, with the
        optimizer's slots and the counters it advances. Bound once per program and set of arrays."""
        key = (self.program, loss, update, id(params), id(grads), *map(id, slots), *map(id, counters))
        if self._bound != key:
            classes = self.steps[-1].out_shape[0]
            self.program.set_loss(loss, *self.loss_arrays(self.buffers.capacity, classes))
            self.program.set_update(update, params, grads, slots, counters)
            self._bound = key

    def train_step(self, x, targets, weights, lr, hyper, t, model_id, step):
        """One training step in one call into C (forward, loss, backward and, when the loss is finite, the update
        that bind_training set, with learning rate lr, the update's other hyperparameters and Adam's step t);
        returns whether the update ran. model_id, step: the model's, which key the dropout masks."""
        return self.program.train_step(x, targets, weights, lr, hyper, t, model_id, step)

    def packed(self, pack=True):
        """Within (a with block): inference runs with every Dense kernel packed once (worth it for a call of many
        batches; the weights must not change meanwhile). pack False: nothing is packed."""
        return self._packed_weights() if pack else contextlib.nullcontext()

    @contextlib.contextmanager
    def _packed_weights(self):
        self.program.pack()
        try:
            yield
        finally:
            self.program.unpack()

    def release(self):
        self.buffers.reserve(0, shrink=True)
        self.program = None
        self._built_for = None

    @property
    def nbytes(self):
        return self.buffers.nbytes + (self.program.nbytes if self.program is not None else 0)

    def loss_arrays(self, n, classes):
        """(probabilities, per-sample losses, dL/d(output)) for a batch of n."""
        b = self.buffers
        return b.get("probs", (classes,), n), b.get("loss", (), n), b.get("dout", (classes,), n)

    def array(self, i, name, n):
        """Step i's array `name` (its output 'y', a dropout's mask 'keep', ...), its first n rows."""
        return self.buffers._arrays[(i, name)][:n]

    def __repr__(self):
        return "Plan(\n" + "".join(f"  {s.describe()}\n" for s in self.steps) + ")"

    def forward(self, x, training, model_id=0, step=0, row0=0):
        """The output rows for input rows x (a view of the plan's memory, valid until the next run); model_id,
        step and row0 key the dropout masks of a training forward."""
        return self._program_for(x.shape[0], training).forward(x, training, model_id, step, row0)

    def predict(self, x, out=None, final=None):
        """Inference of rows x into out (None: a new array, returned), ending with the final softmax or sigmoid a
        loss took over (final), in one call into C."""
        return self._program_for(x.shape[0], False).predict(x, out, final)

    def _program_for(self, rows, training):
        """The program, made again for more rows than its capacity with the last call's settings."""
        if rows > self.buffers.capacity:
            _, config, seed = self._built_for
            self.begin_call(rows, seed, training, config)
        return self.program

    def backward(self, dy, done=None):
        """Writes every layer's weight gradients from dy = dL/d(plan output); the first step skips its dx.
        done(i), if given, is called as soon as step i's gradients are final (a data-parallel run starts their
        allreduce there, while the earlier steps' backward runs)."""
        if done is None:
            self.program.backward(dy)
            return
        for i in range(len(self.steps) - 1, -1, -1):
            dy = self.program.backward(dy, lo=i, hi=i + 1) if dy is not None else None
            done(i)
