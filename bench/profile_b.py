"""Where a data-parallel step of benchmark config (b) goes: the matrix products one of
its two 25-stream shards runs on one thread (recurrent, whole-sequence, head), timed
alone, against the shard's whole forward and backward pass.

    python3 bench/profile_b.py                       # MKL when installed
    CHARRNN_BLAS=openblas python3 bench/profile_b.py
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from charrnn import model as M  # noqa: E402
from charrnn.config import ModelConfig  # noqa: E402
from charrnn.kernels import BLAS, blas  # noqa: E402
from products import F32 as f32, ms as _ms, product as _product  # noqa: E402

rng = np.random.default_rng(0)
B, H, G, T, V = 25, 128, 512, 50, 65       # one shard of (b): B=50 split in two


def ms(fn, n=200):
    return _ms(fn, n, warm=5)


def product(m, k, n, ta=False, tb=False):
    return _product(rng, m, k, n, ta, tb)


blas.set_thread_local(1)
try:
    w = rng.random((H, G), f32)
    wp = blas.prepare(w, B, blas.prepared_buffer(B, H, G, f32))
    wtp = blas.prepare(w.T, B, blas.prepared_buffer(B, G, H, f32))
    h, g = rng.random((B, H), f32), np.zeros((B, G), f32)
    dg, dh = rng.random((B, G), f32), np.zeros((B, H), f32)
    rec_f = ms(lambda: blas.gemm_prepared(h, wp, g, 0.0)) * T * 2          # 2 layers
    rec_b = ms(lambda: blas.gemm_prepared(dg, wtp, dh, 0.0)) * T * 2
    N = T * B   # layer 2's input; the weight gradients of Wh (2 layers) and Wx; layer 2's input gradient
    whole = ms(product(N, H, G), 50) + 3 * ms(product(H, N, G, ta=True), 50) + ms(product(N, G, H, tb=True), 50)
    head = ms(product(N, H, V), 50) + ms(product(H, N, V, ta=True), 50) + ms(product(N, V, H, tb=True), 50)
    cfg = ModelConfig(model="lstm", hidden=H, layers=2, vocab_size=V)
    p = M.views(M.init_params(cfg, f32, rng), cfg)
    grad = M.views(np.zeros(M.num_params(cfg), f32), cfg)
    ws, st = M.Workspace(cfg, T, B, f32), M.State(cfg, B, f32)
    x = rng.integers(0, V, (T, B)).astype(np.int32)
    fw = ms(lambda: M.forward(cfg, p, ws, x, x, st, None, g=grad), 40)
    bw = ms(lambda: M.backward(cfg, p, grad, ws, x, None), 40)
finally:
    blas.set_thread_local(0)
print(f"{BLAS}: one (b) shard on one thread: forward {fw:.1f} + backward {bw:.1f} ms")
print(f"  products: recurrent {rec_f:.1f} + {rec_b:.1f} ms, whole-sequence {whole:.1f} ms, head {head:.1f} ms; "
      f"total {rec_f + rec_b + whole + head:.1f} ms")
