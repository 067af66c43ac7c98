"""eval --dynamic: adapting to a text as it is read (issue 20, part 5). It beats static
evaluation on a text that repeats itself, never changes the checkpoint, scores each
character before learning from it, and refuses what it cannot do before reading."""
import hashlib
import json

import numpy as np
import pytest

from charrnn import checkpoint as C
from charrnn import dynamic as D
from charrnn import evaluate as E
from conftest import run_cli, train_small


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, bundled_text):
    _, out = train_small(tmp_path_factory.mktemp("dyn"), bundled_text[:20_000], steps=60, hidden=24,
                         layers=2, optimizer="adam", lr=3e-3)
    return out


def repeating_text(seed=0, period=300, times=6):
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list("abcdefgh ijklm\n"), period)) * times


def test_adapting_beats_static_scoring_on_a_text_that_repeats(run_dir, tmp_path):
    ck = C.load(run_dir / "latest.npz")
    ids = ck.vocab.encode_known(repeating_text())
    static = E.per_char_losses(ck, ids)
    adapted = D.dynamic_losses(ck, ids, lr=1e-3)
    assert adapted.shape == static.shape
    # the first segment is scored before any adaptation: the same losses
    np.testing.assert_allclose(adapted[:D.SEGMENT], static[:D.SEGMENT], rtol=1e-5)
    # by the last repetition the model has learnt the text; a static one cannot
    assert adapted[-300:].mean() < static[-300:].mean() - 0.5
    assert abs(static[-300:].mean() - static[300:600].mean()) < 0.2


def test_the_cli_reports_both_and_never_changes_the_checkpoint(run_dir, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(repeating_text(1), encoding="utf-8")
    ckpt = run_dir / "latest.npz"
    before = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    from click.testing import CliRunner

    from charrnn.cli import cli
    r = CliRunner().invoke(cli, ["eval", "-c", str(ckpt), str(text), "--dynamic", "--dynamic-lr", "1e-3", "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)["files"][0]
    assert row["dynamic"]["loss"] < row["loss"] - 0.3 and row["dynamic"]["chars"] == row["chars"]
    assert row["dynamic"]["lr"] == 1e-3 and row["dynamic"]["segment"] == D.SEGMENT
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before
    table = CliRunner().invoke(cli, ["eval", "-c", str(ckpt), str(text), "--dynamic"]).stdout.splitlines()
    assert table[1].startswith(str(text) + "\t") and table[2].startswith(f"{text} (dynamic)\t")


def test_gradient_statistics_come_from_the_optimizer_state(run_dir):
    ck = C.load(run_dir / "latest.npz")
    step = ck.train_state["step"]
    rms = D.gradient_rms(ck)
    raw = np.sqrt(ck.optim["v"].astype(np.float64) / (1 - 0.999 ** step))
    from charrnn import model as M
    for name, r in M.views(raw, ck.model_cfg).items():      # floored per parameter array
        np.maximum(r, D.RMS_FLOOR * r.mean(), out=r)
    np.testing.assert_allclose(rms, raw, rtol=1e-5)


@pytest.mark.parametrize("args,needle", [
    (["--dynamic", "--dynamic-lr", "0"], "--dynamic-lr"),
    (["--dynamic", "--dynamic-lr", "-1"], "--dynamic-lr"),
    (["--dynamic", "--dynamic-decay", "1"], "--dynamic-decay"),
    (["--dynamic-lr", "1e-4"], "give --dynamic too")])
def test_bad_settings_are_usage_errors_before_anything_is_read(args, needle, tmp_path):
    from click.testing import CliRunner

    from charrnn.cli import cli
    r = CliRunner().invoke(cli, ["eval", "-c", str(tmp_path / "none.npz"), str(tmp_path / "none.txt"), *args])
    assert r.exit_code == 2 and needle in r.output and "none.txt" not in r.output, r.output


def test_a_checkpoint_without_gradient_statistics_cannot_be_adapted(tmp_path, bundled_text):
    _, out = train_small(tmp_path, bundled_text[:5_000], steps=5, hidden=8, optimizer="sgd", lr=0.5)
    r = run_cli("eval", "-c", out / "latest.npz", tmp_path / "never-read.txt", "--dynamic")
    err = r.stderr.decode()
    assert r.returncode == 2 and "--dynamic" in err and "SGD" in err and "latest.npz" in err, err
    assert "never-read" not in err and "Traceback" not in err


def test_a_character_training_never_saw_does_not_throw_its_weights_off(tmp_path, bundled_text):
    """'~' occurs only in the validation split: training never moved its l0.Wx row
    (its Adagrad accumulator is 0). Adapting to a text full of it must stay sane."""
    text = bundled_text[:19_000].replace("~", "")
    text += ("~" + bundled_text[19_000:19_040].replace("~", "")) * 12     # within the last 10%
    _, out = train_small(tmp_path, text, steps=40, hidden=16, optimizer="adagrad", lr=0.1)
    ck = C.load(out / "latest.npz")
    tilde = ck.vocab.index("~")
    from charrnn import model as M
    assert np.all(M.views(ck.optim["mem"], ck.model_cfg)["l0.Wx"][tilde] == 0)   # never trained
    rms = D.gradient_rms(ck)
    assert rms.min() > 0
    ids = ck.vocab.encode_known(text[-1000:])
    static, adapted = E.per_char_losses(ck, ids), D.dynamic_losses(ck, ids)
    assert np.isfinite(adapted).all() and adapted.mean() < static.mean() + 0.05
