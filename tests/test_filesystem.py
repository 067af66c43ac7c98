"""Never lose a user's checkpoint, and the file system as it really is: an existing
run folder, resuming from best.npz, umask, planted symlinks, leftovers of killed
saves, a FIFO that never closes, /dev/zero. Each case does the thing for real."""
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from charrnn import checkpoint as C
from conftest import run_cli
from test_reliability import TINY


@pytest.fixture
def corpus(tmp_path, bundled_text):
    p = tmp_path / "c.txt"
    p.write_text(bundled_text[:20_000], encoding="utf-8")
    return p


def train(corpus, out, *extra, **kw):
    return run_cli("train", corpus, "--out", out, *TINY, *extra, **kw)


def test_a_fresh_run_never_overwrites_a_run(corpus, tmp_path):
    out = tmp_path / "run"
    assert train(corpus, out, "--steps", "20", "--eval-every", "10").returncode == 0
    before = {n: (out / n).read_bytes() for n in ("best.npz", "latest.npz")}
    r = train(corpus, out, "--steps", "5")
    err = r.stderr.decode()
    assert r.returncode == 1 and "already holds a run" in err and "--resume" in err
    assert err.count("\n") == 1
    assert {n: (out / n).read_bytes() for n in before} == before


def test_resuming_from_best_never_overwrites_a_newer_latest(corpus, tmp_path):
    out = tmp_path / "run"
    assert train(corpus, out, "--steps", "10").returncode == 0
    step10 = (out / "latest.npz").read_bytes()
    assert run_cli("train", corpus, "--resume", out, "--steps", "30", "-q").returncode == 0
    (out / "best.npz").write_bytes(step10)      # as when validation got worse after step 10
    saved = (out / "latest.npz").read_bytes()
    r = run_cli("train", corpus, "--resume", out / "best.npz", "--steps", "50")
    err = r.stderr.decode()
    assert r.returncode == 1 and "newer (step 30)" in err and "--out" in err and err.count("\n") == 1
    assert (out / "latest.npz").read_bytes() == saved
    # into another folder it branches off from best
    r = run_cli("train", corpus, "--resume", out / "best.npz", "--steps", "50", "--out", tmp_path / "b", "-q")
    assert r.returncode == 0, r.stderr.decode()
    assert C.load(tmp_path / "b" / "latest.npz").train_state["step"] == 50
    assert (out / "latest.npz").read_bytes() == saved


def test_checkpoints_and_logs_follow_the_umask(corpus, tmp_path):
    for mask, want in [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)]:
        out = tmp_path / f"run{mask:o}"
        code = (f"import os, sys; os.umask({mask}); from charrnn.cli import main; "
                f"sys.argv = ['charrnn', 'train', {str(corpus)!r}, '--out', {str(out)!r}, "
                f"*{TINY!r}, '--steps', '5']; main()")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True)
        assert r.returncode == 0, r.stderr.decode()
        for name in ("latest.npz", "best.npz", "log.jsonl"):
            assert stat.S_IMODE(os.stat(out / name).st_mode) == want, (mask, name)


def test_a_planted_lock_symlink_is_never_followed(corpus, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(victim, out / ".lock")
    r = train(corpus, out, "--steps", "5")
    assert r.returncode == 1 and "symlink" in r.stderr.decode() and r.stderr.decode().count("\n") == 1
    assert victim.read_text() == "precious\n"


def test_leftovers_of_killed_saves_are_removed_at_the_next_start(corpus, tmp_path):
    out = tmp_path / "run"
    assert train(corpus, out, "--steps", "5").returncode == 0
    for k in range(3):
        (out / f".tmp-killed{k}.npz").write_bytes(b"half a checkpoint")
    victim = tmp_path / "victim.npz"
    victim.write_bytes(b"keep")
    os.symlink(victim, out / ".tmp-planted.npz")
    r = run_cli("train", corpus, "--resume", out, "--steps", "8")
    assert r.returncode == 0, r.stderr.decode()
    assert not list(out.glob(".tmp-*"))
    assert victim.read_bytes() == b"keep"          # the link was removed, not followed


def test_a_locked_folder_fails_before_the_corpus_is_read(corpus, tmp_path):
    """The corpus is a FIFO nobody writes to: reading it would block forever."""
    out = tmp_path / "run"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    try:
        holder = subprocess.Popen([sys.executable, "-c",
                                   "import fcntl, os, sys, time; os.makedirs(sys.argv[1], exist_ok=True); "
                                   "fd = os.open(os.path.join(sys.argv[1], '.lock'), os.O_RDWR | os.O_CREAT); "
                                   "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                                   str(out)], stdout=subprocess.PIPE)
        assert holder.stdout.readline() == b"held\n"
        t0 = time.monotonic()
        r = run_cli("train", fifo, "--out", out, *TINY, timeout=30)
        assert r.returncode == 1 and "another charrnn train" in r.stderr.decode()
        assert time.monotonic() - t0 < 20
    finally:
        holder.kill()


def test_endless_input_stops_with_a_clear_error(tmp_path):
    r = run_cli("train", "/dev/zero", "--max-chars", "3000000", "--out", tmp_path / "z", *TINY, timeout=60)
    err = r.stderr.decode()      # refused at its first MiB of NUL bytes (tests/test_reliability3.py)
    assert r.returncode == 1 and err.startswith("error: /dev/zero: ") and "NUL" in err and err.count("\n") == 1
    assert not (tmp_path / "z").exists()            # nothing left behind
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"yes 'to be or not to be' > {fifo}"])
    try:
        r = run_cli("train", fifo, "--max-chars", "2000000", "--out", tmp_path / "f", *TINY, timeout=60)
        assert r.returncode == 1 and "more than 2,000,000" in r.stderr.decode()
    finally:
        writer.kill()


def _sample(trained_run, env=None, preexec_fn=None):
    cmd = [sys.executable, "-m", "charrnn", "sample", "-c", str(trained_run), "-n", "40", "--seed", "1"]
    return subprocess.run(cmd, capture_output=True, env=dict(os.environ, **(env or {})),
                          preexec_fn=preexec_fn, timeout=300)


def _tag():
    import charrnn.kernels
    return os.path.basename(charrnn.kernels.cache_folder())


def _fsize_limit():
    import resource
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))


def test_a_kernel_cache_that_cannot_be_used_is_never_fatal(tmp_path):
    """A kernel cache that is refused, unwritable or corrupt costs a compile, never
    the run: each case runs one small kernel through the same cache machinery every
    kernel goes through, and must print its result."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    import charrnn.kernels
    from charrnn.kernels import optim
    optim.sumsq(np.ones(3))                                 # into this session's own cache
    tag = _tag()
    (tmp_path / "afile").write_text("x")                    # not a folder: cannot be created
    shared = tmp_path / "shared"                            # other users can write it
    (shared / tag).mkdir(parents=True)
    os.chmod(shared / tag, 0o777)
    shutil.copytree(charrnn.kernels.cache_folder(), tmp_path / "corrupt" / tag)   # a good cache, then garbage
    garbled = [f for f in (tmp_path / "corrupt").rglob("*") if f.is_file() and f.suffix in (".nbc", ".nbi")]
    for f in garbled:
        f.write_bytes(b"garbage")
    assert any(f.name.startswith("optim.sumsq") for f in garbled)
    home_env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    home_env["HOME"] = "/proc"                              # a home nobody can write, root included
    cases = {
        "fresh": ({"NUMBA_CACHE_DIR": str(tmp_path / "fresh")}, None),
        "not a folder": ({"NUMBA_CACHE_DIR": str(tmp_path / "afile")}, None),
        "others can write": ({"NUMBA_CACHE_DIR": str(shared)}, None),
        "read-only home": (home_env, None),
        "file-size limit": ({"NUMBA_CACHE_DIR": str(tmp_path / "small")}, _fsize_limit),
        "corrupted": ({"NUMBA_CACHE_DIR": str(tmp_path / "corrupt")}, None),
    }

    def one(name):
        env, pre = cases[name]
        if name in ("not a folder", "others can write"):
            # refused before any kernel is compiled, as the read-only home is (whose run
            # below shows that compiling in memory then works): check just the decision
            return subprocess.run([sys.executable, "-c", "from charrnn import kernels as k; "
                                   "print(k.JIT['cache'], end='')"], capture_output=True,
                                  env=dict(os.environ, **env), timeout=60)
        if name != "read-only home":        # (its environment is a whole one)
            env = dict(os.environ, **env)
        # one kernel (its cache files are over 2,000 bytes: the file-size limit bites)
        return subprocess.run([sys.executable, "-c", "import numpy as np; from charrnn.kernels import optim; "
                               "print(optim.sumsq(np.ones(3)), end='')"], capture_output=True,
                              env=env, preexec_fn=pre, timeout=120)

    with ThreadPoolExecutor(len(cases)) as pool:
        got = dict(zip(cases, pool.map(one, cases)))
    for name, r in got.items():
        expected = {"not a folder": b"False", "others can write": b"False"}.get(name, b"3.0")
        assert r.returncode == 0 and r.stdout == expected, (name, r.stderr.decode())
    for name in ("not a folder", "read-only home"):
        err = got[name].stderr.decode()
        assert err.count("warning: kernel cache") == 1 and "in memory" in err, (name, err)
    assert "other users can write" in got["others can write"].stderr.decode()
    assert not list((shared / tag).rglob("*.nbi"))          # nothing was cached there
    assert "cannot write" in got["file-size limit"].stderr.decode()
    assert stat.S_IMODE(os.stat(tmp_path / "fresh" / tag).st_mode) == 0o700   # created private
    assert list((tmp_path / "fresh" / tag).rglob("optim.sumsq*.nbc"))        # and used


def test_numba_disable_jit_is_refused_clearly(trained_run):
    r = _sample(trained_run, {"NUMBA_DISABLE_JIT": "1"})
    err = r.stderr.decode()
    assert r.returncode == 2 and "NUMBA_DISABLE_JIT" in err and err.count("\n") == 1


def test_sample_without_a_seed_says_which_it_used(trained_run):
    r = subprocess.run([sys.executable, "-m", "charrnn", "sample", "-c", str(trained_run), "-n", "60"],
                       capture_output=True)
    seed = int(r.stderr.decode().split("seed ")[1].split()[0])
    again = subprocess.run([sys.executable, "-m", "charrnn", "sample", "-c", str(trained_run), "-n", "60",
                            "--seed", str(seed)], capture_output=True)
    assert again.stdout == r.stdout


def test_a_save_that_cannot_be_written_names_the_file_and_keeps_the_old(corpus, tmp_path):
    import resource
    out = tmp_path / "run"
    assert train(corpus, out, "--steps", "10").returncode == 0
    old = (out / "latest.npz").read_bytes()
    limit = len(old) // 2       # as `ulimit -f`: a new checkpoint cannot be written in full
    r = subprocess.run([sys.executable, "-m", "charrnn", "train", str(corpus), "--resume", str(out),
                        "--steps", "20", "-q"], capture_output=True,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    err = r.stderr.decode()
    assert r.returncode == 1 and err.count("\n") == 1, err
    assert "latest.npz" in err and "while saving" in err and "internal error" not in err
    assert (out / "latest.npz").read_bytes() == old
    assert not list(out.glob(".tmp-*"))


def test_environment_errors_are_named(trained_run, tmp_path, corpus):
    # stdout full
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "charrnn", "sample", "-c", str(trained_run), "-n", "5000",
                            "--seed", "1"], stdout=full, stderr=subprocess.PIPE)
    err = r.stderr.decode()
    assert r.returncode == 1 and "No space left" in err and err.count("\n") == 1, err
    # stdout closed
    r = subprocess.run([sys.executable, "-m", "charrnn", "sample", "-c", str(trained_run)],
                       stdout=None, stderr=subprocess.PIPE, close_fds=True,
                       preexec_fn=lambda: os.close(1))
    assert r.returncode == 1 and "standard output is closed" in r.stderr.decode()
    # a model too large for this machine: refused before allocating, with an estimate
    r = run_cli("train", corpus, "--out", tmp_path / "huge", "--hidden", "8192", "--layers", "16",
                "--steps", "1", "-q")
    err = r.stderr.decode()
    assert r.returncode == 1 and "needs about" in err and "GiB" in err and err.count("\n") == 1
    # an output encoding that cannot hold the text
    (tmp_path / "cafe.txt").write_text("café au lait, s'il vous plaît. " * 300, encoding="utf-8")
    assert train(tmp_path / "cafe.txt", tmp_path / "cafe", "--steps", "3").returncode == 0
    r = run_cli("sample", "-c", tmp_path / "cafe", "--prime", "café", "-n", "5", env={"PYTHONIOENCODING": "ascii"})
    err = r.stderr.decode()
    assert r.returncode == 1 and "output encoding" in err and "PYTHONIOENCODING" in err, err
