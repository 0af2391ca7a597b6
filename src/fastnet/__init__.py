"""fastnet: a small, fast deep-learning engine for multicore CPUs with a Keras-style API."""
from fastnet._version import __version__
from fastnet._threads import get_num_threads, set_num_threads
from fastnet._seed import get_seed, set_seed
from fastnet import _kernels, backend, callbacks, datasets, layers, models, optimizers, plan, utils
from fastnet.models import Sequential
from fastnet.saving import load_model

openmp = _kernels.have_openmp()


def info():
    """One line on the build: version, OpenMP, threads, GEMM instruction set."""
    return (f"fastnet {__version__}: OpenMP {'on' if openmp else 'off'}, {get_num_threads()} threads, "
            f"GEMM kernel {_kernels.get_isa()}")


__all__ = ["__version__", "get_num_threads", "set_num_threads", "get_seed", "set_seed", "info", "openmp",
           "backend", "callbacks", "datasets", "layers", "models", "optimizers", "plan", "utils", "Sequential",
           "load_model"]
