"""The layers of a training step side by side: a wavefront across the cores.

Layer l at step t needs layer l-1's output at step t and its own state at step t-1,
so layer l can run steps t..t+k while layer l-1 runs the next k. With one thread per
layer, each running single-threaded products, the recurrent products of all the layers
keep all the cores busy at once, where one layer at a time splits each small per-step
product across the cores and runs the element-wise gate work on one core between them.

The T steps are cut into chunks of about T/CHUNKS steps. Forward, the thread of layer l
runs each chunk's recurrence and then the first half of the columns of layer l+1's
input product for that chunk; the thread of layer l+1, once told, makes the other half
and runs its own recurrence. Backward goes the other way, chunks from the last: the
thread of layer l+1 runs its chunk back through time and makes half of the gradient
reaching layer l's outputs; the thread of layer l the other half, then its own chunk.
Each thread ends with its layer's weight gradients and half of those of the input
weights of the layer above. So the work is shared about evenly between the threads.

No product of the step uses more than one thread, the output layer's included (it runs
on one thread between the two passes, so `applies` asks for a vocabulary no larger than
the hidden size): a BLAS's own worker threads would otherwise be left spinning in wait
of the next product, taking a core from the layers' threads (MKL's OpenMP threads spin
for 200 ms: with them, config (c) ran at 0.83x of the layer-by-layer step).

The arithmetic is that of `model.forward`/`model.backward` but for the input-side
products, made per chunk and per column half: the results differ from the layer-by-
layer path's in rounding, and are the same at every run (the chunks and halves do not
depend on timing). Deterministic for a given thread count, as data-parallel steps are.
"""
import threading
from concurrent.futures import ThreadPoolExecutor, wait

from charrnn import model as M
from charrnn.kernels import BLAS, blas, head
from charrnn.parallel import MAX_WEIGHT_BYTES, recurrent_weight_bytes, worker_init

CHUNKS = 25     # per step: 2-3 steps a chunk at T = 50-64 (10 and 50 measured slower, bench/wavefront.py)


def applies(cfg, dtype, threads: int, blas_name: str | None = None) -> bool:
    """Whether a one-shard training step runs as a wavefront: with OpenBLAS (`blas_name`,
    default the BLAS loaded), two or more layers, a thread for each, recurrent weights
    large enough (over MAX_WEIGHT_BYTES a layer) that data-parallel shards, each
    re-reading them all, do not pay, and an output layer small beside the layers
    (V <= H), since it runs on one thread.

    Not with MKL: against MKL's layer-by-layer step the wavefront measured 0.92x for
    config (c) and 1.00x for 2x384 on a Zen 4 EPYC (0.86x once), 1.00-1.04x on a Zen 5;
    against OpenBLAS's shards 1.03-1.20x but for (c) on the Zen 4, 0.96x
    (bench/results/2026-12-06-amd-epyc-zen4-wavefront.md)."""
    if (blas_name or BLAS) != "openblas":
        return False
    return (2 <= cfg.layers <= threads and recurrent_weight_bytes(cfg, dtype) > MAX_WEIGHT_BYTES
            and cfg.vocab_size <= cfg.hidden)


def chunks(T: int) -> list[tuple[int, int]]:
    k = max(1, -(-T // CHUNKS))
    return [(t, min(t + k, T)) for t in range(0, T, k)]


class _Aborted(Exception):
    """Another layer's thread failed: its error is the one raised."""


class Wavefront:
    """A training step's forward and backward with each layer on a thread of its own."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.pool = ThreadPoolExecutor(cfg.layers - 1, initializer=worker_init)

    def step(self, p, g, ws, x, y, state, masks=None) -> float:
        """As model.forward(grad=True) then model.backward, every product on one thread:
        the gradient of the mean loss into the views g; returns the summed loss."""
        with blas.one_thread_products():     # (with OpenBLAS: the whole process's count)
            loss = self.forward(p, ws, x, y, state, masks, g)
            self.backward(p, g, ws, x, masks)
        return loss

    def _run(self, stage, order):
        """stage(l, done, failed) for every layer l, the first of `order` on this thread,
        the others on the pool's; waits for all, raises the first error.
        done[l][j]: layer l finished chunk j (all set when it stops, even by an error)."""
        n = len(self._chunks)
        done = {l: [threading.Event() for _ in range(n)] for l in order}
        failed = threading.Event()

        def guarded(l):
            try:
                stage(l, done, failed)
            except BaseException:
                failed.set()
                raise
            finally:
                for e in done[l]:
                    e.set()     # never leave another layer waiting

        others = [self.pool.submit(guarded, l) for l in order[1:]]
        try:
            guarded(order[0])
        except _Aborted:
            pass
        finally:
            wait(others)
        # (this thread's own error, unless an abort, has been raised by now)
        for e in (f.exception() for f in others):
            if e is not None and not isinstance(e, _Aborted):
                raise e

    def forward(self, p, ws, x, y, state, masks=None, g=None) -> float:
        """As model.forward(grad=True): returns the summed loss, leaves what backward needs."""
        cfg, T = self.cfg, x.shape[0]
        L, G = cfg.layers, cfg.gates * cfg.hidden
        self._chunks = chunks(T)
        half = G // 2

        def stage(l, done, failed):
            Whp = M.begin_layer(cfg, p, ws, state, l)
            if l == 0:
                head.embed(x, p["l0.Wx"], ws.gates[0][:T])
            for j, (t0, t1) in enumerate(self._chunks):
                if l > 0:
                    _wait(done[l - 1][j], failed)
                    M.input_product(p, ws, masks, l, t0, t1, half, G)
                M.layer_steps(cfg, p, ws, l, t0, t1, Whp)
                if l + 1 < L:
                    M.mask_input(ws, masks, l + 1, t0, t1)
                    M.input_product(p, ws, masks, l + 1, t0, t1, 0, half)
                done[l][j].set()
            M.end_layer(cfg, ws, state, l, T)

        self._run(stage, list(range(L)))
        return M.head_forward(cfg, p, ws, y, masks, True, None, g)

    def backward(self, p, g, ws, x, masks=None):
        """As model.backward, after this object's forward."""
        cfg, T = self.cfg, x.shape[0]
        L, H, G = cfg.layers, cfg.hidden, cfg.gates * cfg.hidden
        dabove = M.head_backward(cfg, p, g, ws, masks, T)
        last = len(self._chunks) - 1

        def stage(l, done, failed):
            WhTp = M.begin_layer_backward(cfg, p, ws, l)
            for j in range(last, -1, -1):
                t0, t1 = self._chunks[j]
                if l + 1 < L:
                    _wait(done[l + 1][j], failed)
                    M.input_backward(p, ws, masks, l + 1, t0, t1, H // 2, H, dabove)
                M.layer_steps_backward(cfg, ws, l, t0, t1, dabove, WhTp)
                if l > 0:
                    M.input_backward(p, ws, masks, l, t0, t1, 0, H // 2, dabove)
                done[l][j].set()
            # the weight gradients: layer l's own, and half of Wx's of the layer above
            # (finished: this layer has waited for all its chunks)
            M.recurrent_gradients(cfg, g, ws, l, T)
            M.input_gradients(cfg, g, ws, x, masks, l, T, G // 2, G)
            if l + 1 < L:
                M.input_gradients(cfg, g, ws, x, masks, l + 1, T, 0, G // 2)

        self._run(stage, list(range(L - 1, -1, -1)))


def _wait(event, failed):
    event.wait()
    if failed.is_set():
        raise _Aborted()
