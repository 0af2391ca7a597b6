"""Thread count for every kernel, resolved per call: the count set with set_num_threads (or FASTNET_NUM_THREADS
at import), else OpenMP's current maximum, which OMP_NUM_THREADS and threadpoolctl's limits set.

fastnet passes the count to each kernel explicitly and never calls omp_set_num_threads, so it leaves the
process-wide OpenMP state (shared with numpy's BLAS and others) alone, as scikit-learn does.
"""
import os

from fastnet import _kernels


def _env_threads():
    value = os.environ.get("FASTNET_NUM_THREADS", "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"FASTNET_NUM_THREADS={value!r} is not a positive integer") from None
    if n < 1:
        raise ValueError(f"FASTNET_NUM_THREADS={value!r} must be >= 1")
    return n


def set_num_threads(n):
    """Use n threads in every kernel from now on; None: follow OpenMP's current maximum again (the default)."""
    _kernels.set_num_threads(n)


def get_num_threads():
    """The threads a kernel called now uses."""
    return _kernels.get_num_threads()


set_num_threads(_env_threads())
