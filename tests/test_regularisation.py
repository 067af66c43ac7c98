"""Regularisation and weight averaging (issue 20): locked dropout, DropConnect on the
recurrent weights and the weight average through a real training loop; exact resume
with all of them on, log included; version-1 checkpoints resumed with an average;
bad values refused before any corpus is read."""
import json

import numpy as np
import pytest

from charrnn import checkpoint as C
from charrnn import model as M
from charrnn.config import ModelConfig, TrainConfig
from charrnn.data import read_corpus
from charrnn.training import Trainer, run
from conftest import run_cli

TIMING = ("chars_per_sec", "elapsed")


def rows(folder):
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in open(folder / "log.jsonl")]


@pytest.fixture
def corpus(tmp_path, bundled_text):
    (tmp_path / "c.txt").write_text(bundled_text[:12_000], encoding="utf-8")
    return read_corpus([str(tmp_path / "c.txt")])


def make(corpus, cell="lstm", layers=2, shards=1, resume=None, **kw):
    m = {k: kw.pop(k) for k in ("dropout", "dropout_kind", "wdrop") if k in kw}
    mcfg = ModelConfig(model=cell, hidden=24, layers=layers, vocab_size=len(corpus.vocab), **m)
    tcfg = TrainConfig(**{"batch_size": 16, "seq_len": 16, "optimizer": "adagrad", "lr": 0.1,
                          "schedule": "wsd", "warmup": 10.0, "min_lr": 0.01, **kw})
    return Trainer(mcfg, tcfg, corpus.ids, corpus.vocab, resume=resume, shards=shards)


@pytest.mark.parametrize("cell,layers,shards", [("lstm", 2, 1), ("gru", 1, 1), ("rnn", 2, 2), ("lstm", 2, 2)])
def test_paused_and_resumed_equals_uninterrupted_with_every_option_on(cell, layers, shards, corpus, tmp_path):
    opts = dict(dropout=0.25, dropout_kind="locked", wdrop=0.3, avg_decay=0.99)
    (tmp_path / "whole").mkdir()
    whole = make(corpus, cell, layers, shards, **opts)
    run(whole, str(tmp_path / "whole"), steps=90, eval_every=20)
    (tmp_path / "half").mkdir()
    first = make(corpus, cell, layers, shards, **opts)
    assert run(first, str(tmp_path / "half"), steps=90, eval_every=20, pause_at=40)["reason"] == "paused"
    ck = C.load(tmp_path / "half" / "latest.npz")
    assert ck.train_state["step"] == 40 and ck.avg is not None and not np.array_equal(ck.avg, ck.flat)
    second = make(corpus, cell, layers, shards, resume=ck, **opts)
    run(second, str(tmp_path / "half"), steps=90, eval_every=20)
    assert np.array_equal(second.flat, whole.flat) and np.array_equal(second.avg, whole.avg)
    assert np.array_equal(second.optim["mem"], whole.optim["mem"])
    # the log continues as if never interrupted: smoothed loss, validation, rate
    assert rows(tmp_path / "half") == rows(tmp_path / "whole")
    assert [r["step"] for r in rows(tmp_path / "whole") if r["val_loss"] is not None] == [20, 40, 60, 80, 90]


def test_validation_and_best_checkpoint_use_the_average(corpus, tmp_path):
    (tmp_path / "r").mkdir()
    tr = make(corpus, avg_decay=0.95)
    run(tr, str(tmp_path / "r"), steps=40, eval_every=40)
    ck = C.load(tmp_path / "r" / "best.npz")
    assert np.array_equal(ck.avg, tr.avg) and np.array_equal(ck.flat, tr.flat)
    assert not np.allclose(ck.avg, ck.flat)
    assert all(np.array_equal(ck.params[k], v) for k, v in M.views(tr.avg, tr.mcfg).items())
    # the logged validation loss is the average's, recomputed here from best.npz
    raw = make(corpus, avg_decay=None, resume=C.load(tmp_path / "r" / "latest.npz"))
    assert raw.evaluate() != pytest.approx(ck.train_state["best_val"], rel=1e-9)
    assert tr.evaluate() == pytest.approx(ck.train_state["best_val"], rel=1e-9)
    # the average is the decayed sum of the raw weights: one more step by hand
    before = tr.avg.copy()
    tr.train_step()
    d = min(0.95, (1 + tr.avg_steps) / (10 + tr.avg_steps))
    np.testing.assert_allclose(tr.avg, d * before + (1 - d) * tr.flat, rtol=1e-5, atol=1e-7)


def test_dropout_masks_are_locked_over_the_chunk_and_off_at_evaluation(corpus):
    cfg = ModelConfig(model="lstm", hidden=24, layers=3, vocab_size=10, dropout=0.5)
    masks = M.dropout_masks(cfg, 16, 8, np.float32, np.random.default_rng(0))
    assert masks[0] is None and len(masks) == 4
    assert all(m.shape == (8, 24) and set(np.unique(m)) == {0.0, 2.0} for m in masks[1:])
    step = M.dropout_masks(ModelConfig(**{**cfg.to_dict(), "dropout_kind": "step"}), 16, 8, np.float32,
                           np.random.default_rng(0))
    assert step[-1] is None and all(m.shape == (16, 8, 24) for m in step[1:-1])
    # evaluation draws nothing: the same weights give the same loss with any seed
    a, b = make(corpus, dropout=0.5, wdrop=0.5, seed=1), make(corpus, dropout=0.5, wdrop=0.5, seed=1)
    state = a.rng.bit_generator.state
    assert a.evaluate() == b.evaluate() and a.rng.bit_generator.state == state


def test_version_1_checkpoint_resumed_with_an_average_says_so(tmp_path):
    import shutil
    from pathlib import Path

    data = Path(__file__).parent / "data"
    sys_path = str(data)
    import sys
    sys.path.insert(0, sys_path)
    try:
        from make_golden import TEXT        # the golden run's own corpus
    finally:
        sys.path.remove(sys_path)
    golden = tmp_path / "golden-v1.npz"
    shutil.copy(data / "golden-v1.npz", golden)
    ck = C.load(golden)
    assert ck.model_cfg.dropout_kind == "step" and ck.avg is None and ck.train_cfg.avg_decay is None
    corpus = tmp_path / "sonnet.txt"
    corpus.write_text(TEXT * 40, encoding="utf-8")
    before = golden.read_bytes()
    r = run_cli("train", corpus, "--resume", golden, "--out", tmp_path / "new", "--steps", "125",
                "--avg-decay", "0.99", "--no-preview")
    assert r.returncode == 0, r.stderr.decode()
    assert "has no weight average: starting one from its weights at step 120" in r.stderr.decode()
    assert golden.read_bytes() == before                     # nothing the user had is rewritten
    new = C.load(tmp_path / "new" / "latest.npz")
    assert new.train_state["step"] == 125 and new.avg is not None and new.model_cfg.dropout_kind == "step"
    assert int(np.load(tmp_path / "new" / "latest.npz")["format_version"]) == C.FORMAT_VERSION == 2


@pytest.mark.parametrize("args,option", [
    (["--dropout", "1"], "--dropout"), (["--wdrop", "1.5"], "--wdrop"), (["--wdrop", "-0.1"], "--wdrop"),
    (["--avg-decay", "1"], "--avg-decay"), (["--avg-decay", "-2"], "--avg-decay"),
    (["--avg-decay", "abc"], "--avg-decay"), (["--dropout-kind", "spatial"], "--dropout-kind")])
def test_bad_values_are_refused_before_the_corpus_is_read(args, option, tmp_path):
    from click.testing import CliRunner

    from charrnn.cli import cli
    r = CliRunner().invoke(cli, ["train", str(tmp_path / "no-such-file.txt"), *args])
    assert r.exit_code == 2 and option in r.output and "no-such-file" not in r.output, r.output


def test_resuming_an_averaged_run_without_its_average_is_refused(tmp_path, bundled_text):
    from click.testing import CliRunner

    from charrnn.cli import cli
    from conftest import train_small
    _, out = train_small(tmp_path, bundled_text[:8_000], steps=10, hidden=8, avg_decay=0.99)
    before = (out / "latest.npz").read_bytes()
    r = CliRunner().invoke(cli, ["train", str(tmp_path / "corpus.txt"), "--resume", str(out),
                                 "--steps", "20", "--avg-decay", "off"])
    assert r.exit_code == 2 and "--avg-decay" in r.output and "weight average" in r.output, r.output
    assert (out / "latest.npz").read_bytes() == before
