"""Learning-rate schedules and durations: pure functions of the run's progress.

A schedule is nanoGPT's `get_lr(it)`: a linear warm-up, then a decay from the
base rate towards `min_lr` as the run's progress goes from 0 to 1. Progress is
step / final step for a run bounded by --steps or --epochs, and elapsed wall
time / time budget for a run bounded by --time, so a 20-minute run has annealed
by minute 20. Only the progress (step, elapsed seconds, the run's horizon) is
training state; the rate is recomputed from it, so resume stays exact.

    constant   base
    cosine     min + (base - min) (1 + cos(pi p)) / 2
    step       base * 0.3^k, k = milestones of 0.5, 0.75, 0.9 passed; never below min
    wsd        warm-up, stable, decay: base until p = 0.8, then linearly to min at p = 1
Warm-up multiplies the rate by min(1, (step + 1) / W) for W warm-up steps, or by
min(1, p / w) for a fraction w of the run.
"""
import math
import re

from charrnn.config import SCHEDULES

STEP_MILESTONES = (0.5, 0.75, 0.9)
STEP_FACTOR = 0.3
WSD_DECAY = 0.2          # the last fifth of the run


def lr_at(kind: str, base: float, min_lr: float, warmup: float, step: int, progress: float) -> float:
    """The learning rate for the update of step `step + 1` (steps count from 0 done).

    warmup: >= 1 is a number of steps, in (0, 1) a fraction of the run, 0 none.
    progress: the run's progress in [0, 1] (clamped)."""
    p = min(1.0, max(0.0, progress))
    if kind == "constant":
        lr = base
    elif kind == "cosine":
        lr = min_lr + (base - min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))
    elif kind == "wsd":
        tail = max(0.0, p - (1.0 - WSD_DECAY)) / WSD_DECAY
        lr = base + (min_lr - base) * tail
    elif kind == "step":
        k = sum(p >= m for m in STEP_MILESTONES)
        lr = max(min_lr, base * STEP_FACTOR ** k)
    else:
        raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
    if warmup >= 1:
        lr *= min(1.0, (step + 1) / warmup)
    elif warmup > 0:
        lr *= min(1.0, max(p, 1e-12) / warmup)
    return lr


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([hms])")


def parse_duration(text: str) -> float:
    """Seconds from '90', '90s', '20m', '1h30m', '1.5h' or '2m30s'; ValueError otherwise."""
    s = text.strip().lower()
    try:
        value = float(s)
    except ValueError:
        pos, value, seen = 0, 0.0, []
        for m in _DURATION.finditer(s):
            if m.start() != pos or m.group(2) in seen:
                break
            seen.append(m.group(2))
            value += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(s) or not seen or seen != sorted(seen, key="hms".index):
            raise ValueError(f"{text!r} is not a duration: use seconds or units h, m, s "
                             f"as in 90, 90s, 20m, 1h30m") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} is not a duration: it must be a finite, positive time")
    return value


def fmt_duration(seconds: float) -> str:
    """'1h30m', '20m', '90s' style text for a number of seconds."""
    s = int(round(seconds))
    h, m, sec = s // 3600, s // 60 % 60, s % 60
    parts = [f"{h}h"] * bool(h) + [f"{m}m"] * bool(m) + [f"{sec}s"] * bool(sec)
    return "".join(parts) or "0s"
