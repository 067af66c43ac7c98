"""Data-parallel training steps: the B streams of a minibatch split across threads.

Streams are independent until their weight gradients are summed. So with n
shards, each thread takes B/n streams through the whole forward and backward
pass with single-threaded matrix products, and the n gradients are added. This
beats one pass whose products each use all n threads when the per-step products
are small: on 2 cores an LSTM step's (50x128)@(128x512) product plus its gate
math took 49 us on 2 MKL threads, and 37 us as two (25x128) halves side by side
(the gate math, single-threaded between products, now runs on both cores). It
loses when the recurrent weights outgrow a core's cache, since every shard
reads all of them at every step: (50x512)@(512x2048) plus gates, 0.50 ms on 2
threads against 0.75 ms split. Hence `shard_count`.

Deterministic for a given shard count; the summation order, so the rounding,
differs between shard counts. With MKL each thread's products are made
single-threaded (its per-thread count); OpenBLAS has one count for the process,
set to 1 for the length of a step, which comes to the same.
"""
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from charrnn import model as M
from charrnn.kernels import BLAS, blas
from charrnn.kernels.fpenv import flush_denormals

MIN_STREAMS = 8            # per shard; fewer make products too thin to pay for a thread
MAX_WEIGHT_BYTES = 1 << 20  # recurrent weights per layer that a shard re-reads at each step


def recurrent_weight_bytes(cfg: M.ModelConfig, dtype) -> int:
    """The bytes of one layer's recurrent weights Wh (H, gates * H)."""
    return cfg.hidden * cfg.gates * cfg.hidden * np.dtype(dtype).itemsize


def shard_count(cfg: M.ModelConfig, B: int, dtype) -> int:
    """How many shards a training step over B streams uses (1: no threads of ours).
    With OpenBLAS, large layers are sharded too: benchmark config (c) ran 11% slower
    split (4,525 against 5,110 chars/s on an idle machine) but, beside one competing
    CPU-bound process, kept 62% of that speed instead of 36%, since its threads meet
    once a step instead of at every product (AMD EPYC, 2 cores, OpenBLAS 0.3.30)."""
    if BLAS == "mkl" and recurrent_weight_bytes(cfg, dtype) > MAX_WEIGHT_BYTES:
        return 1
    return max(1, min(blas.threads(), B // MIN_STREAMS))


SMALL_PRODUCT_FLOPS = 1 << 21   # a recurrent product below this runs on one thread


def one_thread(cfg: M.ModelConfig, B: int) -> bool:
    """Whether a one-shard step's products are too small to share between threads.
    MKL splits even the (1x100)@(100x100) products of benchmark config (a) across two
    threads: 10% faster on an idle machine (130k against 118k chars/s), but with one
    competing process the threads wait for each other and it kept 27% of that speed;
    on one thread it kept 101% (AMD EPYC, 2 cores, MKL 2026.2)."""
    return 2 * B * cfg.hidden * cfg.gates * cfg.hidden < SMALL_PRODUCT_FLOPS


def worker_init():
    flush_denormals()           # MXCSR is per thread: see kernels/fpenv.py
    if blas.PER_THREAD:         # (OpenBLAS's one count is the step's caller's to set: a
        blas.set_thread_local(1)    # worker may start after the step that spawned it)


class DataParallel:
    """Per-shard workspaces and gradient buffers, and the threads that run them."""

    def __init__(self, cfg, T: int, B: int, dtype, shards: int):
        if not 2 <= shards <= B:
            raise ValueError(f"data-parallel shards must be 2..B={B}, not {shards}")
        self.cfg = cfg
        cut = np.linspace(0, B, shards + 1).astype(int)
        self.bounds = list(zip(cut[:-1], cut[1:]))
        self.ws = [M.Workspace(cfg, T, hi - lo, dtype) for lo, hi in self.bounds]
        # shard 0 writes into the caller's gradient; the others into their own
        self.grads = [None] + [np.zeros(M.num_params(cfg), dtype) for _ in self.bounds[1:]]
        self.g = [None] + [M.views(flat, cfg) for flat in self.grads[1:]]
        self.pool = ThreadPoolExecutor(shards - 1, initializer=worker_init)

    def step(self, p, grad, g, x, y, state, masks=None) -> float:
        # masks: model.dropout_masks's, (B, H) or (T, B, H): each shard takes its streams
        """Forward and backward over x, y (T, B) int32 from `state` (updated):
        `grad` (P,) flat, with named views `g`, receives the gradient of the mean
        loss over all T*B positions. Returns the summed loss."""
        def run(k):
            lo, hi = self.bounds[k]
            xs, ys = np.ascontiguousarray(x[:, lo:hi]), np.ascontiguousarray(y[:, lo:hi])
            ms = None if masks is None else [m if m is None else np.ascontiguousarray(m[..., lo:hi, :])
                                             for m in masks]
            gk = g if k == 0 else self.g[k]
            loss = M.forward(self.cfg, p, self.ws[k], xs, ys, state.rows(lo, hi), ms,
                             mean_over=x.size, g=gk)
            M.backward(self.cfg, p, gk, self.ws[k], xs, ms)
            return loss

        with blas.one_thread_products():     # (with OpenBLAS: the whole process's count)
            others = [self.pool.submit(run, k) for k in range(1, len(self.bounds))]
            try:
                total = run(0)
            finally:
                wait(others)    # never leave a shard running on shared state
        for k, f in enumerate(others, 1):
            total += f.result()
            grad += self.grads[k]
        return total


def sharded_loss_sum(cfg, p, wss, streams, bounds, dtype, should_stop=None) -> float:
    """model.loss_sum over the streams (E, N) split at `bounds` [(lo, hi)], one
    shard per thread with single-threaded products, each with its Workspace in wss.
    should_stop is asked from every shard's thread."""
    def run(k):
        lo, hi = bounds[k]
        return M.loss_sum(cfg, p, wss[k], streams[lo:hi], dtype, should_stop=should_stop)

    with ThreadPoolExecutor(len(bounds) - 1, initializer=worker_init) as pool:
        with blas.one_thread_products():
            others = [pool.submit(run, k) for k in range(1, len(bounds))]
            try:
                total = run(0)
            finally:
                wait(others)
    return total + sum(f.result() for f in others)
