#!/usr/bin/env python3
"""Training across processes on MPI, measured on one machine (docs/scale-out.md):

1. chars/s of the same model as one process on 1 and 2 threads (--threads 1 / 2: with 2,
   charrnn runs 2 shards, or for large layers on MKL one shard whose products use both
   threads, parallel.shard_count) and as 1 and 2 MPI ranks of one thread (`mpiexec -n 1 /
   -n 2 charrnn train`), each a real `charrnn train` whose log.jsonl times the steps after
   the first `--skip` (kernels loaded);
2. the time of one sum of the flat gradient across 2 ranks on loopback by buffer size:
   charrnn's fixed-order sum (distributed.World.sum_gradient: reduce-scatter in rank
   order, then allgather) against MPI's own Allreduce (whose order MPI chooses).

Run it under the measurement lock:

    flock /tmp/charrnn-measure.lock python3 bench/scale.py --out bench/results/DATE-CPU-scale.md

Needs the mpi extra (pip install "charrnn[mpi]"): mpiexec on the PATH.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

LOOPBACK = {"UCX_NET_DEVICES": "lo", "UCX_TLS": "self,sm,tcp", "FI_PROVIDER": "tcp", "FI_TCP_IFACE": "lo"}
MODELS = {   # name: (hidden, layers, B, T, steps)
    "2x256 B=32 T=64 (the default)": (256, 2, 32, 64, 120),
    "2x512 B=50 T=50 (benchmark config c)": (512, 2, 50, 50, 70),
}
SIZES = [10_000, 100_000, 1_000_000, 3_300_000, 10_000_000]   # float32 gradient elements


def mpiexec(n):
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")   # the mpich wheel's
    return [beside if os.access(beside, os.X_OK) else shutil.which("mpiexec"), "-iface", "lo", "-host", "localhost", "-n", str(n)]


def train_speed(corpus, hidden, layers, B, T, steps, skip, how, folder) -> float:
    """chars/s of steps skip+1..steps of one `charrnn train` run."""
    args = [sys.executable, "-m", "charrnn", "train", corpus, "--hidden", str(hidden), "--layers",
            str(layers), "--batch-size", str(B), "--seq-len", str(T), "--steps", str(steps),
            "--eval-every", "0", "--val-frac", "0.01", "--avg-decay", "off", "--no-preview", "-q",
            "--out", folder]
    if how == "1 shard":
        cmd = args + ["--threads", "1"]
    elif how == "2 shards":
        cmd = args + ["--threads", "2"]
    else:   # (mpiexec -n 1 is a world of one: charrnn runs it as one process, on one thread)
        cmd = mpiexec(int(how.split()[0])) + args + (["--threads", "1"] if how == "1 ranks" else [])
    env = {**os.environ, **LOOPBACK}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: {r.stderr or r.stdout}")
    log = {rec["step"]: rec for rec in map(json.loads, open(os.path.join(folder, "log.jsonl")))}
    # the last step's record is written after the final evaluation: time to the one before
    last = max(s for s in log if s < steps)
    return (last - skip) * B * T / (log[last]["elapsed"] - log[skip]["elapsed"])


def allreduce_worker(reps):
    """Run under mpiexec: time sum_gradient and MPI Allreduce per size; rank 0 prints JSON."""
    from charrnn import distributed
    w = distributed.world()
    MPI = w.MPI
    out = {}
    for n in SIZES:
        g = np.random.default_rng(w.rank).standard_normal(n).astype(np.float32)
        res = np.empty_like(g)
        times = {"fixed-order": [], "MPI Allreduce": []}
        for _ in range(reps):
            w.comm.Barrier()
            t = time.perf_counter()
            w.sum_gradient(g)
            times["fixed-order"].append(time.perf_counter() - t)
            w.comm.Barrier()
            t = time.perf_counter()
            w.comm.Allreduce(g, res, MPI.SUM)
            times["MPI Allreduce"].append(time.perf_counter() - t)
        out[n] = {k: statistics.median(v) for k, v in times.items()}
    if w.rank == 0:
        print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="write the Markdown table here too")
    ap.add_argument("--skip", type=int, default=10, help="steps not timed (kernel loading)")
    ap.add_argument("--reps", type=int, default=20, help="sums timed per buffer size")
    ap.add_argument("--allreduce-worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.allreduce_worker:
        return allreduce_worker(a.reps)
    from machine import blas_name, describe
    blas = blas_name(None)
    lines = [f"# Training across processes on MPI, {time.strftime('%Y-%m-%d')}",
             "", f"{describe(blas)}; MPICH from PyPI (`pip install \"charrnn[mpi]\"`), loopback.",
             f"Command: `flock /tmp/charrnn-measure.lock python3 bench/scale.py` "
             f"(steps after the first {a.skip} timed from log.jsonl; corpus: the bundled "
             f"tinyshakespeare).", ""]
    corpus = os.path.join(os.path.dirname(HERE), "corpora", "shakespeare.txt")
    lines += ["## chars/s, one process against MPI ranks", "",
              "| model | 1 process, --threads 1 | 1 process, --threads 2 | 1 rank | 2 ranks | 2 ranks / --threads 2 |",
              "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, (H, L, B, T, steps) in MODELS.items():
            speed = {}
            for how in ("1 shard", "2 shards", "1 ranks", "2 ranks"):
                folder = os.path.join(tmp, f"{H}-{how.replace(' ', '')}")
                speed[how] = train_speed(corpus, H, L, B, T, steps, a.skip, how, folder)
                print(f"{name}, {how}: {speed[how]:,.0f} chars/s", file=sys.stderr)
            lines.append(f"| {name} | {speed['1 shard']:,.0f} | {speed['2 shards']:,.0f} | "
                         f"{speed['1 ranks']:,.0f} | {speed['2 ranks']:,.0f} | "
                         f"{speed['2 ranks'] / speed['2 shards']:.2f}x |")
    r = subprocess.run(mpiexec(2) + [sys.executable, os.path.abspath(__file__), "--allreduce-worker",
                                     "--reps", str(a.reps)],
                       capture_output=True, text=True, env={**os.environ, **LOOPBACK}, timeout=600)
    if r.returncode != 0:
        raise SystemExit(r.stderr or r.stdout)
    sums = json.loads(r.stdout.strip().splitlines()[-1])
    lines += ["", "## One sum of the flat float32 gradient across 2 ranks (median of "
              f"{a.reps})", "",
              "| elements | MB | fixed-order sum (charrnn) | MPI Allreduce | GB/s of buffer (fixed-order) |",
              "|---|---|---|---|---|"]
    for n, t in sums.items():
        mb = int(n) * 4 / 1e6
        lines.append(f"| {int(n):,} | {mb:.2f} | {t['fixed-order'] * 1e3:.3f} ms | "
                     f"{t['MPI Allreduce'] * 1e3:.3f} ms | {mb / 1e3 / t['fixed-order']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
