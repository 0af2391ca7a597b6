# Included by _kernels.pyx (one extension module; the C declarations come from _fastnet_c.pxd there).

# ---- conv2d ----

def conv_geometry(size, kernel, stride, padding):
    """(output size, padding before) along one axis, as TensorFlow/Keras define 'valid' and 'same'."""
    size, kernel = _int(size, "size", 1, INT_MAX), _int(kernel, "kernel size", 1, INT_MAX)
    stride = _int(stride, "stride", 1, INT_MAX)
    if padding == "valid":
        if size < kernel:
            raise ValueError(f"input size {size} is smaller than the kernel size {kernel} with padding='valid'")
        return (size - kernel) // stride + 1, 0
    if padding == "same":
        out = -(-size // stride)
        return out, max((out - 1) * stride + kernel - size, 0) // 2
    raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")


def _prod(*dims):
    """The product of sizes in Python integers (no overflow)."""
    total = 1
    for d in dims:
        total *= d
    return total


cdef fn_conv2d_shape _conv_shape(x_shape, w_shape, strides, padding) except *:
    """The geometry of one convolution, every size checked (>= 1, <= INT_MAX) before C sees it."""
    cdef fn_conv2d_shape s
    s.N, s.H, s.W, s.C = _ints(x_shape, "input shape", 4)
    s.KH, s.KW, kc, s.OC = _ints(w_shape, "kernel shape", 4)
    if kc != s.C:
        raise ValueError(f"conv2d: input has {s.C} channels (NHWC shape {tuple(x_shape)}) but the kernel "
                         f"{tuple(w_shape)} expects {kc}")
    s.SH, s.SW = _ints(strides, "strides", 2)
    s.OH, s.PT = conv_geometry(s.H, s.KH, s.SH, padding)
    s.OW, s.PL = conv_geometry(s.W, s.KW, s.SW, padding)
    # Sizes the C side multiplies (input, kernel, output, one image's im2col rows) must stay far inside int64.
    # Arrays that large cannot exist; a shape-only query (conv2d_workspace_floats) can still ask about them.
    sizes = {"input": _prod(s.N, s.H, s.W, s.C), "kernel": _prod(s.KH, s.KW, s.C, s.OC),
             "output": _prod(s.N, s.OH, s.OW, s.OC), "im2col": _prod(s.OH, s.OW, s.KH, s.KW, s.C)}
    for what, size in sizes.items():
        if size > MAX_ELEMENTS:
            raise ValueError(f"conv2d: the {what} of input {tuple(x_shape)} and kernel {tuple(w_shape)} would hold "
                             f"{size} elements, more than the {MAX_ELEMENTS} a kernel takes")
    return s


def conv2d_uses_winograd(x_shape, w_shape, strides=(1, 1), padding="valid", conv_algo=None, precision=None,
                         isa=None):
    """Whether the conv kernels take the Winograd path for this shape with conv_algo (default: set_conv_algo's),
    precision and ISA (C's fn_conv2d_resolve_algo decides)."""
    cdef fn_conv2d_shape s = _conv_shape(tuple(x_shape), tuple(w_shape), strides, padding)
    return fn_conv2d_resolve_algo(&s, _algo_code(conv_algo), _isa_code(isa),
                                  _precision_code(precision)) == FN_CONV_WINOGRAD


def conv2d_workspace_floats(x_shape, w_shape, strides=(1, 1), padding="valid", n_threads=None, conv_algo=None,
                            precision=None, isa=None):
    """Floats of scratch the conv kernels take for this shape, thread count, algorithm, precision and ISA."""
    cdef fn_conv2d_shape s = _conv_shape(tuple(x_shape), tuple(w_shape), strides, padding)
    return fn_conv2d_workspace(&s, _algo_code(conv_algo), _isa_code(isa), _precision_code(precision),
                               _threads(n_threads))


def conv2d_forward(x, w, b=None, strides=(1, 1), padding="valid", activation="linear", out=None, n_threads=None,
                   isa=None, precision=None, conv_algo=None, workspace=None):
    """out[N, OH, OW, OC] = act(conv(x[N, H, W, C], w[KH, KW, C, OC]) + b[OC])."""
    _array(x, "x", 4)
    _array(w, "w", 4)
    cdef fn_conv2d_shape s = _conv_shape(x.shape, w.shape, strides, padding)
    if b is not None:
        _array(b, "b", 1)
        _expect(b, "b", (s.OC,))
    out = _output(out, "out", (s.N, s.OH, s.OW, s.OC), (x, w, b))
    cdef int act = _fused_activation(activation, "conv2d_forward"), nt = _threads(n_threads), st
    cdef int code = _isa_code(isa), prec = _precision_code(precision), algo = _algo_code(conv_algo)
    scratch = _scratch(workspace, fn_conv2d_workspace(&s, algo, code, prec, nt))
    cdef float *pw = _mp(scratch)
    cdef const float *px = _cp(x)
    cdef const float *pk = _cp(w)
    cdef const float *pb = NULL if b is None else _cp(b)
    cdef float *py = _mp(out)
    with nogil:
        st = fn_conv2d_forward(py, px, pk, pb, &s, act, algo, code, prec, NULL, pw, nt)
    _status(st, "conv2d_forward")
    return out


def conv2d_forward_maxpool_fits(x_shape, w_shape, strides=(1, 1), padding="valid", conv_algo=None, precision=None,
                                isa=None):
    """Whether conv2d_forward_maxpool takes this shape: an even output size, at most 48 wide unless the shape takes
    Winograd (with conv_algo, precision and ISA)."""
    cdef fn_conv2d_shape s = _conv_shape(tuple(x_shape), tuple(w_shape), strides, padding)
    return bool(fn_conv2d_forward_maxpool_fits(&s, _algo_code(conv_algo), _isa_code(isa),
                                               _precision_code(precision)))


def conv2d_forward_maxpool(x, w, b=None, strides=(1, 1), padding="valid", out=None, argmax=None, n_threads=None,
                           isa=None, precision=None, conv_algo=None, workspace=None):
    """maxpool2d_forward(conv2d_forward(x, w, b, activation='relu')) with a 2x2 window of stride 2, in one pass
    that never stores the convolution: (y [N, OH/2, OW/2, OC], argmax int32), bit-identical to the two calls.
    Only where conv2d_forward_maxpool_fits."""
    _array(x, "x", 4)
    _array(w, "w", 4)
    cdef fn_conv2d_shape s = _conv_shape(x.shape, w.shape, strides, padding)
    cdef int code = _isa_code(isa), prec = _precision_code(precision), algo = _algo_code(conv_algo)
    if not fn_conv2d_forward_maxpool_fits(&s, algo, code, prec):
        raise ValueError(f"conv2d_forward_maxpool: input {tuple(x.shape)}, kernel {tuple(w.shape)}, strides "
                         f"{tuple(strides)}, padding {padding!r} gives an output of {s.OH}x{s.OW}: the fused pool "
                         "takes an even output size, at most 48 wide unless it takes Winograd; run conv2d_forward "
                         "and maxpool2d_forward instead")
    if b is not None:
        _array(b, "b", 1)
        _expect(b, "b", (s.OC,))
    shape = (s.N, s.OH // 2, s.OW // 2, s.OC)
    if s.OH * s.OW * s.OC >= 2**31:
        raise ValueError(f"conv2d_forward_maxpool: an output of {s.OH}x{s.OW}x{s.OC} is too large for int32 "
                         "argmax offsets")
    out = _output(out, "out", shape, (x, w, b))
    argmax = _output(argmax, "argmax", shape, (x, w, b, out), np.int32)
    cdef int nt = _threads(n_threads), st
    scratch = _scratch(workspace, fn_conv2d_workspace(&s, algo, code, prec, nt))
    cdef float *pw = _mp(scratch)
    cdef int32_t *pam = <int32_t *>_data(argmax, True, 4)
    cdef const float *px = _cp(x)
    cdef const float *pk = _cp(w)
    cdef const float *pb = NULL if b is None else _cp(b)
    cdef float *py = _mp(out)
    with nogil:
        st = fn_conv2d_forward_maxpool(py, pam, px, pk, pb, &s, algo, code, prec, NULL, pw, nt)
    _status(st, "conv2d_forward_maxpool")
    return out, argmax


def conv2d_backward_data(dy, w, input_shape, strides=(1, 1), padding="valid", out=None, relu_input=None,
                         n_threads=None, isa=None, precision=None, conv_algo=None, workspace=None):
    """dL/dx [N, H, W, C] (input_shape) from dy [N, OH, OW, OC].

    relu_input: the convolution's input when it came out of a ReLU; dx is zeroed where it is not positive
    (the ReLU's backward, fused)."""
    _array(dy, "dy", 4)
    _array(w, "w", 4)
    input_shape = _ints(input_shape, "input_shape", 4)
    cdef fn_conv2d_shape s = _conv_shape(input_shape, w.shape, strides, padding)
    cdef int code = _isa_code(isa), prec = _precision_code(precision), algo = _algo_code(conv_algo)
    _expect(dy, "dy", (s.N, s.OH, s.OW, s.OC))
    if relu_input is not None:
        _array(relu_input, "relu_input", 4)
        _expect(relu_input, "relu_input", input_shape)
    out = _output(out, "dx", input_shape, (dy, w, relu_input))
    cdef int nt = _threads(n_threads), st
    scratch = _scratch(workspace, fn_conv2d_workspace(&s, algo, code, prec, nt))
    cdef float *pw = _mp(scratch)
    cdef const float *pdy = _cp(dy)
    cdef const float *pk = _cp(w)
    cdef float *pdx = _mp(out)
    cdef const float *prelu = NULL if relu_input is None else _cp(relu_input)
    with nogil:
        st = fn_conv2d_backward_data(pdx, pdy, pk, prelu, &s, algo, code, prec, pw, nt)
    _status(st, "conv2d_backward_data")
    return out


def conv2d_backward_filter(dy, x, kernel_size, strides=(1, 1), padding="valid", dw=None, db=None,
                           n_threads=None, isa=None, precision=None, conv_algo=None, workspace=None):
    """(dL/dw [KH, KW, C, OC], dL/db [OC]) from dy [N, OH, OW, OC] and x [N, H, W, C]."""
    _array(dy, "dy", 4)
    _array(x, "x", 4)
    kh, kw = _ints(kernel_size, "kernel_size", 2)
    w_shape = (kh, kw, x.shape[3], dy.shape[3])
    cdef fn_conv2d_shape s = _conv_shape(x.shape, w_shape, strides, padding)
    cdef int code = _isa_code(isa), prec = _precision_code(precision), algo = _algo_code(conv_algo)
    _expect(dy, "dy", (s.N, s.OH, s.OW, s.OC))
    dw = _output(dw, "dw", w_shape, (dy, x))
    db = _output(db, "db", (s.OC,), (dy, x, dw))
    cdef int nt = _threads(n_threads), st
    scratch = _scratch(workspace, fn_conv2d_workspace(&s, algo, code, prec, nt))
    cdef float *pw = _mp(scratch)
    cdef const float *pdy = _cp(dy)
    cdef const float *px = _cp(x)
    cdef float *pdw = _mp(dw)
    cdef float *pdb = _mp(db)
    with nogil:
        st = fn_conv2d_backward_filter(pdw, pdb, pdy, px, &s, algo, code, prec, pw, nt)
    _status(st, "conv2d_backward_filter")
    return dw, db


def conv2d_backward(dy, x, w, strides=(1, 1), padding="valid", dw=None, db=None, dx=False, relu_input=None,
                    argmax=None, pooled=None, n_threads=None, isa=None, precision=None, conv_algo=None,
                    workspace=None):
    """The whole backward in one call: (dw, db, dx) as conv2d_backward_filter and conv2d_backward_data give them.

    dy is dL/d(conv + bias) [N, OH, OW, OC]; or, with argmax and pooled (conv2d_forward_maxpool's), the gradient of
    that call's output [N, OH/2, OW/2, OC], whose ReLU passes it where pooled > 0. dx: an output array, True (one
    is made) or False (no input gradient: db and dx come back None where not asked for). relu_input as in
    conv2d_backward_data. Winograd shares one transform of dy between both gradients."""
    _array(dy, "dy", 4)
    _array(x, "x", 4)
    _array(w, "w", 4)
    cdef fn_conv2d_shape s = _conv_shape(x.shape, w.shape, strides, padding)
    cdef int code = _isa_code(isa), prec = _precision_code(precision), algo = _algo_code(conv_algo)
    cdef bint pooled_dy = argmax is not None or pooled is not None
    if pooled_dy:
        if argmax is None or pooled is None:
            raise ValueError("conv2d_backward: a pooled dy needs both argmax and pooled")
        if not fn_conv2d_forward_maxpool_fits(&s, algo, code, prec):
            raise ValueError(f"conv2d_backward: a pooled dy needs a convolution conv2d_forward_maxpool runs; its "
                             f"output {(s.OH, s.OW)} does not fit")
        _expect(dy, "dy", (s.N, s.OH // 2, s.OW // 2, s.OC))
        _array(argmax, "argmax", 4, np.int32)
        _expect(argmax, "argmax", dy.shape)
        _array(pooled, "pooled", 4)
        _expect(pooled, "pooled", dy.shape)
        # Winograd reads each window's argmax as one of the window's four outputs, whatever it holds; im2col
        # writes the gradient at it, so there it must lie inside the image.
        if fn_conv2d_resolve_algo(&s, algo, code, prec) != FN_CONV_WINOGRAD and argmax.size and (
                argmax.min() < 0 or argmax.max() >= s.OH * s.OW * s.OC):
            raise ValueError("conv2d_backward: argmax holds offsets outside the convolution's output image")
    else:
        _expect(dy, "dy", (s.N, s.OH, s.OW, s.OC))
    if relu_input is not None:
        _array(relu_input, "relu_input", 4)
        _expect(relu_input, "relu_input", x.shape)
    dw = _output(dw, "dw", w.shape, (dy, x, w))
    if db is not None:
        db = _output(db, "db", (s.OC,), (dy, x, w, dw))
    want_dx = dx is not False and dx is not None
    if want_dx:
        dx = _output(None if dx is True else dx, "dx", x.shape, (dy, x, w, dw, db, relu_input, argmax, pooled))
    cdef int nt = _threads(n_threads), st
    scratch = _scratch(workspace, fn_conv2d_backward_workspace(&s, pooled_dy, algo, code, prec, nt))
    cdef float *pws = _mp(scratch)
    cdef const float *pdy = _cp(dy)
    cdef const float *px = _cp(x)
    cdef const float *pk = _cp(w)
    cdef float *pdw = _mp(dw)
    cdef float *pdb = NULL if db is None else _mp(db)
    cdef float *pdx = _mp(dx) if want_dx else NULL
    cdef const float *prelu = NULL if relu_input is None else _cp(relu_input)
    cdef const int32_t *pam = NULL if argmax is None else <const int32_t *>_data(argmax, False, 4)
    cdef const float *ppool = NULL if pooled is None else _cp(pooled)
    with nogil:
        st = fn_conv2d_backward(pdx, pdw, pdb, pdy, pam, ppool, px, pk, prelu, &s, algo, code, prec, pws, nt)
    _status(st, "conv2d_backward")
    return dw, db, dx if want_dx else None


# ---- max pooling ----

def maxpool2d_forward(x, pool_size=(2, 2), strides=None, padding="valid", out=None, argmax=None,
                      n_threads=None):
    """(y [N, OH, OW, C], argmax int32 [N, OH, OW, C]) for x [N, H, W, C]; ties go to the first maximum."""
    _array(x, "x", 4)
    cdef int64_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3], PH, PW, SH, SW
    PH, PW = _ints(pool_size, "pool_size", 2)
    SH, SW = (PH, PW) if strides is None else _ints(strides, "strides", 2)
    OH, PT = conv_geometry(H, PH, SH, padding)
    OW, PL = conv_geometry(W, PW, SW, padding)
    if H * W * C >= 2**31:
        raise ValueError(f"maxpool2d: an image of {H}x{W}x{C} is too large for int32 argmax offsets")
    out = _output(out, "out", (N, OH, OW, C), (x,))
    argmax = _output(argmax, "argmax", (N, OH, OW, C), (x, out), np.int32)
    cdef int nt = _threads(n_threads), st
    cdef int32_t *pam = <int32_t *>_data(argmax, True, 4)
    cdef const float *px = _cp(x)
    cdef float *py = _mp(out)
    cdef int64_t oh = OH, ow = OW, pt = PT, pl = PL
    with nogil:
        st = fn_maxpool2d_forward(py, pam, px, N, H, W, C, PH, PW, SH, SW, pt, pl, oh, ow, nt)
    _status(st, "maxpool2d_forward")
    return out, argmax


def maxpool2d_backward(dy, argmax, input_shape, pool_size=(2, 2), strides=None, padding="valid", out=None,
                       relu_output=None, n_threads=None):
    """dL/dx [N, H, W, C] (input_shape): dy [N, OH, OW, C] routed through the forward's argmax; pool_size,
    strides and padding must be the forward's.

    relu_output: the pooling's forward output, when a ReLU came before the pooling: outputs that are not
    positive pass no gradient (the ReLU's backward, fused)."""
    _array(dy, "dy", 4)
    _array(argmax, "argmax", 4, np.int32)
    _expect(argmax, "argmax", dy.shape)
    N, H, W, C = _ints(input_shape, "input_shape", 4)
    cdef int64_t PH, PW, SH, SW
    PH, PW = _ints(pool_size, "pool_size", 2)
    SH, SW = (PH, PW) if strides is None else _ints(strides, "strides", 2)
    if H * W * C >= 2**31:
        raise ValueError(f"maxpool2d: an image of {H}x{W}x{C} is too large for int32 argmax offsets")
    OH, PT = conv_geometry(H, PH, SH, padding)
    OW, PL = conv_geometry(W, PW, SW, padding)
    _expect(dy, "dy", (N, OH, OW, C))
    if relu_output is not None:
        _array(relu_output, "relu_output", 4)
        _expect(relu_output, "relu_output", dy.shape)
    if argmax.size and (argmax.min() < 0 or argmax.max() >= H * W * C):
        raise ValueError("maxpool2d: argmax holds offsets outside the input image")
    out = _output(out, "dx", (N, H, W, C), (dy, argmax, relu_output))
    cdef int nt = _threads(n_threads), st
    cdef const int32_t *pam = <const int32_t *>_data(argmax, False, 4)
    cdef const float *pdy = _cp(dy)
    cdef const float *py = NULL if relu_output is None else _cp(relu_output)
    cdef float *pdx = _mp(out)
    cdef int64_t n = N, h = H, w = W, c = C, oh = OH, ow = OW, pt = PT, pl = PL
    with nogil:
        st = fn_maxpool2d_backward(pdx, pdy, pam, py, n, h, w, c, PH, PW, SH, SW, pt, pl, oh, ow, nt)
    _status(st, "maxpool2d_backward")
    return out


