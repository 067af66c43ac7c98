"""Where a step of benchmark config (c) goes: forward, backward, and within them the
recurrent products, the whole-sequence products and the rest (gate math, copies).

    python3 bench/profile_c.py                       # MKL when installed
    CHARRNN_BLAS=openblas python3 bench/profile_c.py
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from charrnn import model as M  # noqa: E402
from charrnn.config import ModelConfig, TrainConfig  # noqa: E402
from charrnn.data import read_corpus  # noqa: E402
from charrnn.kernels import BLAS, blas  # noqa: E402
from charrnn.training import Trainer  # noqa: E402
from products import ms as t, product  # noqa: E402

f32 = np.float32
rng = np.random.default_rng(0)


def prod(m, k, n, ta=False, tb=False):
    return product(rng, m, k, n, ta, tb)


w = rng.random((512, 2048), f32); wp = blas.prepare(w, 50, blas.prepared_buffer(50, 512, 2048, f32))
h = rng.random((50, 512), f32); g = np.zeros((50, 2048), f32)
rec_f = t(lambda: blas.gemm_prepared(h, wp, g, 0.0), 200) * 100
rec_b = t(prod(50, 2048, 512, tb=True), 200) * 100
big = t(prod(2500, 512, 2048), 10) + t(prod(512, 2500, 2048, ta=True), 10) * 3 + t(prod(2500, 2048, 512, tb=True), 10)
head = t(prod(2500, 512, 65), 20) + t(prod(512, 2500, 65, ta=True), 20) + t(prod(2500, 65, 512, tb=True), 20)
c = read_corpus(["corpora/shakespeare.txt"])
m = ModelConfig(model="lstm", hidden=512, layers=2, vocab_size=len(c.vocab))
tr = Trainer(m, TrainConfig(batch_size=50, seq_len=50, optimizer="adam", lr=2e-3), c.ids, c.vocab,
             shards=1)     # one pass with two-thread products (OpenBLAS would shard it)
x, y, _ = tr.batches.next()
fw = t(lambda: M.forward(m, tr.p, tr.ws, x, y, tr.state, None, g=tr.g), 5)
bw = t(lambda: M.backward(m, tr.p, tr.g, tr.ws, x, None), 5)
step = t(tr.train_step, 5)
print(f"{BLAS}: step {step:.0f} ms = forward {fw:.0f} + backward {bw:.0f} + update {step-fw-bw:.0f}")
print(f"  recurrent products: forward 100 x (50x512)@(512x2048) packed {rec_f:.0f} ms; backward 100 x (50x2048)@(2048x512) {rec_b:.0f} ms")
print(f"  whole-sequence products (input, weight gradients) {big:.0f} ms; head {head:.0f} ms")
print(f"  rest (gate math, packing, copies): {fw + bw - rec_f - rec_b - big - head:.0f} ms")
