#!/usr/bin/env python3
"""charrnn against PyTorch, side by side: same configurations, one run, interleaved.

Every measurement runs in a fresh process (bench/worker.py) so that its peak
memory is its own; JIT compilation and warm-up (at least 5 steps and 2 s) are
excluded from both, and each process reports the median of 3 timing windows.
Repetitions alternate charrnn and PyTorch, configuration by configuration, and
the median over them is reported. Without torch installed the PyTorch column is skipped
with a message (torch is a benchmark-only dependency: pip install torch==2.13.0).

    python bench/bench.py                 # all configurations, 3 repetitions (~10 min)
    python bench/bench.py --only b c --repeats 1
    python bench/bench.py --under-load        # each training config idle, then beside a
                                              # CPU-bound process the benchmark starts
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from machine import describe, slug  # noqa: E402
DEFAULT_CORPUS = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "corpora", "tinyshakespeare.txt"))

# name: (mode, cell, H, L, B, T, optimizer, lr, timed steps charrnn, timed steps torch)
CONFIGS = {
    "a": ("train", "rnn", 100, 1, 1, 25, "adagrad", 0.1, 8000, 3000),
    "b": ("train", "lstm", 128, 2, 50, 50, "adam", 2e-3, 200, 150),
    "c": ("train", "lstm", 512, 2, 50, 50, "adam", 2e-3, 20, 15),
    "d": ("train", "gru", 256, 2, 32, 64, "adam", 2e-3, 80, 50),
    "e": ("train", "rnn", 512, 1, 32, 64, "adam", 2e-3, 150, 100),
    "s128": ("sample", "lstm", 128, 2, 1, 1, "adam", 2e-3, 30000, 3000),
    "s512": ("sample", "lstm", 512, 2, 1, 1, "adam", 2e-3, 5000, 300),
    "s128n": ("sample", "lstm", 128, 2, 1, 1, "adam", 2e-3, 30000, 5000),
    "s512n": ("sample", "lstm", 512, 2, 1, 1, "adam", 2e-3, 5000, 2000),
    # charrnn sample --num B (B streams at once, as the CLI samples; B = 1 is `sample`'s own
    # single-stream path) against PyTorch's B streams batched; chars/s over all streams
    "o512": ("many", "lstm", 512, 2, 1, 1, "adam", 2e-3, 3000, 300),
    "m512": ("many", "lstm", 512, 2, 32, 1, "adam", 2e-3, 600, 300),
}
NO_ONEDNN = {"s128n", "s512n"}   # PyTorch measured with oneDNN off (its LSTM is faster so at batch 1)
TARGETS = {"a": 10, "b": 1.5, "c": 1.1, "d": 1.5, "e": 1.5, "s128": 5, "s512": 5, "s128n": 5, "s512n": 5,
           "o512": 5, "m512": 5}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def flops_per_char(cell, H, L, V):
    """Matrix-multiply FLOPs per character for forward + backward, counting the
    first layer's input as the row lookup it is (no dense one-hot product)."""
    g = GATES[cell] * H
    return 3 * (2 * H * g * L + 2 * H * g * (L - 1) + 2 * H * V)


def gemm_peak(threads):
    """float32 GFLOP/s of a 2048^3 matrix product with numpy's BLAS: the best of
    six 0.5 s windows, so that a moment of other load on the machine does not
    lower the ceiling (a single 1.5 s window read anywhere from 217 to 314)."""
    code = ("import os,time,numpy as np\n"
            "a=np.random.rand(2048,2048).astype(np.float32);b=a.copy();a@b\n"
            "best=0\n"
            "for _ in range(6):\n"
            "  n=0;t=time.perf_counter()\n"
            "  while time.perf_counter()-t<0.5: a@b; n+=1\n"
            "  best=max(best,2*2048**3*n/(time.perf_counter()-t)/1e9)\n"
            "print(best)")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=env, check=True).stdout)


def measure(impl, name, corpus, threads, blas, warmup_only=False):
    mode, cell, H, L, B, T, opt, lr, steps_c, steps_t = CONFIGS[name]
    cmd = [sys.executable, os.path.join(HERE, "worker.py"), "--impl", impl, "--mode", mode,
           "--cell", cell, "--hidden", str(H), "--layers", str(L), "--batch", str(B), "--seq", str(T),
           "--optimizer", opt, "--lr", str(lr),
           "--steps", "1" if warmup_only else str(steps_c if impl == "charrnn" else steps_t),
           "--threads", str(threads), "--corpus", corpus]
    if warmup_only:
        cmd += ["--warmup-seconds", "0", "--windows", "1"]
    if impl == "torch" and name in NO_ONEDNN:
        cmd.append("--no-mkldnn")
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, CHARRNN_BLAS=blas))
    if r.returncode != 0:
        raise RuntimeError(f"{impl} {name} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=DEFAULT_CORPUS)
    ap.add_argument("--only", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the results here  "
                    "[default: bench/results/<date>-<cpu>-<blas>.json, and .md]")
    ap.add_argument("--blas", choices=["auto", "openblas"], default="auto",
                    help="charrnn's BLAS: MKL when installed (auto), or force OpenBLAS")
    ap.add_argument("--under-load", action="store_true",
                    help="measure each training configuration idle and then beside one competing "
                         "CPU-bound process (started and stopped here); report the share kept")
    args = ap.parse_args()
    have_torch = importlib.util.find_spec("torch") is not None
    if not have_torch:
        print("torch is not installed: measuring charrnn only "
              "(pip install torch==2.13.0 for the side-by-side comparison)", file=sys.stderr)
    impls = ["charrnn", "torch"] if have_torch else ["charrnn"]
    sys.path.insert(0, os.path.dirname(HERE))
    from charrnn.data import read_corpus
    V = len(read_corpus([args.corpus]).vocab)
    peak = gemm_peak(args.threads)
    print(f"sgemm peak (numpy, 2048^3, {args.threads} threads): {peak:.0f} GFLOP/s", file=sys.stderr)
    # one untimed run of each configuration first, so that Numba's on-disk cache is warm
    # and no measured process (nor its peak memory) includes compilation
    for name in args.only:
        measure("charrnn", name, args.corpus, args.threads, args.blas, warmup_only=True)
    if args.under_load:
        return under_load(args, impls, peak)
    runs = {(i, n): [] for i in impls for n in args.only}
    for rep in range(args.repeats):
        for name in args.only:
            for impl in (impls if rep % 2 == 0 else impls[::-1]):   # interleaved, alternating order
                r = measure(impl, name, args.corpus, args.threads, args.blas)
                runs[(impl, name)].append(r)
                print(f"[{rep + 1}/{args.repeats}] {name} {impl}: {r['chars_per_sec']:,.0f} chars/s",
                      file=sys.stderr, flush=True)
    rows = []
    for name in args.only:
        mode, cell, H, L, B, T, opt, lr, *_ = CONFIGS[name]
        row = {"config": name, "mode": mode, "cell": cell, "H": H, "L": L, "B": B, "T": T, "optimizer": opt}
        for impl in impls:
            rs = runs[(impl, name)]
            cps = [r["chars_per_sec"] for r in rs]
            row[impl] = {"chars_per_sec": statistics.median(cps), "min": min(cps), "max": max(cps),
                         "ms_per_step": statistics.median([r.get("ms_per_step", 0) for r in rs]),
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                         "warmup_seconds": statistics.median([r["warmup_seconds"] for r in rs])}
            if impl == "charrnn":
                row["blas"] = rs[0]["blas"]
            if mode == "train":
                row[impl]["gemm_fraction"] = row[impl]["chars_per_sec"] * flops_per_char(cell, H, L, V) / 1e9 / peak
        if have_torch:
            row["ratio"] = row["charrnn"]["chars_per_sec"] / row["torch"]["chars_per_sec"]
            row["memory_ratio"] = row["charrnn"]["peak_rss_mb"] / row["torch"]["peak_rss_mb"]
        rows.append(row)
    blas = rows[0]["blas"]
    machine = describe(blas)
    table = print_table(rows, have_torch, peak, args, machine)
    write_results(args, f"{blas}", machine, peak, rows, table)


class Competitor:
    """One CPU-bound process (a Python busy loop) for the duration of a `with`: what a
    browser tab, a compile or a second training does to a 2-core machine."""

    def __enter__(self):
        self.p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.p.kill()
        self.p.wait()


def under_load(args, impls, peak):
    """Each training configuration idle, then under one competing process, one after
    the other (repeats times, alternating); the share of idle throughput kept."""
    names = [n for n in args.only if CONFIGS[n][0] == "train"]
    got = {(i, n, load): [] for i in impls for n in names for load in (False, True)}
    for rep in range(args.repeats):
        for name in names:
            for impl in impls:
                for load in ((False, True) if rep % 2 == 0 else (True, False)):
                    if load:
                        with Competitor():
                            r = measure(impl, name, args.corpus, args.threads, args.blas)
                    else:
                        r = measure(impl, name, args.corpus, args.threads, args.blas)
                    got[(impl, name, load)].append(r)
                    print(f"[{rep + 1}/{args.repeats}] {name} {impl} {'loaded' if load else 'idle'}: "
                          f"{r['chars_per_sec']:,.0f} chars/s", file=sys.stderr, flush=True)
    blas = got[("charrnn", names[0], False)][0]["blas"]
    machine = describe(blas)
    lines = [f"{machine}; {time.strftime('%Y-%m-%d')}; {args.repeats} repetition(s), median; "
             f"{args.threads} threads; one competing CPU-bound process in the loaded runs", "",
             "| config | charrnn idle | charrnn loaded | kept (target >= 40%) |"
             + (" PyTorch idle | PyTorch loaded | kept |" if "torch" in impls else ""),
             "|---|---|---|---|" + ("---|---|---|" if "torch" in impls else "")]
    rows = []
    for name in names:
        row = {"config": name}
        cells = []
        for impl in impls:
            idle = statistics.median(r["chars_per_sec"] for r in got[(impl, name, False)])
            loaded = statistics.median(r["chars_per_sec"] for r in got[(impl, name, True)])
            row[impl] = {"idle": idle, "loaded": loaded, "kept": loaded / idle}
            kept = f"{100 * loaded / idle:.0f}%"
            cells += [f"{idle:,.0f}", f"{loaded:,.0f}", f"**{kept}**" if impl == "charrnn" else kept]
        rows.append(row)
        mode, cell, H, L, B, T, opt, *_ = CONFIGS[name]
        lines.append(f"| {name}: {cell} H={H} L={L} B={B} T={T} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print("\n" + table)
    write_results(args, f"{blas}-underload", machine, peak, rows, table)


def write_results(args, suffix, machine, peak, rows, table):
    """rows as JSON and the table as Markdown: --json, or bench/results/<date>-<cpu>-<suffix>."""
    path = args.json or os.path.join(HERE, "results", f"{time.strftime('%Y-%m-%d')}-{slug()}-{suffix}.json")
    with open(path, "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d"), "machine": machine, "peak_gflops": peak,
                   "threads": args.threads, "repeats": args.repeats, "rows": rows}, f, indent=1)
    with open(os.path.splitext(path)[0] + ".md", "w") as f:
        f.write(table + "\n")
    print(f"wrote {path}", file=sys.stderr)


def print_table(rows, have_torch, peak, args, machine) -> str:
    head = "| config | charrnn chars/s | " + ("PyTorch chars/s | ratio (target) | " if have_torch else "") + \
           "charrnn ms/step | " + ("PyTorch ms/step | " if have_torch else "") + \
           "peak MB charrnn" + (" / PyTorch" if have_torch else "") + " | GEMM peak fraction charrnn" + \
           (" / PyTorch |" if have_torch else " |")
    blas = ", ".join(sorted({r["blas"] for r in rows}))
    lines = [f"{machine}; {time.strftime('%Y-%m-%d')}; {args.repeats} repetition(s), median; "
             f"{args.threads} threads; sgemm peak {peak:.0f} GFLOP/s; charrnn on {blas}", "",
             head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        c = r["charrnn"]
        label = (f"{r['config']}: {r['cell']} H={r['H']} L={r['L']} " +
                 (f"B={r['B']} T={r['T']} {r['optimizer']}" if r["mode"] == "train" else
                  ("sampling" if r["mode"] == "sample" else f"sample --num {r['B']}") +
                  (" (PyTorch without oneDNN)" if r["config"] in NO_ONEDNN else "")))
        cells = [label, f"{c['chars_per_sec']:,.0f}"]
        if have_torch:
            t = r["torch"]
            cells += [f"{t['chars_per_sec']:,.0f}", f"**{r['ratio']:.2f}x** (>= {TARGETS[r['config']]}x)"]
        cells.append(f"{c['ms_per_step']:.2f}" if r["mode"] == "train" else "-")
        if have_torch:
            cells.append(f"{r['torch']['ms_per_step']:.2f}" if r["mode"] == "train" else "-")
        cells.append(f"{c['peak_rss_mb']:.0f}" + (f" / {r['torch']['peak_rss_mb']:.0f}" if have_torch else ""))
        if r["mode"] == "train":
            cells.append(f"{c['gemm_fraction']:.0%}" + (f" / {r['torch']['gemm_fraction']:.0%}" if have_torch else ""))
        else:
            cells.append("-")
        lines.append("| " + " | ".join(cells) + " |")
    print("\n" + "\n".join(lines))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
