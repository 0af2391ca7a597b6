"""Thread count for every kernel: FASTNET_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs we may use.

fastnet passes the count to each kernel explicitly and never calls omp_set_num_threads, so it leaves the
process-wide OpenMP state (shared with numpy's BLAS and others) alone.
"""
import os

from fastnet import _kernels


def _default_threads():
    for var in ("FASTNET_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                raise ValueError(f"{var}={os.environ[var]!r} is not a positive integer") from None
            if n < 1:
                raise ValueError(f"{var}={os.environ[var]!r} must be >= 1")
            return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_num_threads(n):
    """Use n threads in every kernel from now on."""
    _kernels.set_num_threads(int(n))


def get_num_threads():
    return _kernels.get_num_threads()


set_num_threads(_default_threads())
