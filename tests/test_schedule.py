"""Learning-rate schedules, durations, and how they reach a run: values at given
steps and times, resume mid-schedule, log.jsonl's rates, early stopping."""
import json
import math

import numpy as np
import pytest

from charrnn.schedule import fmt_duration, lr_at, parse_duration


@pytest.mark.parametrize("text, seconds", [
    ("90", 90), ("90s", 90), ("20m", 1200), ("1h30m", 5400), ("1h", 3600), ("2m30s", 150),
    ("1.5h", 5400), ("0.5m", 30), ("1h0m5s", 3605), (" 45S ", 45), ("7.25", 7.25)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5x", "", "m", "1m1h", "1h1h", "-5", "inf", "nan", "1 h", "h1", "1e400"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_fmt_duration_round_trips():
    for s in (5, 90, 1200, 5400, 3605):
        assert parse_duration(fmt_duration(s)) == s


def test_cosine_values_at_given_progress():
    base, lo = 0.1, 0.01
    assert lr_at("cosine", base, lo, 0, 0, 0.0) == pytest.approx(base)
    assert lr_at("cosine", base, lo, 0, 0, 0.5) == pytest.approx((base + lo) / 2)
    assert lr_at("cosine", base, lo, 0, 0, 1.0) == pytest.approx(lo)
    assert lr_at("cosine", base, lo, 0, 0, 0.25) == pytest.approx(lo + (base - lo) * (1 + math.cos(math.pi / 4)) / 2)
    assert lr_at("cosine", base, lo, 0, 0, 7.0) == pytest.approx(lo)     # clamped past the end
    rates = [lr_at("cosine", base, lo, 0, 0, p) for p in np.linspace(0, 1, 50)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_warmup_in_steps_and_as_fraction():
    assert lr_at("constant", 1.0, 0, 100, 0, 0.0) == pytest.approx(0.01)
    assert lr_at("constant", 1.0, 0, 100, 49, 0.1) == pytest.approx(0.5)
    assert lr_at("constant", 1.0, 0, 100, 99, 0.2) == pytest.approx(1.0)
    assert lr_at("constant", 1.0, 0, 100, 5000, 0.9) == pytest.approx(1.0)
    assert lr_at("constant", 1.0, 0, 0.1, 0, 0.05) == pytest.approx(0.5)
    assert lr_at("constant", 1.0, 0, 0.1, 0, 0.2) == pytest.approx(1.0)
    # warm-up multiplies the decayed rate
    assert lr_at("cosine", 1.0, 0.0, 0.5, 0, 0.25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)) / 2)


def test_step_schedule_milestones_and_floor():
    assert lr_at("step", 1.0, 0, 0, 0, 0.49) == 1.0
    assert lr_at("step", 1.0, 0, 0, 0, 0.5) == pytest.approx(0.3)
    assert lr_at("step", 1.0, 0, 0, 0, 0.8) == pytest.approx(0.09)
    assert lr_at("step", 1.0, 0, 0, 0, 0.95) == pytest.approx(0.027)
    assert lr_at("step", 1.0, 0.05, 0, 0, 0.95) == pytest.approx(0.05)


def test_wsd_is_flat_then_linear_to_min():
    assert lr_at("wsd", 1.0, 0.1, 0, 0, 0.0) == 1.0
    assert lr_at("wsd", 1.0, 0.1, 0, 0, 0.8) == pytest.approx(1.0)
    assert lr_at("wsd", 1.0, 0.1, 0, 0, 0.9) == pytest.approx(0.55)
    assert lr_at("wsd", 1.0, 0.1, 0, 0, 1.0) == pytest.approx(0.1)


def test_unknown_schedule_refused():
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_at("linear", 1.0, 0, 0, 0, 0.5)


def _trainer(tmp_path, text, **kw):
    from charrnn.config import ModelConfig, TrainConfig
    from charrnn.data import read_corpus
    from charrnn.training import Trainer
    path = tmp_path / "c.txt"
    path.write_text(text, encoding="utf-8")
    corpus = read_corpus([str(path)])
    m = ModelConfig(model="lstm", hidden=16, layers=1, vocab_size=len(corpus.vocab))
    t = TrainConfig(**{"batch_size": 4, "seq_len": 16, "optimizer": "adam", "lr": 0.01,
                       "schedule": "cosine", "warmup": 3.0, "min_lr": 0.001, **kw})
    return Trainer(m, t, corpus.ids, corpus.vocab)


def test_rates_logged_follow_the_schedule_by_steps(tmp_path, bundled_text):
    from charrnn.training import run
    tr = _trainer(tmp_path, bundled_text[:20_000])
    run(tr, str(tmp_path), steps=40, eval_every=20, log_every=1)
    recs = [json.loads(l) for l in open(tmp_path / "log.jsonl")]
    assert [r["step"] for r in recs] == list(range(1, 41))
    for r in recs:   # the rate used for the update of step k (k - 1 steps done before it)
        k = r["step"]
        want = lr_at("cosine", 0.01, 0.001, 3.0, k - 1, (k - 1) / 40)
        assert r["lr"] == pytest.approx(want, rel=1e-12)
    assert recs[0]["lr"] == pytest.approx(0.01 / 3)
    assert recs[-1]["lr"] < 0.0012


def test_time_bound_anneals_by_the_end_of_the_budget(tmp_path, bundled_text):
    from charrnn.training import run
    tr = _trainer(tmp_path, bundled_text[:20_000], warmup=0.0)
    run(tr, str(tmp_path), seconds=3.0, eval_every=0, log_every=1)
    recs = [json.loads(l) for l in open(tmp_path / "log.jsonl")]
    assert tr.horizon == {"seconds": 3.0}
    assert recs[0]["lr"] == pytest.approx(0.01)
    # progress is elapsed / budget: the last rates are near min_lr, and each matches its time
    assert recs[-1]["lr"] < 0.0015
    for a, b in zip(recs, recs[1:]):
        assert b["lr"] <= a["lr"] + 1e-15
        # the rate of step k+1 was computed from the elapsed time logged at step k
        assert b["lr"] == pytest.approx(lr_at("cosine", 0.01, 0.001, 0, 0, a["elapsed"] / 3.0), abs=1e-5)  # elapsed is logged to 1 ms


@pytest.mark.parametrize("eval_every", [7, 0])
def test_a_time_bound_run_ends_evaluated(tmp_path, bundled_text, eval_every):
    """The last step of a time budget is evaluated whatever the interval, so that the end of
    the schedule's decay (its lowest rates) reaches the validation curve and best.npz."""
    from charrnn import checkpoint as C
    from charrnn.training import run
    tr = _trainer(tmp_path, bundled_text[:20_000], warmup=0.0)
    r = run(tr, str(tmp_path), seconds=1.0, eval_every=eval_every, log_every=1)
    assert r["reason"] == "time"
    recs = [json.loads(l) for l in open(tmp_path / "log.jsonl")]
    assert recs[-1]["step"] == tr.step and recs[-1]["val_loss"] == r["last_val"]
    assert r["last_val"] is not None
    evaluated = [x["step"] for x in recs if x["val_loss"] is not None]
    assert evaluated == [s for s in range(1, tr.step) if eval_every and s % eval_every == 0] + [tr.step]
    assert C.load(str(tmp_path / "latest.npz")).train_state["step"] == tr.step


def test_resume_mid_schedule_is_bit_identical(tmp_path, bundled_text):
    from charrnn import checkpoint as C
    from charrnn.training import Trainer, run
    text = bundled_text[:20_000]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = _trainer(tmp_path, text)
    run(whole, str(tmp_path / "a"), steps=30, eval_every=10)
    part = _trainer(tmp_path, text)
    run(part, str(tmp_path / "b"), steps=30, eval_every=10, **_stop_at(13))
    assert part.step == 13
    ck = C.load(str(tmp_path / "b" / "latest.npz"))
    assert ck.train_state["horizon"] == {"steps": 30}
    from charrnn.data import read_corpus
    ids = read_corpus([str(tmp_path / "c.txt")]).ids
    rest = Trainer(ck.model_cfg, ck.train_cfg, ids, ck.vocab, resume=ck)
    assert rest.lr == part.lr
    run(rest, str(tmp_path / "b"), steps=30, eval_every=10)
    assert np.array_equal(rest.flat, whole.flat)
    lr_whole = {r["step"]: r["lr"] for r in map(json.loads, open(tmp_path / "a" / "log.jsonl"))}
    lr_parts = {r["step"]: r["lr"] for r in map(json.loads, open(tmp_path / "b" / "log.jsonl"))}
    assert len(lr_parts) >= 14
    assert all(lr_whole[k] == v for k, v in lr_parts.items())


def _stop_at(step):
    """run()'s on_event and should_stop that stop it after `step`, as Ctrl-C would."""
    stop = []

    def on_event(kind, info):
        if kind == "step" and info["step"] == step:
            stop.append(True)
    return {"on_event": on_event, "should_stop": lambda: bool(stop)}


def test_early_stopping_on_a_crafted_plateau(tmp_path, bundled_text, monkeypatch):
    """Validation losses 3, 2, 2.5, 2.4, 2.1, ... : the best is at evaluation 2, and
    with patience 3 the run stops after evaluation 5, keeping best.npz from step 20."""
    from charrnn import checkpoint as C
    from charrnn.training import Trainer, run
    tr = _trainer(tmp_path, bundled_text[:20_000], patience=3)
    vals = iter([3.0, 2.0, 2.5, 2.4, 2.1, 1.0, 1.0])
    monkeypatch.setattr(Trainer, "evaluate", lambda self, stop=None: next(vals))
    result = run(tr, str(tmp_path), steps=1000, eval_every=10)
    assert result["reason"] == "patience"
    assert result["step"] == 50
    assert C.load(str(tmp_path / "best.npz")).train_state["step"] == 20
    assert C.load(str(tmp_path / "latest.npz")).train_state["step"] == 50
    assert result["best_val"] == 2.0


def test_run_reports_why_it_ended(tmp_path, bundled_text):
    from charrnn.cli.progress import summary
    from charrnn.training import run
    tr = _trainer(tmp_path, bundled_text[:20_000])
    r = run(tr, str(tmp_path), steps=5, eval_every=5)
    assert r["reason"] == "steps"
    assert "reached --steps 5" in summary(r, str(tmp_path))
    r = run(tr, str(tmp_path), seconds=0.5, eval_every=0)
    assert r["reason"] == "time"
    assert "time budget" in summary(r, str(tmp_path))
    r["reason"], r["patience"] = "patience", 4
    assert "no new best in 4 evaluations" in summary(r, str(tmp_path))


@pytest.mark.parametrize("args, words", [
    (["--time", "5x"], "--time"),
    (["--time", "1m1h"], "--time"),
    (["--time", "2s"], "too short"),
    (["--warmup", "500", "--steps", "300"], "--warmup"),
    (["--warmup", "1.5"], "--warmup"),
    (["--warmup", "-0.1"], "--warmup"),
    (["--min-lr", "0.2"], "--min-lr"),                     # above Adagrad's 0.11 (default run)
    (["--min-lr", "0.01", "--optimizer", "adam"], "--min-lr"),
    (["--patience", "0"], "--patience"),
    (["--patience", "soon"], "--patience"),
    (["--plan"], "--plan"),
])
def test_bad_schedule_options_are_usage_errors_before_the_corpus_is_read(args, words, tmp_path):
    from conftest import run_cli
    # the corpus does not exist: an option error must come first
    r = run_cli("train", tmp_path / "no-such-corpus.txt", *args)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
    assert "no such file" not in err


def test_durations_reach_the_run(tmp_path, bundled_text):
    from conftest import run_cli
    from charrnn import checkpoint as C
    corpus = tmp_path / "c.txt"
    corpus.write_text(bundled_text[:30_000], encoding="utf-8")
    r = run_cli("train", corpus, "--time", "0.1m", "--no-plan", "--hidden", "16", "--layers", "1",
                "--batch-size", "4", "--seq-len", "16", "-q", "--patience", "off", "--out", tmp_path / "r")
    assert r.returncode == 0, r.stderr.decode()
    ck = C.load(str(tmp_path / "r" / "latest.npz"))
    assert ck.train_cfg.time == 6.0 and ck.train_state["horizon"] == {"seconds": 6.0}
    assert 5.5 < ck.train_state["elapsed"] < 9
    # a resumed run's new --lr below the --min-lr it keeps: the schedule would decay upwards
    r = run_cli("train", tmp_path / "no-such-corpus.txt", "--resume", tmp_path / "r", "--lr", "0.001")
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1 and "--lr" in err and "--min-lr 0.005" in err, err
