"""Data-parallel training on MPI, through mpi4py (`pip install 'fastnet[mpi]'`).

After init() (called by `import fastnet` itself when an MPI launcher started the process), a model's fit,
evaluate, predict and train_on_batch run data-parallel over MPI's world, with no other change to the script:

- Every rank runs the same script on the same arrays (checked at each fit: different data is an error).
- fit broadcasts rank 0's weights, optimizer state and counters, and warns if another rank's weights differed.
- The global batch stays the caller's batch_size; rank r computes rows share(n)[r] of each batch (contiguous,
  the first n % size ranks one row more). The loss gradient is scaled by the global batch, so each rank's weight
  gradients are its rows' share of the single-process gradient; their sum, one Allreduce per step over the model's
  flat gradient array (started step by step of the plan as backward produces it, overlapping the rest of the
  backward), is the single-process gradient up to the order of float additions.
- Shuffling is keyed by the model (as in one process), so the permutation is the same on every rank; dropout
  masks are keyed by a row's place in the global batch, so they are the single-process masks.
- Logged loss and accuracy are the global batch's (one more small Allreduce per step, in float64).
- evaluate and predict split the samples the same way and combine the results (predict's rows in order) on
  every rank.
- Only rank 0 prints the progress bar and writes files (fastnet._io.atomic_write does nothing elsewhere):
  models, checkpoints, CSV logs, history, pictures. Saving is not collective (`if is_primary(): model.save(...)`
  works too); a rank that reads a file rank 0 just wrote calls barrier() first.
- These calls are collective: every rank must make them, in the same order (`if rank() == 0:
  model.evaluate(...)` would leave rank 0 waiting for the others).
- Never a hang. An exception on any rank inside these calls, or uncaught anywhere, ends every rank (MPI_Abort)
  after printing it once: a rank cannot leave a collective its peers are waiting in. A rank that waits more than
  FASTNET_MPI_TIMEOUT seconds (default 600) for the others in one of fastnet's collectives ends every rank too,
  saying where it waited (a rank that never came: a call made on some ranks only). A rank killed outright is
  seen by the launcher, which ends the others.

Without init(), or with one process, nothing here runs and mpi4py is never imported.
"""
import atexit
import contextlib
import faulthandler
import os
import sys
import time
import traceback
import warnings
import zlib

import numpy as np

# Set by the launchers: MPICH's and Intel MPI's hydra, Open MPI, PMIx (srun --mpi=pmix), MVAPICH.
LAUNCHER_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")
GRACE_SECONDS = 2.0  # how long a failing rank other than 0 waits for rank 0 to report (and abort) first
ABORT_SECONDS = 5  # how long MPI_Abort may take before the process ends itself (faulthandler's watchdog)
DEFAULT_TIMEOUT = 600.0  # seconds a rank may wait for the others in one collective (FASTNET_MPI_TIMEOUT)
overlap = True  # start each plan step's gradient Allreduce as soon as its backward is done (False: one at the end)

_MPI = None
_abort_watchdog_sink = None  # the file faulthandler's abort watchdog writes to: it must stay open
_comm = None  # fastnet's own duplicate of MPI's world once init() ran
_step_comm_seconds = [0.0, 0]  # time inside the training steps' MPI calls, and the steps (bench/distributed.py)


def launched_by_mpi(environ=None):
    """Whether an MPI launcher (mpiexec, mpirun, srun) started this process."""
    environ = os.environ if environ is None else environ
    return any(name in environ for name in LAUNCHER_VARIABLES)


def init():
    """Start MPI through mpi4py (once); returns (rank, size). Also installs the abort-on-error hook and, unless the
    thread count was set, gives each rank its share of this node's CPUs."""
    global _MPI, _comm
    if _comm is None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ImportError("fastnet.distributed needs mpi4py and an MPI library: pip install 'fastnet[mpi]' "
                              "(mpi4py and mpich), or mpi4py built against your cluster's MPI") from exc
        timeout()  # a bad FASTNET_MPI_TIMEOUT fails here, not in the middle of training
        _MPI, _comm = MPI, MPI.COMM_WORLD.Dup()  # fastnet's collectives never interleave with the user's
        _install_excepthook()
        atexit.register(_finalize)  # runs before mpi4py's own finalization, which then finds MPI finalized
        _share_node_cpus()
    return rank(), size()


def rank():
    return 0 if _comm is None else _comm.Get_rank()


def size():
    return 1 if _comm is None else _comm.Get_size()


def is_primary():
    """Rank 0, the one that prints and writes files (True without MPI)."""
    return rank() == 0


def barrier():
    """Wait until every rank is here (a no-op without MPI): e.g. after rank 0 saved a file the others will read."""
    if active():
        _wait([_comm.Ibarrier()], "barrier()")


def active():
    """Whether fit, evaluate and predict run data-parallel now (init() ran, more than one process)."""
    return _comm is not None and _comm.Get_size() > 1


def timeout():
    """Seconds a rank waits for the others in one collective before ending the job (FASTNET_MPI_TIMEOUT)."""
    value = os.environ.get("FASTNET_MPI_TIMEOUT", "").strip()
    if not value:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"FASTNET_MPI_TIMEOUT={value!r} must be a positive number of seconds")
    return seconds


def step_communication():
    """(seconds spent inside MPI calls by training steps, steps) since init(): the part of a step the overlap with
    the backward did not hide."""
    return tuple(_step_comm_seconds)


def _share_node_cpus():
    from fastnet import _kernels

    if _kernels.num_threads_is_set() or os.environ.get("OMP_NUM_THREADS"):
        return
    node = _comm.Split_type(_MPI.COMM_TYPE_SHARED)  # the ranks on this node
    local = node.Get_size()
    node.Free()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cpus == (os.cpu_count() or cpus):  # not bound by the launcher: split the node between its ranks
        cpus = max(1, cpus // local)
    _kernels.set_num_threads(cpus)


# ---------------------------------------------------------------- failures
def every_rank(exc):
    """Mark exc as raised by every rank alike (what a collective found: data that differs, a reduced loss that is
    NaN), so that only rank 0 reports it: abort() on another rank then waits out rank 0's whole abort, not just
    GRACE_SECONDS, which a loaded machine can outlast. Returns exc."""
    exc.fastnet_every_rank = True
    return exc


def abort(exc, where=""):
    """Print exc once and end every rank. Rank 0 reports at once; another rank waits GRACE_SECONDS first, so an
    error every rank hits is printed by rank 0 alone (its abort ends the others while they wait); for an error
    marked every_rank, it waits past rank 0's abort watchdog too."""
    r, n = rank(), size()
    if r != 0:
        time.sleep(GRACE_SECONDS + (ABORT_SECONDS if getattr(exc, "fastnet_every_rank", False) else 0))
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    sys.stdout.flush()
    sys.stderr.write(f"fastnet.distributed: rank {r} of {n} failed{where}; aborting all {n} ranks\n{text}")
    sys.stderr.flush()
    # MPICH's MPI_Abort can hang once a peer has finalized; faulthandler's watchdog (a C thread, no GIL needed)
    # then ends the process, and the launcher ends the rest.
    global _abort_watchdog_sink
    _abort_watchdog_sink = open(os.devnull, "w")
    faulthandler.dump_traceback_later(ABORT_SECONDS, exit=True, file=_abort_watchdog_sink)
    _comm.Abort(1)


def _finalize():
    """MPI_Finalize at exit, bounded: it waits for the other ranks, and a peer that died in an abort (MPICH's
    MPI_Abort does not always end a rank already finalizing) would leave it waiting forever. After timeout() plus
    the abort's own allowance, faulthandler's watchdog ends the process (status 1)."""
    if _MPI.Is_finalized():
        return
    global _abort_watchdog_sink
    _abort_watchdog_sink = _abort_watchdog_sink or open(os.devnull, "w")
    faulthandler.dump_traceback_later(timeout() + ABORT_SECONDS + GRACE_SECONDS, exit=True, file=_abort_watchdog_sink)
    _MPI.Finalize()
    faulthandler.cancel_dump_traceback_later()


def _install_excepthook():
    previous = sys.excepthook

    def hook(kind, value, tb):
        if not active():
            return previous(kind, value, tb)
        abort(value.with_traceback(tb))

    sys.excepthook = hook


def _wait(requests, what):
    """Wait for non-blocking collectives, at most timeout() seconds; then end every rank, saying what waited."""
    if _MPI.Request.Testall(requests):
        return
    deadline = time.monotonic() + timeout()
    while not _MPI.Request.Testall(requests):
        if time.monotonic() > deadline:
            abort(TimeoutError(f"rank {rank()} waited {timeout():g} s for the other ranks in {what}. Are "
                               "fit/evaluate/predict called on every rank (not under `if rank() == 0`)? Set "
                               "FASTNET_MPI_TIMEOUT to wait longer"))


@contextlib.contextmanager
def fatal(where):
    """Inside: any exception aborts every rank (the peers may be waiting in a collective of this call)."""
    try:
        yield
    except BaseException as exc:  # KeyboardInterrupt and SystemExit too: a rank must not leave its peers waiting
        abort(exc, f" in {where}")


# ---------------------------------------------------------------- the data split
def share(n, r=None):
    """(lo, hi): rank r's (default: this rank's) contiguous share of n items; the first n % size get one more."""
    r = rank() if r is None else r
    q, extra = divmod(n, size())
    lo = r * q + min(r, extra)
    return lo, lo + q + (r < extra)


def local_batch(batch_size):
    """The largest share of a batch of batch_size: the rows each rank's buffers hold."""
    return -(-batch_size // size())


def _fingerprint(array):
    if array is None:
        return [0, 0, 0]
    array = np.ascontiguousarray(array)
    return [1, array.nbytes, zlib.crc32(array)]


def _allgather(values, what):
    """Every rank's int64 row of values, as a (size, len(values)) array."""
    mine = np.asarray(values, np.int64)
    rows = np.empty((size(), mine.size), np.int64)
    _wait([_comm.Iallgather(mine, rows)], what)
    return rows


def check_same_data(arrays, where):
    """Raise ValueError on every rank unless every rank holds the same arrays (size and CRC-32)."""
    rows = _allgather([v for a in arrays for v in _fingerprint(a)], f"{where} (comparing the ranks' data)")
    differ = [r for r in range(size()) if not np.array_equal(rows[r], rows[0])]
    if differ:
        raise every_rank(ValueError(
            f"{where}: under fastnet.distributed every rank passes the same (whole) data and fastnet splits each "
            f"batch between the ranks, but the data of rank(s) {differ} differs from rank 0's. Pass every rank the "
            "full arrays; do not shard them yourself"))


def broadcast_model(model):
    """Rank 0's weights, optimizer state and counters on every rank; warns (on rank 0) if the weights differed."""
    crcs = _allgather([zlib.crc32(model._params)], "fit (comparing the ranks' weights)")[:, 0]
    if rank() == 0 and (crcs != crcs[0]).any():
        warnings.warn(f"fit: the weights of rank(s) {np.flatnonzero(crcs != crcs[0]).tolist()} differed from rank "
                      "0's before training; rank 0's were broadcast. Create and load the model the same way on "
                      "every rank", RuntimeWarning, stacklevel=4)
    keys = np.array([model.seed, model.model_id, model.epochs_trained], np.int64)
    arrays = [model._params, model._step, model.optimizer._iterations, keys] + list(model.optimizer.slots)
    _wait([_comm.Ibcast(a, root=0) for a in arrays], "fit (broadcasting rank 0's model)")
    model.seed, model.model_id, model.epochs_trained = (int(k) for k in keys)


def sum_floats(values, what):
    """Elementwise float64 sum over the ranks."""
    values = np.asarray(values, np.float64)
    _wait([_comm.Iallreduce(_MPI.IN_PLACE, values, op=_MPI.SUM)], what)
    return values


def gather_rows(out, what):
    """Every rank's share of out's rows (rank r's rows share(len(out), r), already in place) onto every rank."""
    row = int(np.prod(out.shape[1:], dtype=np.int64))
    spans = [share(out.shape[0], r) for r in range(size())]
    counts, displs = [(hi - lo) * row for lo, hi in spans], [lo * row for lo, _ in spans]
    _wait([_comm.Iallgatherv(_MPI.IN_PLACE, [out, counts, displs, _MPI.FLOAT])], what)
    return out


# ---------------------------------------------------------------- one training step's reduction
class StepReducer:
    """The Allreduce of one training step: the batch's loss and metric sums (float64, started after the
    forward), then the flat gradient array, one plan step's slice at a time as the backward finishes it
    (non-blocking), or all of it after the backward when overlap is off. finish() waits for all of it.

    Every rank must start the same collectives in the same order: slices are started in backward order, and a
    rank whose share of the batch is empty starts them all (over zeros) in finish()."""

    distributed = True  # (fastnet.training.OneProcess is the one-process reducer)

    def __init__(self, grads, slices):
        self.grads = grads
        self.slices = slices  # {plan step index: (lo, hi)} in the arena, for the steps that have parameters
        self.order = sorted(slices, reverse=True)  # the order backward finishes them
        self.totals = np.zeros(1, np.float64)
        self.requests = []
        self.started = set()
        self.comm_seconds = 0.0  # time spent inside MPI calls this step (starting, progressing, waiting)

    def begin(self, loss_sum, metric_sums):
        t = time.perf_counter()
        self.totals = np.concatenate(([loss_sum], metric_sums)).astype(np.float64)
        self.requests = [_comm.Iallreduce(_MPI.IN_PLACE, self.totals, op=_MPI.SUM)]
        self.started = set()
        self.comm_seconds = time.perf_counter() - t

    def step_done(self, i):
        """Called by the plan's backward after step i: its gradient slice is final."""
        if not overlap or i not in self.slices:
            return
        t = time.perf_counter()
        self._start(i)
        _MPI.Request.Testall(self.requests)  # MPI progresses non-blocking collectives only inside its calls
        self.comm_seconds += time.perf_counter() - t

    def _start(self, i):
        lo, hi = self.slices[i]
        self.requests.append(_comm.Iallreduce(_MPI.IN_PLACE, self.grads[lo:hi], op=_MPI.SUM))
        self.started.add(i)

    def finish(self):
        """Waits for every reduction; returns (global loss sum, global metric sums)."""
        t = time.perf_counter()
        if overlap:
            for i in self.order:
                if i not in self.started:
                    self._start(i)
        elif self.grads.size:
            self.requests.append(_comm.Iallreduce(_MPI.IN_PLACE, self.grads, op=_MPI.SUM))
        _wait(self.requests, "a training step's gradient allreduce")
        self.requests = []
        self.comm_seconds += time.perf_counter() - t
        _step_comm_seconds[0] += self.comm_seconds
        _step_comm_seconds[1] += 1
        return float(self.totals[0]), self.totals[1:].copy()
