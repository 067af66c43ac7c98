#!/usr/bin/env python3
"""What regularisation and weight averaging cost in training speed: chars/s of the same
model with each option on, against none, measured side by side in one process
(rounds alternate between the settings, so a change in the machine's load hits
each alike; the median round is reported). The target: at most 10% slower.

    python3 bench/regcost.py                      # 2x256 LSTM, B=32, T=64
    python3 bench/regcost.py --hidden 512 --rounds 5
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
from machine import blas_name, describe  # noqa: E402

SETTINGS = {
    "none": {},
    "dropout 0.2 (locked)": {"dropout": 0.2},
    "dropout 0.2 (step)": {"dropout": 0.2, "dropout_kind": "step"},
    "wdrop 0.2": {"wdrop": 0.2},
    "average 0.999": {"avg_decay": 0.999},
    "all three": {"dropout": 0.2, "wdrop": 0.2, "avg_decay": 0.999},
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0, help="per setting and round")
    a = ap.parse_args()
    from charrnn.config import ModelConfig, TrainConfig
    from charrnn import kernels
    kernels.own_process()    # flush-to-zero as the charrnn command has it
    from charrnn.training import Trainer
    from charrnn.vocab import Vocab
    V = 65
    ids = np.random.default_rng(0).integers(0, V, 400_000).astype(np.uint8)
    vocab = Vocab(np.arange(32, 32 + V, dtype=np.int64))
    trainers = {}
    for name, opts in SETTINGS.items():
        m = {k: v for k, v in opts.items() if k in ("dropout", "dropout_kind", "wdrop")}
        mc = ModelConfig(model=a.cell, hidden=a.hidden, layers=a.layers, vocab_size=V, **m)
        tc = TrainConfig(batch_size=a.batch_size, seq_len=a.seq_len, val_frac=0.0,
                         avg_decay=opts.get("avg_decay"))
        trainers[name] = Trainer(mc, tc, ids, vocab)
    speeds = {name: [] for name in SETTINGS}
    chars = a.batch_size * a.seq_len
    print(f"# regularisation cost, {time.strftime('%Y-%m-%d')}: {describe(blas_name(None))}; "
          f"{a.cell} {a.layers}x{a.hidden}, B={a.batch_size} T={a.seq_len}", flush=True)
    for tr in trainers.values():
        tr.train_step()
    for _ in range(a.rounds):
        for name, tr in trainers.items():
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < a.seconds:
                tr.train_step()
                n += 1
            speeds[name].append(n * chars / (time.perf_counter() - t0))
    base = statistics.median(speeds["none"])
    print("| setting | chars/s (median of rounds) | against none |\n|---|---|---|")
    for name, s in speeds.items():
        med = statistics.median(s)
        print(f"| {name} | {med:,.0f} | {med / base:.3f}x |")


if __name__ == "__main__":
    main()
