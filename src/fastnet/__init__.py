"""fastnet: a small, fast deep-learning engine for multicore CPUs with a Keras-style API."""
from fastnet._version import __version__
from fastnet._threads import get_num_threads, set_num_threads
from fastnet import _kernels

openmp = _kernels.have_openmp()


def info():
    """One line on the build: version, OpenMP, threads, GEMM instruction set."""
    return (f"fastnet {__version__}: OpenMP {'on' if openmp else 'off'}, {get_num_threads()} threads, "
            f"GEMM kernel {_kernels.get_isa()}")


__all__ = ["__version__", "get_num_threads", "set_num_threads", "info", "openmp"]
