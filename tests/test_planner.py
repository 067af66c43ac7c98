"""The budget planner: its choices for small and large corpora and budgets (from a
speed table given to it), explicit options overriding it, and through the CLI: the
plan on stderr, in the checkpoint and in `charrnn info`."""
import json

import pytest

from charrnn import planner
from charrnn.config import FAST_ADAGRAD, TRAIN_OPTIONS
from conftest import run_cli

CELL = TRAIN_OPTIONS["model"]      # what the planner plans when not told, up to the default model
LSTM_SPEED = 0.8                   # an LSTM's speed against the GRU's of the same shape


def fake_speed(table):
    """chars/s by hidden size (of a GRU; an LSTM is slower), as if measured."""
    def speed(cell, layers, hidden, V, B, T, dtype="float32"):
        return speed_of({"model": cell, "hidden": hidden}, table)
    return speed


# roughly a 2-core EPYC's speeds of GRUs (MKL), chars/s
SPEEDS = {64: 400_000, 128: 120_000, 192: 60_000, 256: 30_000, 384: 18_000, 512: 10_000}


def speed_of(s, table=SPEEDS):
    """The fake speed of a plan's model."""
    return table[s["hidden"]] * (LSTM_SPEED if s["model"] == "lstm" else 1.0)


def rung(s):
    """A plan's model's place on the ladder."""
    return planner.ladder({}).index((s["model"], s["layers"], s["hidden"]))


def plan(budget, n_train, given=None, V=65, speeds=SPEEDS):
    return planner.plan_run(budget, n_train, V, given or {}, speed=fake_speed(speeds))


def test_short_budget_small_model_long_budget_larger():
    a, b, c = plan(60, 1_000_000), plan(300, 1_000_000), plan(1800, 1_000_000)
    sizes = [(p.settings["layers"], p.settings["hidden"]) for p in (a, b, c)]
    assert sizes[0] < sizes[1] < sizes[2], sizes
    for p in (a, b, c):
        P = planner.param_count(p.settings["model"], p.settings["layers"], p.settings["hidden"], 65)
        cps = speed_of(p.settings)
        assert cps * p_seconds(p) / P >= planner.MIN_CHARS_PER_PARAM or p.settings["hidden"] == 64


def p_seconds(p):
    return float(p.reasons[-1].split("over the ")[1].split(" s budget")[0]) * (1 - planner.EVAL_SHARE)


def test_the_choice_is_the_largest_that_sees_enough_characters():
    for budget in (300, 1000):
        p = plan(budget, 1_000_000)
        i, ladder = rung(p.settings), planner.ladder({})
        cell, nL, nH = ladder[i + 1]
        # the next larger candidate would see fewer than the minimum characters per parameter
        assert speed_of({"model": cell, "hidden": nH}) * budget * (1 - planner.EVAL_SHARE) \
            / planner.param_count(cell, nL, nH, 65) < planner.MIN_CHARS_PER_PARAM
        # and timing stopped at that candidate: nothing larger was measured
        assert list(p.speeds) == [f"{c} {l}x{h}" for c, l, h in ladder[:i + 2]]


def test_the_default_cell_up_to_the_default_model_and_an_lstm_above_it():
    """The ladder: GRUs (the default cell) up to 2x384, then LSTMs (they measured better at
    1800 s); --model names the cell of every candidate."""
    ladder = planner.ladder({})
    assert [c for c, L, H in ladder if (L, H) <= planner.DEFAULT_MODEL] == [CELL] * 4
    assert ladder[-3:] == [("lstm", 2, 384), ("lstm", 2, 512), ("lstm", 3, 512)]
    assert plan(60, 1_000_000).settings["model"] == CELL
    long = plan(1800, 1_000_000)
    assert (long.settings["model"], long.settings["layers"], long.settings["hidden"]) == ("lstm", 2, 384)
    assert long.settings["lr"] == FAST_ADAGRAD["lstm"][0]
    assert any(r.startswith("lstm 2x384: the largest") for r in long.reasons)
    # the user's cell throughout: each shape timed once
    gru = plan(1800, 1_000_000, {"model": "gru"})
    assert gru.settings["model"] == "gru" and (gru.settings["layers"], gru.settings["hidden"]) == (2, 384)
    assert all(k.startswith("gru ") for k in gru.speeds) and len(gru.speeds) == len(set(gru.speeds))
    assert planner.ladder({"model": "rnn", "hidden": 512}) == [("rnn", 2, 512), ("rnn", 3, 512)]
    # a shape the ladder lacks: planned around, in the default cell
    assert planner.ladder({"hidden": 100, "layers": 4}) == [(CELL, 4, 100)]


def test_a_small_corpus_caps_the_model_and_gets_regularised():
    # a budget shorter than the default run (285 s at these speeds): the size is capped
    big, small = plan(150, 10_000_000), plan(150, 150_000)
    assert planner.param_count(CELL, small.settings["layers"], small.settings["hidden"], 65) \
        <= planner.MAX_PARAMS_PER_CHAR * 150_000
    assert small.settings["hidden"] < big.settings["hidden"]
    assert small.settings["wdrop"] > 0                      # many passes over a small text
    assert plan(60, 50_000_000).settings["wdrop"] == 0      # far less than one pass
    # a long budget on a small text: the default model, strongly regularised
    long = plan(1800, 200_000).settings
    assert (long["model"], long["layers"], long["hidden"]) == (CELL, *planner.DEFAULT_MODEL)
    assert (long["dropout"], long["wdrop"]) == (0.0, planner.MAX_WDROP[CELL])
    lstm = plan(1800, 200_000, {"model": "lstm"}).settings
    assert (lstm["dropout"], lstm["wdrop"]) == planner.REG_PASSES[-1][1:]


def test_regularisation_only_for_a_model_that_can_memorise_its_text_and_sees_it_often():
    """The rule fitted by sweeps (docs/quality.md): a 2x256 LSTM on tinyshakespeare (0.87
    parameters per training char) from 5 passes, more from 8 and 12; never a 2x128 (0.24
    per char)."""
    n = 1_000_000
    P256, P128 = (planner.param_count("lstm", 2, h, 65) for h in (256, 128))
    first, more = planner.REG_PASSES[0][0], planner.REG_PASSES[1][0]
    assert planner.regularisation(P256, first - 0.1, n, "lstm")[:2] == (0.0, 0.0)
    assert planner.regularisation(P256, first, n, "lstm")[:2] == planner.REG_PASSES[0][1:]
    assert planner.regularisation(P256, more + 1, n, "lstm")[:2] == planner.REG_PASSES[1][1:]
    assert planner.regularisation(P256, 100, n, "lstm")[:2] == planner.REG_PASSES[-1][1:]
    assert [w for _, _, w in planner.REG_PASSES] == sorted(w for _, _, w in planner.REG_PASSES)
    assert planner.regularisation(P128, 100, n, "lstm")[:2] == (0.0, 0.0)
    assert "6.1 passes" in planner.regularisation(P256, 6.1, n, "lstm")[2]
    # a GRU stops at its cap (measured worse above it), up to which it follows the ladder
    G256 = planner.param_count("gru", 2, 256, 65)
    cap = planner.MAX_WDROP["gru"]
    assert cap < planner.REG_PASSES[-1][2]
    assert planner.regularisation(G256, 100, n, "gru")[:2] == (0.0, cap)
    assert planner.regularisation(G256, more + 1, n, "gru")[:2] == planner.REG_PASSES[1][1:]
    assert planner.regularisation(P256, 100, n, "lstm")[:2] == planner.REG_PASSES[-1][1:]


@pytest.mark.parametrize("options,steps,epochs,want", [
    ({}, 2000, None, None),                               # 4.1 passes of 1M chars
    ({}, 3000, None, planner.REG_PASSES[0][1:]),          # the default run: 6.1 passes
    ({}, 4200, None, planner.REG_PASSES[1][1:]),          # 8.6 passes
    ({}, None, 9.0, planner.REG_PASSES[1][1:]),
    ({}, None, None, None),                               # a time budget with --no-plan: unknown
    ({"wdrop": 0.0}, 5000, None, None),                   # the user's own choice
    ({"dropout": 0.3}, 5000, None, None),
    ({"hidden": 128}, 5000, None, None)])                 # too small to memorise the text
def test_a_step_bound_run_is_regularised_by_the_same_rule(options, steps, epochs, want):
    got = planner.run_regularisation(options, steps, epochs, 1_000_000, 65)
    assert (got["dropout"], got["wdrop"]) == want if want else got == {}


BUDGETS = [20, 40, 60, 120, 180, 240, 300, 600, 900, 1800, 3600, 7200]


@pytest.mark.parametrize("n_train", [100_000, 1_000_000, 10_000_000, 100_000_000])
def test_a_longer_budget_never_plans_less(n_train):
    """Monotone in the budget: the planned model is never smaller, its training never
    shorter (in characters), and never less regularised for the same model."""
    plans = [plan(b, n_train).settings for b in BUDGETS]
    rungs = [rung(p) for p in plans]
    assert rungs == sorted(rungs), rungs
    for (a, ba), (b, bb) in zip(zip(plans, BUDGETS), zip(plans[1:], BUDGETS[1:])):
        if rung(a) == rung(b):
            assert (b["dropout"], b["wdrop"]) >= (a["dropout"], a["wdrop"])
        else:   # a larger model only where it sees enough characters to beat the smaller one
            P = planner.param_count(b["model"], b["layers"], b["hidden"], 65)
            assert speed_of(b) * bb * (1 - planner.EVAL_SHARE) / P >= planner.MIN_CHARS_PER_PARAM \
                or (b["model"], b["layers"], b["hidden"]) == (CELL, *planner.DEFAULT_MODEL)
    assert all(p["avg_decay"] == planner.AVG_DECAY for p in plans)


@pytest.mark.parametrize("n_train", [100_000, 1_000_000, 100_000_000])
def test_a_budget_that_holds_the_default_run_trains_at_least_its_model_for_longer(n_train):
    wall = planner.default_run_seconds(SPEEDS[256])
    for budget in (wall, wall * 1.5, 1800, 7200):
        s = plan(budget, n_train).settings
        assert (s["layers"], s["hidden"]) >= planner.DEFAULT_MODEL
        steps = speed_of(s) * budget * (1 - planner.EVAL_SHARE) / (32 * 64)
        if (s["model"], s["layers"], s["hidden"]) == (CELL, *planner.DEFAULT_MODEL):
            assert steps >= planner.DEFAULT_STEPS * 0.99
    below = plan(wall * 0.5, 100_000_000).settings     # (at 0.8 the default model fits on its own)
    assert (below["layers"], below["hidden"]) < planner.DEFAULT_MODEL


def test_planner_constants_match_the_train_defaults():
    from charrnn.cli.train import DEFAULT_STEPS
    from charrnn.config import train_defaults
    m, t = train_defaults()
    assert planner.DEFAULT_MODEL == (m["layers"], m["hidden"]) and planner.DEFAULT_STEPS == DEFAULT_STEPS


def test_adagrad_plans_its_higher_rate_only_with_the_batch_it_was_measured_at():
    from charrnn.config import DEFAULT_CLIP, DEFAULT_LR, FAST_ADAGRAD, FAST_ADAGRAD_WARMUP
    s = plan(300, 1_000_000).settings
    assert (s["model"], s["lr"], s["warmup"], s["clip"]) == ("gru", *FAST_ADAGRAD["gru"][:1],
                                                               FAST_ADAGRAD_WARMUP, FAST_ADAGRAD["gru"][1])
    s = plan(300, 1_000_000, {"model": "lstm"}).settings
    assert (s["lr"], s["clip"]) == FAST_ADAGRAD["lstm"]
    s = plan(300, 1_000_000, {"batch_size": 16}).settings
    assert (s["lr"], s["clip"]) == (DEFAULT_LR["adagrad"], DEFAULT_CLIP)
    assert plan(300, 1_000_000, {"clip": 3.0}).settings["clip"] == 3.0
    assert plan(300, 1_000_000, {"lr": 0.01}).settings["lr"] == 0.01
    assert plan(300, 1_000_000, {"optimizer": "adam"}).settings["lr"] == DEFAULT_LR["adam"]


def test_schedule_eval_and_optimizer_choices():
    p = plan(300, 1_000_000)
    s = p.settings
    from charrnn.config import DEFAULT_SCHEDULE
    opt = planner.PLANNED_OPTIMIZER
    assert s["optimizer"] == opt and s["schedule"] == DEFAULT_SCHEDULE[opt]
    steps = speed_of(s) * 300 * (1 - planner.EVAL_SHARE) / (32 * 64)
    assert 6 < steps / s["eval_every"] < 30      # about a dozen evaluations
    assert s["patience"] == planner.PATIENCE
    assert any(planner.OPTIMIZER_REASON in r for r in p.reasons)


def test_explicit_options_override_the_planner():
    other = "adam" if planner.PLANNED_OPTIMIZER != "adam" else "adagrad"
    p = plan(300, 1_000_000, {"optimizer": other, "hidden": 512, "dropout": 0.5,
                              "batch_size": 8, "schedule": "step"})
    s = p.settings
    assert (s["optimizer"], s["hidden"], s["dropout"], s["batch_size"], s["schedule"]) == \
        (other, 512, 0.5, 8, "step")
    from charrnn.config import DEFAULT_LR
    assert s["lr"] == DEFAULT_LR[other]
    assert any("your --optimizer" in r for r in p.reasons)
    # a shape outside the ladder is planned around, not replaced
    q = plan(300, 1_000_000, {"hidden": 100, "layers": 4}, speeds={100: 50_000})
    assert (q.settings["hidden"], q.settings["layers"]) == (100, 4)


def test_nice_intervals():
    assert [planner._nice(n) for n in (1, 3, 7, 13, 140, 380, 999)] == [1, 2, 5, 10, 100, 500, 1000]


def test_speed_is_really_measured():
    cps = planner.measure_speed("lstm", 1, 16, 20, 4, 8, seconds=0.05)
    assert 1_000 < cps < 1e9


def test_cli_plans_prints_stores_and_info_shows(tmp_path, bundled_text):
    corpus = tmp_path / "c.txt"
    corpus.write_text(bundled_text[:60_000], encoding="utf-8")
    out = tmp_path / "run"
    r = run_cli("train", corpus, "--time", "6s", "--out", out, "--no-preview", "--hidden", "64",
                "--layers", "1", "--batch-size", "8", "--seq-len", "32")
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode()
    opt = planner.PLANNED_OPTIMIZER
    assert f"plan for 6 s: {CELL} 1x64" in err and opt in err and "dropout" in err
    from charrnn import checkpoint as C
    ck = C.load(str(out / "latest.npz"))
    plan_ = ck.meta["plan"]
    assert plan_["settings"]["optimizer"] == opt and plan_["settings"]["hidden"] == 64
    assert plan_["reasons"] and plan_["speeds"]
    assert ck.train_cfg.optimizer == opt and ck.train_cfg.eval_every == plan_["settings"]["eval_every"]
    assert ck.train_state["horizon"]["seconds"] <= 6
    info = run_cli("info", out)
    assert info.returncode == 0
    assert "plan" in info.stdout.decode() and plan_["reasons"][0][:40] in info.stdout.decode()
    # an explicit --optimizer is kept; --no-plan keeps every default (no plan stored): the
    # settings a run would use, as --dry-run prints them (the run above stored its plan)
    r = run_cli("train", corpus, "--time", "5s", "--dry-run", "--hidden", "32", "--layers", "1",
                "--optimizer", "rmsprop")
    assert r.returncode == 0, r.stderr.decode()
    got = json.loads(r.stdout)
    assert got["train"]["optimizer"] == "rmsprop" and got["plan"]["settings"]["optimizer"] == "rmsprop"
    assert "plan for 5 s" in r.stderr.decode()
    r = run_cli("train", corpus, "--time", "5s", "--dry-run", "--hidden", "32", "--layers", "1", "--no-plan")
    assert r.returncode == 0, r.stderr.decode()
    got = json.loads(r.stdout)
    assert got["train"]["optimizer"] == "adagrad" and got["plan"] is None
    assert got["train"]["eval_every"] == 200 and got["model"]["dropout"] == 0.0
