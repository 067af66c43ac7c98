"""Hyper-parameter sweeps: the grid, its trials, successive halving and the ledger.

A trial is an ordinary `charrnn train` run in its own folder of the sweep folder,
named by its settings (`hidden=256,dropout=0.2`). The ledger is `sweep.json`
(what was asked: the corpus, the grid, the budget) and `sweep.jsonl` (one line
per trial: settings, state, rung, step, best validation loss), rewritten whole
after every change, so an interrupted sweep continues from it. Nothing here runs
a trial or knows where trials run (`trial.py`, `executors.py`).

Successive halving (Jamieson and Talwalkar, 2016) with a factor of 2: with n
trials and a budget R each, rung r of K = floor(log2 n) trains the best
n / 2^r trials up to R 2^(r-K), pausing them there (`train --pause-at`, which
keeps each run's schedule over the whole R), and the last rung finishes the
best one to R. Exact resume makes a trial paused at every rung identical to one
trained without pauses.
"""
import hashlib
import itertools
import json
import math
import os
from dataclasses import asdict, dataclass

FACTOR = 2                 # successive halving keeps the best half at each rung
MIN_RUNG_STEPS = 10        # the first rung's share of a --steps budget, at least
MIN_RUNG_SECONDS = 5.0     # and of a --time budget (train's own minimum)


class SweepError(ValueError):
    """A sweep that cannot be run as asked; the message says which option and why."""


@dataclass
class Trial:
    name: str
    settings: dict                  # grid key -> value, as given
    state: str = "queued"           # queued running paused done failed interrupted pruned
    rung: int = -1                  # the last rung it completed
    step: int = 0
    best_val: float | None = None
    elapsed: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d) -> "Trial":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def parse_grid(items, keys) -> dict[str, list[str]]:
    """["hidden=256,512", "lr=1e-3"] -> {"hidden": ["256", "512"], "lr": ["1e-3"]}; `keys`
    are the options a grid may vary, spelled as train spells them (the command derives
    them from train's own options)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, eq, values = item.partition("=")
        key = key.strip().replace("_", "-")
        if not eq or not key:
            raise SweepError(f"--grid {item!r}: write KEY=V1,V2,...")
        if key not in keys:
            raise SweepError(f"--grid {item!r}: unknown key {key!r}; one of {', '.join(keys)}")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise SweepError(f"--grid {item!r}: no values")
        if key in grid:
            raise SweepError(f"--grid {key} given twice; list all its values in one --grid")
        if len(set(vals)) != len(vals):
            raise SweepError(f"--grid {item!r}: a value is listed twice")
        grid[key] = vals
    if not grid:
        raise SweepError("give at least one --grid KEY=V1,V2,...")
    return grid


def expand(grid: dict, random_n: int | None = None, seed: int = 0) -> list[dict]:
    """Every combination of the grid, in the grid's order; with random_n, that many
    distinct combinations drawn at random (a fixed seed draws the same ones)."""
    keys = list(grid)
    points = [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]
    if random_n is not None and random_n < len(points):
        import random
        pick = sorted(random.Random(seed).sample(range(len(points)), random_n))
        points = [points[i] for i in pick]
    return points


def trial_name(settings: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in settings.items()).replace("/", "_")


def settings_argv(settings: dict) -> list[str]:
    return [a for k, v in settings.items() for a in (f"--{k}", v)]


def rung_points(n: int, budget: float, halving: bool, by_time: bool) -> list:
    """Where each rung pauses its trials (None: the end of the budget). Raises
    SweepError when the first rung would get too little to evaluate anything."""
    if not halving or n < 2:
        return [None]
    K = int(math.floor(math.log(n, FACTOR) + 1e-9))
    points = [budget * FACTOR ** (r - K) for r in range(K)]
    if not by_time:
        points = [int(p) for p in points]
    first, least = points[0], MIN_RUNG_SECONDS if by_time else MIN_RUNG_STEPS
    if first < least:
        unit = "s" if by_time else " steps"
        raise SweepError(f"halving {n} trials gives the first rung {first:g}{unit} each, below "
                         f"{least:g}{unit}: give a larger budget or fewer trials")
    return points + [None]


def survivors(n: int, rung: int) -> int:
    """How many trials rung `rung` trains."""
    return max(1, n // FACTOR ** rung)


def rank_key(t: Trial):
    return (t.best_val is None, t.best_val if t.best_val is not None else math.inf, t.name)


def select(trials: list[Trial], rung: int, n: int) -> list[Trial]:
    """The trials rung `rung` trains: all at rung 0; then the best survivors(n, rung) of
    those that completed rung - 1 and can go on (not failed, not stopped early)."""
    if rung == 0:
        return list(trials)
    ready = [t for t in trials if t.rung >= rung - 1 and t.state != "failed"
             and not (t.state == "done" and t.rung < rung)]
    ready.sort(key=rank_key)
    return ready[:survivors(n, rung)]


def ranked(trials: list[Trial]) -> list[Trial]:
    return sorted(trials, key=rank_key)


def spec_id(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]


class Ledger:
    """sweep.json (the spec) and sweep.jsonl (the trials) in the sweep folder."""

    def __init__(self, folder: str, spec: dict):
        self.folder, self.spec = folder, spec
        self.spec_path = os.path.join(folder, "sweep.json")
        self.path = os.path.join(folder, "sweep.jsonl")

    def open(self, trials: list[Trial]) -> list[Trial]:
        """Create the folder, or check it holds this same sweep; returns the trials with
        the states recorded there (a trial seen running is now interrupted)."""
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as e:
            raise SweepError(f"{self.folder}: cannot create the sweep folder ({e.strerror or e}); "
                             f"choose another --out") from None
        if os.path.exists(self.spec_path):
            try:
                with open(self.spec_path, encoding="utf-8") as f:
                    old = json.load(f)
            except (OSError, ValueError) as e:
                raise SweepError(f"{self.spec_path}: unreadable ({e}); choose another --out") from None
            if old != self.spec:
                diff = sorted(k for k in set(old) | set(self.spec) if old.get(k) != self.spec.get(k))
                raise SweepError(f"{self.folder}: holds a different sweep (its {', '.join(diff)} "
                                 f"differ); re-run that sweep's command, or choose another --out")
        else:
            _write_atomic(self.spec_path, json.dumps(self.spec, indent=2, sort_keys=True) + "\n")
        recorded = {t.name: t for t in _read_trials(self.path)}
        out = []
        for t in trials:
            old = recorded.get(t.name)
            if old is not None:
                if old.state == "running":
                    old.state = "interrupted"
                t = old
            out.append(t)
        return out

    def save(self, trials: list[Trial]):
        _write_atomic(self.path, "".join(json.dumps(t.to_dict()) + "\n" for t in ranked(trials)))


def _write_atomic(path, text):
    """Replace path with text (fileio.atomic_write); SweepError naming it when it cannot."""
    from charrnn.fileio import atomic_write
    try:
        atomic_write(path, lambda f: f.write(text))
    except OSError as e:
        raise SweepError(f"{path}: cannot write the sweep's ledger ({e.strerror or e})") from None


def is_sweep(folder) -> bool:
    return os.path.isfile(os.path.join(folder, "sweep.json"))


def load_trials(folder) -> list[Trial]:
    """The trials recorded in a sweep folder, best first."""
    return ranked(_read_trials(os.path.join(folder, "sweep.jsonl")))


def _read_trials(path) -> list[Trial]:
    """The trials of a sweep.jsonl (none if it does not exist yet; a damaged line is
    skipped); SweepError naming the file when it cannot be read."""
    found = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    found.append(Trial.from_dict(json.loads(line)))
                except (ValueError, TypeError, AttributeError):
                    continue
    except FileNotFoundError:
        pass
    except OSError as e:
        raise SweepError(f"{path}: cannot read the sweep's trials ({e.strerror or e})") from None
    return found
