"""The options of `charrnn train` and `charrnn.train()`: each value checked, then their
combinations, with the command's own messages.

A value is given as the command line parses it (a str) or as Python holds it (an int,
a float, None). A refused value raises errors.UsageError whose `message` is the text
`charrnn train` prints after the option's name and whose `param` is the option's
keyword ("min_lr"); messages that name another option spell it as the command does
(--steps). The command's own option types (cli/common.py) call the parsers here, and
mirror click.IntRange and click.Choice's messages for the rest, so both refuse a value
with the same words (tests/test_api_train.py compares them).
"""
import math
import numbers

from charrnn.config import (CELLS, DEFAULT_STEPS, DROPOUT_KINDS, DTYPES, MIN_SECONDS,
                            OPTIMIZERS, SCHEDULES, TRAIN_OPTIONS, default_rate)
from charrnn.errors import UsageError

# the bounds of train's whole-number options (the command's click.IntRange too)
INT_RANGES = {"hidden": (1, 8192), "layers": (1, 16), "batch_size": (1, 100_000),
              "seq_len": (1, 100_000), "steps": (0, None), "eval_every": (0, None),
              "seed": (0, None), "max_chars": (1, None), "val_max_chars": (1, None)}
CHOICES = {"model": CELLS, "dropout_kind": DROPOUT_KINDS, "optimizer": OPTIMIZERS,
           "schedule": SCHEDULES, "dtype": DTYPES}


# -- values -------------------------------------------------------------------------------

def int_range(value, lo, hi=None) -> int:
    """A whole number in [lo, hi] (click.IntRange's messages)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
        raise UsageError(f"{value!r} is not a valid integer range")
    try:
        v = int(value)
    except ValueError:
        raise UsageError(f"{value!r} is not a valid integer range") from None
    if v < lo or (hi is not None and v > hi):
        raise UsageError(f"{v} is not in the range {lo}<=x<={hi}" if hi is not None
                         else f"{v} is not in the range x>={lo}")
    return v


def choice(value, choices) -> str:
    """One of `choices` (click.Choice's message)."""
    if value not in choices:
        raise UsageError(f"{value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def finite_float(value, lo=None, lo_open=False) -> float:
    """A finite number, at least lo (above it with lo_open)."""
    if isinstance(value, bool):
        raise UsageError(f"{value!r} is not a number")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{value!r} is not a number") from None
    if not math.isfinite(v):
        raise UsageError(f"{value!r} is not a finite number")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise UsageError(f"{value} must be {'>' if lo_open else '>='} {lo}")
    return v


def duration(value) -> float:
    """Seconds, from a number or text such as 90, 90s, 20m, 1h30m."""
    from charrnn.schedule import parse_duration
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"{value!r} is not a duration: it must be a finite, positive time")
        return float(value)
    if not isinstance(value, str):
        raise UsageError(f"{value!r} is not a duration: use seconds or units h, m, s as in "
                         f"90, 90s, 20m, 1h30m")
    try:
        return parse_duration(value)
    except ValueError as e:
        raise UsageError(str(e)) from None


def warmup(value) -> float:
    """A whole number of warm-up steps (>= 1), or a fraction of the run in [0, 1)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{value!r} is not a step count or a fraction") from None
    if not math.isfinite(v) or v < 0 or (v >= 1 and v != int(v)):
        raise UsageError(f"{value!r}: give a whole number of steps, or a fraction in [0, 1)")
    return v


def patience(value) -> int | None:
    """A count of evaluations >= 1, or 'off' (None)."""
    if value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                         and value >= 1):
        return None if value is None else int(value)
    if str(value).lower() in ("off", "none"):
        return None
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{value!r} is not a number of evaluations (or 'off')") from None
    if v < 1:
        raise UsageError(f"{v} must be at least 1 (or 'off' to never stop early)")
    return v


def avg_decay(value) -> float | None:
    """The weight average's decay, in (0, 1), or 'off' (None)."""
    if value is None:
        return None
    if str(value).lower() in ("off", "none", "0"):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{value!r} is not a decay in (0, 1) (or 'off')") from None
    if not 0 < v < 1:
        raise UsageError(f"{value} is not in (0, 1): a decay such as 0.999 (or 'off')")
    return v


BYTE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def byte_size(value) -> int:
    """A number of bytes: 500000000, 500M, 2G (K, M, G, T: powers of 1024)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        return int(value)
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1:] if text[-1:] in BYTE_UNITS else ""
    try:
        n = float(text[:len(text) - len(unit)])
    except ValueError:
        raise UsageError(f"{value!r} is not a size: give bytes, or 500M, 2G") from None
    if not math.isfinite(n) or n * BYTE_UNITS[unit] < 1:
        raise UsageError(f"{value!r} is not a size of at least one byte")
    return int(n * BYTE_UNITS[unit])


def _flag(value):
    if not isinstance(value, bool):
        raise UsageError(f"{value!r} is not True or False")
    return value


def _optional_flag(value):
    return None if value is None else _flag(value)


def _text(value):
    if not isinstance(value, str):
        raise UsageError(f"{value!r} is not a string")
    return value


def _path(value):
    import os
    try:
        return os.fspath(value)
    except TypeError:
        raise UsageError(f"{value!r} is not a path") from None


def _pause(value):
    """A step number or a duration: which one is decided with the run's bound (pause_point)."""
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Real)):
        raise UsageError(f"{value!r}: a step number (a duration only in a --time run)")
    return value


# each option's parser; None passes for the options whose default is None
PARSERS = {
    **{k: (lambda lo, hi: lambda v: int_range(v, lo, hi))(*r) for k, r in INT_RANGES.items()},
    **{k: (lambda c: lambda v: choice(v, c))(c) for k, c in CHOICES.items()},
    "dropout": lambda v: finite_float(v, 0), "wdrop": lambda v: finite_float(v, 0),
    "avg_decay": avg_decay, "lr": lambda v: finite_float(v, 0, lo_open=True), "warmup": warmup,
    "min_lr": lambda v: finite_float(v, 0), "clip": lambda v: finite_float(v, 0),
    "epochs": lambda v: finite_float(v, 0, lo_open=True), "time": duration,
    "plan": _optional_flag, "pause_at": _pause, "patience": patience,
    "val_frac": lambda v: finite_float(v, 0), "resume": _path, "encoding": _text,
    "max_stream_bytes": byte_size, "cache": _flag,
}
assert set(PARSERS) == set(TRAIN_OPTIONS), set(PARSERS) ^ set(TRAIN_OPTIONS)
NONE_ALLOWED = {k for k, v in TRAIN_OPTIONS.items() if v is None} | {"patience", "avg_decay"}


# -- combinations -------------------------------------------------------------------------

def check_train(options: dict) -> dict:
    """The caller's train options (by keyword, only those given) -> their checked values,
    after every check that needs no corpus and no checkpoint (before a large corpus is
    read). Raises UsageError."""
    unknown = sorted(set(options) - set(TRAIN_OPTIONS))
    if unknown:
        raise UsageError(f"{unknown[0]!r} is not an option of train; the options: "
                         f"{', '.join(TRAIN_OPTIONS)}", unknown[0])
    o = {}
    for k, v in options.items():
        if v is None and k in NONE_ALLOWED - {"patience", "avg_decay"}:
            continue        # None: the default (for patience and avg_decay: off)
        try:
            o[k] = PARSERS[k](v)
        except UsageError as e:
            raise UsageError(e.message, k) from None
    p = {**TRAIN_OPTIONS, **o}
    if sum(p[k] is not None for k in ("steps", "epochs", "time")) > 1:
        raise UsageError("give at most one of --steps, --epochs, --time")
    for name in ("dropout", "wdrop"):
        if not p[name] < 1:
            raise UsageError(f"{p[name]:g} is not a probability below 1", name)
    if not p["val_frac"] < 1:
        raise UsageError("must be below 1", "val_frac")
    if p["time"] is not None and p["time"] < MIN_SECONDS:
        raise UsageError(f"{p['time']:g}s is too short to train anything; "
                         f"give at least {MIN_SECONDS:g}s", "time")
    if p["plan"] and p["time"] is None:
        raise UsageError("plans for a time budget: give --time too", "plan")
    steps = p["steps"] if p["steps"] is not None else (
        DEFAULT_STEPS if p["epochs"] is None and p["time"] is None and p["resume"] is None else None)
    if steps is not None and "warmup" in o and p["warmup"] >= 1 and p["warmup"] >= steps > 0:
        raise UsageError(f"{p['warmup']:g} warm-up steps do not fit in a run of {steps} steps",
                         "warmup")
    lr = p["lr"] if p["lr"] is not None else (
        default_rate(p["model"], p["optimizer"], p["batch_size"], steps)[0]
        if "optimizer" in o or p["resume"] is None else None)
    if p["min_lr"] is not None and lr is not None and p["min_lr"] > lr:
        raise UsageError(f"{p['min_lr']:g} is above the learning rate {lr:g}", "min_lr")
    return o


def pause_point(value, by_time):
    """pause_at as a step number, or, in a time-bound run, as seconds of training."""
    if value is None:
        return None
    if by_time:
        try:
            return duration(value)
        except UsageError as e:
            raise UsageError(e.message, "pause_at") from None
    try:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        step = int(value)
    except ValueError:
        raise UsageError(f"{value!r}: a step number (a duration only in a --time run)",
                         "pause_at") from None
    if step < 1:
        raise UsageError(f"{value!r}: must be a step number >= 1", "pause_at")
    return step
