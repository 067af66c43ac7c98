#!/usr/bin/env python3
"""What early stopping with patience K would have done to finished runs: from each
run's log.jsonl (trained with --patience off), the step at which K evaluations
without a new best would have stopped it, the share of its steps that saves, and
how much worse the best validation loss kept then is than the run's real best.

    python3 bench/patience.py checkpoints/*/log.jsonl --k 1 2 3 5 8
"""
import argparse
import json


def simulate(vals, k):
    """(index of the evaluation after which the run stops, best kept) for patience k."""
    best, since = float("inf"), 0
    for i, v in enumerate(vals):
        if v < best:
            best, since = v, 0
        else:
            since += 1
        if since >= k:
            return i, best
    return len(vals) - 1, best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+")
    ap.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 5, 8])
    a = ap.parse_args()
    print(f"{'run':<40} {'K':>3} {'stop step':>10} {'steps saved':>12} {'best lost':>10}")
    for path in a.logs:
        recs = [json.loads(line) for line in open(path)]
        evals = [(r["step"], r["val_loss"]) for r in recs if r.get("val_loss") is not None]
        steps, vals = zip(*evals)
        name = path.rsplit("/", 2)[-2]
        for k in a.k:
            i, best = simulate(vals, k)
            print(f"{name:<40} {k:>3} {steps[i]:>10} {1 - steps[i] / steps[-1]:>11.0%} "
                  f"{best - min(vals):>10.4f}")


if __name__ == "__main__":
    main()
