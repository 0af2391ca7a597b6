# Included by _kernels.pyx (one extension module; the C declarations come from _fastnet_c.pxd there).

# ---- optimizer updates (in place on p and the slots) ----
#
# counters: 1-element int64 arrays (the model's step, the optimizer's iterations) the call advances by one once
# the update has run, with no Python code in between: a KeyboardInterrupt lands before the step or after its
# count, never between them, so the weights always match the counts that key the next step.

cdef _counters(counters):
    counters = () if counters is None else tuple(counters)
    for i, c in enumerate(counters):
        _array(c, f"counters[{i}]", 1, np.int64)
        _expect(c, f"counters[{i}]", (1,))
        _writable(c, f"counters[{i}]")
    return counters


cdef int _advance(tuple counters) except -1:
    cdef int64_t[::1] c
    for a in counters:
        c = a
        c[0] += 1
    return 0


def _param_args(p, g, *slots):
    """param, grad and slots: one shape, param and slots writeable, no two overlapping."""
    _array(p, "param")
    _writable(p, "param")
    _array(g, "grad")
    _expect(g, "grad", p.shape)
    for i, s in enumerate(slots):
        _array(s, f"slot {i}")
        _expect(s, f"slot {i}", p.shape)
        _writable(s, f"slot {i}")
    _disjoint([("param", p), ("grad", g)] + [(f"slot {i}", s) for i, s in enumerate(slots)])


def sgd_update(p, v, g, lr, momentum=0.0, nesterov=False, n_threads=None, counters=None):
    _param_args(p, g, *(() if v is None else (v,)))
    cnt = _counters(counters)
    cdef float r = _real(lr, "lr"), mo = _real(momentum, "momentum")
    if mo != 0.0 and v is None:
        raise ValueError("sgd_update: momentum needs a velocity slot v")
    cdef int nt = _threads(n_threads), nes = bool(nesterov), st
    cdef float *pp = _mp(p)
    cdef float *pv = _opt(v)
    cdef const float *pg = _cp(g)
    cdef int64_t n = p.size
    with nogil:
        st = fn_sgd_update(pp, pv, pg, n, r, mo, nes, nt)
    _status(st, "sgd_update")
    _advance(cnt)


def rmsprop_update(p, a, g, lr, rho, eps, n_threads=None, counters=None):
    _param_args(p, g, a)
    cnt = _counters(counters)
    cdef float r = _real(lr, "lr"), rh = _real(rho, "rho"), ep = _real(eps, "eps")
    cdef int nt = _threads(n_threads), st
    cdef float *pp = _mp(p)
    cdef float *pa = _mp(a)
    cdef const float *pg = _cp(g)
    cdef int64_t n = p.size
    with nogil:
        st = fn_rmsprop_update(pp, pa, pg, n, r, rh, ep, nt)
    _status(st, "rmsprop_update")
    _advance(cnt)


def adadelta_update(p, a, d, g, lr, rho, eps, n_threads=None, counters=None):
    _param_args(p, g, a, d)
    cnt = _counters(counters)
    cdef float r = _real(lr, "lr"), rh = _real(rho, "rho"), ep = _real(eps, "eps")
    cdef int nt = _threads(n_threads), st
    cdef float *pp = _mp(p)
    cdef float *pa = _mp(a)
    cdef float *pd = _mp(d)
    cdef const float *pg = _cp(g)
    cdef int64_t n = p.size
    with nogil:
        st = fn_adadelta_update(pp, pa, pd, pg, n, r, rh, ep, nt)
    _status(st, "adadelta_update")
    _advance(cnt)


def adam_update(p, m, v, g, lr, beta1, beta2, eps, t, n_threads=None, counters=None):
    _param_args(p, g, m, v)
    cnt = _counters(counters)
    cdef float r = _real(lr, "lr"), b1 = _real(beta1, "beta1"), b2 = _real(beta2, "beta2"), ep = _real(eps, "eps")
    cdef int64_t step = _int(t, "t (adam_update counts steps from 1)", 1, 2**62)
    cdef int nt = _threads(n_threads), st
    cdef float *pp = _mp(p)
    cdef float *pm = _mp(m)
    cdef float *pv = _mp(v)
    cdef const float *pg = _cp(g)
    cdef int64_t n = p.size
    with nogil:
        st = fn_adam_update(pp, pm, pv, pg, n, r, b1, b2, ep, step, nt)
    _status(st, "adam_update")
    _advance(cnt)
