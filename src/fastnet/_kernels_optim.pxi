# Included by _kernels.pyx (one extension module; the C declarations come from _fastnet_c.pxd there).

# ---- optimizer updates (in place on p and the slots) ----

def _param_args(p, g, *slots):
    _array(p, "param")
    if not p.flags.writeable:
        raise ValueError("param is read-only")
    _array(g, "grad")
    _expect(g, "grad", p.shape)
    for i, s in enumerate(slots):
        _array(s, f"slot {i}")
        _expect(s, f"slot {i}", p.shape)
        if not s.flags.writeable:
            raise ValueError(f"slot {i} is read-only")


def sgd_update(p, v, g, float lr, float momentum=0.0, nesterov=False, n_threads=None):
    _param_args(p, g, *(() if v is None else (v,)))
    if momentum != 0.0 and v is None:
        raise ValueError("sgd_update: momentum needs a velocity slot v")
    cdef int nt = _threads(n_threads), nes = bool(nesterov), st
    cdef float *pp = _mp(p.reshape(-1))
    cdef float *pv = _opt(v)
    cdef const float *pg = _cp(g.reshape(-1))
    cdef int64_t n = p.size
    with nogil:
        st = fn_sgd_update(pp, pv, pg, n, lr, momentum, nes, nt)
    _status(st, "sgd_update")


def rmsprop_update(p, a, g, float lr, float rho, float eps, n_threads=None):
    _param_args(p, g, a)
    cdef int nt = _threads(n_threads), st
    cdef float *pp = _mp(p.reshape(-1))
    cdef float *pa = _mp(a.reshape(-1))
    cdef const float *pg = _cp(g.reshape(-1))
    cdef int64_t n = p.size
    with nogil:
        st = fn_rmsprop_update(pp, pa, pg, n, lr, rho, eps, nt)
    _status(st, "rmsprop_update")


def adadelta_update(p, a, d, g, float lr, float rho, float eps, n_threads=None):
    _param_args(p, g, a, d)
    cdef int nt = _threads(n_threads), st
    cdef float *pp = _mp(p.reshape(-1))
    cdef float *pa = _mp(a.reshape(-1))
    cdef float *pd = _mp(d.reshape(-1))
    cdef const float *pg = _cp(g.reshape(-1))
    cdef int64_t n = p.size
    with nogil:
        st = fn_adadelta_update(pp, pa, pd, pg, n, lr, rho, eps, nt)
    _status(st, "adadelta_update")


def adam_update(p, m, v, g, float lr, float beta1, float beta2, float eps, int64_t t, n_threads=None):
    _param_args(p, g, m, v)
    if t < 1:
        raise ValueError(f"adam_update: step t counts from 1, got {t}")
    cdef int nt = _threads(n_threads), st
    cdef float *pp = _mp(p.reshape(-1))
    cdef float *pm = _mp(m.reshape(-1))
    cdef float *pv = _mp(v.reshape(-1))
    cdef const float *pg = _cp(g.reshape(-1))
    cdef int64_t n = p.size
    with nogil:
        st = fn_adam_update(pp, pm, pv, pg, n, lr, beta1, beta2, eps, t, nt)
    _status(st, "adam_update")
