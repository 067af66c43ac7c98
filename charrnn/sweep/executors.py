"""Where sweep trials run: a local pool, or a Dask cluster (an optional extra).

Both give a `concurrent.futures`-style executor, a `stop` callable the trials
poll, `request_stop()` for Ctrl-C, and `corpus_payload(paths)`: what a task
carries so its worker can read the corpus. Locally that is nothing (the paths
are read as they are). On Dask, by default the corpus files are scattered once
to every worker (`Client.scatter(..., broadcast=True)`) and each worker writes
them once to its temporary folder; with `ship=False` the workers read the same
paths, which must then be on a file system they share.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor


class LocalPool:
    """One trial per worker thread, each trial a child process with one thread: as
    many trials at once as `workers` (default: this machine's cores)."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="trial")
        self._stop = threading.Event()
        self.stop = self._stop.is_set
        self.where = f"local pool, {self.workers} trial(s) at a time"

    def corpus_payload(self, paths):
        return None

    def request_stop(self):
        self._stop.set()

    def close(self):
        self.executor.shutdown(wait=True, cancel_futures=True)


class DaskStop:
    """A stop flag the trials poll on their workers: a named distributed.Event."""

    def __init__(self, name):
        self.name = name

    def __call__(self):
        from distributed import Event
        return Event(self.name).is_set()


class DaskCluster:
    """Trials as tasks of a Dask distributed cluster (one trial per worker thread:
    start workers with --nthreads equal to their cores)."""

    def __init__(self, address: str, ship: bool = True, timeout: float = 5.0):
        try:
            from distributed import Client, Event
        except ImportError:
            raise ClusterError("--scheduler needs Dask: pip install 'charrnn[dask]'") from None
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise ClusterError(f"cannot reach the Dask scheduler at {address} "
                               f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'timed out'})"
                               ) from None
        self.ship = ship
        self.executor = self.client.get_executor(pure=False)
        name = f"charrnn-sweep-stop-{os.getpid()}-{os.urandom(4).hex()}"
        self._event = Event(name, client=self.client)
        self.stop = DaskStop(name)
        threads = sum(self.client.nthreads().values())
        self.workers = max(1, threads)
        self.where = f"Dask cluster {address}, {len(self.client.nthreads())} worker(s), {threads} thread(s)"

    def corpus_payload(self, paths):
        if not self.ship:
            return None
        data = []
        for p in paths:
            with open(p, "rb") as f:
                data.append((os.path.basename(p), f.read()))
        # moved once to each worker, then referred to by every task
        return self.client.scatter([data], broadcast=True, hash=False)[0]

    def request_stop(self):
        self._event.set()

    def close(self):
        try:
            self.executor.shutdown(wait=False)
            self.client.close(timeout=5)
        except Exception:  # noqa: BLE001 - closing a lost connection must not hide the result
            pass


class ClusterError(Exception):
    """The cluster cannot be used; the message says why and what to do."""
