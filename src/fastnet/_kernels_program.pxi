# Included by _kernels.pyx (one extension module; the C declarations come from _fastnet_c.pxd there).

# ---- the plan run by C (csrc/program.h) ----
#
# fastnet.plan compiles a model's layers into steps; each step describes its op as a dict (what it computes, its
# shapes, settings and arrays). Program checks those dicts once, when the plan is built for a batch capacity, and
# from then on a run checks only what comes from outside: the batch, its targets and its row count.

from libc.stdint cimport uintptr_t
from libc.stdlib cimport calloc, free

_OP_KINDS = {"dense": FN_OP_DENSE, "conv2d": FN_OP_CONV2D, "conv2d_maxpool": FN_OP_CONV2D_MAXPOOL,
             "maxpool2d": FN_OP_MAXPOOL2D, "activation": FN_OP_ACTIVATION, "dropout": FN_OP_DROPOUT,
             "to_channels_first": FN_OP_TO_CHANNELS_FIRST, "identity": FN_OP_IDENTITY}
_OP_KEYS = {"kind", "in_shape", "out_shape", "precision", "act", "post", "alpha", "relu_backward", "masks_relu_input",
            "dropout", "rate", "seed", "layer", "strides", "padding", "pool_size", "w", "b", "dw", "db", "y",
            "post_y", "argmax", "keep", "dz", "dx"}
_UPDATES = {"sgd": FN_UPDATE_SGD, "rmsprop": FN_UPDATE_RMSPROP, "adadelta": FN_UPDATE_ADADELTA,
            "adam": FN_UPDATE_ADAM}
_PROGRAM_LOSSES = {"softmax_xent": FN_LOSS_SOFTMAX_XENT, "squared": FN_LOSS_SQUARED, "absolute": FN_LOSS_ABSOLUTE,
                   "sigmoid_xent": FN_LOSS_SIGMOID_XENT}


cdef int _post_code(post) except -100:
    if post is None:
        return FN_POST_NONE
    if post == "softmax":
        return FN_POST_SOFTMAX
    return _activation(post)


cdef class Program:
    """A plan's ops with their arrays, for batches of up to `capacity` rows; see csrc/program.h."""

    cdef fn_op *ops
    cdef readonly int n_ops
    cdef readonly int64_t capacity
    cdef readonly int n_threads
    cdef readonly object isa
    cdef fn_loss loss
    cdef fn_update update
    cdef bint has_loss, has_update
    cdef readonly bint inference_only  # some op lacks an array a training run needs: no training, no backward
    cdef object _arrays      # every array a pointer in ops, loss or update points into: kept alive here
    cdef dict _by_address    # data address -> (array, per-sample shape): what a run returns as a view
    cdef object _in_shapes, _out_shapes, _packed, _memos
    cdef object _ws
    cdef object _last_input  # train_step's x, which the output is when every op is a view

    def __cinit__(self):
        self.ops = NULL

    def __dealloc__(self):
        free(self.ops)

    def __init__(self, ops, capacity, isa=None, conv_algo=None, n_threads=None):
        self.capacity = _int(capacity, "capacity", 1, INT_MAX)
        self.n_threads = _threads(n_threads)
        self.isa = _ISA_NAMES[_isa_code(isa)]
        ops = list(ops)
        if not ops:
            raise ValueError("Program needs at least one op")
        self.ops = <fn_op *>calloc(len(ops), sizeof(fn_op))
        if self.ops == NULL:
            raise MemoryError()
        self.n_ops = len(ops)
        self._arrays, self._by_address, self._in_shapes, self._out_shapes = [], {}, [], []
        self._packed, self._memos = [None] * self.n_ops, []
        for i, spec in enumerate(ops):
            self._set_op(i, spec, isa, conv_algo)
        for i in range(1, self.n_ops):
            if self._in_shapes[i] != self._out_shapes[i - 1]:
                raise ValueError(f"op {i} takes {self._in_shapes[i]} but op {i - 1} gives {self._out_shapes[i - 1]}")
        self._ws = np.empty(max(fn_program_workspace(self.ops, self.n_ops, self.capacity, self.n_threads,
                                                     not self.inference_only), 1), np.float32)

    cdef _set_op(self, int i, dict spec, isa, conv_algo):
        unknown = set(spec) - _OP_KEYS
        if unknown:
            raise ValueError(f"op {i}: unknown keys {sorted(unknown)}")
        cdef fn_op *op = &self.ops[i]
        kind = spec["kind"]
        if kind not in _OP_KINDS:
            raise ValueError(f"op {i}: unknown kind {kind!r}; expected one of {sorted(_OP_KINDS)}")
        op.kind = _OP_KINDS[kind]
        in_shape, out_shape = tuple(spec["in_shape"]), tuple(spec["out_shape"])
        self._in_shapes.append(in_shape)
        self._out_shapes.append(out_shape)
        op.in_row, op.out_row = _prod(*in_shape), _prod(*out_shape)
        precision = spec.get("precision")
        op.isa, op.precision = _isa_code(isa), _precision_code(precision)
        op.algo = _algo_code(conv_algo)
        op.act = _fused_activation(spec.get("act", "linear"), f"op {i}")
        op.post = _post_code(spec.get("post"))
        op.alpha = _real(spec.get("alpha", 0.0), "alpha")
        op.channels = out_shape[len(out_shape) - 1]  # (this module does not wrap negative indices)
        op.relu_backward = bool(spec.get("relu_backward", False))
        op.masks_relu_input = bool(spec.get("masks_relu_input", False))
        op.dropout = bool(spec.get("dropout", False))
        op.rate = _rate(spec.get("rate", 0.0))
        op.seed, op.layer = _key(spec.get("seed", 0), spec.get("layer", 0))
        where = f"op {i} ({kind})"
        if op.kind in (FN_OP_CONV2D, FN_OP_CONV2D_MAXPOOL):
            op.conv = _conv_shape((1,) + in_shape, spec["w"].shape, spec["strides"], spec["padding"])
            if op.kind == FN_OP_CONV2D_MAXPOOL and not fn_conv2d_forward_maxpool_fits(&op.conv, op.algo, op.isa, op.precision):
                raise ValueError(f"{where}: conv2d_forward_maxpool does not run this convolution")
            memo = fn_conv2d_memo_size(&op.conv, op.algo, op.isa, op.precision)
            if memo > 0:  # what inference runs keep from the weights (program.h), the program's own memory
                self._memos.append(np.zeros(memo, np.float32))
                op.memo.mem, op.memo.made = _mp(self._memos[len(self._memos) - 1]), 0
        elif op.kind == FN_OP_MAXPOOL2D:
            H, W, C = in_shape
            PH, PW = _ints(spec["pool_size"], "pool_size", 2)
            SH, SW = _ints(spec["strides"], "strides", 2)
            OH, PT = conv_geometry(H, PH, SH, spec["padding"])
            OW, PL = conv_geometry(W, PW, SW, spec["padding"])
            op.conv.H, op.conv.W, op.conv.C, op.conv.OH, op.conv.OW = H, W, C, OH, OW
            op.pool = [PH, PW, SH, SW, PT, PL]
        elif op.kind == FN_OP_TO_CHANNELS_FIRST:
            op.conv.H, op.conv.W, op.conv.C = in_shape
        # Weights, and their gradients in the model's arena.
        rows = self.capacity
        if op.kind == FN_OP_DENSE:
            w_shape = (op.in_row, op.out_row)
        elif op.kind in (FN_OP_CONV2D, FN_OP_CONV2D_MAXPOOL):
            w_shape = (op.conv.KH, op.conv.KW, op.conv.C, op.conv.OC)
        else:
            w_shape = None
        if w_shape is not None:
            op.w = <const float *>self._keep(spec["w"], where + " w", w_shape, np.float32, False)
            if spec.get("b") is not None:
                op.b = <const float *>self._keep(spec["b"], where + " b", (w_shape[len(w_shape) - 1],), np.float32, False)
            if spec.get("dw") is None:  # a model not compiled yet, or a program for inference
                self.inference_only = True
            else:
                op.dw = <float *>self._keep(spec["dw"], where + " dw", w_shape, np.float32, True)
                if op.b != NULL:
                    op.db = <float *>self._keep(spec["db"], where + " db", (w_shape[len(w_shape) - 1],), np.float32, True)
        # The arrays the op writes, for `capacity` rows.
        kernel_out = out_shape
        if op.kind == FN_OP_CONV2D_MAXPOOL:
            kernel_out = (op.conv.OH // 2, op.conv.OW // 2, op.conv.OC)
        for name, shape, dtype, needed in (
                ("y", kernel_out, np.float32, op.kind not in (FN_OP_IDENTITY, FN_OP_DROPOUT)),
                ("post_y", out_shape, np.float32, op.post != FN_POST_NONE and op.kind != FN_OP_ACTIVATION),
                ("argmax", out_shape, np.int32, op.kind in (FN_OP_MAXPOOL2D, FN_OP_CONV2D_MAXPOOL)),
                ("keep", out_shape, np.uint8, False),
                ("dz", out_shape, np.float32, False),
                ("dx", in_shape, np.float32, False)):
            a = spec.get(name)
            if a is None:
                if needed:
                    raise ValueError(f"{where} needs its {name} array")
                continue
            p = self._keep(a, f"{where} {name}", (rows,) + tuple(shape), dtype, True)
            if name == "y":
                op.y = <float *>p
            elif name == "post_y":
                op.post_y = <float *>p
            elif name == "argmax":
                op.argmax = <int32_t *>p
            elif name == "keep":
                op.keep = <uint8_t *>p
            elif name == "dz":
                op.dz = <float *>p
            else:
                op.dx = <float *>p
            if name in ("y", "post_y", "dx", "dz"):
                self._by_address[<uintptr_t>p] = (a, shape)
        if op.kind == FN_OP_ACTIVATION and op.post == FN_POST_NONE:
            raise ValueError(f"{where} needs its activation (post)")
        if op.kind in (FN_OP_DENSE, FN_OP_CONV2D) and op.act == FN_ACT_RELU and op.post != FN_POST_NONE:
            raise ValueError(f"{where}: a kernel that applies a ReLU has no activation after it")
        if op.dropout and not (op.kind == FN_OP_DENSE and op.act == FN_ACT_RELU and op.relu_backward):
            raise ValueError(f"{where}: only a dense op with its ReLU's backward fuses a Dropout")
        if i == 0 and op.dx != NULL:
            raise ValueError(f"{where}: the first op has no data gradient")
        # What only a training run needs; without it, the program runs inference alone.
        if op.kind == FN_OP_DROPOUT and (op.y == NULL or op.keep == NULL):
            self.inference_only = True
        if op.kind in (FN_OP_DENSE, FN_OP_CONV2D) and (op.relu_backward or op.post != FN_POST_NONE) and op.dz == NULL:
            self.inference_only = True
        if i > 0 and op.dx == NULL and op.kind != FN_OP_IDENTITY:
            self.inference_only = True
        if op.masks_relu_input and op.kind not in (FN_OP_CONV2D, FN_OP_CONV2D_MAXPOOL, FN_OP_MAXPOOL2D):
            raise ValueError(f"{where} cannot apply the previous ReLU's backward")

    cdef void *_keep(self, a, name, shape, dtype, bint writable) except NULL:
        _array(a, name, None, dtype)
        _expect(a, name, shape)
        if writable:
            _writable(a, name)
        self._arrays.append(a)
        return _data(a, writable, np.dtype(dtype).itemsize)

    # ---- inference: weights packed once for many batches ----
    def pack(self):
        """Each dense op's weights packed for the GEMM, used by runs that do not train until unpack()."""
        cdef fn_op *op
        cdef float *pp
        for i in range(self.n_ops):
            op = &self.ops[i]
            if op.kind != FN_OP_DENSE or op.packed != NULL:
                continue
            if self._packed[i] is None:
                self._packed[i] = np.empty(max(fn_gemm_packed_b_size(op.in_row, op.out_row), 1), np.float32)
            pp = _mp(self._packed[i])
            with nogil:
                fn_gemm_pack(pp, op.w, op.out_row, 0, op.in_row, op.out_row, op.isa, op.precision, self.n_threads)
            op.packed = pp

    def unpack(self):
        """Forget the packed weights (the weights are about to change), and let go of their memory."""
        for i in range(self.n_ops):
            self.ops[i].packed = NULL
            self._packed[i] = None

    # ---- runs ----
    cdef fn_run _run(self, int64_t n, bint training, step, row0):
        cdef fn_run run
        run.n, run.training, run.n_threads = n, training, self.n_threads
        run.model_id, run.step, run.row0 = 0, step, row0
        run.ws = _mp(self._ws)
        return run

    cdef int64_t _rows(self, x, shape, what) except -1:
        """The rows of x, checked to be a batch of `shape` samples the program's arrays hold."""
        _array(x, what)
        if x.shape[1:] != shape:
            raise ValueError(f"{what} has shape {x.shape}; expected (rows,) + {shape}")
        if x.shape[0] > self.capacity:
            raise ValueError(f"{what} has {x.shape[0]} rows; this program runs at most {self.capacity}")
        return x.shape[0]

    cdef _view(self, const float *p, int64_t n, passed, shape):
        """The array (its first n rows) a run's result pointer p points into: an op's, or `passed` (a run's own
        argument, which views pass on)."""
        if p == NULL:
            return None
        if passed is not None and p == _cp(passed):
            a, own = passed, passed.shape[1:]
        else:
            a, own = self._by_address[<uintptr_t>p]
        return a[:n] if own == shape else a[:n].reshape((n,) + shape)

    def forward(self, x, bint training=False, model_id=0, step=0, row0=0, lo=0, hi=None):
        """The output of ops [lo, hi) (all by default) for input rows x: a view of an op's array, valid until the
        next run (or x itself, when every op is a view). training: dropout on (a program that trains)."""
        if training and self.inference_only:
            raise RuntimeError("this program runs inference only: it was built without the arrays of a backward")
        cdef int a = _int(lo, "lo", 0, self.n_ops - 1), b = self.n_ops if hi is None else _int(hi, "hi", a + 1, self.n_ops)
        cdef int64_t n = self._rows(x, self._in_shapes[a], "x")
        cdef fn_run run = self._run(n, training, step, row0)
        run.model_id = model_id
        cdef const float *px = _cp(x)
        cdef const float *out
        cdef int st
        with nogil:
            out = fn_program_forward(self.ops, a, b, px, &run, &st)
        _status(st, "forward")
        return self._view(out, n, x, self._out_shapes[b - 1])

    def predict(self, x, out=None, final=None):
        """Inference of rows x into out (rows, *output shape; None: a new array), ending with `final`: the softmax
        or sigmoid a loss takes over from the last op ('softmax', 'sigmoid'; None: none). Returns out. One call
        into C, the GIL released once."""
        cdef int64_t n = self._rows(x, self._in_shapes[0], "x")
        shape = self._out_shapes[self.n_ops - 1]
        if final is not None and (final not in ("softmax", "sigmoid") or len(shape) != 1):
            raise ValueError(f"final must be None, or 'softmax' or 'sigmoid' on flat outputs; got {final!r} on "
                             f"{shape}")
        out = _output(out, "out", (n,) + shape, (x,))
        cdef fn_run run = self._run(n, False, 0, 0)
        cdef int post = _post_code(final)
        cdef const float *px = _cp(x)
        cdef float *po = _mp(out)
        cdef int st
        with nogil:
            st = fn_program_predict(self.ops, self.n_ops, px, &run, post, po)
        _status(st, "predict")
        return out

    def backward(self, dy, int64_t batch=0, lo=0, hi=None):
        """dL/d(input of op lo) from dy = dL/d(output of op hi-1), writing the weight gradients of ops [lo, hi)
        (None where op lo is the first). The ops' saved state is the last training forward's."""
        if self.inference_only:
            raise RuntimeError("this program runs inference only: it was built without the arrays of a backward")
        cdef int a = _int(lo, "lo", 0, self.n_ops - 1), b = self.n_ops if hi is None else _int(hi, "hi", a + 1, self.n_ops)
        cdef int64_t n = self._rows(dy, self._out_shapes[b - 1], "dy")
        cdef fn_run run = self._run(n, True, 0, 0)
        cdef const float *pdy = _cp(dy)
        cdef const float *dx
        cdef int st
        with nogil:
            dx = fn_program_backward(self.ops, a, b, pdy, &run, &st)
        _status(st, "backward")
        return self._view(dx, n, dy, self._in_shapes[a])

    def set_loss(self, kind, probs, loss, dout):
        """The loss train_step computes (a fastnet.losses kernel: 'softmax_xent', 'squared', 'absolute',
        'sigmoid_xent'), into the plan's arrays of `capacity` rows."""
        if kind not in _PROGRAM_LOSSES:
            raise ValueError(f"unknown loss kind {kind!r}; expected one of {sorted(_PROGRAM_LOSSES)}")
        shape = self._out_shapes[self.n_ops - 1]
        if len(shape) != 1:
            raise ValueError(f"a loss needs flat outputs; the program's are {shape}")
        self.loss.kind, self.loss.classes = _PROGRAM_LOSSES[kind], shape[0]
        self.loss.probs = <float *>self._keep(probs, "probs", (self.capacity,) + shape, np.float32, True)
        self.loss.loss = <float *>self._keep(loss, "loss", (self.capacity,), np.float32, True)
        self.loss.dout = <float *>self._keep(dout, "dout", (self.capacity,) + shape, np.float32, True)
        self.has_loss = True

    def set_update(self, kind, params, grads, slots, counters):
        """The optimizer's update train_step applies: params and grads (the arenas the ops' weights and gradients
        are views of), the optimizer's slots, and the 1-element int64 counters it advances."""
        if kind not in _UPDATES:
            raise ValueError(f"unknown update {kind!r}; expected one of {sorted(_UPDATES)}")
        slots, counters = tuple(slots), _counters(counters)
        if len(slots) > 2 or len(counters) > 2:
            raise ValueError("an update has at most two slots and two counters")
        self.update.kind, self.update.size = _UPDATES[kind], params.size
        self.update.p = self.update.s0 = self.update.s1 = NULL
        self.update.counters[0] = self.update.counters[1] = NULL
        if params.size:
            self.update.p = <float *>self._keep(params, "params", (params.size,), np.float32, True)
            self.update.g = <const float *>self._keep(grads, "grads", (params.size,), np.float32, False)
            for k, s in enumerate(slots):
                p = <float *>self._keep(s, f"slot {k}", (params.size,), np.float32, True)
                if k == 0:
                    self.update.s0 = p
                else:
                    self.update.s1 = p
            _disjoint([("params", params), ("grads", grads)] + [(f"slot {k}", s) for k, s in enumerate(slots)])
        for k, c in enumerate(counters):
            self._arrays.append(c)
            self.update.counters[k] = <int64_t *>_data(c, True, 8)
        self.has_update = True

    def train_step(self, x, targets, weights, lr, hyper=(0.0, 0.0, 0.0), t=0, model_id=0, step=0):
        """Forward, loss, backward and (when every per-sample loss is finite) the update, in one call: returns
        whether the update ran. The per-sample losses, the probabilities and the output are the program's
        arrays (loss_arrays, forward's output)."""
        if not (self.has_loss and self.has_update) or self.inference_only:
            raise RuntimeError("train_step needs set_loss and set_update first, and memory for weight gradients")
        cdef int64_t n = self._rows(x, self._in_shapes[0], "x")
        _array(targets, "targets", 2)
        _expect(targets, "targets", (n, self.loss.classes))
        if weights is not None:
            _array(weights, "weights", 1)
            _expect(weights, "weights", (n,))
        cdef fn_run run = self._run(n, True, step, 0)
        run.model_id = model_id
        h0, h1, h2 = hyper
        self.update.lr, self.update.h0, self.update.h1, self.update.h2 = _real(lr, "lr"), h0, h1, h2
        self.update.t = t
        cdef const float *px = _cp(x)
        cdef const float *pt = _cp(targets)
        cdef const float *pw = NULL if weights is None else _cp(weights)
        cdef int st, finite
        with nogil:
            st = fn_program_train_step(self.ops, self.n_ops, &self.loss, &self.update, px, pt, pw, &run, &finite)
        self._last_input = x
        _status(st, "train_step")
        return bool(finite)

    def output(self, int64_t n):
        """The last run's output rows (what forward returned)."""
        return self._view(self.ops[self.n_ops - 1].out, n, self._last_input, self._out_shapes[self.n_ops - 1])

    @property
    def nbytes(self):
        return (self._ws.nbytes + sum(p.nbytes for p in self._packed if p is not None)
                + sum(m.nbytes for m in self._memos))
