"""How long does a run sit on the unigram plateau? For each corpus and seed, train
for --steps steps and count the steps whose training loss is within --margin nats
of the corpus's unigram entropy (or above it): the loss of a model that has
learned only the characters' frequencies. One run at a time; prints a table and
one JSON line per run.

    python3 bench/plateau.py --corpus corpora/shakespeare.txt ../shared/corpora/tinyshakespeare.txt \\
        --seeds 1 2 3 --steps 400
    python3 bench/plateau.py --corpus corpora/shakespeare.txt --set lr=0.02 --set warmup=100

--set KEY=VALUE overrides a TrainConfig or ModelConfig field (schedule, warmup, lr,
optimizer, hidden, ...); the default is charrnn train's own defaults (config.train_defaults:
the default run's, lr 0.08 with a 400-step warm-up; with --set batch_size=16, give the
rate and warm-up of such a run too: --set lr=0.05 --set warmup=100).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def unigram_entropy(ids, V) -> float:
    counts = np.bincount(ids, minlength=V).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", nargs="+", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--margin", type=float, default=0.3, help="nats above which a step counts as on the plateau")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE config override")
    a = ap.parse_args()
    from charrnn.config import train_defaults
    from charrnn.config import ModelConfig, TrainConfig
    from charrnn.data import read_corpus, split
    from charrnn.training import Trainer

    model_kw, train_kw = train_defaults()
    for item in a.set:
        k, v = item.split("=", 1)
        target = model_kw if k in ModelConfig.__dataclass_fields__ else train_kw
        old = target.get(k)
        target[k] = type(old)(v) if old is not None and not isinstance(old, str) else (
            v if not v.replace(".", "", 1).replace("e-", "", 1).isdigit() else float(v))
    train_kw.setdefault("steps", a.steps)
    print(f"# {model_kw} {train_kw}", file=sys.stderr)
    rows = []
    for path in a.corpus:
        corpus = read_corpus([path])
        V = len(corpus.vocab)
        h1 = unigram_entropy(split(corpus.ids, 0.1)[0], V)
        for seed in a.seeds:
            m = ModelConfig(**{**model_kw, "vocab_size": V})
            t = TrainConfig(**{**train_kw, "seed": seed, "steps": a.steps})
            tr = Trainer(m, t, corpus.ids, corpus.vocab)
            tr.horizon = {"steps": t.steps}
            losses, t0 = [], time.perf_counter()
            for _ in range(a.steps):
                losses.append(tr.train_step())
            on = int(sum(x >= h1 - a.margin for x in losses))
            row = {"corpus": os.path.basename(path), "seed": seed, "unigram": round(h1, 3),
                   "plateau_steps": on, "loss_at_end": round(float(np.mean(losses[-20:])), 3),
                   "seconds": round(time.perf_counter() - t0, 1), "overrides": a.set}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"{'corpus':<24} {'seed':>4} {'unigram':>8} {'plateau steps':>14} {'loss at end':>12}")
    for r in rows:
        print(f"{r['corpus']:<24} {r['seed']:>4} {r['unigram']:>8.3f} {r['plateau_steps']:>14} "
              f"{r['loss_at_end']:>12.3f}")
    print(f"worst: {max(r['plateau_steps'] for r in rows)} steps on the plateau")


if __name__ == "__main__":
    main()
