"""Corpora larger than memory: encoding throughput, the start-up of a second run,
and peak RSS of training against corpus size (the corpus cache, memory-mapped).

    python3 bench/corpus.py [--sizes-mb 1 100 2000] [--source ../shared/corpora/tinyshakespeare.txt]

Each corpus is the source repeated to the size; each run is a separate
`charrnn train` process (2x256 LSTM, 200 steps, a 100 KB validation split) whose
own peak RSS (`wait4`) is reported. The big files go to a temporary folder and
are removed after. Runs one after the other; nothing else should be running.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import blas_name, describe, slug  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SOURCE = os.path.join(HERE, "..", "..", "shared", "corpora", "tinyshakespeare.txt")


def make_corpus(source: bytes, mb: float, path):
    want = int(mb * 2**20)
    with open(path, "wb") as f:
        left = want
        while left > 0:
            f.write(source[:left])
            left -= len(source)


def run(args, env):
    """(seconds, peak RSS MB, stderr) of one charrnn process."""
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "charrnn", *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"charrnn {' '.join(args)} failed: {err.decode()[-500:]}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, err.decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-mb", type=float, nargs="+", default=[1, 100, 2000])
    ap.add_argument("--source", default=DEFAULT_SOURCE)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    source = open(a.source, "rb").read()
    tmp = tempfile.mkdtemp(prefix="charrnn-bench-corpus-")
    env = dict(os.environ, CHARRNN_CORPUS_CACHE=os.path.join(tmp, "cache"))
    rows = []
    try:
        for mb in a.sizes_mb:
            path = os.path.join(tmp, f"corpus-{mb:g}mb.txt")
            make_corpus(source, mb, path)
            size = os.path.getsize(path)
            val_frac = f"{min(0.5, 100_000 / size):.6g}"     # a 100 KB validation split
            base = ["train", path, "--steps", str(a.steps), "--eval-every", "0", "--val-frac", val_frac,
                    "--no-preview", "-q"]
            # 1. the first run encodes into the cache; 2. the second maps it; 3. no cache at all
            first = run(base + ["--out", os.path.join(tmp, f"r1-{mb:g}")], env)
            second = run(base + ["--out", os.path.join(tmp, f"r2-{mb:g}")], env)
            nocache = run(base + ["--out", os.path.join(tmp, f"r3-{mb:g}"), "--no-cache"], env) \
                if mb <= 200 else None
            # start-up: a run of 1 step, cached, against the same without the cache
            start = ["train", path, "--steps", "1", "--eval-every", "0", "--val-frac", val_frac, "-q",
                     "--no-preview"]
            warm = run(start + ["--out", os.path.join(tmp, f"s1-{mb:g}")], env)[0]
            cold = run(start + ["--out", os.path.join(tmp, f"s2-{mb:g}"), "--no-cache"], env)[0]
            encode = _encode_seconds(path, env)
            row = {"mb": size / 2**20, "encode_mb_s": size / 2**20 / encode,
                   "startup_cached_s": warm, "startup_uncached_s": cold,
                   "rss_first_mb": first[1], "rss_cached_mb": second[1],
                   "rss_nocache_mb": nocache[1] if nocache else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
            os.unlink(path)
            shutil.rmtree(os.path.join(tmp, "cache"), ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    blas = blas_name()
    print(f"\n{describe(blas)}; 2x256 LSTM, {a.steps} steps, 100 KB validation\n")
    print("| corpus MB | encoding MB/s | start-up, cached / not (s) | peak RSS MB: first run (encodes) "
          "/ second (mapped) / no cache |")
    print("|---|---|---|---|")
    for r in rows:
        nc = f"{r['rss_nocache_mb']:.0f}" if r["rss_nocache_mb"] else "not run"
        print(f"| {r['mb']:,.0f} | {r['encode_mb_s']:.0f} | {r['startup_cached_s']:.2f} / "
              f"{r['startup_uncached_s']:.2f} | {r['rss_first_mb']:.0f} / {r['rss_cached_mb']:.0f} / {nc} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": describe(blas), "cpu": slug(), "rows": rows}, f, indent=2)


def _encode_seconds(path, env):
    """Seconds to encode the file into an empty cache, in a process of its own."""
    code = ("import sys, time; from charrnn.data import read_corpus; t = time.perf_counter(); "
            "read_corpus([sys.argv[1]], cache=True); print(time.perf_counter() - t)")
    cache = env["CHARRNN_CORPUS_CACHE"] + "-encode"
    r = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                       env=dict(env, CHARRNN_CORPUS_CACHE=cache), check=True)
    shutil.rmtree(cache, ignore_errors=True)
    return float(r.stdout)


if __name__ == "__main__":
    main()
