"""Reliability, by doing the damage for real.

Cases covered here (see also test_checkpoint.py for corrupt checkpoint files):
  SIGKILL at random moments of a (slowed) save           -> old or new checkpoint, never broken
  SIGINT / SIGTERM during training                        -> latest.npz saved, exit 130 / 143
  second SIGINT during that save                          -> checkpoint still whole
  interrupted + resumed run, also data-parallel, on MKL and OpenBLAS -> bit-identical weights
  NaN injected into the gradient                          -> exit 3, last good checkpoint kept
  unwritable output folder                                -> error before training, exit 1
  second trainer on the same run folder                   -> refused, exit 1
  bad corpora and options (table BAD_INPUTS below)        -> one-line error, exit 2 or 1
  Ctrl-C during a long validation pass                    -> stops within a second, state saved
  `charrnn --help`                                        -> does not import numba
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from charrnn import checkpoint as C
from conftest import run_cli

TINY = ["--hidden", "16", "--layers", "1", "--batch-size", "4", "--seq-len", "16", "--quiet"]


@pytest.fixture
def corpus(tmp_path, bundled_text):
    p = tmp_path / "c.txt"
    p.write_text(bundled_text[:20_000], encoding="utf-8")
    return p


def start_train(corpus, out, *extra, env=None):
    return subprocess.Popen([sys.executable, "-m", "charrnn", "train", str(corpus), "--out", str(out),
                             *TINY, *map(str, extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, **(env or {})))


def wait_for(path, timeout=60):
    t0 = time.time()
    while not os.path.exists(path):
        if time.time() - t0 > timeout:
            raise TimeoutError(path)
        time.sleep(0.05)


def test_sigkill_during_save_leaves_a_whole_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    rng = np.random.default_rng(0)
    p = start_train(corpus, out, "--steps", "100000", "--eval-every", "5",
                    env={"CHARRNN_TEST_SLOW_SAVE": "0.05"})
    try:
        wait_for(out / "latest.npz")
        steps_seen = set()
        for _ in range(8):
            time.sleep(rng.uniform(0.0, 0.3))
            ck = C.load(out / "latest.npz")        # never torn while saves happen
            steps_seen.add(ck.train_state["step"])
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert len(steps_seen) > 1                     # saves really happened meanwhile
    for name in ("latest.npz", "best.npz"):
        C.load(out / name)
    # the killed save leaves at most a temporary file, which is never loaded
    assert all(f.name.startswith((".tmp-", ".lock", "latest", "best", "log", "status")) for f in out.iterdir())


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_and_exits(corpus, tmp_path, sig, code):
    out = tmp_path / "run"
    # no evaluation before step 100000: the only checkpoint is the one the signal's save
    # writes, slowed (its temporary file stays for a second) so that a second signal, sent
    # once that file is there, lands during it
    p = start_train(corpus, out, "--steps", "1000000", "--eval-every", "100000",
                    env={"CHARRNN_TEST_SLOW_SAVE": "1"})
    wait_for(out / "log.jsonl")                    # its first line: step 50
    assert not (out / "latest.npz").exists()
    p.send_signal(sig)
    t0 = time.time()
    while not list(out.glob(".tmp-*.npz")):
        assert time.time() - t0 < 60 and p.poll() is None, "the signal started no save"
        time.sleep(0.02)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    ck = C.load(out / "latest.npz")
    assert ck.train_state["step"] >= 50
    assert b"Traceback" not in err


@pytest.mark.parametrize("batch,blas", [("4", "auto"), ("16", "auto"), ("16", "openblas")])
def test_interrupt_then_resume_is_bit_identical(corpus, tmp_path, batch, blas):
    # 16 streams: two data-parallel shards with MKL; one shard of two-thread products on OpenBLAS
    base = ["--steps", "600", "--eval-every", "250", "--batch-size", batch]
    env = {"CHARRNN_BLAS": blas}
    r = run_cli("train", corpus, "--out", tmp_path / "whole", *TINY, *base, env=env)
    assert r.returncode == 0, r.stderr
    # interrupted by SIGINT mid-run: held at step 250 until it comes, so that it never
    # races the run's end
    p = start_train(corpus, tmp_path / "cut", *base, env={"CHARRNN_TEST_HOLD_AT_STEP": "250", **env})
    wait_for(tmp_path / "cut" / "best.npz")
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=60)
    cut = C.load(tmp_path / "cut" / "latest.npz")
    assert p.returncode == 130 and cut.train_state["step"] == 250
    r = run_cli("train", corpus, "--resume", tmp_path / "cut", "--quiet", *base, env=env)
    assert r.returncode == 0, r.stderr
    a = C.load(tmp_path / "whole" / "latest.npz")
    b = C.load(tmp_path / "cut" / "latest.npz")
    assert b.train_state["step"] == 600
    assert np.array_equal(a.flat, b.flat) and np.array_equal(a.optim["mem"], b.optim["mem"])


def test_nan_stops_with_status_3_and_keeps_last_good(corpus, tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", corpus, "--out", out, *TINY, "--steps", "100", "--eval-every", "10",
                env={"CHARRNN_TEST_NAN_AT_STEP": "25"})
    err = r.stderr.decode()
    assert r.returncode == 3, err
    assert "not finite" in err and err.count("\n") == 1
    ck = C.load(out / "latest.npz")
    assert ck.train_state["step"] == 20 and np.isfinite(ck.flat).all()


def test_unwritable_out_folder_fails_before_training(corpus, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that can write anywhere (root)")
        r = run_cli("train", corpus, "--out", ro / "run", *TINY, "--steps", "5")
        assert r.returncode == 1 and "cannot write" in r.stderr.decode()
    finally:
        ro.chmod(0o700)


def test_out_folder_that_is_a_file(corpus, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    r = run_cli("train", corpus, "--out", f / "run", *TINY, "--steps", "5")
    assert r.returncode == 1 and "cannot write checkpoints" in r.stderr.decode()


def test_second_trainer_on_same_folder_refused(corpus, tmp_path):
    out = tmp_path / "run"
    # held, saved, at step 50 until killed: it cannot end (early stopping took 1.3 s) first
    p = start_train(corpus, out, "--steps", "100000", "--eval-every", "50",
                    env={"CHARRNN_TEST_HOLD_AT_STEP": "50"})
    try:
        wait_for(out / "latest.npz")
        r = run_cli("train", corpus, "--resume", out, "--steps", "5")
        assert r.returncode == 1 and "another charrnn train" in r.stderr.decode(), r.stderr
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    # the killed trainer's lock does not stay stuck
    r = run_cli("train", corpus, "--resume", out, "--steps", "5")
    assert r.returncode == 0, r.stderr


def bad_inputs(tmp_path, bundled_text):
    """(name, args, expected status, expected words in the message)."""
    files = {
        "empty.txt": b"", "short.txt": b"To be or not to be", "latin1.txt": "caf\xe9 ol\xe9\n".encode("latin-1") * 50,
        "one.txt": b"a" * 5000, "nul.txt": ("abc\x00def\r\n" * 800).encode(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "adir").mkdir()
    t = lambda name: str(tmp_path / name)  # noqa: E731
    return [
        ("empty corpus", [t("empty.txt")], 1, "empty"),
        ("shorter than a batch", [t("short.txt")], 1, "too short"),
        ("not utf-8", [t("latin1.txt")], 1, "byte 3"),
        ("a directory", [t("adir")], 1, "directory"),
        ("missing file", [t("nothere.txt")], 1, "no such file"),
        ("one distinct character", [t("one.txt")], 1, "one distinct"),
        ("hidden 0", [t("nul.txt"), "--hidden", "0"], 2, "--hidden"),
        ("seq-len 0", [t("nul.txt"), "--seq-len", "0"], 2, "--seq-len"),
        ("lr nan", [t("nul.txt"), "--lr", "nan"], 2, "--lr"),
        ("dropout 1", [t("nul.txt"), "--dropout", "1"], 2, "--dropout"),
        ("batch too large", [t("nul.txt"), "--batch-size", "5000"], 1, "too short"),
        ("two bounds", [t("nul.txt"), "--steps", "5", "--time", "3"], 2, "at most one"),
        ("unknown encoding", [t("nul.txt"), "--encoding", "klingon"], 1, "encoding"),
    ]


def test_bad_inputs_get_one_line_errors(tmp_path, bundled_text):
    for name, args, status, words in bad_inputs(tmp_path, bundled_text):
        r = run_cli("train", *TINY, "--steps", "3", "--out", tmp_path / "out", *args)
        err = r.stderr.decode()
        assert r.returncode == status, (name, err)
        assert err.startswith("error: ") and err.count("\n") == 1, (name, err)
        assert words in err, (name, err)


def test_sample_bad_options(trained_run):
    for args, words in [(["--temp", "-1"], "--temp"), (["--temp", "nan"], "--temp"),
                        (["--top-p", "1.5"], "--top-p"), (["--length", "-3"], "--length")]:
        r = run_cli("sample", "-c", trained_run, *args)
        assert r.returncode == 2 and words in r.stderr.decode() and r.stderr.decode().count("\n") == 1


def test_encoding_option_nul_and_crlf(tmp_path):
    (tmp_path / "l1.txt").write_bytes("caf\xe9 ol\xe9, d\xe9j\xe0 vu\r\n".encode("latin-1") * 400)
    r = run_cli("train", tmp_path / "l1.txt", "--encoding", "latin-1", "--out", tmp_path / "r",
                *TINY, "--steps", "3")
    assert r.returncode == 0, r.stderr
    ck = C.load(tmp_path / "r" / "latest.npz")
    chars = "".join(ck.vocab.chars.tolist())
    assert "\xe9" in chars and "\r" not in chars       # CRLF normalised to LF
    (tmp_path / "nul.txt").write_bytes(b"ab\x00cd\n" * 2000)
    r = run_cli("train", tmp_path / "nul.txt", "--out", tmp_path / "n", *TINY, "--steps", "3")
    assert r.returncode == 0, r.stderr


def test_large_vocabulary_cjk(tmp_path):
    rng = np.random.default_rng(0)
    text = "".join(chr(c) for c in rng.integers(0x4E00, 0x4E00 + 20000, 60_000))
    (tmp_path / "cjk.txt").write_text(text, encoding="utf-8")
    r = run_cli("train", tmp_path / "cjk.txt", "--out", tmp_path / "r", *TINY, "--steps", "2",
                "--val-frac", "0.05")
    assert r.returncode == 0, r.stderr
    ck = C.load(tmp_path / "r" / "latest.npz")
    assert len(ck.vocab) > 15000
    r = run_cli("sample", "-c", tmp_path / "r", "-n", "30", "--seed", "0")
    assert r.returncode == 0 and len(r.stdout.decode()) == 30      # exactly --length characters


def test_resume_onto_different_corpus_or_model(corpus, tmp_path, bundled_text):
    r = run_cli("train", corpus, "--out", tmp_path / "r", *TINY, "--steps", "5")
    assert r.returncode == 0
    other = tmp_path / "other.txt"
    other.write_text(bundled_text[50_000:70_000], encoding="utf-8")
    r = run_cli("train", other, "--resume", tmp_path / "r", "--steps", "10", "--quiet")
    assert r.returncode == 1 and ("not the text" in r.stderr.decode() or "vocabulary" in r.stderr.decode())
    r = run_cli("train", corpus, "--resume", tmp_path / "r", "--hidden", "64", "--steps", "10")
    assert r.returncode == 2 and "--hidden" in r.stderr.decode()


def test_compiled_kernels_are_cached_in_the_user_cache_not_beside_the_package(tmp_path):
    import charrnn.kernels
    beside = Path(charrnn.kernels.__file__).parent / "__pycache__"
    before = {f: f.stat().st_mtime_ns for f in beside.glob("optim.sumsq-*")}
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    code = "import numpy as np; from charrnn.kernels import optim; print(optim.sumsq(np.ones(3)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "3.0", r.stderr
    assert list((tmp_path / "charrnn").glob("numba-*/*/optim.sumsq-*.nbi"))
    assert {f: f.stat().st_mtime_ns for f in beside.glob("optim.sumsq-*")} == before


def test_help_does_not_import_numba():
    code = ("import sys; from charrnn.cli import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "print('numba' in sys.modules, 'numpy' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip().splitlines()[-1] == "False False"


def test_interrupted_summary_says_how_to_resume(corpus, tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "charrnn", "train", str(corpus), "--out", str(out),
                          "--hidden", "16", "--layers", "1", "--batch-size", "4", "--seq-len", "16",
                          "--steps", "100000", "--eval-every", "20", "--no-preview"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(out / "latest.npz")
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130
    assert f"charrnn train {corpus} --resume {out / 'latest.npz'}" in err.decode()
def test_ctrl_c_during_a_long_validation_pass_stops_within_a_second(tmp_path):
    # a validation split of ~3.8 M chars through a 2x256 LSTM: tens of seconds per pass
    # on any machine, so stopping within a few seconds can only mean the pass was cut
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("abcdefgh \n"), size=4_000_000))
    corpus = tmp_path / "big.txt"
    corpus.write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "charrnn", "train", str(corpus), "--out", str(out),
                          "--val-frac", "0.95", "--steps", "1000", "--eval-every", "2",
                          "--batch-size", "8", "--seq-len", "16", "--no-preview"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # the header line is written at the start, the first evaluation begins at step 2
    # (two steps of 128 characters: milliseconds)
    deadline = time.time() + 120
    header = b""
    while b"parameters" not in header and time.time() < deadline:
        header += p.stderr.read1(4096)
    time.sleep(3.0)
    assert not (out / "latest.npz").exists()      # still inside the first validation pass
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    stopped = time.monotonic() - t0
    assert p.returncode == 130, err
    assert stopped < 5, f"took {stopped:.2f} s to stop"
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert not any(r.get("val_loss") is not None for r in logged), logged   # the pass was cut
    ck = C.load(out / "latest.npz")                # the state before the pass, saved whole
    assert ck.train_state["step"] == 2 and b"Traceback" not in err
