#!/usr/bin/env python3
"""`charrnn serve` measured: time to the first streamed character on a warm server, and
characters per second for 1 and for 8 concurrent streaming clients, against `charrnn
sample` run as a process for the same length (issue 22's targets: first character
<= 50 ms; 8 clients together at least the single-stream `charrnn sample` speed).

Without a checkpoint it makes the default model (a 2x256 LSTM) with 3 training steps:
speed does not depend on training. Hold the measurement lock:

    flock /tmp/charrnn-measure.lock python3 bench/serve.py
    flock /tmp/charrnn-measure.lock python3 bench/serve.py --checkpoint RUN --length 4000
"""
import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from machine import blas_name, describe  # noqa: E402

CHARRNN = [sys.executable, "-m", "charrnn"]


def make_checkpoint(folder):
    out = os.path.join(folder, "default-2x256")
    subprocess.run(CHARRNN + ["train", os.path.join(ROOT, "corpora", "shakespeare.txt"), "--steps",
                              "3", "--eval-every", "3", "--val-frac", "0.01", "--out", out,
                              "--quiet", "--no-preview", "--no-plan"], check=True)
    return out


def sample_process(ckpt, length, seed):
    """`charrnn sample` as a process: (seconds to its first character, seconds in all)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(CHARRNN + ["sample", "-c", ckpt, "--length", str(length), "--seed",
                                    str(seed), "--temp", "0.8"], stdout=subprocess.PIPE)
    p.stdout.read(1)
    first = time.perf_counter() - t0
    rest = p.stdout.read()
    p.wait()
    assert len(rest.decode()) >= length - 1, "sample printed too little"
    return first, time.perf_counter() - t0


def stream(port, length, seed):
    """One streaming completion (http.client): (seconds to the first text, seconds in
    all, characters received)."""
    body = json.dumps({"prompt": "", "max_tokens": length, "temperature": 0.8, "seed": seed,
                       "stream": True})
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    first, chars = None, 0
    for line in iter(r.readline, b""):
        if not line.startswith(b"data: "):
            continue
        if line.startswith(b"data: [DONE]"):
            break
        choices = json.loads(line[6:])["choices"]
        if choices and choices[0]["text"]:
            chars += len(choices[0]["text"])
            if first is None:
                first = time.perf_counter() - t0
    conn.close()
    return first, time.perf_counter() - t0, chars


def concurrent(port, clients, length):
    """`clients` streams at once: (characters in all, seconds from the first request to
    the last character)."""
    results = [None] * clients

    def one(i):
        results[i] = stream(port, length, seed=100 + i)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return sum(r[2] for r in results), wall


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="default: a 2x256 LSTM made here")
    ap.add_argument("--length", type=int, default=4000, help="characters per stream")
    ap.add_argument("--first", type=int, default=30, help="requests timed to the first character")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="charrnn-bench-serve-")
    ckpt = a.checkpoint or make_checkpoint(tmp)
    machine = describe(blas_name(None))
    print(f"# charrnn serve, {time.strftime('%Y-%m-%d')}: {machine}", flush=True)
    print(f"# {ckpt}, streams of {a.length} characters at temperature 0.8", flush=True)
    out = {"machine": machine, "checkpoint": ckpt, "length": a.length}

    runs = [sample_process(ckpt, a.length, seed=1) for _ in range(a.repeats)]
    first, total = min(r[0] for r in runs), min(r[1] for r in runs)
    out["sample"] = {"first_s": first, "total_s": total, "chars_per_s": a.length / (total - first),
                     "chars_per_s_with_startup": a.length / total}
    print(f"charrnn sample --length {a.length}: first character after {first:.2f} s, "
          f"{total:.2f} s in all: {a.length / (total - first):,.0f} chars/s once started "
          f"({a.length / total:,.0f} with start-up)", flush=True)

    p = subprocess.Popen(CHARRNN + ["serve", ckpt, "--port", "0", "--max-tokens",
                                    str(max(a.length, 4096))], stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)/", line)
        if not m:
            raise SystemExit(f"the server did not start: {line}{p.stderr.read()}")
        port = int(m.group(1))
        stream(port, 100, seed=0)           # one request first, as a warm server has had
        firsts = [stream(port, 1, seed=i)[0] for i in range(a.first)]
        out["first_char_ms"] = {"median": 1e3 * statistics.median(firsts),
                                "max": 1e3 * max(firsts), "min": 1e3 * min(firsts)}
        print(f"first streamed character, warm server, {a.first} requests one after another: "
              f"median {1e3 * statistics.median(firsts):.1f} ms, min {1e3 * min(firsts):.1f}, "
              f"max {1e3 * max(firsts):.1f}", flush=True)
        for clients in (1, 8):
            best = None
            for _ in range(a.repeats):
                chars, wall = concurrent(port, clients, a.length)
                if best is None or chars / wall > best[0] / best[1]:
                    best = (chars, wall)
            cps = best[0] / best[1]
            out[f"clients_{clients}"] = {"chars": best[0], "seconds": best[1], "chars_per_s": cps}
            print(f"{clients} streaming client{'s' if clients > 1 else ''}: {best[0]:,} chars in "
                  f"{best[1]:.2f} s: {cps:,.0f} chars/s in all "
                  f"({cps / out['sample']['chars_per_s']:.2f}x charrnn sample once started)",
                  flush=True)
    finally:
        p.terminate()
        p.wait()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
