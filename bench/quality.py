#!/usr/bin/env python3
"""Time to quality: the best validation loss each contender reaches in a wall-clock
budget on tinyshakespeare (last 10% contiguous validation), one run after the
other, never two at once:

    torch     the PyTorch reference (bench/torch_ref.py), Adam lr 2e-3, constant rate,
              the same model (default 2x256 LSTM, B=32 T=64), evaluating 10 times
    same      charrnn, the same model with Adam (the planner chooses only the
              schedule, warm-up and evaluation interval)
    planner   charrnn train CORPUS --time BUDGET: every choice the planner's
    default   charrnn train CORPUS with no options at all (its own 3000 steps; reported
              once, in the row of the budget nearest its wall time)
Budgets count wall time including evaluations, from the start of training.
With --seeds N every contender runs N times (seeds 1..N) and the table gives the
median and the range; a gain under 0.01 nats is claimed only from 3 seeds.

    python3 bench/quality.py                            # 60 180 300 600 1800 s: ~2.5 hours
    python3 bench/quality.py --budgets 60 300 --json bench/results/quality.json
    python3 bench/quality.py --budgets 300 --only planner default --seeds 3
    python3 bench/quality.py --budgets 60 --only planner --train-args "--seq-len 128 --batch-size 16"
"""
import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from machine import blas_name, describe, slug  # noqa: E402

DEFAULT_CORPUS = os.path.normpath(os.path.join(ROOT, "..", "shared", "corpora", "tinyshakespeare.txt"))
LN2 = math.log(2)


def charrnn_run(corpus, budget, extra, env, seed=None):
    with tempfile.TemporaryDirectory() as out:
        bound = [] if budget is None else ["--time", f"{budget}s"]
        cmd = [sys.executable, "-m", "charrnn", "train", corpus, *bound,
               "--out", os.path.join(out, "run"), "--no-preview", *extra,
               *([] if seed is None else ["--seed", str(seed)])]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
        log = [json.loads(line) for line in open(os.path.join(out, "run", "log.jsonl"))]
        vals = [x["val_loss"] for x in log if x["val_loss"] is not None]
        plan = [line.strip() for line in r.stderr.splitlines() if line.startswith(("plan", "  - "))]
        return {"best_val": min(vals), "steps": log[-1]["step"], "wall": round(wall, 1),
                "plan": plan[0] if plan else "", "reasons": plan[1:],
                "curve": [(x["elapsed"], x["step"], x["val_loss"]) for x in log if x["val_loss"] is not None]}


def torch_run(corpus, budget, model, env, seed=None):
    cmd = [sys.executable, os.path.join(HERE, "torch_ref.py"), corpus, "--seconds", str(budget),
           "--cell", model[0], "--layers", str(model[1]), "--hidden", str(model[2]),
           *([] if seed is None else ["--seed", str(seed)])]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"torch failed:\n{r.stderr[-2000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["wall"] = round(time.perf_counter() - t0, 1)
    return out


def summary(runs) -> str:
    """'median (bits)' of the runs' best losses, with [min, max] when there are several."""
    vals = sorted(r["best_val"] for r in runs)
    med = vals[len(vals) // 2] if len(vals) % 2 else (vals[len(vals) // 2 - 1] + vals[len(vals) // 2]) / 2
    spread = f" [{vals[0]:.4f}, {vals[-1]:.4f}]" if len(vals) > 1 else ""
    return f"{med:.4f} ({med / LN2:.3f}){spread}"


def table_rows(results, budgets):
    rows = ["| budget | PyTorch (same model) | charrnn (same model) | charrnn planner | planner's choice |",
            "|---|---|---|---|---|"]
    for budget in budgets:
        got = {}
        for r in results:
            if r["budget"] == budget:
                got.setdefault(r["who"], []).append(r)
        cell_ = lambda w: summary(got[w]) if w in got else "-"  # noqa: E731
        choice = got["planner"][0]["plan"].split(": ", 1)[-1] if "planner" in got else "-"
        rows.append(f"| {budget:g} s | {cell_('torch')} | {cell_('same')} | {cell_('planner')} | {choice} |")
    default = [r for r in results if r["who"] == "default"]
    if default:
        walls = sorted(r["wall"] for r in default)
        rows += ["", f"default run (no options): {summary(default)}, wall time "
                     f"{walls[0]:.0f}-{walls[-1]:.0f} s"]
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=DEFAULT_CORPUS)
    ap.add_argument("--budgets", type=float, nargs="+", default=[60, 180, 300, 600, 1800])
    ap.add_argument("--only", nargs="+", choices=["torch", "same", "planner", "default"],
                    default=["torch", "same", "planner"])
    ap.add_argument("--seeds", type=int, default=1, help="runs per contender (seeds 1..N)")
    ap.add_argument("--model", default="lstm:2:256", help="cell:layers:hidden for torch and same")
    ap.add_argument("--train-args", default="", help="more `charrnn train` options for the planner "
                    "and default contenders (one string: the planner keeps every choice they leave)")
    ap.add_argument("--blas", choices=["auto", "mkl", "openblas"], default="auto")
    ap.add_argument("--json", default=None, help="write results here "
                    "[default: bench/results/<date>-<cpu>-quality.json]")
    a = ap.parse_args()
    cell, L, H = a.model.split(":")
    model = (cell, int(L), int(H))
    env = dict(os.environ, **({"CHARRNN_BLAS": a.blas} if a.blas != "auto" else {}))
    blas = blas_name(None if a.blas == "auto" else a.blas)
    header = (f"# time to quality, {time.strftime('%Y-%m-%d')}: {describe(blas)}; {os.path.basename(a.corpus)}"
              + (f"; train options {a.train_args}" if a.train_args else ""))
    print(header, flush=True)
    if "torch" in a.only:
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.exit("PyTorch is not installed: pip install torch==2.13.0 (or --only same planner)")
    same = ["--model", cell, "--layers", L, "--hidden", H, "--optimizer", "adam", "--dropout", "0"]
    extra = shlex.split(a.train_args)
    seeds = [None] if a.seeds == 1 else list(range(1, a.seeds + 1))
    results = []
    for who in [w for w in a.only if w == "default"]:      # no budget: its own wall time
        for seed in seeds:
            r = charrnn_run(a.corpus, None, extra, env, seed)
            r.update(budget=None, who=who, seed=seed)
            results.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "curve"}), flush=True)
    for budget in a.budgets:
        for who in [w for w in a.only if w != "default"]:
            for seed in seeds:
                if who == "torch":
                    r = torch_run(a.corpus, budget, model, env, seed)
                else:
                    r = charrnn_run(a.corpus, budget, same if who == "same" else extra, env, seed)
                r.update(budget=budget, who=who, seed=seed)
                results.append(r)
                print(json.dumps({k: v for k, v in r.items() if k != "curve"}), flush=True)
    table = "\n".join([header, f"best validation loss, nats/char (bits/char); same model: "
                       f"{cell} {L}x{H}, B=32 T=64" + (f"; median of {a.seeds} seeds [min, max]"
                                                       if a.seeds > 1 else ""), "",
                       *table_rows(results, a.budgets)])
    print("\n" + table)
    path = a.json or os.path.join(HERE, "results", f"{time.strftime('%Y-%m-%d')}-{slug()}-quality.json")
    with open(path, "w") as f:
        json.dump({"header": header, "results": results}, f, indent=1)
    with open(path[:-5] + ".md", "w") as f:
        f.write(table + "\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
