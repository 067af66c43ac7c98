#!/usr/bin/env python3
"""What a validation pass costs during training, against the training steps between
two passes: the default model (2x256 LSTM, B=32 T=64) on the whole validation split
(last 10%), one thread's pass against the data-parallel one, measured back to back
in one process; median of --repeats.

    python3 bench/evalcost.py ../shared/corpora/tinyshakespeare.txt
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=256)
    a = ap.parse_args()
    from machine import describe
    from charrnn.config import ModelConfig, TrainConfig
    from charrnn.data import read_corpus
    from charrnn.kernels import BLAS
    from charrnn.training import Trainer
    c = read_corpus([a.corpus])
    m = ModelConfig(model="lstm", hidden=a.hidden, layers=2, vocab_size=len(c.vocab))
    tr = Trainer(m, TrainConfig(), c.ids, c.vocab)
    for _ in range(3):
        tr.train_step()
    t0 = time.perf_counter()
    for _ in range(20):
        tr.train_step()
    step = (time.perf_counter() - t0) / 20
    out = {}
    shards = tr.shards
    for n in sorted({1, shards}):
        tr.shards, tr._eval_ws = n, None
        tr.evaluate()
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            val = tr.evaluate()
            times.append(time.perf_counter() - t0)
        out[n] = (statistics.median(times), val)
    print(f"# {describe(BLAS)}; lstm 2x{a.hidden}, {len(tr.val_ids):,} validation chars")
    print(f"training step {step * 1000:.1f} ms; 200 steps {200 * step:.2f} s")
    for n, (t, val) in out.items():
        print(f"validation pass, {n} shard(s): {t:.3f} s = {t / (t + 200 * step):.1%} of a 200-step "
              f"interval; loss {val:.10f}")


if __name__ == "__main__":
    main()
