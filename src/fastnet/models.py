"""Sequential: a stack of layers with Keras's compile / fit / evaluate / predict.

The model holds the layers, the loss and the optimizer; it runs them through an execution plan
(fastnet.plan), which it builds again whenever what the plan depends on changes: the layers (add), the loss
(compile) or the convolution algorithm (fastnet._kernels.set_conv_algo). The plan's program, made for each call's
settings (threads, ISA, algorithm) and batch size, runs a batch's forward, or a whole training step, in one call.
"""
import functools
import math
import threading

import numpy as np

from fastnet import (_check, _kernels, _model_inputs, _registry, _seed, distributed, losses, onnx_format, optimizers,
                     saving, training)
from fastnet import summary as _summary
from fastnet import metrics as metrics_module
from fastnet.callbacks import check_callbacks, check_verbose
from fastnet.layers.base import Layer, internal_shape, legacy, public_shape
from fastnet.layers.input_layer import InputLayer
from fastnet.plan import KernelConfig, Plan, final_activation


def _runs_the_plan(method):
    """A call that runs the model's plan: one at a time per model, since the plan's arrays hold one call's
    activations (two threads predicting at once read each other's: 93 % of the results were wrong); the thread
    that holds the model may call it again (a callback's predict inside fit). Data-parallel, an exception out of
    the call ends every rank (fastnet.distributed.fatal): the other ranks may be waiting for this one in a
    collective."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with self._lock:
            if not distributed.active():
                return method(self, *args, **kwargs)
            with distributed.fatal(f"{method.__name__}"):
                return method(self, *args, **kwargs)

    return call


@_registry.register_model
class Sequential:
    def __init__(self, layers=None, name=None):
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"Sequential: name must be a non-empty string, got {type(name).__name__} {name!r}")
        if layers is not None and not isinstance(layers, (list, tuple)):
            raise TypeError(f"Sequential: layers must be a list of layers, got {type(layers).__name__}")
        self.name = name or "sequential"
        self._lock = threading.RLock()  # held by each call that runs the plan (_runs_the_plan)
        self.layers = []
        self.seed, self.model_id = _seed.next_model_key()
        self._step = np.zeros(1, np.int64)  # training steps taken; keys the dropout masks
        self.epochs_trained = 0  # training epochs completed, over every fit call; keys the shuffling
        self.stop_training = False
        self.optimizer = None
        self.loss = None
        self.metrics = []  # the metric names compile received
        self._metrics = []  # their fastnet.metrics.Metric objects
        self._compiled = False
        self._loss = None
        self._plan = None
        self._names = set()
        self._input = None  # an InputLayer given before the first layer: that layer's input shape
        for layer in layers or []:
            self.add(layer)

    # ---------------------------------------------------------------- building
    def add(self, layer):
        self._add(layer, init=True)

    @classmethod
    def _restore(cls, name, layers):
        """A model of these layers with their shapes built and no weights yet: a loader reads the shapes from
        layer.weight_specs(), checks what its file claims against them, then hands the arrays to
        _set_restored_weights."""
        model = cls(name=name)
        for layer in layers:
            model._add(layer, init=False)
        return model

    def _set_restored_weights(self, weights):
        """Allocate the weights of a _restore'd model and set them (set_weights's checks apply)."""
        self._plan = None  # a plan points at the layers' weight arrays, which are made anew here
        for layer in self.layers:
            layer.init_weights(None)
        self.set_weights(weights)

    def _add(self, layer, init):
        """add(); init False: the layer's weights are not allocated (_restore)."""
        if isinstance(layer, InputLayer):
            if self.layers or self._input is not None:
                raise ValueError("Sequential: Input / InputLayer must be the model's first element, and come once; "
                                 f"this model already has {'layers' if self.layers else 'an Input'}")
            self._input = layer
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a fastnet layer, got {type(layer).__name__}")
        if layer.built:
            raise ValueError(f"layer {layer.name!r} already belongs to a model")
        layer.index = len(self.layers)
        if layer.name is None:
            layer.name = self._unique_name(layer.kind)
        elif layer.name in self._names:
            raise ValueError(f"a layer named {layer.name!r} is already in the model; layer names must be unique")
        if not self.layers and self._input is not None:
            if layer.input_shape_arg is not None and tuple(layer.input_shape_arg) != self._input.shape:
                raise ValueError(f"{layer.name}: input_shape={layer.input_shape_arg} but the model's Input has "
                                 f"shape={self._input.shape}; give the shape once")
            layer.input_shape_arg = self._input.shape
        if not self.layers:
            if layer.input_shape_arg is None:
                raise ValueError(f"the first layer needs its input shape, e.g. {type(layer).__name__}(..., "
                                 "input_shape=(784,)) or input_shape=(28, 28, 1) for images")
            fmt = layer.input_data_format()
            in_shape, in_fmt = internal_shape(layer.input_shape_arg, fmt), fmt if len(layer.input_shape_arg) == 3 else None
        else:
            in_shape, in_fmt = self.layers[-1].out_shape, self.layers[-1].out_fmt
            reads = layer.input_data_format() if in_fmt is None and len(in_shape) == 3 else None
            if reads is not None:
                in_shape, in_fmt = self._read_input_as(reads)
            if layer.input_shape_arg is not None and tuple(layer.input_shape_arg) != public_shape(in_shape, in_fmt):
                raise ValueError(f"{layer.name}: input_shape={layer.input_shape_arg} but the previous layer outputs "
                                 f"{public_shape(in_shape, in_fmt)}")
        layer.build(in_shape, in_fmt)
        if init:
            layer.init_weights(_seed.generator(self.seed, self.model_id, 0, layer.index))
        self.layers.append(layer)
        self._names.add(layer.name)
        self._compiled = False  # the loss may no longer take over the last softmax, and new weights need slots
        self._loss = None
        self._plan = None

    def _read_input_as(self, fmt):
        """The image input reached a layer with an ordering (a Conv2D, a MaxPooling2D) through layers that take
        any (Dropout, Activation): that layer says how the input reads, as in Keras. The layers before it are
        built again in that ordering (they hold no weights) and the last one's output returned."""
        shape, in_fmt = internal_shape(self.layers[0].input_shape_arg, fmt), fmt
        for before in self.layers:
            shape, in_fmt = before.build(shape, in_fmt)
        return shape, in_fmt

    def pop(self):
        """Remove the last layer and return it (Keras). The model needs compile() again before training."""
        if not self.layers:
            raise TypeError("Sequential.pop: there are no layers in the model")
        layer = self.layers.pop()
        self._names.discard(layer.name)
        self._compiled = False  # as after add: the loss may now take over another softmax, and the arena shrinks
        self._loss = None
        if self._plan is not None:
            self._plan.release()
        self._plan = None
        return layer

    @property
    def step(self):
        """Training steps taken (optimizer updates applied), over every fit call; keys the dropout masks."""
        return int(self._step[0])

    @step.setter
    def step(self, value):
        self._step[0] = _check.integer(value, "step", 0, where="Sequential")

    def _unique_name(self, kind):
        name, i = kind, 0
        while name in self._names:
            i += 1
            name = f"{kind}_{i}"
        return name

    def _require_layers(self):
        if not self.layers:
            raise ValueError("the model has no layers; add some with model.add(...)")

    @property
    def input_shape(self):
        self._require_layers()
        return self.layers[0].input_shape

    @property
    def output_shape(self):
        self._require_layers()
        return self.layers[-1].output_shape

    @property
    def data_format(self):
        self._require_layers()
        return self.layers[0].in_fmt

    # ---------------------------------------------------------------- compile
    def compile(self, loss="categorical_crossentropy", optimizer="rmsprop", metrics=None, **kwargs):
        if kwargs:
            raise TypeError(f"compile got unexpected arguments {sorted(kwargs)}")
        self._require_layers()
        losses.check(loss)
        self.loss = loss  # as given ('mse' stays 'mse', as in Keras); self._loss.name is the canonical name
        self.optimizer = optimizers.get(optimizer)
        if len(self.layers[-1].out_shape) != 1:
            raise ValueError(f"compile: {loss} needs a model output of shape (None, outputs); the model outputs "
                             f"{self.output_shape}: add Flatten() and Dense(outputs)")
        self._metrics = metrics_module.get(metrics, self.layers[-1].out_shape[0])
        self.metrics = [m.name for m in self._metrics]
        self._loss = losses.get(self.loss, final_activation(self.layers))
        self._build_arena()
        self._compiled = True
        self._plan = None

    def _build_arena(self):
        """All parameters (and their gradients) in one flat array, so one fused kernel updates them all."""
        sizes = [p.size for layer in self.layers for p in layer.params]
        self._params = np.empty(sum(sizes), np.float32)
        self._grads = np.zeros(sum(sizes), np.float32)
        self._arena_ranges = []  # per layer, its (start, stop) in the arena
        offset = 0
        for layer in self.layers:
            params, grads = [], []
            start = offset
            for p in layer.params:
                view = self._params[offset:offset + p.size].reshape(p.shape)
                view[...] = p
                params.append(view)
                grads.append(self._grads[offset:offset + p.size].reshape(p.shape))
                offset += p.size
            layer.params, layer.grads = params, grads
            self._arena_ranges.append((start, offset))
        self.optimizer.build(self._params.size)

    def _grad_slices(self, plan):
        """{plan step index: (start, stop) of its layers' gradients in the arena}, for steps with parameters."""
        slices = {}
        for i, step in enumerate(plan.steps):
            spans = [self._arena_ranges[layer.index] for layer in step.layers if layer.params]
            if spans:
                slices[i] = (spans[0][0], spans[-1][1])
        return slices

    def _require_compiled(self, what):
        if not self._compiled:
            raise RuntimeError(f"{what} needs a compiled model: call model.compile(loss=..., optimizer=...) first"
                               + (" (the model changed since the last compile)" if self.optimizer else ""))

    @staticmethod
    def _batch_size(batch_size, what):
        if batch_size is None:
            return 32
        return _check.integer(batch_size, "batch_size", 1, where=what)

    @staticmethod
    def _share(n):
        """(lo, hi): the rows of n (a batch, or a call's samples) this process computes: a data-parallel rank's
        share, else all of them."""
        return distributed.share(n) if distributed.active() else (0, n)

    def _reducer(self, plan):
        """What sums a data-parallel step's gradients over the ranks, step by step (None in one process)."""
        return distributed.StepReducer(self._grads, self._grad_slices(plan)) if distributed.active() else None

    @staticmethod
    def _rank_batch(batch_size, arrays, what):
        """The batch one process computes at a time; data-parallel, after checking every rank holds the same
        arrays, a rank's share of batch_size (each rank then takes its share of the samples)."""
        if not distributed.active():
            return batch_size
        distributed.check_same_data(arrays, what)
        return distributed.local_batch(batch_size)

    # ---------------------------------------------------------------- computation
    def plan(self):
        """The execution plan for the model as it is now (built again after add, compile or a change of the
        convolution algorithm)."""
        return self._plan_for(_kernels.get_conv_algo())

    def _plan_for(self, algo):
        self._require_layers()
        if self._plan is None or self._plan.conv_algo != algo:
            if self._plan is not None:
                self._plan.release()
            self._plan = Plan(self.layers, by_loss=self._loss.takes_over if self._loss else None, conv_algo=algo)
        return self._plan

    def _begin_call(self, batch_size, training=False):
        """The plan, its program made for batches of up to batch_size rows and for this call's settings."""
        config = KernelConfig.current()
        plan = self._plan_for(config.conv_algo)
        plan.begin_call(batch_size, self.seed, training, config)
        return plan

    def _train_step(self, plan, xb, yb, wb, tb, reducer=None, batch=None, row0=0):
        """One optimizer step (fastnet.training.train_step)."""
        return training.train_step(self, plan, xb, yb, wb, tb, reducer, batch, row0)

    def _metric_sums(self, out, probs, truth):
        return np.array([m.batch_sum(out, probs, truth) for m in self._metrics], np.float64)

    def _evaluate_arrays(self, plan, x, y, w, t, batch_size):
        """(mean loss, metric means) with dropout off; each Dense kernel is packed once for all the batches.
        Data-parallel: each rank evaluates its share of the samples (batch_size is then a rank's batch)."""
        n, nt = x.shape[0], plan.program.n_threads
        lo, hi = self._share(n)
        x, y, t, w = x[lo:hi], y[lo:hi], t[lo:hi], None if w is None else w[lo:hi]
        total, sums = 0.0, np.zeros(len(self._metrics))
        with plan.packed(x.shape[0] > batch_size):
            for start in range(0, x.shape[0], batch_size):
                rows = slice(start, start + batch_size)
                xb, yb = x[rows], y[rows]
                out = plan.forward(xb, False)
                probs, loss, _ = plan.loss_arrays(xb.shape[0], out.shape[1])
                loss, probs = self._loss.forward(out, yb, None if w is None else w[rows], probs, loss, n_threads=nt)
                total += float(loss.sum(dtype=np.float64))
                sums += self._metric_sums(out, probs, t[rows])
        if distributed.active():
            totals = distributed.sum_floats([total, *sums], "evaluation")
            total, sums = float(totals[0]), np.asarray(totals[1:], np.float64)
        return total / n, sums / n

    def _logs(self, loss, means, prefix=""):
        logs = {prefix + "loss": loss}
        for metric, value in zip(self._metrics, means):
            logs.update({prefix + key: float(value) for key in metric.keys})
        return logs

    # ---------------------------------------------------------------- public API
    @_runs_the_plan
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0, nb_epoch=None, sample_weight=None, class_weight=None,
            **kwargs):
        if kwargs:
            raise TypeError(f"fit got unexpected arguments {sorted(kwargs)}")
        if nb_epoch is not None:
            legacy("fit(nb_epoch=...) is the Keras 1 spelling; use epochs=")
            epochs = nb_epoch
        self._require_compiled("fit")
        epochs = _check.integer(epochs, "epochs", 0, where="fit")
        initial_epoch = _check.integer(initial_epoch, "initial_epoch", 0, epochs, "fit")
        verbose = check_verbose(verbose, "fit")
        shuffle = _check.boolean(shuffle, "shuffle", "fit")
        validation_split = _check.real(validation_split, "validation_split", 0.0, 1.0, hi_open=True, where="fit")
        callbacks = check_callbacks(callbacks)
        X = _model_inputs.prepare_x(self, x, "fit")
        Y, W, T = _model_inputs.targets(self, y, X.shape[0], sample_weight, class_weight, "fit")
        if validation_data is None and validation_split:
            split = int(X.shape[0] * (1.0 - validation_split))  # the last samples, before shuffling (Keras)
            if split < 1 or split == X.shape[0]:
                raise ValueError(f"fit: validation_split={validation_split} of {X.shape[0]} samples leaves "
                                 f"{split} for training and {X.shape[0] - split} for validation; each needs at least 1")
            X, Y, T, Xv, Yv, Tv = X[:split], Y[:split], T[:split], X[split:], Y[split:], T[split:]
            W, Wv = (None, None) if W is None else (W[:split], W[split:])
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("fit: validation_data must be a pair (x_val, y_val) or a triple (x_val, y_val, "
                                 "sample_weight_val), got "
                                 f"{type(validation_data).__name__}"
                                 + (f" of length {len(validation_data)}" if isinstance(validation_data, (tuple, list))
                                    else ""))
            Xv = _model_inputs.prepare_x(self, validation_data[0], "fit(validation_data)")
            Yv, Wv, Tv = _model_inputs.targets(self, validation_data[1], Xv.shape[0],
                                               validation_data[2] if len(validation_data) == 3 else None, None,
                                               "fit(validation_data)")
        else:
            Xv = Yv = Wv = Tv = None
        bs = min(self._batch_size(batch_size, "fit"), X.shape[0])  # larger than the data: one batch of it (Keras)
        rows = self._rank_batch(bs, (X, Y, W, Xv, Yv, Wv), "fit")  # the rows of a batch this process computes
        if distributed.active():
            distributed.broadcast_model(self)
        return training.fit_loop(self, (X, Y, W, T), None if Xv is None else (Xv, Yv, Wv, Tv), bs, rows, epochs,
                                 initial_epoch, shuffle, verbose, callbacks, distributed.is_primary())

    @_runs_the_plan
    def evaluate(self, x, y, batch_size=None, verbose=0, return_dict=False, sample_weight=None):
        """[loss, *metrics] (the loss alone without metrics), with dropout off; return_dict: {'loss': ...,
        'accuracy': ...} (Keras). sample_weight weighs the loss as in fit."""
        self._require_compiled("evaluate")
        verbose = check_verbose(verbose, "evaluate")
        as_dict = _check.boolean(return_dict, "return_dict", "evaluate")
        X = _model_inputs.prepare_x(self, x, "evaluate")
        Y, W, T = _model_inputs.targets(self, y, X.shape[0], sample_weight, None, "evaluate")
        bs = self._rank_batch(self._batch_size(batch_size, "evaluate"), (X, Y, W), "evaluate")
        plan = self._begin_call(min(bs, X.shape[0]))
        loss, means = self._evaluate_arrays(plan, X, Y, W, T, bs)
        if verbose and distributed.is_primary():
            print(f"{X.shape[0]} samples" + "".join(f" - {k}: {v:.4f}" for k, v in self._results(loss, means, True).items()))
        return self._results(loss, means, as_dict)

    def _results(self, loss, means, as_dict):
        """Keras's return value: the loss and each metric, as a dict or a list (the loss alone without metrics)."""
        if as_dict:
            return {"loss": loss, **{m.keys[0]: float(v) for m, v in zip(self._metrics, means)}}
        return [loss, *map(float, means)] if self._metrics else loss

    @_runs_the_plan
    def predict(self, x, batch_size=None, verbose=0):
        """The model's outputs (probabilities after a softmax or sigmoid), with dropout off. Data-parallel: each rank
        computes its share of the rows, and every rank returns all of them."""
        check_verbose(verbose, "predict")
        X = _model_inputs.prepare_x(self, x, "predict")
        bs = self._batch_size(batch_size, "predict")
        by_loss = self._loss.takes_over if self._loss else None  # the final activation the plan leaves out
        if X.shape[0] <= bs and not distributed.active():  # one batch (a server's one image): one call into C
            out = self._begin_call(X.shape[0]).predict(X, None, by_loss)
        else:
            out = self._predict_batches(X, self._rank_batch(bs, (X,), "predict"), by_loss)
        if self.layers[-1].out_fmt == "channels_first" and out.ndim == 4:
            out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
        return out

    def _predict_batches(self, X, bs, by_loss):
        """predict's batches of bs rows, each Dense kernel packed once for them; data-parallel, each rank's share
        of the rows, then all of them gathered on every rank."""
        out = np.empty((X.shape[0],) + self.layers[-1].out_shape, np.float32)
        lo, hi = self._share(X.shape[0])
        plan = self._begin_call(min(bs, max(hi - lo, 1)))
        with plan.packed(hi - lo > bs):
            for start in range(lo, hi, bs):
                plan.predict(X[start:min(start + bs, hi)], out[start:min(start + bs, hi)], by_loss)
        if distributed.active():
            distributed.gather_rows(out, "predict")
        return out

    def predict_classes(self, x, batch_size=None, verbose=0):
        return self.predict(x, batch_size).argmax(axis=-1)

    def predict_proba(self, x, batch_size=None, verbose=0):
        return self.predict(x, batch_size)

    @_runs_the_plan
    def train_on_batch(self, x, y, return_dict=False, sample_weight=None, class_weight=None):
        """One optimizer step on this batch; returns [loss, *metrics] (or the loss; return_dict: a dict) before the
        update."""
        self._require_compiled("train_on_batch")
        as_dict = _check.boolean(return_dict, "return_dict", "train_on_batch")  # checked before the step is taken
        X = _model_inputs.prepare_x(self, x, "train_on_batch")
        Y, W, T = _model_inputs.targets(self, y, X.shape[0], sample_weight, class_weight, "train_on_batch")
        plan = self._begin_call(self._rank_batch(X.shape[0], (X, Y, W), "train_on_batch"), training=True)
        lo, hi = self._share(X.shape[0])
        loss_sum, sums = self._train_step(plan, X[lo:hi], Y[lo:hi], None if W is None else W[lo:hi], T[lo:hi],
                                          self._reducer(plan), X.shape[0], lo)
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"train_on_batch: the loss became {loss_sum / X.shape[0]}")
        return self._results(loss_sum / X.shape[0], sums / X.shape[0], as_dict)

    def test_on_batch(self, x, y, return_dict=False, sample_weight=None):
        return self.evaluate(x, y, batch_size=max(np.shape(x)[0] if np.ndim(x) else 1, 1), return_dict=return_dict,
                             sample_weight=sample_weight)

    # ---------------------------------------------------------------- weights
    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    @property
    def weights(self):
        return [p for layer in self.layers for p in layer.params]

    def get_weights(self):
        """Copies of every weight in Keras layouts: Dense (in, out), Conv2D (rows, cols, in, out), biases (out,)."""
        return [p.copy() for p in self.weights]

    def set_weights(self, weights):
        ours = self.weights
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"set_weights: expected a list of arrays (as get_weights returns), got "
                            f"{type(weights).__name__}")
        weights = list(weights)
        if len(weights) != len(ours):
            raise ValueError(f"set_weights: the model has {len(ours)} weight arrays, got {len(weights)}")
        names = [f"{layer.name}/{n}" for layer in self.layers for n in layer.weight_names]
        for name, mine, new in zip(names, ours, weights):
            new = np.asarray(new)
            if new.dtype == object or not (np.issubdtype(new.dtype, np.number) or new.dtype == bool):
                raise TypeError(f"set_weights: {name} must be numeric, got dtype {new.dtype}")
            if new.shape != mine.shape:
                raise ValueError(f"set_weights: {name} has shape {mine.shape}, got {new.shape}")
            if not np.isfinite(new).all():
                raise ValueError(f"set_weights: {name} contains NaN or inf")
        for mine, new in zip(ours, weights):
            np.copyto(mine, np.asarray(new, dtype=np.float32))

    # ---------------------------------------------------------------- description and files
    def get_config(self):
        return {"name": self.name,
                "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()} for layer in self.layers]}

    def summary(self, print_fn=print, line_length=65):
        print_fn(_summary.summary_text(self, line_length))

    def save(self, filepath, include_optimizer=True):
        """The model to filepath: .keras (Keras 3's format) or .npz (fastnet's own; exact resume)."""
        saving.save_model(self, _check.path(filepath, "filepath", "save"),
                          _check.boolean(include_optimizer, "include_optimizer", "save"))

    def export(self, filepath, format="onnx", verbose=None):
        """The inference graph as an ONNX file (Keras 3's model.export(filepath, format='onnx')); see
        fastnet.onnx_format. Needs the onnx package."""
        onnx_format.export(self, filepath, format)

    def save_weights(self, filepath):
        """The weights (and optimizer state once compiled) as Keras 3's .weights.h5."""
        saving.save_weights(self, _check.path(filepath, "filepath", "save_weights"))

    def load_weights(self, filepath):
        """Weights from a .weights.h5 file of a Keras or fastnet model of the same architecture."""
        saving.load_weights(self, _check.path(filepath, "filepath", "load_weights"))


# Keras's spelling: keras.models.load_model.
load_model = saving.load_model
