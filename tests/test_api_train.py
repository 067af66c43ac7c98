"""charrnn.train() as a notebook drives it (from a thread, stopped by an event), against
`charrnn train`: the same weights for the same options, the same one-line errors, no
signal handler changed; config.build_configs (options -> configurations) on its own."""
import signal
import threading
from types import SimpleNamespace

import numpy as np
import pytest

import charrnn
from charrnn.config import (DEFAULT_STEPS, TRAIN_OPTIONS, ModelConfig, TrainConfig, build_configs,
                            train_defaults)
from charrnn.errors import UsageError
from conftest import run_cli

TINY = dict(hidden=16, layers=1, batch_size=4, seq_len=16)   # a model that trains in moments


@pytest.fixture
def corpus(tmp_path, bundled_text):
    path = tmp_path / "c.txt"
    path.write_text(bundled_text[:20_000], encoding="utf-8")
    return path


def _handlers():
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


# -- the API from a thread ---------------------------------------------------------------

def test_train_in_a_thread_stopped_from_the_main_thread(tmp_path, corpus):
    before = _handlers()
    reached, stop = threading.Event(), threading.Event()
    kinds, out = [], {}

    def callback(kind, info):
        kinds.append(kind)
        if kind == "step" and info["step"] == 7:
            reached.set()
            stop.wait()     # hold here until the main thread has asked to stop: certain, not timed

    def work():
        try:
            out["run"] = charrnn.train(str(corpus), tmp_path / "run", steps=1000, eval_every=5,
                                       callback=callback, stop=stop, **TINY)
        except BaseException as e:      # noqa: BLE001 - reported by the main thread
            out["error"] = e
            reached.set()

    worker = threading.Thread(target=work)
    worker.start()
    assert reached.wait(120) and "error" not in out, out.get("error")
    stop.set()
    worker.join(120)
    assert not worker.is_alive() and "error" not in out, out.get("error")
    run = out["run"]
    assert run.folder == str(tmp_path / "run")
    assert run.summary["reason"] == "stopped" and run.summary["steps"] == 7
    assert run.summary["signal"] is None and run.summary["elapsed"] > 0
    assert run.summary["best_val"] is not None      # evaluated at step 5
    assert kinds[0] == "start" and kinds[-1] == "done" and "eval" in kinds
    assert (tmp_path / "run" / "best.npz").is_file() and run.latest.endswith("latest.npz")
    assert run.settings["model"]["hidden"] == 16 and run.settings["train"]["steps"] == 1000
    model = charrnn.load(run.folder)
    assert model.checkpoint.train_state["step"] == 5                # best.npz: the evaluation
    assert charrnn.load(run.latest).checkpoint.train_state["step"] == 7
    text = model.generate("T", length=30, seed=3)
    assert len(text) == 31 and text == run.load().generate("T", length=30, seed=3)
    assert _handlers() == before


def test_handle_signals_only_in_the_main_thread(tmp_path, corpus):
    out = {}

    def work():
        try:
            charrnn.train(str(corpus), tmp_path / "run", steps=3, handle_signals=True, **TINY)
        except UsageError as e:
            out["error"] = e
    worker = threading.Thread(target=work)
    worker.start()
    worker.join(60)
    assert out["error"].param == "handle_signals"
    assert not (tmp_path / "run").exists()


# -- the API and the command ---------------------------------------------------------------

def test_api_and_command_train_the_same_weights(tmp_path, corpus):
    """Bit for bit, resumed too; handle_signals=True restores the handlers it replaced."""
    opts = dict(steps=24, eval_every=8, seed=5, dropout=0.1, **TINY)
    before = _handlers()
    run = charrnn.train([str(corpus)], str(tmp_path / "api"), handle_signals=True, **opts)
    assert _handlers() == before
    assert run.summary["reason"] == "steps" and run.summary["steps"] == 24
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in opts.items()]
    r = run_cli("train", corpus, *argv, "--out", tmp_path / "cli", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stderr == b""
    # continued to step 40, each the same way
    charrnn.train(str(corpus), resume=run.folder, steps=40)
    r = run_cli("train", corpus, "--resume", tmp_path / "cli", "--steps", 40, "--quiet")
    assert r.returncode == 0, r.stderr
    api, cli = charrnn.load(run.folder).checkpoint, charrnn.load(tmp_path / "cli").checkpoint
    assert api.train_state["step"] == cli.train_state["step"] == 40
    assert api.model_cfg == cli.model_cfg and api.train_cfg == cli.train_cfg
    assert np.array_equal(api.flat, cli.flat)
    for slot in api.optim:
        assert np.array_equal(api.optim[slot], cli.optim[slot])
    assert api.avg is not None and np.array_equal(api.avg, cli.avg)      # the default weight average
    timing = ("elapsed",)
    assert {k: v for k, v in api.train_state.items() if k not in timing} == \
        {k: v for k, v in cli.train_state.items() if k not in timing}
    assert api.meta["command"].startswith("charrnn.train(")
    assert cli.meta["command"].startswith("charrnn train ")


BAD = [  # refused by train's value checks, or by their combinations
    {"hidden": 0}, {"model": "transformer"}, {"lr": 0}, {"warmup": 1.5}, {"patience": 0},
    {"avg_decay": 2}, {"time": "zz"}, {"dropout": 1.5}, {"time": "3s"}, {"steps": 5, "time": 10},
    {"plan": True}, {"val_frac": 1}, {"min_lr": 1}, {"warmup": 500, "steps": 100},
    {"max_stream_bytes": 0}, {"dtype": "float16"}, {"seed": -1}, {"pause_at": "x"},
]


def _argv(options):
    out = []
    for k, v in options.items():
        flag = "--" + k.replace("_", "-")
        out += [flag] if v is True else [flag, str(v)]
    return out


@pytest.mark.parametrize("options", BAD, ids=lambda o: ",".join(o))
def test_a_bad_option_is_the_commands_usage_error(tmp_path, options):
    import click

    from charrnn.cli import cli
    path = str(tmp_path / "never-read.txt")
    with pytest.raises(UsageError) as natural:        # as Python holds the values
        charrnn.train(path, tmp_path / "run", **options)
    typed = {k: v if isinstance(v, bool) else str(v) for k, v in options.items()}
    with pytest.raises(UsageError) as api:            # as the command line has them
        charrnn.train(path, tmp_path / "run", **typed)
    assert natural.value.param == api.value.param
    with pytest.raises(click.UsageError) as command:
        cli.main(args=["train", path, "--out", str(tmp_path / "run"), *_argv(options)],
                 prog_name="charrnn", standalone_mode=False)
    e = api.value
    printed = command.value.format_message().rstrip(".")   # cli.main prints it after "error: "
    if e.param is None:
        assert printed == e.message
    else:
        hint, message = printed.split(": ", 1)
        assert message == e.message
        assert hint.strip("'").endswith("--" + e.param.replace("_", "-"))
        assert e.param in options
        assert str(e) == f"{e.param}: {e.message}"
    assert not (tmp_path / "run").exists()


def test_unknown_option_and_bad_stop(tmp_path):
    with pytest.raises(UsageError, match="'hiden' is not an option of train"):
        charrnn.train("x.txt", hiden=3)
    with pytest.raises(UsageError) as e:
        charrnn.train("x.txt", stop=True)
    assert e.value.param == "stop"


def test_command_defaults_are_the_table():
    from charrnn.cli.train import train
    for p in train.params:
        if p.name in TRAIN_OPTIONS:
            default = p.type_cast_value(None, p.default) if p.default is not None else None
            assert default == TRAIN_OPTIONS[p.name], p.name
    assert {p.name for p in train.params} >= set(TRAIN_OPTIONS) - {"max_stream_bytes"}


# -- build_configs: options -> configurations, pure ----------------------------------------

def test_no_options_are_the_default_run():
    m, t = build_configs({}, vocab_size=65)
    model_kw, train_kw = train_defaults()
    assert m == ModelConfig(**model_kw, vocab_size=65)
    assert t == TrainConfig(**train_kw, steps=DEFAULT_STEPS)
    assert (m.model, m.layers, m.hidden, t.steps) == ("gru", 2, 256, 3900)
    assert (t.schedule, t.lr, t.min_lr, t.warmup, t.clip, t.patience, t.avg_decay) == \
        ("wsd", 0.11, pytest.approx(0.011), 400.0, 1.0, 5, 0.999)


def test_derived_defaults():
    _, t = build_configs({"optimizer": "adam"}, 10)
    assert (t.lr, t.min_lr, t.schedule) == (2e-3, 2e-4, "wsd")
    _, t = build_configs({"steps": 50}, 10)
    assert (t.lr, t.warmup, t.clip) == (0.05, 5.0, 5.0)     # a tenth of a short run
    _, t = build_configs({"steps": 50, "warmup": 20.0}, 10)
    assert t.warmup == 20.0
    _, t = build_configs({"time": 60.0}, 10)
    assert (t.steps, t.epochs, t.time, t.lr, t.warmup) == (None, None, 60.0, 0.05, 100.0)
    # Adagrad's higher rate, longer warm-up (and a GRU's tighter clip) only where they were
    # measured: 32 streams or more, in a run long enough to spend 400 steps warming up
    for options, want in [({"steps": 1599}, (0.05, 100.0, 5.0)), ({"steps": 1600}, (0.11, 400.0, 1.0)),
                          ({"model": "lstm", "steps": 1999}, (0.05, 100.0, 5.0)),
                          ({"model": "lstm", "steps": 2000}, (0.08, 400.0, 5.0)),
                          ({"epochs": 10.0}, (0.05, 100.0, 5.0)), ({"batch_size": 16}, (0.05, 100.0, 5.0)),
                          ({"batch_size": 64}, (0.11, 400.0, 1.0)), ({"optimizer": "adam"}, (2e-3, 100.0, 5.0)),
                          ({"model": "lstm"}, (0.08, 400.0, 5.0)), ({"model": "rnn"}, (0.08, 400.0, 5.0)),
                          ({"lr": 0.02}, (0.02, 400.0, 1.0)), ({"warmup": 50.0}, (0.11, 50.0, 1.0)),
                          ({"clip": 0.0}, (0.11, 400.0, 0.0)), ({"steps": 50, "clip": 2.0}, (0.05, 5.0, 2.0))]:
        _, t = build_configs(options, 10)
        assert (t.lr, t.warmup, t.clip) == want, options
    _, t = build_configs({"epochs": 2.0, "lr": 0.1, "min_lr": 0.0, "patience": None}, 10)
    assert (t.steps, t.epochs, t.lr, t.min_lr, t.patience) == (None, 2.0, 0.1, 0.0, None)


def test_a_plan_fills_what_the_options_leave():
    plan = {"model": "lstm", "hidden": 128, "layers": 1, "batch_size": 16, "seq_len": 32,
            "dropout": 0.2, "wdrop": 0.0, "avg_decay": 0.999, "optimizer": "adam", "lr": 3e-3,
            "schedule": "cosine", "warmup": 40.0, "eval_every": 50, "patience": 4}
    m, t = build_configs({"time": 300.0, "hidden": 64}, 20, plan=plan)
    assert (m.hidden, m.layers, m.dropout) == (64, 1, 0.2)
    assert (t.optimizer, t.lr, t.min_lr, t.schedule, t.warmup, t.eval_every, t.avg_decay) == \
        ("adam", 3e-3, 3e-3 / 10, "cosine", 40.0, 50, 0.999)


def test_min_lr_above_lr_is_refused():
    with pytest.raises(UsageError) as e:
        build_configs({"lr": 0.01, "min_lr": 0.02}, 10)
    assert (e.value.param, e.value.message) == ("min_lr", "0.02 is above the learning rate 0.01")


def _checkpoint(horizon=None, elapsed=0.0, epochs=None, steps=300, avg=None):
    m, t = build_configs({"steps": steps, "hidden": 32}, 12)
    t = TrainConfig(**{**t.to_dict(), "epochs": epochs, "steps": None if epochs else steps})
    return SimpleNamespace(model_cfg=m, train_cfg=t, avg=avg,
                           train_state={"horizon": horizon, "elapsed": elapsed, "step": 100})


def test_resume_keeps_the_run_and_changes_what_it_may():
    ck = _checkpoint(horizon={"steps": 300})
    m, t = build_configs({}, resume=ck)
    assert m == ck.model_cfg and t == ck.train_cfg
    m, t = build_configs({"steps": 500, "lr": 0.02, "patience": None, "eval_every": 50,
                          "hidden": 32}, resume=ck)
    assert (t.steps, t.lr, t.patience, t.eval_every) == (500, 0.02, None, 50)
    assert (t.min_lr, t.schedule) == (ck.train_cfg.min_lr, ck.train_cfg.schedule)
    with pytest.raises(UsageError, match="^--resume keeps the checkpoint's settings; drop "
                                         "--hidden, --seed$"):
        build_configs({"hidden": 64, "seed": 1}, resume=ck)
    with pytest.raises(UsageError, match="below the run's --min-lr") as e:
        build_configs({"lr": 0.001}, resume=ck)
    assert e.value.param == "lr"


def test_resume_continues_to_its_own_bound():
    _, t = build_configs({}, resume=_checkpoint(horizon={"seconds": 100.0}, elapsed=60.0))
    assert (t.steps, t.epochs, t.time) == (None, None, 40.0)
    _, t = build_configs({}, resume=_checkpoint(epochs=3.0))
    assert (t.steps, t.epochs, t.time) == (None, 3.0, None)
    with pytest.raises(UsageError, match="used its whole --time budget"):
        build_configs({}, resume=_checkpoint(horizon={"seconds": 100.0}, elapsed=100.0))
