"""The budget planner: "I have N minutes". Chooses the model and the training
settings for a corpus and a wall-clock budget, from the speed measured on this
machine, and says why.

The rules, each measured on tinyshakespeare (docs/quality.md):
  - size: the largest candidate (from a 1x64 GRU to a 3x512 LSTM) that still sees at least
    MIN_CHARS_PER_PARAM characters per parameter in the budget, at the speed timed
    here, and has at most MAX_PARAMS_PER_CHAR parameters per training character
    (larger models only memorise a small text);
  - a budget that holds the default run (its model's speed measured here) trains at
    least the default model, so it never plans worse than `charrnn train` with no options;
  - locked dropout and DropConnect on Wh from the number of passes over the text the
    budget allows, for a model large enough to memorise it (regularisation(): REG_PASSES,
    MAX_WDROP, MEMORISING; the same rule sets a step-bound run's); a weight average (AVG_DECAY) always;
  - the optimizer: PLANNED_OPTIMIZER (see its comment); the user's --optimizer wins;
  - the rate, warm-up and clip of a step-bound run of the plan's steps
    (config.default_rate: FAST_ADAGRAD's per cell for Adagrad with B >= 32 over
    FAST_ADAGRAD_STEPS or more);
  - the wsd schedule to the end of the budget, about EVALS evaluations per run, early
    stopping after PATIENCE evaluations without a new best.
Options the user gives are never changed: the candidates are narrowed to them.
"""
import math
import time
from dataclasses import dataclass, field

import numpy as np

from charrnn.config import (DEFAULT_AVG_DECAY, DEFAULT_SCHEDULE, DEFAULT_STEPS, TRAIN_OPTIONS, ModelConfig,
                            TrainConfig, default_rate)

# (cell, layers, hidden), smallest first; None: the default cell (TRAIN_OPTIONS), and the
# user's --model replaces every cell. The LSTM above the default model: at 1800 s on a Zen 4
# the 2x384 LSTM reached 1.4249 (10,240 steps) where the 2x384 GRU reached 1.4413 (12,152
# steps), one run each; at 300 s the two plans were equal (1.4574, 1.4576), at 60 s the GRU
# better (1.5134 against 1.5411): docs/quality.md
CANDIDATES = [(None, 1, 64), (None, 2, 128), (None, 2, 192), (None, 2, 256), (None, 2, 384),
              ("lstm", 2, 384), ("lstm", 2, 512), ("lstm", 3, 512)]
MIN_CHARS_PER_PARAM = 8.0
MAX_PARAMS_PER_CHAR = 2.0
# Regularisation, for a model that can memorise its text (at least MEMORISING parameters
# per training character): from this many passes over the text, this (locked) dropout and
# DropConnect on Wh. Fitted by sweeps (docs/quality.md, bench/results/*sweep*): a 2x256
# LSTM on tinyshakespeare (0.87 parameters per character) at lr 0.08, 8.6 passes: wdrop 0.2
# 1.4469, 0.1 1.4489, none 1.4666 (over-fitting from 5 passes); at 6.1 passes (the default
# run) wdrop 0.2 did not pay: median 1.4762 over 3 seeds against 1.4727; 18 passes over 225k
# characters (3.9 per character): wdrop 0.3 alone 1.4644, dropout 0.2 + wdrop 0.2 1.4686,
# none 1.5303; a 2x128 LSTM (0.24 per character) at 6.3 passes: wdrop 0.2 cost 0.04. From 5
# passes wdrop 0.1: the default run (6.1 passes) at lr 0.08 with a 400-step warm-up, 1.4671
# over 3 seeds (config.FAST_ADAGRAD_LR)
REG_PASSES = [(5, 0.0, 0.1), (8, 0.0, 0.2), (12, 0.0, 0.3)]
# A GRU stops at wdrop 0.2: a 2x256 GRU, 5,600 steps (11.4 passes), one thread, seed 1234:
# wdrop 0.1 1.4602, 0.2 1.4590, 0.3 1.4682; the one 300 s plan of three given 0.3 (12.2
# passes) was the worst, 1.4728 against 1.4476 and 1.4576 (docs/quality.md)
MAX_WDROP = {"gru": 0.2}
MEMORISING = 0.6
# the weight average of every plan (the default run with it: 1.4727 against 1.4754)
AVG_DECAY = DEFAULT_AVG_DECAY
# `charrnn train` with no options: the model, and the steps it trains for
DEFAULT_MODEL = (TRAIN_OPTIONS["layers"], TRAIN_OPTIONS["hidden"])
START_UP_SECONDS = 5.0   # loading, compiling and planning, beside training and evaluating
EVALS = 12
PATIENCE = 5
# (The rate: config.default_rate, the step-bound runs' rule. Before the GRU (2026-12-06)
# plans trained the LSTM at 0.08 after min(200, steps / 20) warm-up steps: 0.08 against 0.05,
# 2x128 LSTM, 3,100 steps (the 60 s plan), 1.5352 against 1.5941; 2x256 at 4,200 steps
# (300 s) with wdrop 0.2: 1.4469.)
EVAL_SHARE = 0.05        # of the budget, spent evaluating (measured 3-5%)
TIMING_SECONDS = 0.4     # per candidate, after one untimed step
# Adagrad (lr 0.05, warm-up) against Adam (lr 2e-3): 1.71 vs 1.93 after 1500 steps of a
# 2x128 LSTM; RMSprop 1.76, SGD 2.35 (tinyshakespeare, docs/quality.md)
PLANNED_OPTIMIZER = "adagrad"
OPTIMIZER_REASON = "lower validation loss than Adam, RMSprop and SGD at the budgets measured"


@dataclass
class Plan:
    settings: dict                  # option name -> value, as `charrnn train` spells them
    reasons: list[str]
    speeds: dict = field(default_factory=dict)     # "2x256" -> chars/s measured
    seconds_spent: float = 0.0

    def to_dict(self) -> dict:
        return {"settings": self.settings, "reasons": self.reasons,
                "speeds": self.speeds, "seconds_spent": round(self.seconds_spent, 2)}


def param_count(cell, layers, hidden, V) -> int:
    from charrnn.model import num_params
    return num_params(ModelConfig(model=cell, hidden=hidden, layers=layers, vocab_size=V))


def measure_speed(cell, layers, hidden, V, B, T, dtype="float32", seconds=TIMING_SECONDS) -> float:
    """Training chars/s of this model here: one untimed step, then steps for `seconds`."""
    from charrnn.training import Trainer
    from charrnn.vocab import Vocab
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, B * (T + 1) * 4).astype(np.uint16 if V > 256 else np.uint8)
    vocab = Vocab(np.arange(32, 32 + V, dtype=np.int64))
    m = ModelConfig(model=cell, hidden=hidden, layers=layers, vocab_size=V)
    t = TrainConfig(batch_size=B, seq_len=T, optimizer="adam", lr=1e-3, val_frac=0.0, dtype=dtype)
    tr = Trainer(m, t, ids, vocab)
    tr.train_step()
    n, t0 = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - t0 < seconds:
        tr.train_step()
        n += 1
    return n * B * T / (time.perf_counter() - t0)


def plan_run(budget, n_train, V, given: dict, dtype="float32", log=None, speed=measure_speed) -> Plan:
    """Choose the settings for a run of `budget` seconds on n_train training characters
    with a vocabulary of V. `given`: the options the user set (they are kept).
    `speed(cell, layers, hidden, V, B, T, dtype)` -> chars/s (measured by default)."""
    t0 = time.perf_counter()
    B, T = given.get("batch_size", 32), given.get("seq_len", 64)
    train_seconds = budget * (1 - EVAL_SHARE)
    cands = ladder(given)
    default_run = (given.get("model", TRAIN_OPTIONS["model"]), *DEFAULT_MODEL)
    reasons, speeds, choice, floor = [], {}, None, False
    for cell, L, H in cands:
        P = param_count(cell, L, H, V)
        cps = speed(cell, L, H, V, B, T, dtype)
        speeds[f"{cell} {L}x{H}"] = round(cps)
        chars = cps * train_seconds
        fits = chars / P >= MIN_CHARS_PER_PARAM and P <= MAX_PARAMS_PER_CHAR * n_train
        # a budget that holds the default run trains at least its model
        at_floor = (cell, L, H) == default_run and default_run_seconds(cps, B, T) <= budget
        floor = floor or at_floor
        if choice is None or fits or at_floor:
            choice = (cell, L, H, P, cps, chars)
        # smaller than the default model, keep timing: the floor needs its speed
        if not fits and ((L, H) >= DEFAULT_MODEL or "hidden" in given):
            break       # larger ones are slower and larger still
    cell, L, H, P, cps, chars = choice
    epochs = chars / max(1, n_train)
    name = f"{cell} {L}x{H}"
    speed_text = ", ".join(f"{k} {v / 1000:.0f}k" for k, v in speeds.items())
    reasons.append(f"training speed measured here (chars/s): {speed_text}")
    if "hidden" in given and "layers" in given:
        reasons.append(f"{name}: your --layers/--hidden")
    elif floor and (cell, L, H) == default_run and chars / P < MIN_CHARS_PER_PARAM:
        reasons.append(f"{name}: the default run's model, since the budget holds the default run "
                       f"({default_run_seconds(cps, B, T):.0f} s here) and a longer run of it only gains")
    elif chars / P < MIN_CHARS_PER_PARAM:
        reasons.append(f"{name}: the smallest candidate; it sees only {chars / P:.1f} chars per "
                       f"parameter in {budget:.0f} s (a longer --time would help)")
    else:
        nxt = _next_larger(cands, (cell, L, H))
        why = ("" if nxt is None else
               f"; {nxt[0]} {nxt[1]}x{nxt[2]} would see fewer than {MIN_CHARS_PER_PARAM:g} per parameter"
               if param_count(*nxt, V) <= MAX_PARAMS_PER_CHAR * n_train else
               f"; {nxt[0]} {nxt[1]}x{nxt[2]} would have over {MAX_PARAMS_PER_CHAR:g} parameters per "
               f"training char")
        reasons.append(f"{name}: the largest that sees {chars / 1e6:.1f}M chars, {chars / P:.0f} per "
                       f"parameter, in the budget{why}")
    settings = {"model": cell, "hidden": H, "layers": L, "batch_size": B, "seq_len": T}
    dropout, wdrop, why = regularisation(P, epochs, n_train, cell)
    settings["dropout"] = given.get("dropout", dropout)
    settings["wdrop"] = given.get("wdrop", wdrop)
    reasons.append(f"dropout {settings['dropout']:g}, wdrop {settings['wdrop']:g}: " +
                   ("your --dropout/--wdrop" if "dropout" in given or "wdrop" in given else why))
    settings["avg_decay"] = given.get("avg_decay", AVG_DECAY)
    if settings["avg_decay"] is not None:
        reasons.append(f"weight average, decay {settings['avg_decay']:g}: validation and best.npz use it")
    opt = given.get("optimizer", PLANNED_OPTIMIZER)
    settings["optimizer"] = opt
    steps = max(1, int(cps * train_seconds / (B * T)))
    planned_lr, warmup, clip = default_rate(cell, opt, B, steps)
    settings["lr"] = given.get("lr", planned_lr)
    reasons.append(f"{opt} lr {settings['lr']:g}" + (
        ": your --optimizer" if "optimizer" in given else
        f": {OPTIMIZER_REASON}" + ("" if opt == "adagrad" else " (--optimizer adagrad keeps Adagrad)")))
    settings["schedule"] = given.get("schedule", DEFAULT_SCHEDULE[opt])
    settings["warmup"] = given.get("warmup", warmup)
    settings["clip"] = given.get("clip", clip)
    settings["eval_every"] = given.get("eval_every", _nice(max(10, steps // EVALS)))
    settings["patience"] = given.get("patience", PATIENCE)
    reasons.append(f"{settings['schedule']} schedule over the {budget:.0f} s budget, about "
                   f"{steps:,} steps, warm-up {settings['warmup']:g} steps, clip {settings['clip']:g}, "
                   f"evaluation every {settings['eval_every']} steps, early stop after {settings['patience']} "
                   f"evaluations without a new best")
    plan = Plan(settings, reasons, speeds, time.perf_counter() - t0)
    if log is not None:
        log(f"plan for {budget:.0f} s: {name}, dropout {settings['dropout']:g}, wdrop {settings['wdrop']:g}, "
            f"B={B} T={T}, "
            f"{opt} lr={settings['lr']:g} {settings['schedule']} (planned in {plan.seconds_spent:.1f} s)")
        for r in reasons:
            log(f"  - {r}")
    return plan


def ladder(given: dict) -> list[tuple[str, int, int]]:
    """The candidates (cell, layers, hidden) narrowed to the options the user gave: their
    --model for every cell, their --layers/--hidden; a shape the ladder lacks is planned
    around."""
    default = given.get("model", TRAIN_OPTIONS["model"])
    cands = []
    for cell, L, H in CANDIDATES:
        c = given.get("model", cell or default)
        if given.get("layers", L) == L and given.get("hidden", H) == H and (c, L, H) not in cands:
            cands.append((c, L, H))
    return cands or [(default, given.get("layers", 2), given.get("hidden", 256))]


def regularisation(params, passes, n_train, cell) -> tuple[float, float, str]:
    """(dropout, wdrop, why) for a model of `params` parameters of this cell that sees its
    n_train training characters `passes` times (REG_PASSES, MAX_WDROP, MEMORISING): the
    planner's rule, and a step- or epoch-bound run's when it is given neither --dropout nor
    --wdrop."""
    dropout = wdrop = 0.0
    per_char = params / max(1, n_train)
    if per_char >= MEMORISING:
        for p, d, w in REG_PASSES:
            if passes >= p:
                dropout, wdrop = d, min(w, MAX_WDROP.get(cell, w))
    why = f"about {passes:.1f} passes over the {n_train / 1e6:.2f}M training chars, {per_char:.2f} " \
          f"parameters per char"
    if per_char < MEMORISING:
        return dropout, wdrop, why + f" (regularised from {MEMORISING:g} per char)"
    return dropout, wdrop, why + ("" if wdrop else f" (regularised from {REG_PASSES[0][0]} passes)")


def run_regularisation(options, steps, epochs, n_train, V) -> dict:
    """The dropout and wdrop of a run bound by steps or epochs and not planned, when its
    options give neither: {} when they do, or when its passes are not known ahead (a time
    budget without the planner). Logged by the caller with its reason under "why"."""
    if "dropout" in options or "wdrop" in options or (steps is None and epochs is None):
        return {}
    cell, L, H, B, T = (options.get(k, TRAIN_OPTIONS[k]) for k in ("model", "layers", "hidden",
                                                                   "batch_size", "seq_len"))
    passes = epochs if epochs is not None else steps * B * T / max(1, n_train)
    dropout, wdrop, why = regularisation(param_count(cell, L, H, V), passes, n_train, cell)
    if not (dropout or wdrop):
        return {}
    return {"dropout": dropout, "wdrop": wdrop, "why": why}


def default_run_seconds(cps, B=32, T=64) -> float:
    """The wall time of `charrnn train` with no options at this speed (chars/s of its
    model): its steps, its evaluations and start-up."""
    return DEFAULT_STEPS * B * T / cps / (1 - EVAL_SHARE) + START_UP_SECONDS


def _next_larger(cands, current):
    i = cands.index(current)
    return cands[i + 1] if i + 1 < len(cands) else None


def _nice(n: int) -> int:
    """n rounded to 1, 2 or 5 times a power of ten (an evaluation interval)."""
    k = 10 ** int(math.floor(math.log10(max(1, n))))
    return min((k * m for m in (1, 2, 5, 10)), key=lambda v: abs(v - n))
