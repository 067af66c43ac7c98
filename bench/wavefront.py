"""The layers side by side (charrnn.wavefront) against today's step, side by side in one
run: for each configuration, rounds of a few training steps alternate between the two,
and the medians of their chars/s and their ratio are printed (each round after one untimed
step, so that neither inherits the other's state). One BLAS per run.

    python3 bench/wavefront.py                        # MKL when installed
    CHARRNN_BLAS=openblas python3 bench/wavefront.py
    python3 bench/wavefront.py --rounds 9 --steps 4

"today" is the step charrnn took before the wavefront: one pass with two-thread
products (MKL), or two data-parallel shards (OpenBLAS, whose shard_count splits every size).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from charrnn.config import ModelConfig, TrainConfig  # noqa: E402
from charrnn.data import read_corpus  # noqa: E402
from charrnn.kernels import BLAS, blas  # noqa: E402
from charrnn import wavefront as W  # noqa: E402
from charrnn.training import Trainer  # noqa: E402
from machine import describe  # noqa: E402

CONFIGS = {     # key: (name, cell, layers, hidden, B, T, optimizer)
    "c": ("c: lstm 2x512 B=50 T=50", "lstm", 2, 512, 50, 50, "adam"),
    "plan": ("1800 s plan: lstm 2x384 B=32 T=64", "lstm", 2, 384, 32, 64, "adagrad"),
    "gru": ("gru 2x512 B=32 T=64", "gru", 2, 512, 32, 64, "adam"),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=3, help="training steps per round")
    ap.add_argument("--chunks", type=int, default=W.CHUNKS, help="wavefront chunks per step")
    ap.add_argument("--only", nargs="+", choices=list(CONFIGS), help="these configurations")
    a = ap.parse_args()
    W.CHUNKS = a.chunks
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    corpus = read_corpus([os.path.join(root, "corpora", "shakespeare.txt")])
    print(f"{describe(BLAS)}, {blas.threads()} threads, {time.strftime('%Y-%m-%d')}; {a.rounds} rounds of "
          f"{a.steps} steps, alternating; wavefront chunks: {a.chunks}", flush=True)
    print("| config | today chars/s | wavefront chars/s | ratio |\n|---|---|---|---|")
    for name, cell, L, H, B, T, opt in (CONFIGS[k] for k in a.only or CONFIGS):
        m = ModelConfig(model=cell, hidden=H, layers=L, vocab_size=len(corpus.vocab))
        t = TrainConfig(batch_size=B, seq_len=T, optimizer=opt, lr=2e-3 if opt == "adam" else 0.05)
        trainers = {"today": Trainer(m, t, corpus.ids, corpus.vocab, wavefront=False),
                    "wavefront": Trainer(m, t, corpus.ids, corpus.vocab, wavefront=True)}
        speeds = {k: [] for k in trainers}
        for tr in trainers.values():
            tr.train_step()     # compile, allocate
        for _ in range(a.rounds):
            for k, tr in trainers.items():
                tr.train_step()     # untimed: what the other left running (OpenMP's spinning threads) settles
                t0 = time.perf_counter()
                for _ in range(a.steps):
                    tr.train_step()
                speeds[k].append(a.steps * B * T / (time.perf_counter() - t0))
        today, wave = (statistics.median(speeds[k]) for k in trainers)
        print(f"| {name} | {today:,.0f} | {wave:,.0f} | **{wave / today:.2f}x** |", flush=True)


if __name__ == "__main__":
    main()
