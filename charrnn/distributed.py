"""Data-parallel training across processes on MPI: the communicator wrapper.

`mpiexec -n N charrnn train ...` starts N processes (ranks); each takes its share of a
step's B streams (the split `parallel.DataParallel` uses for N shards), and the flat
gradient is summed across ranks in rank order, so that N ranks of one thread train
the same model, bit for bit, as one process with N shards.

MPI mode is decided from the environment the launcher sets (PMI_SIZE for MPICH and
Intel MPI, OMPI_COMM_WORLD_SIZE for Open MPI, PMIX_SIZE / MV2_COMM_WORLD_SIZE), with
more than one process: nothing to give. mpi4py is imported only then.

Every collective is non-blocking and polled against a deadline (`timeout`): a rank
that hangs makes the others stop with one line and exit status 1 instead of waiting
forever (the launcher then ends every rank). A rank that dies is MPI's launcher's to
handle: mpiexec ends the others at once (their checkpoints are whole, being written to
a temporary and renamed).
"""
import hashlib
import json
import os
import pickle
import sys
import time

import numpy as np

from charrnn.errors import CharrnnError, DataError, UsageError

SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")
TIMEOUT = 120.0     # seconds a rank waits for the others in a collective (--mpi-timeout)
START_TIMEOUT = 900.0   # the same until the first evaluation: ranks load (or compile) kernels
SPIN = 1.0          # seconds a wait polls without sleeping
INSTALL = 'pip install "charrnn[mpi]"'


def _env_int(names) -> int | None:
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def env_size() -> int:
    """How many processes the MPI launcher started (1 when not under one)."""
    return _env_int(SIZE_VARIABLES) or 1


def env_rank() -> int:
    """This process's rank as the launcher says (0 when not under one)."""
    return _env_int(RANK_VARIABLES) or 0 if env_size() > 1 else 0


def quiet(error) -> bool:
    """Whether `error` is one that rank 0 reports for all ranks (this rank says nothing)."""
    return getattr(error, "quiet", False)


def _quiet(error):
    error.quiet = True
    return error


def world(timeout=None) -> "World | None":
    """The MPI world when this process is one of several ranks started by mpiexec, else
    None. Raises DataError when mpi4py is missing or MPI cannot start."""
    if env_size() <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        e = DataError(f"started by mpiexec as {env_size()} processes, but this charrnn has no "
                      f"MPI support: {INSTALL}")
        raise e if env_rank() == 0 else _quiet(e) from None
    except Exception as e:  # noqa: BLE001 - MPI's start-up failure, whatever its type
        err = DataError(f"MPI did not start: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        raise err if env_rank() == 0 else _quiet(err) from None
    return World(MPI, MPI.COMM_WORLD, TIMEOUT if timeout is None else timeout)


class RankFailed(CharrnnError):
    """Another rank did not answer in time (it hung or died)."""
    exit_code = 1


class World:
    """The ranks of one run: collectives with a deadline, and the fixed-order sums."""

    def __init__(self, MPI, comm, timeout):
        self.MPI, self.comm, self.timeout = MPI, comm, timeout
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.out = None     # the run folder, named in a failure's message
        self.started = False    # set after the first evaluation: the short deadline from then

    # -- waiting ----------------------------------------------------------------------------

    def _wait(self, req, what):
        """Poll `req` until done; past the deadline, one line on stderr and exit status 1."""
        if req.Test():
            return
        start = time.perf_counter()
        limit = self.timeout if self.started else max(self.timeout, START_TIMEOUT)
        # spin, as MPI's blocking calls do: a large buffer moves in pieces, each needing a
        # Test (sleeping between them made a 40 MB sum 20x slower); past SPIN seconds the
        # other side is busy (rank 0 saving, say), so sleep between Tests
        spin_until = start + SPIN
        while not req.Test():
            now = time.perf_counter()
            if now - start > limit:
                self.abort(f"rank {self.rank}: no answer from the other ranks within "
                           f"{limit:g} s ({what}): one hung or died")
            if now > spin_until:
                time.sleep(0.0005)

    def abort(self, message):
        """Stop every rank: one line from this one, then exit status 1, on which the launcher
        ends the other ranks. Not MPI_Abort: MPICH's launcher handles an abort before it
        has forwarded what the rank wrote last, and lost this line in 1 run of 6; a
        process that exits has its output read to the end first."""
        kept = f"; the last checkpoints in {self.out} are kept" if self.out else ""
        sys.stdout.flush()
        sys.stderr.write(f"error: {message}{kept}\n")
        sys.stderr.flush()
        os._exit(1)

    # -- collectives ------------------------------------------------------------------------

    def allgather_floats(self, values, what="gathering values") -> np.ndarray:
        """(size, k) float64: every rank's k values, in rank order."""
        mine = np.ascontiguousarray(values, np.float64).reshape(-1)
        out = np.empty((self.size, mine.size), np.float64)
        self._wait(self.comm.Iallgather(mine, out), what)
        return out

    def allgather_objects(self, obj) -> list:
        """Every rank's picklable `obj`, in rank order."""
        data = np.frombuffer(pickle.dumps(obj), np.uint8)
        sizes = self.allgather_floats([data.size])[:, 0].astype(np.int64)
        out = np.empty(int(sizes.sum()), np.uint8)
        displs = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self._wait(self.comm.Iallgatherv(data, [out, sizes, displs, self.MPI.BYTE]), "gathering")
        return [pickle.loads(out[d:d + s].tobytes()) for d, s in zip(displs, sizes)]

    def from_root(self, value: float) -> float:
        """Rank 0's float, on every rank."""
        buf = np.array([value], np.float64)
        self._wait(self.comm.Ibcast(buf, 0), "receiving from rank 0")
        return float(buf[0])

    def sum_gradient(self, grad: np.ndarray):
        """grad (P,) := the sum of every rank's grad, added in rank order ((g0 + g1) + g2 ...,
        elementwise: exactly what DataParallel.step computes from its shards' gradients).

        A reduce-scatter then an allgather, as a ring allreduce moves (2 (N-1)/N of the
        buffer in and out per rank): rank j receives every rank's slice j (alltoallv),
        adds them in rank order, and the summed slices are gathered back."""
        n, P = self.size, grad.size
        cut = np.linspace(0, P, n + 1).astype(np.int64)
        counts, displs = np.diff(cut), cut[:-1]
        lo, hi = cut[self.rank], cut[self.rank + 1]
        mine = hi - lo
        parts = np.empty((n, mine), grad.dtype)
        dt = self.MPI._typedict[grad.dtype.char]
        self._wait(self.comm.Ialltoallv([grad, counts, displs, dt],
                                        [parts, np.full(n, mine), np.arange(n) * mine, dt]),
                   "summing the gradient")
        total = grad[lo:hi]
        total[:] = parts[0]
        for k in range(1, n):
            total += parts[k]
        self._wait(self.comm.Iallgatherv(self.MPI.IN_PLACE, [grad, counts, displs, dt]),
                   "summing the gradient")

    def stream_bounds(self, B: int) -> list[tuple[int, int]]:
        """Each rank's streams (lo, hi) of B: DataParallel's split into `size` shards."""
        cut = np.linspace(0, B, self.size + 1).astype(int)
        return list(zip(cut[:-1].tolist(), cut[1:].tolist()))

    # -- start-up ---------------------------------------------------------------------------

    def agree(self, failure, settings=None, corpus=None):
        """Start-up check, on every rank at once: each says whether it failed (a
        CharrnnError or None) and, if not, a digest of its settings and its corpus's
        fingerprint. Raises on every rank when any failed or they differ: on rank 0 the
        error to print (naming the rank), quiet on the others."""
        digest = None if settings is None else hashlib.sha256(
            json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
        mine = (None, digest, corpus) if failure is None else (
            (type(failure).__name__, failure.exit_code, str(failure)), None, None)
        said = self.allgather_objects(mine)
        error = None
        for k, (failed, d, c) in enumerate(said):
            if failed is not None:
                name, code, message = failed
                error = (UsageError if code == 2 else DataError)(
                    message if k == 0 else f"rank {k}: {message}")
                if k == 0 and failure is not None:
                    error = failure
                break
        if error is None:
            for k, (_, d, c) in enumerate(said[1:], 1):
                if c != said[0][2]:     # (first: another text has another vocabulary too)
                    error = DataError(f"rank {k} read another corpus than rank 0 ({c} against "
                                      f"{said[0][2]}: length:CRC); give every rank the same files")
                    break
                if d != said[0][1]:
                    error = UsageError(f"rank {k} was started with other options than rank 0; "
                                       f"give every rank the same command line")
                    break
        if error is not None:
            raise error if self.rank == 0 else _quiet(error)

    def check_streams(self, B: int):
        """UsageError (rank 0 reports it) when there are fewer streams than ranks."""
        if B < self.size:
            e = UsageError(f"{B} streams cannot be split across {self.size} MPI processes: "
                           f"give --batch-size {self.size} or more, or fewer processes",
                           "batch_size")
            raise e if self.rank == 0 else _quiet(e)
