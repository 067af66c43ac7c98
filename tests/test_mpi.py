"""Data-parallel training across processes on MPI (charrnn/distributed.py): real
`mpiexec -n 2` on loopback, a tiny model, a few steps.

Two ranks train the same model, bit for bit, as one process with two shards (every
array of latest.npz and log.jsonl less its wall-time fields), also when interrupted
(Ctrl-C through mpiexec) and resumed; a rank killed with SIGKILL ends the other at
once with the last checkpoint intact; a rank that hangs ends the others after
--mpi-timeout with one line; fewer streams than ranks, exit 2 with nothing written;
without mpi4py, what to install.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import BUNDLED

pytest.importorskip("mpi4py")
# the mpiexec the mpich wheel put beside this Python (whatever PATH says), else PATH's
_BESIDE = os.path.join(os.path.dirname(sys.executable), "mpiexec")
MPIEXEC = _BESIDE if os.access(_BESIDE, os.X_OK) else shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install 'charrnn[mpi]')")

# nothing but loopback: Hydra's own connections on lo, and the transports told so too
LOOPBACK = {"UCX_NET_DEVICES": "lo", "UCX_TLS": "self,sm,tcp", "FI_PROVIDER": "tcp",
            "FI_TCP_IFACE": "lo"}
OPTIONS = ["--model", "lstm", "--hidden", "16", "--layers", "2", "--batch-size", "16",
           "--seq-len", "16", "--steps", "30", "--eval-every", "10", "--no-preview"]
WALL = ("elapsed", "chars_per_sec")


def _cmd(n, *args):
    return [MPIEXEC, "-iface", "lo", "-host", "localhost", "-n", str(n),
            sys.executable, "-m", "charrnn", "train", *map(str, args)]


def _env(**extra):
    return {**os.environ, **LOOPBACK, **extra}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("mpi") / "c.txt"
    path.write_text(BUNDLED.read_text(encoding="utf-8")[:30_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def one_process(corpus):
    """The reference: one process, two threads, so two shards of 8 streams."""
    out = corpus.parent / "one"
    r = subprocess.run([sys.executable, "-m", "charrnn", "train", str(corpus), *OPTIONS, "--threads",
                        "2", "--out", str(out), "-q"], capture_output=True, timeout=300, env=_env())
    assert r.returncode == 0, r.stderr.decode()
    return out


def _arrays(folder):
    with np.load(folder / "latest.npz") as z:
        return {k: z[k] for k in z.files if z[k].dtype.kind != "U"}, json.loads(str(z["train_state"]))


def _log(folder):
    lines = (folder / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in WALL} for line in lines]


def _ranks(mark) -> dict:
    """{rank: pid} of the charrnn processes started with CHARRNN_TEST_MARK=mark."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if f"CHARRNN_TEST_MARK={mark}".encode() in env and any(e.startswith(b"PMI_RANK=") for e in env):
            found[next(int(e[9:]) for e in env if e.startswith(b"PMI_RANK="))] = int(pid)
    return found


@pytest.fixture
def held():
    """start(corpus, out, *args): 2 ranks that hold, saved, at step 20 -> (mpiexec's Popen,
    {rank: pid}), returned once rank 0 holds (every save of step 20 done: the seam's held
    file); whatever a test leaves running is killed after it."""
    started = []

    def start(corpus, out, *args):
        held_file = out.parent / f"{out.name}.held"
        proc = subprocess.Popen(_cmd(2, corpus, *OPTIONS, "--out", out, *args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                env=_env(CHARRNN_TEST_HOLD_AT_STEP=f"20:{out.name}",
                                         CHARRNN_TEST_HELD_FILE=str(held_file),
                                         CHARRNN_TEST_MARK=out.name))
        started.append((proc, out.name))
        deadline = time.monotonic() + 240
        while not held_file.exists():
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "never held at step 20"
            time.sleep(0.05)
        assert _arrays(out)[1]["step"] == 20
        ranks = _ranks(out.name)
        assert sorted(ranks) == [0, 1]
        return proc, ranks
    yield start
    for proc, mark in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for pid in _ranks(mark).values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_two_ranks_interrupted_and_resumed_equal_one_process_with_two_shards(corpus, one_process, held):
    out = corpus.parent / "held"
    proc, _ = held(corpus, out)
    proc.send_signal(signal.SIGINT)                 # Ctrl-C: mpiexec passes it to every rank
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert json.loads((out / "status.json").read_text())["end"] == "signal"
    assert _arrays(out)[1]["step"] == 20
    # rank 0 alone reports: one summary
    assert err.decode().count("stopped at step 20") == 1, err.decode()
    r = subprocess.run(_cmd(2, corpus, "--resume", out, "-q"), capture_output=True, timeout=300, env=_env())
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"" and r.stderr == b""      # quiet: neither rank says anything
    mine, ts = _arrays(out)
    theirs, ts1 = _arrays(one_process)
    assert ts["step"] == ts1["step"] == 30 and ts["pos"] == ts1["pos"] and ts["rng"] == ts1["rng"]
    assert mine.keys() == theirs.keys()
    for k in theirs:
        assert np.array_equal(mine[k], theirs[k]), k
    assert _log(out) == _log(one_process)
    assert sorted(os.listdir(out)) == sorted(os.listdir(one_process))


def test_a_killed_rank_stops_the_other_with_the_checkpoint_intact(corpus, one_process, held):
    out = corpus.parent / "killed"
    proc, ranks = held(corpus, out)
    saved = (out / "latest.npz").read_bytes()
    t = time.monotonic()
    os.kill(ranks[1], signal.SIGKILL)
    said, err = proc.communicate(timeout=60)
    assert time.monotonic() - t < 30
    assert proc.returncode != 0
    assert "Killed (signal 9)" in said.decode(), said.decode()     # mpiexec's report (stdout)
    with pytest.raises(ProcessLookupError):
        os.kill(ranks[0], 0)
    assert (out / "latest.npz").read_bytes() == saved
    assert _arrays(out)[1]["step"] == 20
    assert not [n for n in os.listdir(out) if n.startswith(".tmp")]


def test_a_hung_rank_stops_the_others_after_the_timeout(corpus, held):
    out = corpus.parent / "hung"
    proc, ranks = held(corpus, out, "--mpi-timeout", "6")
    os.kill(ranks[1], signal.SIGSTOP)       # hangs: it never answers again
    os.kill(ranks[0], signal.SIGTERM)       # rank 0 leaves the hold and waits for rank 1
    t = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t < 30
    assert proc.returncode != 0
    expected = (f"error: rank 0: no answer from the other ranks within 6 s (agreeing to stop): one "
                f"hung or died; the last checkpoints in {out} are kept")
    assert expected in err.decode().splitlines(), err.decode()
    assert _arrays(out)[1]["step"] == 20


def test_fewer_streams_than_ranks_is_a_usage_error_writing_nothing(corpus):
    out = corpus.parent / "thin"
    r = subprocess.run(_cmd(2, corpus, *OPTIONS, "--batch-size", "1", "--out", out),
                       capture_output=True, timeout=120, env=_env())
    assert r.returncode == 2
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1 and "1 streams cannot be split across 2 MPI processes" in lines[0]
    assert not out.exists()


def test_without_mpi4py_it_says_what_to_install(corpus, tmp_path):
    """As mpiexec would start it (PMI_SIZE), on an install without mpi4py."""
    code = ("import sys; sys.modules['mpi4py'] = None; from charrnn.cli import main; "
            "sys.argv[0] = 'charrnn'; main()")
    r = subprocess.run([sys.executable, "-c", code, "train", str(corpus), "--out", str(tmp_path / "x")],
                       capture_output=True, timeout=120, env=_env(PMI_SIZE="2", PMI_RANK="0"))
    assert r.returncode == 1
    assert r.stderr.decode().strip().splitlines() == [
        'error: started by mpiexec as 2 processes, but this charrnn has no MPI support: '
        'pip install "charrnn[mpi]"']
    assert not (tmp_path / "x").exists()


def test_ctrl_c_during_a_validation_pass_cuts_it_on_every_rank(tmp_path):
    """A 2x512 LSTM's validation pass over ~3.8 M characters takes minutes on one thread a
    rank, so stopping within 30 s of the signal can only mean every rank cut its share."""
    rng = np.random.default_rng(0)
    corpus = tmp_path / "big.txt"
    corpus.write_text("".join(rng.choice(list("abcdefgh \n"), size=4_000_000)), encoding="utf-8")
    out, evaluating = tmp_path / "run", tmp_path / "evaluating"
    proc = subprocess.Popen(_cmd(2, corpus, "--model", "lstm", "--hidden", "512", "--layers", "2",
                                 "--val-frac", "0.95", "--steps", "1000", "--eval-every", "2",
                                 "--batch-size", "8", "--seq-len", "16", "--no-preview", "--out", out),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(CHARRNN_TEST_EVALUATING_FILE=str(evaluating)))
    try:
        deadline = time.monotonic() + 240
        while not evaluating.exists():
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "never evaluated"
            time.sleep(0.05)
        t = time.monotonic()
        proc.send_signal(signal.SIGINT)     # Ctrl-C: mpiexec passes it to every rank
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert time.monotonic() - t < 30, "the validation pass ran on"
    assert proc.returncode == 130, err.decode()
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert not any(r.get("val_loss") is not None for r in logged), logged     # the pass was cut
    assert _arrays(out)[1]["step"] == 2         # the state before the pass, saved whole
    assert json.loads((out / "status.json").read_text())["end"] == "signal"
    assert err.decode().count("stopped at step 2") == 1 and b"Traceback" not in err, err.decode()
