"""A property-based fuzz of the kernel API (fastnet._kernels).

Each example draws a kernel call with random sizes (1 to a few), strides, paddings, algorithms, instruction sets,
thread counts and output arrays (fresh, given, or the input itself where a kernel works in place), then, half the
time, makes one argument bad: an empty dimension, a wrong dtype, a non-contiguous or wrongly shaped array, a
read-only output or one that partly overlaps an input, or a bad scalar. A good call must match the float64
reference (tests/reference.py); a bad one must raise ValueError or TypeError. No call may end the process: the
sanitized build runs this file too (.ci/sanitize), where a stray read or write aborts.

FASTNET_FUZZ_EXAMPLES sets the examples per kernel (default 150); FASTNET_FUZZ_RANDOM=1 draws new examples each
run instead of the fixed, reproducible sequence.
"""
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference as ref
from fastnet import _kernels
from helpers import assert_close

f32 = np.float32
EXAMPLES = int(os.environ.get("FASTNET_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("FASTNET_FUZZ_RANDOM") != "1",
                suppress_health_check=list(HealthCheck), database=None, report_multiple_bugs=False)

THREADS = [None, 1, 2, 3, 7]
BAD_THREADS = [0, -1, 1.5, "2", True]
ACTS = ["linear", "relu", "sigmoid", "tanh"]


class Call:
    """One kernel call under construction: keyword arguments drawn at random, then at most one made bad."""

    def __init__(self, data):
        self.data = data
        self.rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="array seed"))
        self.args = {}
        self.bad = None  # what was made bad, or None for a good call

    def draw(self, strategy, label=None):
        return self.data.draw(strategy, label=label)

    def size(self, lo=1, hi=5):
        return self.draw(st.integers(lo, hi))

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def array(self, shape, dtype=f32):
        return self.rng.standard_normal(shape).astype(dtype)

    def common(self, gemm=False, conv=False):
        self.args["n_threads"] = self.pick(THREADS)
        if gemm or conv:
            self.args["isa"] = self.pick(list(_kernels.supported_isas()))
        if conv:
            self.args["conv_algo"] = self.pick(["auto", "im2col", "winograd"])

    def spoil(self, arrays=(), outputs=(), scalars=None, in_place=()):
        """Half the time, make one argument bad. arrays/outputs: names of array arguments; scalars: {name: bad
        values}; in_place: (output, input) pairs where the output may be exactly the input (so a partial overlap
        is the bad case)."""
        scalars = dict(scalars or {})
        scalars.setdefault("n_threads", BAD_THREADS)
        if not self.draw(st.booleans(), label="spoil"):
            return
        kinds = ["scalar"] + ["array"] * bool(arrays) + ["output"] * bool(outputs) + ["overlap"] * bool(in_place)
        kind = self.pick(kinds)
        if kind == "scalar":
            name = self.pick(sorted(scalars))
            self.args[name] = self.pick(scalars[name])
            self.bad = f"{name}={self.args[name]!r}"
        elif kind == "array":
            name = self.pick(list(arrays))
            self.args[name], how = self.spoil_array(self.args[name])
            self.bad = f"{name}: {how}"
        elif kind == "output":
            name = self.pick(list(outputs))
            out = self.args.get(name)
            how = self.pick(["wrong shape", "read-only", "bad array"])
            if how == "bad array" and out is not None:
                self.args[name], how = self.spoil_array(out)
            else:
                shape, dtype = self.output_shapes[name]
                if how == "read-only":
                    out = np.zeros(shape, dtype)
                    out.flags.writeable = False
                else:
                    out = np.zeros(tuple(d + (i == 0) for i, d in enumerate(shape)), dtype)
                    how = "wrong shape"
                self.args[name] = out
            self.bad = f"{name}: {how}"
        else:
            out_name, in_name = self.pick(list(in_place))
            x = self.args[in_name]
            if x.size < 2:
                return
            buf = np.empty(x.size + 1, x.dtype)
            buf[:x.size] = x.reshape(-1)
            self.args[in_name] = buf[:x.size].reshape(x.shape)
            self.args[out_name] = buf[1:].reshape(x.shape)
            self.bad = f"{out_name} partly overlaps {in_name}"

    def spoil_array(self, a):
        if not isinstance(a, np.ndarray):
            return a, "unchanged"
        hows = ["empty dimension", "wrong dtype", "a list"] + ["non-contiguous"] * any(d >= 2 for d in a.shape)
        how = self.pick(hows)
        if how == "empty dimension":
            axis = self.size(0, a.ndim - 1) if a.ndim else 0
            shape = tuple(0 if i == axis else d for i, d in enumerate(a.shape)) if a.ndim else (0,)
            return np.zeros(shape, a.dtype), how
        if how == "wrong dtype":
            return a.astype({np.dtype(f32): np.float64, np.dtype(np.int32): np.int64}.get(a.dtype, f32)), how
        if how == "a list":
            return a.tolist(), how
        axis = self.pick([i for i, d in enumerate(a.shape) if d >= 2])
        view = np.repeat(a, 2, axis=axis)[(slice(None),) * axis + (slice(None, None, 2),)]
        assert not view.flags.c_contiguous
        return view, how

    def output(self, name, shape, dtype=f32, required=False):
        """An output argument: absent (the kernel allocates it) or a given array."""
        self.output_shapes = getattr(self, "output_shapes", {})
        self.output_shapes[name] = (tuple(shape), dtype)
        if required or self.draw(st.booleans(), label=f"give {name}"):
            self.args[name] = np.full(shape, np.nan, dtype) if dtype == f32 else np.zeros(shape, dtype)

    def run(self, kernel, check):
        if self.bad is not None:
            with pytest.raises((ValueError, TypeError)):
                kernel(**self.args)
            return
        check(kernel(**self.args))


def close(actual, expected, name, rel=1e-4):
    expected = np.asarray(expected, np.float64)
    scale = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    assert_close(actual, expected, rtol=rel, atol=rel * scale, name=name)


BAD_PADDING = ["full", None, 1]
BAD_PAIRS = [(0, 1), (1,), "11", (1, 2**40), (1.5, 1), None]


def _conv_case(c, maxpool=False):
    n, h, w, ch, oc = c.size(1, 3), c.size(1, 8), c.size(1, 8), c.size(1, 4), c.size(1, 5)
    kh, kw = (3, 3) if maxpool else (c.size(1, 4), c.size(1, 4))
    strides = (1, 1) if maxpool else (c.size(1, 3), c.size(1, 3))
    padding = c.pick(["valid", "same"])
    c.common(conv=True)
    if maxpool:
        c.args["conv_algo"] = "winograd"
    return n, h, w, ch, oc, kh, kw, strides, padding


def _fits(size, kernel, padding):
    return padding == "same" or size >= kernel


# ---- one fuzz test per kernel ----

@FUZZ
@given(st.data())
def test_fuzz_gemm(data):
    c = Call(data)
    m, n, k = c.size(1, 9), c.size(1, 9), c.size(1, 9)
    ta, tb = c.draw(st.booleans()), c.draw(st.booleans())
    alpha, beta = c.pick([1.0, 0.5, -2.0]), c.pick([0.0, 1.0, 0.25])
    c.args.update(a=c.array((k, m) if ta else (m, k)), b=c.array((n, k) if tb else (k, n)), trans_a=ta, trans_b=tb,
                  alpha=alpha, beta=beta)
    c.common(gemm=True)
    c.output("out", (m, n), required=beta != 0.0)
    if beta != 0.0:
        c.args["out"] = c.array((m, n))
    before = c.args.get("out", np.zeros((m, n), f32)).copy()
    c.spoil(arrays=("a", "b"), outputs=("out",), scalars={"alpha": ["a", 1e39, None], "isa": ["sse9", 3]})
    c.run(_kernels.gemm, lambda out: close(out, ref.gemm(c.args["a"], c.args["b"], ta, tb, alpha, beta, before),
                                           "gemm"))


@FUZZ
@given(st.data())
def test_fuzz_dense(data):
    c = Call(data)
    n, i, o = c.size(1, 6), c.size(1, 9), c.size(1, 9)
    act = c.pick(["linear", "relu"])
    c.args.update(x=c.array((n, i)), w=c.array((i, o)), b=c.pick([None, c.array((o,))]), activation=act)
    c.common(gemm=True)
    if c.draw(st.booleans()):
        c.args["packed"] = _kernels.PackedWeights(c.args["w"], isa=c.args["isa"])
    c.output("out", (n, o))
    c.spoil(arrays=("x", "w") + (("b",) if c.args["b"] is not None else ()), outputs=("out",),
            scalars={"activation": ["sigmoid", "gelu", 7, None], "packed": ["packed", np.zeros(3, f32)],
                     "w": [c.array((i + 1, o))]})
    c.run(_kernels.dense_forward,
          lambda out: close(out, ref.dense_forward(c.args["x"], c.args["w"], c.args["b"], act), "dense_forward"))


@FUZZ
@given(st.data())
def test_fuzz_dense_backward(data):
    c = Call(data)
    n, i, o = c.size(1, 6), c.size(1, 9), c.size(1, 9)
    need_dx = c.draw(st.booleans())
    c.args.update(dy=c.array((n, o)), x=c.array((n, i)), w=c.array((i, o)), need_dx=need_dx)
    c.common(gemm=True)
    for name, shape in (("dx", (n, i)), ("dw", (i, o)), ("db", (o,))):
        c.output(name, shape)
    c.spoil(arrays=("dy", "x", "w"), outputs=("dw", "db"), scalars={"dy": [c.array((n, o + 1))]})

    def check(result):
        dx, dw, db = result
        rdx, rdw, rdb = ref.dense_backward(c.args["dy"], c.args["x"], c.args["w"])
        close(dw, rdw, "dw")
        close(db, rdb, "db")
        assert (dx is None) == (not need_dx)
        if need_dx:
            close(dx, rdx, "dx")

    c.run(_kernels.dense_backward, check)


@FUZZ
@given(st.data())
def test_fuzz_conv2d_forward(data):
    c = Call(data)
    n, h, w, ch, oc, kh, kw, strides, padding = _conv_case(c)
    act = c.pick(["linear", "relu"])
    c.args.update(x=c.array((n, h, w, ch)), w=c.array((kh, kw, ch, oc)), b=c.pick([None, c.array((oc,))]),
                  strides=strides, padding=padding, activation=act)
    if not (_fits(h, kh, padding) and _fits(w, kw, padding)):
        c.bad = "input smaller than the kernel"
    else:
        oh, ow = ref.conv_geometry(h, kh, strides[0], padding)[0], ref.conv_geometry(w, kw, strides[1], padding)[0]
        c.output("out", (n, oh, ow, oc))
        c.spoil(arrays=("x", "w"), outputs=("out",),
                scalars={"strides": BAD_PAIRS, "padding": BAD_PADDING, "conv_algo": ["fft", 1], "activation": ["tanh"],
                         "w": [c.array((kh, kw, ch + 1, oc))]})
    c.run(_kernels.conv2d_forward, lambda out: close(
        out, ref.conv2d_forward(c.args["x"], c.args["w"], c.args["b"], strides, padding, act), "conv2d_forward"))


@FUZZ
@given(st.data())
def test_fuzz_conv2d_backward(data):
    c = Call(data)
    n, h, w, ch, oc, kh, kw, strides, padding = _conv_case(c)
    if not (_fits(h, kh, padding) and _fits(w, kw, padding)):
        h, w = max(h, kh), max(w, kw)
    oh, ow = ref.conv_geometry(h, kh, strides[0], padding)[0], ref.conv_geometry(w, kw, strides[1], padding)[0]
    x, wt, dy = c.array((n, h, w, ch)), c.array((kh, kw, ch, oc)), c.array((n, oh, ow, oc))
    if c.draw(st.booleans(), label="filter gradient"):
        c.args.update(dy=dy, x=x, kernel_size=(kh, kw), strides=strides, padding=padding)
        c.common(conv=True)
        c.output("dw", (kh, kw, ch, oc))
        c.output("db", (oc,))
        c.spoil(arrays=("dy", "x"), outputs=("dw", "db"),
                scalars={"kernel_size": BAD_PAIRS, "strides": BAD_PAIRS, "dy": [c.array((n, oh + 1, ow, oc))]})

        def check(result):
            rdw, rdb = ref.conv2d_backward_filter(dy, x, (kh, kw), strides, padding)
            close(result[0], rdw, "conv2d_backward_filter dw")
            close(result[1], rdb, "conv2d_backward_filter db")

        c.run(_kernels.conv2d_backward_filter, check)
        return
    relu = c.draw(st.booleans())
    c.args.update(dy=dy, w=wt, input_shape=x.shape, strides=strides, padding=padding,
                  relu_input=np.maximum(x, 0) if relu else None)
    c.common(conv=True)
    c.output("out", x.shape)
    c.spoil(arrays=("dy", "w"), outputs=("out",),
            scalars={"input_shape": [(n, h, w), (n, h, w, 0), (n, h, w, -1), "nhwc", (n, h + 9, w, ch)]})

    def check_dx(dx):
        expected = ref.conv2d_backward_data(dy, wt, x.shape, strides, padding)
        close(dx, expected * (x > 0) if relu else expected, "conv2d_backward_data")

    c.run(_kernels.conv2d_backward_data, check_dx)


@FUZZ
@given(st.data())
def test_fuzz_conv2d_forward_maxpool(data):
    c = Call(data)
    n, h, w, ch, oc, kh, kw, strides, padding = _conv_case(c, maxpool=True)
    c.args.update(x=c.array((n, h, w, ch)), w=c.array((kh, kw, ch, oc)), b=c.pick([None, c.array((oc,))]),
                  strides=strides, padding=padding)
    if not (_fits(h, kh, padding) and _fits(w, kw, padding)):
        c.bad = "input smaller than the kernel"
    else:
        oh, ow = ref.conv_geometry(h, 3, 1, padding)[0], ref.conv_geometry(w, 3, 1, padding)[0]
        if oh % 2 or ow % 2:
            c.bad = "odd convolution output"
        else:
            c.output("out", (n, oh // 2, ow // 2, oc))
            c.output("argmax", (n, oh // 2, ow // 2, oc), np.int32)
            c.spoil(arrays=("x", "w"), outputs=("out", "argmax"), scalars={"strides": [(2, 1)], "conv_algo": ["im2col"]})

    def check(result):
        # values only: argmax of a float32 convolution may pick the other of two near-equal float64 maxima
        y, _ = ref.conv2d_forward_maxpool(c.args["x"], c.args["w"], c.args["b"], strides, padding)
        close(result[0], y, "conv2d_forward_maxpool")

    c.run(_kernels.conv2d_forward_maxpool, check)


@FUZZ
@given(st.data())
def test_fuzz_maxpool2d(data):
    c = Call(data)
    n, h, w, ch = c.size(1, 3), c.size(1, 8), c.size(1, 8), c.size(1, 5)
    pool = (c.size(1, 3), c.size(1, 3))
    strides = c.pick([None, (c.size(1, 3), c.size(1, 3))])
    padding = c.pick(["valid", "same"])
    x = c.array((n, h, w, ch))
    c.common()
    if not (_fits(h, pool[0], padding) and _fits(w, pool[1], padding)):
        c.args.update(x=x, pool_size=pool, strides=strides, padding=padding)
        c.bad = "input smaller than the window"
        c.run(_kernels.maxpool2d_forward, None)
        return
    ry, rarg = ref.maxpool2d_forward(x, pool, strides, padding)
    if c.draw(st.booleans(), label="backward"):
        dy = c.array(ry.shape)
        relu = c.draw(st.booleans())
        c.args.update(dy=dy, argmax=rarg.astype(np.int32), input_shape=x.shape, pool_size=pool, strides=strides,
                      padding=padding, relu_output=ry.astype(f32) if relu else None)
        c.output("out", x.shape)
        bad_arg = rarg.astype(np.int32)
        bad_arg.reshape(-1)[0] = x.size
        c.spoil(arrays=("dy", "argmax"), outputs=("out",),
                scalars={"argmax": [bad_arg, -rarg.astype(np.int32) - 1], "input_shape": [(n, h, w), (0, h, w, ch)],
                         "pool_size": BAD_PAIRS})

        def check_dx(dx):
            g = dy * (ry > 0) if relu else dy
            close(dx, ref.maxpool2d_backward(g, rarg, x.shape), "maxpool2d_backward")

        c.run(_kernels.maxpool2d_backward, check_dx)
        return
    c.args.update(x=x, pool_size=pool, strides=strides, padding=padding)
    c.output("out", ry.shape)
    c.output("argmax", ry.shape, np.int32)
    c.spoil(arrays=("x",), outputs=("out", "argmax"), scalars={"pool_size": BAD_PAIRS, "strides": BAD_PAIRS[:-1],
                                                               "padding": BAD_PADDING})

    def check(result):
        close(result[0], ry, "maxpool2d_forward")
        np.testing.assert_array_equal(result[1], rarg)

    c.run(_kernels.maxpool2d_forward, check)


def _elementwise_shape(c, ndim=None):
    return tuple(c.size(1, 6) for _ in range(ndim or c.size(1, 3)))


@FUZZ
@given(st.data())
def test_fuzz_activations(data):
    c = Call(data)
    act = c.pick(ACTS)
    shape = _elementwise_shape(c)
    x = c.array(shape)
    y = ref.activation_forward(x, act).astype(f32)
    backward = c.draw(st.booleans(), label="backward")
    if backward:
        c.args.update(dy=c.array(shape), y=y, activation=act)
        pairs = (("out", "dy"), ("out", "y"))
    else:
        c.args.update(x=x, activation=act)
        pairs = (("out", "x"),)
    c.common()
    c.output("out", shape)
    if c.draw(st.booleans(), label="in place"):
        c.args["out"] = c.args[c.pick([p[1] for p in pairs])]
    inputs = {k: v.copy() for k, v in c.args.items() if isinstance(v, np.ndarray) and k != "out"}
    c.spoil(arrays=tuple(p[1] for p in pairs), outputs=("out",), scalars={"activation": ["gelu", 9, None]},
            in_place=pairs)
    if backward:
        c.run(_kernels.activation_backward,
              lambda dx: close(dx, ref.activation_backward(inputs["dy"], inputs["y"], act), "activation_backward"))
    else:
        c.run(_kernels.activation_forward, lambda out: close(out, ref.activation_forward(inputs["x"], act),
                                                             "activation_forward"))


@FUZZ
@given(st.data())
def test_fuzz_softmax(data):
    c = Call(data)
    shape = _elementwise_shape(c, 2)
    x = c.array(shape) * 10
    y = ref.softmax_forward(x).astype(f32)
    backward = c.draw(st.booleans(), label="backward")
    c.args.update(dict(dy=c.array(shape), y=y) if backward else dict(x=x))
    pairs = (("out", "dy"), ("out", "y")) if backward else (("out", "x"),)
    c.common()
    c.output("out", shape)
    if c.draw(st.booleans(), label="in place"):
        c.args["out"] = c.args[c.pick([p[1] for p in pairs])]
    inputs = {k: v.copy() for k, v in c.args.items() if isinstance(v, np.ndarray) and k != "out"}
    c.spoil(arrays=tuple(p[1] for p in pairs), outputs=("out",), in_place=pairs)
    if backward:
        c.run(_kernels.softmax_backward,
              lambda dx: close(dx, ref.softmax_backward(inputs["dy"], inputs["y"]), "softmax_backward"))
    else:
        c.run(_kernels.softmax_forward, lambda out: close(out, ref.softmax_forward(inputs["x"]), "softmax_forward"))


@FUZZ
@given(st.data())
def test_fuzz_bias(data):
    c = Call(data)
    r, k = c.size(1, 7), c.size(1, 9)
    c.common()
    if c.draw(st.booleans(), label="bias_act_forward"):
        act = c.pick(["linear", "relu"])
        y0, b = c.array((r, k)), c.pick([None, c.array((k,))])
        c.args.update(y=y0.copy(), b=b, activation=act)
        c.spoil(arrays=("y",), scalars={"activation": ["sigmoid", "gelu"], "b": [c.array((k + 1,)), c.args["y"][0]]})
        c.run(_kernels.bias_act_forward, lambda y: close(
            y, ref.activation_forward(y0 + (0 if b is None else b), act), "bias_act_forward"))
        return
    c.args.update(dy=c.array((r, k)))
    c.output("db", (k,))
    c.spoil(arrays=("dy",), outputs=("db",))
    c.run(_kernels.bias_backward, lambda db: close(db, ref.bias_backward(c.args["dy"]), "bias_backward"))


@FUZZ
@given(st.data())
def test_fuzz_softmax_xent(data):
    c = Call(data)
    n, k = c.size(1, 6), c.size(1, 9)
    logits = c.array((n, k)) * 5
    targets = np.eye(k, dtype=f32)[c.rng.integers(0, k, n)]
    c.common()
    if c.draw(st.booleans(), label="backward"):
        probs = ref.softmax_forward(logits).astype(f32)
        scale = c.pick([1.0, 1.0 / n, 0.5])
        c.args.update(probs=probs.copy(), targets=targets, scale=scale)
        c.output("out", (n, k))
        if c.draw(st.booleans(), label="in place"):
            c.args["out"] = c.args["probs"]
        c.spoil(arrays=("probs", "targets"), outputs=("out",), scalars={"scale": ["s", 1e40]},
                in_place=(("out", "probs"),))
        c.run(_kernels.softmax_xent_backward,
              lambda d: close(d, ref.softmax_xent_backward(probs, targets, scale), "softmax_xent_backward"))
        return
    c.args.update(logits=logits, targets=targets)
    c.output("probs", (n, k))
    c.output("loss", (n,))
    c.spoil(arrays=("logits", "targets"), outputs=("probs", "loss"))

    def check(result):
        rp, rl = ref.softmax_xent_forward(logits, targets)
        close(result[0], rp, "softmax_xent probs")
        close(result[1], rl, "softmax_xent loss")

    c.run(_kernels.softmax_xent_forward, check)


@FUZZ
@given(st.data())
def test_fuzz_dropout(data):
    c = Call(data)
    shape = _elementwise_shape(c)
    rate = c.pick([0.0, 0.2, 0.5, 0.9])
    seed, stream = c.pick([0, 1, 2**64 - 1]), c.pick([0, 3, 2**63])
    c.common()
    bad_scalars = {"rate": [1.0, -0.1, math.nan, "x"], "seed": [-1, 2**64, 1.0]}
    direction = c.pick(["forward", "backward", "backward through the ReLU"])
    if direction != "forward":  # the mask given, or read off the output of a ReLU then dropout (y > 0)
        keep = (c.rng.random(shape) >= rate).astype(np.uint8)
        dy, y = c.array(shape), c.array(shape) * keep
        c.args.update(dy=dy.copy(), rate=rate, **({"keep": keep} if direction == "backward" else {"y": y}))
        c.output("out", shape)
        if c.draw(st.booleans(), label="in place"):
            c.args["out"] = c.args["dy"]
        c.spoil(arrays=("dy", "keep" if direction == "backward" else "y"), outputs=("out",),
                scalars={"rate": bad_scalars["rate"]}, in_place=(("out", "dy"),))
        kernel, mask = ((_kernels.dropout_backward, keep) if direction == "backward"
                        else (_kernels.dropout_relu_backward, (y > 0).astype(np.uint8)))
        c.run(kernel, lambda dx: close(dx, ref.dropout_backward(dy, mask, rate), direction))
        return
    x = c.array(shape)
    c.args.update(x=x.copy(), rate=rate, seed=seed, stream=stream)
    c.output("out", shape)
    c.output("keep", shape, np.uint8)
    if c.draw(st.booleans(), label="in place"):
        c.args["out"] = c.args["x"]
    c.spoil(arrays=("x",), outputs=("out", "keep"), scalars={**bad_scalars, "stream": [-5, "7"]},
            in_place=(("out", "x"),))

    def check(result):
        y, keep = result
        u = _kernels.random_uniform(x.size, seed, stream).reshape(shape)
        np.testing.assert_array_equal(keep, (u >= rate).astype(np.uint8))
        close(y, ref.dropout_forward(x, keep, rate), "dropout_forward")

    c.run(_kernels.dropout_forward, check)


@FUZZ
@given(st.data())
def test_fuzz_first_nonfinite_and_random_uniform(data):
    c = Call(data)
    c.common()
    if c.draw(st.booleans(), label="random_uniform"):
        c.args.update(n=c.size(1, 300), seed=c.pick([0, 5]), stream=c.pick([0, 9]))
        c.spoil(scalars={"n": [0, -3, 2.0, "9"], "seed": [-1, 2**64]})
        def check_u(u):
            assert u.shape == (c.args["n"],) and np.all((u >= 0) & (u < 1))

        c.run(_kernels.random_uniform, check_u)
        return
    x = c.array(_elementwise_shape(c))
    bad = c.draw(st.lists(st.integers(0, x.size - 1), max_size=3), label="nonfinite positions")
    for i, v in zip(bad, [np.nan, np.inf, -np.inf]):
        x.reshape(-1)[i] = v
    c.args["x"] = x
    c.spoil(arrays=("x",))

    def check(r):
        assert r == (min(bad) if bad else -1)

    c.run(_kernels.first_nonfinite, check)


OPTIMIZERS = {  # kernel: (slot count, hyperparameters, reference)
    "sgd_update": (1, dict(lr=0.1, momentum=0.9, nesterov=True), lambda p, g, s, h: ref.sgd_update(p, s[0], g, **h)),
    "rmsprop_update": (1, dict(lr=0.01, rho=0.9, eps=1e-7), lambda p, g, s, h: ref.rmsprop_update(p, s[0], g, **h)),
    "adadelta_update": (2, dict(lr=1.0, rho=0.95, eps=1e-7),
                        lambda p, g, s, h: ref.adadelta_update(p, s[0], s[1], g, **h)),
    "adam_update": (2, dict(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-7, t=3),
                    lambda p, g, s, h: ref.adam_update(p, s[0], s[1], g, h["lr"], h["beta1"], h["beta2"], h["eps"],
                                                       h["t"])),
}


@FUZZ
@given(st.data())
def test_fuzz_optimizer_updates(data):
    c = Call(data)
    name = c.pick(sorted(OPTIMIZERS))
    n_slots, hyper, reference = OPTIMIZERS[name]
    shape = _elementwise_shape(c)
    p, g = c.array(shape), c.array(shape)
    slots = [np.abs(c.array(shape)) for _ in range(n_slots)]
    slot_names = {"sgd_update": ["v"], "rmsprop_update": ["a"], "adadelta_update": ["a", "d"],
                  "adam_update": ["m", "v"]}[name]
    counter = np.zeros(1, np.int64)
    c.args.update(p=p.copy(), g=g, **{k: s.copy() for k, s in zip(slot_names, slots)}, **hyper, counters=(counter,))
    c.common()
    c.spoil(arrays=("p", "g", *slot_names),
            scalars={"lr": ["fast", 1e39], "g": [c.args["p"]], "counters": [(np.zeros(2, np.int64),), (counter.astype(f32),)],
                     slot_names[0]: [c.args["p"][...]]})

    def check(_):
        expected = reference(p, g, slots, hyper)
        close(c.args["p"], expected[0], name)
        for k, e in zip(slot_names, expected[1:]):
            close(c.args[k], e, f"{name} {k}")
        assert counter[0] == 1

    c.run(getattr(_kernels, name), check)
    if c.bad is not None:
        assert counter[0] == 0, "a rejected update advanced the step counter"


@FUZZ
@given(st.data())
def test_fuzz_pointwise_loss(data):
    c = Call(data)
    n, k = c.size(1, 6), c.size(1, 9)
    kind = c.pick(["squared", "absolute", "sigmoid_xent"])
    out = c.array((n, k)) * 4
    targets = c.rng.random((n, k)).astype(f32) if kind == "sigmoid_xent" else c.array((n, k))
    weights = c.rng.random(n).astype(f32) if c.draw(st.booleans(), label="weighted") else None
    c.common()
    c.args.update(kind=kind, out=out, targets=targets, weights=weights)
    bad_kinds = {"kind": ["cubic", 1, None]}
    if c.draw(st.booleans(), label="backward"):
        _, probs = ref.pointwise_loss_forward(kind, out, targets, weights)
        probs = None if probs is None else probs.astype(f32)
        scale = c.pick([1.0, 1.0 / n, 0.5])
        c.args.update(scale=scale, probs=None if probs is None else probs.copy())
        c.output("dout", (n, k))
        if probs is not None and c.draw(st.booleans(), label="in place"):
            c.args["dout"] = c.args["probs"]
        c.spoil(arrays=("out", "targets") + (("weights",) if weights is not None else ()), outputs=("dout",),
                scalars={"scale": ["s", 1e40], **bad_kinds},
                in_place=(("dout", "probs"),) if probs is not None else ())
        c.run(_kernels.pointwise_loss_backward,
              lambda d: close(d, ref.pointwise_loss_backward(kind, out, targets, scale, weights, probs),
                              "pointwise_loss_backward"))
        return
    c.output("loss", (n,))
    if kind == "sigmoid_xent":
        c.output("probs", (n, k))
    c.spoil(arrays=("out", "targets") + (("weights",) if weights is not None else ()),
            outputs=("loss", "probs") if kind == "sigmoid_xent" else ("loss",), scalars=bad_kinds)

    def check(result):
        rl, rp = ref.pointwise_loss_forward(kind, out, targets, weights)
        close(result[0], rl, "pointwise loss")
        if rp is not None:
            close(result[1], rp, "pointwise probs")

    c.run(_kernels.pointwise_loss_forward, check)
