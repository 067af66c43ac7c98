#!/usr/bin/env python3
"""Dynamic evaluation's settings, measured: the static loss and the dynamic loss of a
checkpoint on the last 10% of a text (as training holds it out), for a grid of step
sizes, decays and segment lengths. The losses are exact (no timing), so this may run
beside other work; the seconds column then means little.

    python3 bench/dyneval.py CHECKPOINT ../shared/corpora/tinyshakespeare.txt
    python3 bench/dyneval.py CHECKPOINT corpora/shakespeare.txt --lr 3e-5 --decay 1e-3 --segment 50
"""
import argparse
import itertools
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
from machine import blas_name, describe  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("corpus")
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-5, 3e-5, 1e-4])
    ap.add_argument("--decay", type=float, nargs="+", default=[0.0, 1e-3, 1e-2])
    ap.add_argument("--segment", type=int, nargs="+", default=[50])
    ap.add_argument("--max-chars", type=int, default=None, help="score only this many characters")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    from charrnn import dynamic as D
    from charrnn import evaluate as E
    from charrnn.checkpoint import load
    from charrnn.kernels.fpenv import denormals_flushed
    ck = load(a.checkpoint)
    text = open(a.corpus, encoding="utf-8").read()
    ids, known = ck.vocab.lookup(text[int(0.9 * len(text)):])
    ids = ids[known][:a.max_chars]
    print(f"# dynamic evaluation, {time.strftime('%Y-%m-%d')}: {describe(blas_name(None))}", flush=True)
    print(f"# {a.checkpoint} on the last 10% of {os.path.basename(a.corpus)} ({len(ids):,} chars)", flush=True)
    results = []
    with denormals_flushed():
        t0 = time.perf_counter()
        static = float(E.per_char_losses(ck, ids).mean())
        print(f"static\t{static:.4f}\t{time.perf_counter() - t0:.1f} s", flush=True)
        for lr, decay, seg in itertools.product(a.lr, a.decay, a.segment):
            t0 = time.perf_counter()
            loss = float(D.dynamic_losses(ck, ids, segment=seg, lr=lr, decay=decay).mean())
            r = {"lr": lr, "decay": decay, "segment": seg, "loss": loss, "gain": static - loss,
                 "seconds": round(time.perf_counter() - t0, 1)}
            results.append(r)
            print(f"lr={lr:g} decay={decay:g} segment={seg}\t{loss:.4f}\t{static - loss:+.4f}\t"
                  f"{r['seconds']} s", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"checkpoint": a.checkpoint, "corpus": os.path.basename(a.corpus), "chars": len(ids),
                       "static": static, "results": results, "machine": describe(blas_name(None))}, f, indent=1)


if __name__ == "__main__":
    main()
