"""One benchmark measurement in a fresh process (so peak memory is its own):
prints one JSON line. Run by bench.py; not meant to be called by hand."""
import argparse
import json
import os
import resource
import statistics
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--impl", choices=["charrnn", "torch"], required=True)
p.add_argument("--mode", choices=["train", "sample", "many"], default="train",
               help="many: charrnn's sample --num path (sampling.Many) with --batch streams")
p.add_argument("--cell", default="lstm")
p.add_argument("--hidden", type=int, default=128)
p.add_argument("--layers", type=int, default=2)
p.add_argument("--batch", type=int, default=50)
p.add_argument("--seq", type=int, default=50)
p.add_argument("--optimizer", default="adam")
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--steps", type=int, default=50, help="timed steps (train) or characters (sample)")
p.add_argument("--warmup", type=int, default=5, help="untimed steps (train), at least")
p.add_argument("--warmup-seconds", type=float, default=2.0, help="untimed warm-up, at least")
p.add_argument("--windows", type=int, default=3, help="timing windows; the median is reported")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--corpus", required=True)
p.add_argument("--no-mkldnn", action="store_true", help="torch: disable oneDNN")
a = p.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(a.threads)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from charrnn.data import read_corpus  # noqa: E402
from charrnn import kernels  # noqa: E402

kernels.own_process()   # flush-to-zero for the whole process, as the charrnn command has it

corpus = read_corpus([a.corpus])
V = len(corpus.vocab)
if a.impl == "charrnn":
    from charrnn.config import ModelConfig, TrainConfig
    from charrnn.training import Trainer
    m = ModelConfig(model=a.cell, hidden=a.hidden, layers=a.layers, vocab_size=V)
    t = TrainConfig(batch_size=a.batch, seq_len=a.seq, optimizer=a.optimizer, lr=a.lr)
    trainer = Trainer(m, t, corpus.ids, corpus.vocab)
    step = trainer.train_step
    if a.mode in ("sample", "many"):
        from charrnn.sampling import Generator
        if a.mode == "many":     # sample --num B: B streams at once
            from charrnn.sampling import Many
            many = Many(m, trainer.p, corpus.vocab, a.batch, seed=0)
            run_sample = lambda n: sum(1 for _ in many.samples(n, temp=0.8))  # noqa: E731
        else:
            gen = Generator(m, trainer.p, corpus.vocab, seed=0)
            run_sample = lambda n: gen.ids(n, temp=0.8)  # noqa: E731
else:
    import torch
    torch.set_num_threads(a.threads)
    if a.no_mkldnn:
        torch.backends.mkldnn.enabled = False
    from torch_ref import TorchTrainer, torch_sample
    tt = TorchTrainer(corpus.ids, V, a.cell, a.hidden, a.layers, a.batch, a.seq, a.optimizer, a.lr)
    step = tt.step
    run_sample = lambda n: torch_sample(tt.model, n, batch=a.batch if a.mode == "many" else 1)  # noqa: E731


def timed(run, n, windows):
    """Seconds per unit of the median of `windows` timing windows of n // windows units
    each: one window disturbed by other load on the machine does not count."""
    per = max(1, n // windows)
    times = []
    for _ in range(windows):
        t0 = time.perf_counter()
        run(per)
        times.append((time.perf_counter() - t0) / per)
    return statistics.median(times)


def warm_up(run, units, seconds):
    """Run until at least `units` units and `seconds` seconds: PyTorch's first steps
    after start-up ran up to 1.4x slower than its later ones (measured)."""
    t0 = time.perf_counter()
    run(units)
    while time.perf_counter() - t0 < seconds:
        run(units)
    return time.perf_counter() - t0


def train_steps(n):
    global loss
    for _ in range(n):
        loss = step()


if a.mode == "train":
    warm = warm_up(train_steps, a.warmup, a.warmup_seconds)
    dt = timed(train_steps, a.steps, a.windows)
    out = {"chars_per_sec": a.batch * a.seq / dt, "ms_per_step": 1000 * dt, "loss": loss,
           "warmup_seconds": warm}
else:
    warm = warm_up(run_sample, 20, a.warmup_seconds / 2)
    dt = timed(run_sample, a.steps, a.windows)
    out = {"chars_per_sec": (a.batch if a.mode == "many" else 1) / dt, "warmup_seconds": warm}
try:    # this process's own peak: ru_maxrss also counts the parent's, inherited over fork
    out["peak_rss_mb"] = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
except (OSError, IndexError):
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if a.impl == "charrnn":
    from charrnn.kernels import BLAS
    out["blas"] = BLAS
print(json.dumps(out))
