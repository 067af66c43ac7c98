"""charrnn sweep for real: trials on the local pool and on a real Dask LocalCluster
(started here on the loopback interface), successive halving, Ctrl-C and continue,
a failing trial, and bad input refused before any trial starts."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from charrnn import checkpoint as C
from conftest import run_cli

TINY_GRID = ["--grid", "layers=1", "--grid", "batch-size=4", "--grid", "seq-len=16"]


@pytest.fixture
def corpus(tmp_path, bundled_text):
    p = tmp_path / "c.txt"
    p.write_text(bundled_text[:20_000], encoding="utf-8")
    return p


def ledger(folder):
    return {r["name"]: r for r in map(json.loads, open(folder / "sweep.jsonl"))}


def weights(folder):
    return C.load(folder / "latest.npz").flat


def val_at(folder, step):
    for line in open(folder / "log.jsonl"):
        r = json.loads(line)
        if r.get("step") == step and r.get("val_loss") is not None:
            return r["val_loss"]
    raise AssertionError(f"no validation loss at step {step} in {folder}")


def test_local_pool_trains_every_trial_as_a_normal_run(corpus, tmp_path):
    out = tmp_path / "sw"
    r = run_cli("sweep", corpus, "--grid", "hidden=8,16", "--grid", "lr=0.05,0.1", *TINY_GRID,
                "--steps", "30", "--out", out)
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert lines[0].split("\t")[:5] == ["rank", "trial", "state", "step", "best val (nats/char)"]
    rows = [ln.split("\t") for ln in lines[1:]]
    assert len(rows) == 4 and all(row[2] == "done" and row[3] == "30" for row in rows)
    losses = [float(row[4]) for row in rows]
    assert losses == sorted(losses)                      # ranked, best first
    for name, rec in ledger(out).items():
        ck = C.load(out / name / "latest.npz")           # each trial is an ordinary run folder
        assert ck.model_cfg.hidden == int(rec["settings"]["hidden"])
        assert ck.train_cfg.lr == float(rec["settings"]["lr"]) and ck.train_state["step"] == 30
        assert abs(ck.train_state["best_val"] - rec["best_val"]) < 1e-12
    listed = run_cli("runs", out).stdout.decode().splitlines()
    assert [ln.split("\t")[1] for ln in listed[1:]] == [row[1] for row in rows]
    plot = run_cli("plot", out)
    assert plot.returncode == 0 and all(row[1] in plot.stdout.decode() for row in rows)
    sample = run_cli("sample", "-c", out / rows[0][1], "-n", "20", "--seed", "1")
    assert sample.returncode == 0 and len(sample.stdout.decode().rstrip("\n")) == 20
    # the same command again: nothing is redone
    stamps = {n: os.path.getmtime(out / n / "latest.npz") for n in ledger(out)}
    again = run_cli("sweep", corpus, "--grid", "hidden=8,16", "--grid", "lr=0.05,0.1", *TINY_GRID,
                    "--steps", "30", "--out", out)
    assert again.returncode == 0 and again.stdout == r.stdout
    assert {n: os.path.getmtime(out / n / "latest.npz") for n in ledger(out)} == stamps


def test_halving_keeps_the_best_half_and_the_winner_equals_an_unpaused_run(corpus, tmp_path):
    out = tmp_path / "sw"
    grid = ["--grid", "hidden=8,12,16,24", *TINY_GRID, "--grid", "eval-every=1000"]
    r = run_cli("sweep", corpus, *grid, "--steps", "40", "--halving", "--out", out)
    assert r.returncode == 0, r.stderr.decode()
    rec = ledger(out)
    names = list(rec)
    # rung 0: all four to step 10; rung 1: the best two by then, to 20; rung 2: the best, to 40
    at10 = sorted(names, key=lambda n: val_at(out / n, 10))
    assert {n for n in names if rec[n]["step"] >= 20} == set(at10[:2])
    at20 = sorted(at10[:2], key=lambda n: val_at(out / n, 20))
    assert [n for n in names if rec[n]["state"] == "done"] == [at20[0]]
    assert rec[at20[0]]["step"] == 40 and all(rec[n]["state"] == "pruned" for n in names if n != at20[0])
    # paused twice and resumed: bit for bit the run trained in one go
    hidden = rec[at20[0]]["settings"]["hidden"]
    whole = tmp_path / "whole"
    assert run_cli("train", corpus, "--out", whole, "--hidden", hidden, "--layers", "1", "--batch-size", "4",
                   "--seq-len", "16", "--eval-every", "1000", "--steps", "40", "-q").returncode == 0
    assert np.array_equal(weights(out / at20[0]), weights(whole))


def test_a_failing_trial_is_reported_and_the_others_finish(corpus, tmp_path):
    out = tmp_path / "sw"
    r = run_cli("sweep", corpus, "--grid", "seq-len=16,99999", "--grid", "hidden=8", "--grid", "layers=1",
                "--grid", "batch-size=4", "--steps", "20", "--out", out)
    assert r.returncode == 0, r.stderr.decode()
    rec = ledger(out)
    bad, good = rec["seq-len=99999,hidden=8,layers=1,batch-size=4"], rec["seq-len=16,hidden=8,layers=1,batch-size=4"]
    assert bad["state"] == "failed" and "too short" in bad["error"]
    assert good["state"] == "done" and good["step"] == 20
    assert "too short" in r.stdout.decode() and "failed" in r.stderr.decode()
    # when every trial fails, the sweep does: exit 1, after the table
    r = run_cli("sweep", corpus, "--grid", "seq-len=99999,88888", "--grid", "layers=1", "--steps", "20",
                "--out", tmp_path / "all-bad")
    assert r.returncode == 1 and "every trial failed" in r.stderr.decode().splitlines()[-1]
    assert r.stdout.decode().count("failed") == 2


def test_ctrl_c_saves_the_running_trials_and_the_same_command_continues(corpus, tmp_path):
    out = tmp_path / "sw"
    # one trial at a time: the short one finishes, the long one is interrupted
    cmd = [sys.executable, "-m", "charrnn", "sweep", str(corpus), "--grid", "seq-len=4,128",
           "--grid", "hidden=32", "--grid", "layers=1", "--grid", "batch-size=8", "--grid", "eval-every=20",
           "--steps", "300", "--workers", "1", "--out", str(out)]
    # the long trial holds, saved, at step 20 until the signal comes: never a race
    env = {**os.environ, "CHARRNN_TEST_HOLD_AT_STEP": "20:seq-len=128"}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    long_run = out / "seq-len=128,hidden=32,layers=1,batch-size=8,eval-every=20"
    short_run = out / "seq-len=4,hidden=32,layers=1,batch-size=8,eval-every=20"
    deadline = time.time() + 300
    while not (long_run / "latest.npz").exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.1)
    assert p.poll() is None, p.communicate()[1].decode()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err.decode()
    assert b"run the same command" in err and b"Traceback" not in err
    rec = ledger(out)
    assert rec[short_run.name]["state"] == "done" and rec[long_run.name]["state"] == "interrupted"
    stopped_at = C.load(long_run / "latest.npz").train_state["step"]
    assert stopped_at == 20
    short_stamp = os.path.getmtime(short_run / "latest.npz")
    r = subprocess.run(cmd, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    rec = ledger(out)
    assert rec[long_run.name]["state"] == "done" and rec[long_run.name]["step"] == 300
    assert os.path.getmtime(short_run / "latest.npz") == short_stamp      # not redone
    whole = tmp_path / "whole"
    assert run_cli("train", corpus, "--out", whole, "--seq-len", "128", "--hidden", "32", "--layers", "1",
                   "--batch-size", "8", "--eval-every", "20", "--steps", "300", "-q").returncode == 0
    assert np.array_equal(weights(long_run), weights(whole))


def test_the_same_sweep_on_a_real_dask_cluster(corpus, tmp_path):
    distributed = pytest.importorskip("distributed")
    grid = ["--grid", "hidden=8,16", *TINY_GRID, "--steps", "25"]
    local = tmp_path / "local"
    assert run_cli("sweep", corpus, *grid, "--out", local).returncode == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None, processes=True) as cluster:
        remote = tmp_path / "remote"
        r = run_cli("sweep", corpus, *grid, "--out", remote, "--scheduler", cluster.scheduler_address)
        assert r.returncode == 0, r.stderr.decode()
        assert "Dask cluster" in r.stderr.decode()
        # the corpus was shipped: the trials read a copy in the workers' temporary folder
        for name in ledger(remote):
            ck = C.load(remote / name / "latest.npz")
            assert ck.meta["corpus"] == ["c.txt"] and "/charrnn-corpus-" in ck.meta["command"]
            assert np.array_equal(ck.flat, weights(local / name))          # same trial, same weights
        r = run_cli("sweep", corpus, *grid, "--out", tmp_path / "noship", "--no-ship",
                    env={"DASK_SCHEDULER_ADDRESS": cluster.scheduler_address})
        assert r.returncode == 0, r.stderr.decode()
        for name in ledger(local):
            ck = C.load(tmp_path / "noship" / name / "latest.npz")
            assert str(corpus) in ck.meta["command"] and np.array_equal(ck.flat, weights(local / name))


BAD = [
    (["--grid", "colour=red"], 2, "unknown key"),
    (["--grid", "dropout=0,1.5"], 2, "dropout"),
    (["--grid", "hidden=abc"], 2, "hidden"),
    (["--grid", "hidden="], 2, "no values"),
    ([], 2, "at least one --grid"),
    (["--grid", "hidden=8,8"], 2, "twice"),
    (["--grid", "hidden=8,16,24,32,40,48,56,64", "--steps", "40", "--halving"], 2, "first rung"),
    (["--grid", "hidden=8", "--time", "2s"], 2, "too short"),
    (["--grid", "hidden=8", "--steps", "5", "--time", "5m"], 2, "one of"),
    (["--grid", "hidden=8", "--scheduler", "tcp://127.0.0.1:9"], 1, "cannot reach the Dask scheduler"),
]


@pytest.mark.parametrize("args,code,message", BAD, ids=[b[2] for b in BAD])
def test_bad_input_fails_before_any_trial(corpus, tmp_path, args, code, message):
    out = tmp_path / "sw"
    t0 = time.monotonic()
    r = run_cli("sweep", corpus, *args, "--out", out, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == code and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err and not out.exists()
    assert time.monotonic() - t0 < 20


def test_a_folder_holding_another_sweep_is_refused(corpus, tmp_path):
    out = tmp_path / "sw"
    assert run_cli("sweep", corpus, "--grid", "hidden=8", *TINY_GRID, "--steps", "5", "--out", out).returncode == 0
    r = run_cli("sweep", corpus, "--grid", "hidden=16", *TINY_GRID, "--steps", "5", "--out", out)
    assert r.returncode == 1 and "different sweep" in r.stderr.decode()


def test_without_dask_a_cluster_address_says_what_to_install(corpus, tmp_path):
    code = ("import sys; sys.modules['distributed'] = None; from charrnn.cli import main; "
            "sys.argv = ['charrnn', 'sweep', sys.argv[1], '--grid', 'hidden=8', '--scheduler', "
            "'tcp://127.0.0.1:8786', '--out', sys.argv[2]]; main()")
    r = subprocess.run([sys.executable, "-c", code, str(corpus), str(tmp_path / "sw")], capture_output=True)
    err = r.stderr.decode()
    assert r.returncode == 1 and "pip install 'charrnn[dask]'" in err and err.count("\n") == 1, err
