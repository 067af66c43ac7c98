"""The command line as a person uses it: help, version, output streams, colour, quiet."""
import json
import os
import subprocess
import sys

import pytest

from charrnn.kernels import BLAS
from conftest import run_cli

COMMANDS = ["train", "sample", "eval", "info", "runs", "plot"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help_with_examples_and_defaults(cmd):
    r = run_cli(cmd, "--help")
    out = r.stdout.decode()
    assert r.returncode == 0 and "Examples:" in out and f"charrnn {cmd}" in out
    if cmd in ("train", "sample"):
        assert "[default:" in out


def test_version_and_top_level_help():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.decode().startswith("charrnn, version ")
    out = run_cli("--help").stdout.decode()
    for cmd in COMMANDS:
        assert cmd in out


def test_train_quiet_prints_nothing_and_plain_log_lines_when_not_a_terminal(tmp_path, bundled_text):
    corpus = tmp_path / "c.txt"
    corpus.write_text(bundled_text[:20_000], encoding="utf-8")
    small = ["--hidden", "16", "--layers", "1", "--batch-size", "4", "--seq-len", "16", "--steps", "40",
             "--eval-every", "20"]
    r = run_cli("train", corpus, "--out", tmp_path / "q", *small, "--quiet")
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b""
    r = run_cli("train", corpus, "--out", tmp_path / "p", *small)
    err = r.stderr.decode()
    assert r.returncode == 0 and r.stdout == b""
    # the BLAS in use, in the header (on OpenBLAS too: test_parallel.py's header test)
    assert f"float32, {'MKL' if BLAS == 'mkl' else 'OpenBLAS'}\n" in err.splitlines(keepends=True)[0]
    assert "\r" not in err and "\x1b[" not in err          # no bar, no colour: plain lines
    assert "step 20: val " in err and "step 40: val " in err
    assert "best validation loss" in err and "charrnn sample --checkpoint" in err


def test_info_runs_plot(trained_run, tmp_path):
    r = run_cli("info", trained_run)
    out = r.stdout.decode()
    assert r.returncode == 0 and "lstm, 2 layer(s) x 48 hidden" in out and "corpus.txt" in out
    (tmp_path / "checkpoints").mkdir()
    os.symlink(trained_run, tmp_path / "checkpoints" / "alpha")
    r = subprocess.run([sys.executable, "-m", "charrnn", "runs"], cwd=tmp_path, capture_output=True)
    assert r.returncode == 0 and "alpha" in r.stdout.decode() and "150" in r.stdout.decode()
    r = run_cli("plot", trained_run, "--width", "60", "--height", "15")
    out = r.stdout.decode()
    assert r.returncode == 0 and "validation" in out and "step" in out


def test_colour_only_when_wanted_and_never_with_no_color(trained_run):
    import re
    colour = re.compile(rb"\x1b\[(3[0-7]|9[0-7]|38;[25];)[0-9;]*m")
    args = ("eval", "-c", trained_run, "--text", "to be or not to be, that is", "--heatmap")
    plain = run_cli(*args)                                 # stdout is a pipe: no colour
    assert plain.returncode == 0 and b"\x1b[" not in plain.stdout
    forced = run_cli(*args, env={"FORCE_COLOR": "1"})      # as on a terminal
    assert colour.search(forced.stdout)
    no_color = run_cli(*args, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert no_color.returncode == 0 and not colour.search(no_color.stdout)


def test_runs_with_nothing(tmp_path):
    r = subprocess.run([sys.executable, "-m", "charrnn", "runs"], cwd=tmp_path, capture_output=True)
    assert r.returncode == 0 and r.stdout == b"" and b"no runs" in r.stderr


def test_plot_png(trained_run, tmp_path):
    pytest.importorskip("matplotlib")
    r = run_cli("plot", trained_run, "--png", tmp_path / "c.png")
    assert r.returncode == 0 and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_plain_progress_estimates_time_left_from_after_the_first_step(bundled_text):
    import io

    from charrnn.config import ModelConfig, TrainConfig
    from charrnn.cli.progress import TrainDisplay
    from charrnn.training import Trainer
    from charrnn.vocab import Vocab
    vocab = Vocab.from_chars(set(bundled_text[:2000]))
    trainer = Trainer(ModelConfig(hidden=4, layers=1, vocab_size=len(vocab)), TrainConfig(batch_size=2),
                      vocab.encode(bundled_text[:2000]), vocab)
    out = io.StringIO()
    d = TrainDisplay(stream=out, plain=True)
    d("start", {"trainer": trainer, "final_step": 1000, "seconds": None})
    step = {"final_step": 1000, "epoch": 0.0, "smooth": 4.0, "cps": 400.0, "elapsed": 5.0}
    d("step", {**step, "step": 1, "run_seconds": 5.0})        # loading the kernels: 5 s
    d.last_line = 0                                           # (lines are 10 s apart)
    d("step", {**step, "step": 101, "run_seconds": 6.0})      # then 100 steps a second
    header, first, second = out.getvalue().splitlines()
    assert "left" not in first
    assert second.endswith(", 0:09 left")                     # 899 steps at 10 ms, not 45 s


def _long_run(trained_run, tmp_path):
    name = "a-very-long-run-name-that-a-user-must-copy-lstm-20261201-101500"
    (tmp_path / "checkpoints").mkdir()
    os.symlink(trained_run, tmp_path / "checkpoints" / name)
    return name


def test_tables_are_plain_tab_separated_lines_when_piped(trained_run, tmp_path):
    name = _long_run(trained_run, tmp_path)
    r = subprocess.run([sys.executable, "-m", "charrnn", "runs"], cwd=tmp_path, capture_output=True)
    lines = r.stdout.decode().splitlines()
    assert lines[0].split("\t") == ["run", "model", "steps", "best val (nats/char)", "bits/char", "updated"]
    row = lines[1].split("\t")
    assert row[0] == name and row[1] == "lstm 2x48" and row[2] == "150" and float(row[3]) > 0
    assert "\x1b[" not in r.stdout.decode() and "…" not in r.stdout.decode()
    r = run_cli("info", trained_run)
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "key\tvalue" and all(line.count("\t") == 1 for line in lines)
    info = dict(line.split("\t") for line in lines[1:])
    assert info["checkpoint"].endswith("best.npz") and "48 hidden" in info["model"]
    r = run_cli("eval", "-c", trained_run, "--text", "to be", "--text", "or not")
    lines = r.stdout.decode().splitlines()
    assert lines[0].split("\t")[:2] == ["rank", "text"] and len(lines) == 3
    assert {lines[1].split("\t")[1], lines[2].split("\t")[1]} == {"to be", "or not"}


def test_terminal_tables_never_cut_a_run_name(trained_run, tmp_path):
    name = _long_run(trained_run, tmp_path)
    env = dict(os.environ, FORCE_COLOR="1", COLUMNS="60")   # rich: a terminal 60 columns wide
    r = subprocess.run([sys.executable, "-m", "charrnn", "runs"], cwd=tmp_path, capture_output=True, env=env)
    out = r.stdout.decode()
    assert "\t" not in out and "─" in out or "━" in out     # a drawn table
    assert name in out                                       # whole, on one line
