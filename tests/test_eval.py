"""charrnn eval: exact losses, checked against the NumPy reference."""
import json
import math

import numpy as np

from charrnn import checkpoint as C
from conftest import run_cli
from reference import reference_losses


def reference_mean_loss(ck, text):
    ids = ck.vocab.encode(text).astype(np.int64)
    p = {k: v.astype(np.float64) for k, v in ck.params.items()}
    L, H = ck.model_cfg.layers, ck.model_cfg.hidden
    zeros = np.zeros((L, 1, H))
    losses, _, _ = reference_losses(ck.model_cfg.model, p, ids[:-1, None], ids[1:, None],
                                    zeros, zeros, len(ck.vocab))
    return losses.mean()


def test_eval_loss_matches_reference(trained_run, tmp_path, bundled_text):
    text = bundled_text[200_000:203_000]
    f = tmp_path / "held_out.txt"
    f.write_text(text, encoding="utf-8")
    ck = C.load(trained_run / "best.npz")
    r = run_cli("eval", "-c", trained_run, f, "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["files"][0]["chars"] == len(text) - 1
    assert abs(got["files"][0]["loss"] - reference_mean_loss(ck, text)) < 1e-5
    assert math.isclose(got["total"]["bpc"], got["total"]["loss"] / math.log(2))
    assert math.isclose(got["total"]["perplexity"], math.exp(got["total"]["loss"]))


def test_unknown_characters_counted_and_skipped(trained_run, tmp_path):
    f = tmp_path / "odd.txt"
    f.write_text("The king is dead. \u2603 Long live the king! \u2603\u2603", encoding="utf-8")
    r = run_cli("eval", "-c", trained_run, f, "--json")
    assert r.returncode == 0
    row = json.loads(r.stdout)["files"][0]
    assert row["unknown"] == 3 and row["chars"] == len("The king is dead.  Long live the king! ") - 1
    assert "3 character(s)" in r.stderr.decode()


def test_text_ranking_and_stdin(trained_run):
    r = run_cli("eval", "-c", trained_run, "--text", "the king and the queen", "--text", "qzx jjw vvk kqz",
                "--json")
    texts = json.loads(r.stdout)["texts"]
    assert texts[0]["text"] == "the king and the queen" and texts[0]["rank"] == 1
    assert texts[0]["logprob"] > texts[1]["logprob"]
    r = run_cli("eval", "-c", trained_run, "-", input="To be, or not to be".encode())
    assert r.returncode == 0 and "nats/char" in r.stdout.decode()


def test_table_on_stdout_heatmap_plain_without_terminal(trained_run, tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("ROMEO:\nWhat light through yonder window breaks?\n", encoding="utf-8")
    r = run_cli("eval", "-c", trained_run, f, "--heatmap")
    out = r.stdout.decode()
    assert r.returncode == 0 and "bits/char" in out
    assert "What light through yonder window breaks?" in out
    assert "\x1b[" not in out          # not a terminal: no colour codes


def test_missing_file_and_directory_named_like_train_does(trained_run, tmp_path):
    for target, words in [(tmp_path / "nope.txt", "no such file"), (tmp_path, "is a directory")]:
        r = run_cli("eval", "-c", trained_run, target)
        err = r.stderr.decode()
        assert r.returncode == 1 and err == f"error: {target}: {words}" + err.split(words, 1)[1]
        assert err.count("\n") == 1 and r.stdout == b""
