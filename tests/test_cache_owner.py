"""Who may write the caches (issue 23 item 5). Numba unpickles the index files of its
cache folder, and a model trains on whatever ids the corpus cache holds: a folder that
another user owns or can write, or whose parent lets them swap it, is never used,
however it was chosen. charrnn says so once on stderr and still works. The other user
is `nobody`, made real with setpriv (the suite runs as root in CI)."""
import os
import pwd
import shutil
import subprocess
import sys

import pytest

from charrnn.fileio import unsafe_folder

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                reason="needs root and setpriv to act as a second user")
NOBODY = pwd.getpwnam("nobody").pw_uid


def as_nobody(*cmd):
    """Run cmd as the user nobody (a second user, as the brief's attacker)."""
    subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd],
                   check=True, capture_output=True, timeout=30)


def open_to_nobody(path):
    """path and the folders above it may be entered by nobody, and path/drop (sticky and
    root's, as /tmp) is where nobody creates things; returns it."""
    p = path
    while p != os.path.dirname(p) and str(p) != "/tmp":
        os.chmod(p, os.stat(p).st_mode | 0o711)
        p = os.path.dirname(p)
    drop = path / "drop"
    drop.mkdir()
    os.chmod(drop, 0o1777)
    return drop


def kernel_decision(env):
    """(cache on?, stderr) of the kernel set-up with this environment: no compiling."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")} | env
    r = subprocess.run([sys.executable, "-c", "from charrnn import kernels as k; print(k.JIT['cache'])"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip() == "True", r.stderr


def test_kernel_cache_folders_another_user_could_write_are_refused(tmp_path):
    drop = open_to_nobody(tmp_path)
    theirs = drop / "theirs"                        # NUMBA_CACHE_DIR made by another user
    as_nobody("mkdir", "-m", "0755", str(theirs))
    shared = tmp_path / "shared"                    # ours, but everyone may rename things in it
    shared.mkdir()
    os.chmod(shared, 0o777)
    sticky = tmp_path / "sticky"                    # a /tmp-like parent: our own folder inside is fine
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    xdg = tmp_path / "xdg"                          # XDG_CACHE_HOME whose charrnn folder is theirs
    xdg.mkdir()
    os.chmod(xdg, 0o1777)
    as_nobody("mkdir", "-m", "0777", str(xdg / "charrnn"))
    cases = {
        "owned by another user": ({"NUMBA_CACHE_DIR": str(theirs)}, False),
        "writable by others": ({"NUMBA_CACHE_DIR": str(shared)}, False),
        "XDG_CACHE_HOME, another user's": ({"XDG_CACHE_HOME": str(xdg)}, False),
        "ours in a sticky folder": ({"NUMBA_CACHE_DIR": str(sticky / "mine")}, True),
    }
    for name, (env, used) in cases.items():
        on, err = kernel_decision(env)
        assert on == used, (name, err)
        if not used:
            assert err.count("warning: kernel cache") == 1 and "compiling in memory" in err, (name, err)
            assert "other users" in err or "another user" in err, (name, err)
        else:
            assert err == "", (name, err)
    # a folder of ours, open to everyone: refused, and nothing is made inside it
    ours = tmp_path / "ours"
    ours.mkdir()
    os.chmod(ours, 0o777)
    on, err = kernel_decision({"NUMBA_CACHE_DIR": str(ours)})
    assert not on and "writable by others" in err and os.listdir(ours) == [], err
    # the cache folder itself, planted beforehand by another user in a folder of ours
    r = subprocess.run([sys.executable, "-c", "from charrnn import kernels as k; "
                        "import os; print(os.path.basename(k.cache_folder()))"],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "probe")))
    as_nobody("mkdir", "-m", "0755", str(ours / r.stdout.strip()))
    os.chmod(ours, 0o755)
    on, err = kernel_decision({"NUMBA_CACHE_DIR": str(ours)})
    assert not on and f"belongs to another user (uid {NOBODY})" in err, err


def test_a_refused_kernel_cache_still_runs_and_writes_nothing_there(tmp_path):
    theirs = open_to_nobody(tmp_path) / "theirs"
    as_nobody("mkdir", "-m", "0777", str(theirs))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"} | {"NUMBA_CACHE_DIR": str(theirs)}
    code = "import numpy as np; from charrnn.kernels import optim; print(optim.sumsq(np.ones(3)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "3.0", r.stderr
    assert r.stderr.count("\n") == 1 and "compiling in memory" in r.stderr
    assert os.listdir(theirs) == []


def test_unsafe_folder_rules(tmp_path):
    open_to_nobody(tmp_path)
    mine = tmp_path / "a" / "b"
    assert unsafe_folder(mine) is None and oct(os.stat(mine).st_mode & 0o777) == oct(0o700)
    os.chmod(tmp_path / "a", 0o777)                 # a parent anyone may rename things in
    assert "parent" in unsafe_folder(mine)
    os.chmod(tmp_path / "a", 0o1777)                # sticky: they cannot rename ours
    assert unsafe_folder(mine) is None
    os.chmod(mine, 0o1770)                          # sticky on the folder itself is no excuse
    assert "other users can write" in unsafe_folder(mine)
    os.chmod(mine, 0o700)
    os.chown(tmp_path / "a", NOBODY, NOBODY)        # a parent another user owns
    assert f"uid {NOBODY}" in unsafe_folder(mine)
    os.chown(tmp_path / "a", 0, 0)
    os.chmod(tmp_path / "a", 0o755)
    link = tmp_path / "link"                        # a symlink of theirs on the way
    os.symlink(mine, link)
    os.lchown(link, NOBODY, NOBODY)
    assert "symlink" in unsafe_folder(link)
    (tmp_path / "file").write_text("x")
    assert "File exists" in unsafe_folder(tmp_path / "file")
    assert unsafe_folder(tmp_path / "file", create=False) == "is not a folder"


def test_a_corpus_cache_another_user_owns_is_neither_read_nor_written(tmp_path, monkeypatch, capfd):
    from charrnn import corpus_cache
    from charrnn.data import read_corpus
    open_to_nobody(tmp_path)
    text = "to be or not to be, that is the question\n" * 50
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    good = tmp_path / "good"
    monkeypatch.setenv("CHARRNN_CORPUS_CACHE", str(good))
    assert read_corpus([str(corpus)], cache=True).cache == "stored"
    # another user's cache folder holding a forged entry for this very file: other ids
    theirs = tmp_path / "theirs"
    shutil.copytree(good, theirs)
    ids_file = next(theirs.glob("*.ids"))
    ids_file.write_bytes(bytes(len(ids_file.read_bytes())))     # all zeros: a different text
    os.chown(theirs, NOBODY, NOBODY)
    for f in theirs.iterdir():
        os.chown(f, NOBODY, NOBODY)
    before = sorted(os.listdir(theirs))
    monkeypatch.setenv("CHARRNN_CORPUS_CACHE", str(theirs))
    capfd.readouterr()
    warnings = []
    for _ in range(2):
        c = read_corpus([str(corpus)], cache=True, warn=warnings.append)
        assert c.cache is None and c.vocab.decode(c.ids) == text
    err = capfd.readouterr().err
    assert err.count("warning: corpus cache") == 1 and f"uid {NOBODY}" in err and not warnings, err
    assert sorted(os.listdir(theirs)) == before and corpus_cache.lookup([str(corpus)], "utf-8") is None


def test_a_shipped_corpus_is_never_taken_from_another_users_folder(tmp_path):
    import hashlib
    import tempfile

    from charrnn.sweep.trial import materialize
    data = b"the real corpus, shipped to this worker\n" * 10 + os.urandom(8).hex().encode()
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), f"charrnn-corpus-{digest}")
    as_nobody("mkdir", "-m", "0755", folder)        # planted first, with a same-size forgery
    as_nobody("sh", "-c", f"head -c {len(data)} /dev/zero > {folder}/corpus.txt")
    try:
        (path,) = materialize([("corpus.txt", data)])
        assert not path.startswith(folder + os.sep) and open(path, "rb").read() == data
        assert os.stat(os.path.dirname(path)).st_uid == os.geteuid()
        shutil.rmtree(os.path.dirname(path))
    finally:
        shutil.rmtree(folder)
