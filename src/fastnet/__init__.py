"""fastnet: a small, fast deep-learning engine for multicore CPUs with a Keras-style API."""
from fastnet._version import __version__
from fastnet._threads import get_num_threads, set_num_threads
from fastnet._seed import get_seed, set_seed
from fastnet import (_kernels, backend, callbacks, datasets, distributed, layers, mixed_precision, models, optimizers,
                     plan, utils)
from fastnet.models import Sequential
from fastnet.saving import load_model

openmp = _kernels.have_openmp()


def _start_mpi_if_launched():
    """Under mpiexec (or srun, mpirun) a script runs data-parallel unchanged: import fastnet starts MPI.
    FASTNET_DISTRIBUTED=0 keeps the processes independent."""
    import os
    import warnings

    if not distributed.launched_by_mpi() or os.environ.get("FASTNET_DISTRIBUTED", "").strip() == "0":
        return
    try:
        distributed.init()
    except ImportError:
        warnings.warn("an MPI launcher started this process but mpi4py is not installed, so each process trains "
                      "alone: pip install 'fastnet[mpi]' (or set FASTNET_DISTRIBUTED=0 to silence this)",
                      RuntimeWarning, stacklevel=2)


_start_mpi_if_launched()


def info():
    """One line on the build: version, OpenMP, threads, GEMM instruction set, the global dtype policy (and the
    MPI processes, if any)."""
    ranks = f", data-parallel over {distributed.size()} MPI processes" if distributed.active() else ""
    return (f"fastnet {__version__}: OpenMP {'on' if openmp else 'off'}, {get_num_threads()} threads"
            f"{' per process' if ranks else ''}, GEMM kernel {_kernels.get_isa()}, dtype policy "
            f"{mixed_precision.describe(mixed_precision.global_policy())}{ranks}")


__all__ = ["__version__", "get_num_threads", "set_num_threads", "get_seed", "set_seed", "info", "openmp",
           "backend", "callbacks", "datasets", "distributed", "layers", "mixed_precision", "models", "optimizers",
           "plan", "utils",
           "Sequential", "load_model"]
