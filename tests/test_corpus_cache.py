"""The corpus cache (encode once, memory-map after) and --pause-at, through real files."""
import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

from charrnn import checkpoint as C
from charrnn import corpus_cache as K
from charrnn.data import fingerprint, read_corpus
from conftest import run_cli
from test_reliability import TINY


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("CHARRNN_CORPUS_CACHE", str(d))
    return d


@pytest.fixture
def corpus(tmp_path, bundled_text):
    p = tmp_path / "c.txt"
    p.write_text(bundled_text[:30_000], encoding="utf-8")
    return p


def test_encoded_once_then_mapped_with_the_same_ids(corpus, cache_dir):
    plain = read_corpus([str(corpus)])
    first = read_corpus([str(corpus)], cache=True)
    second = read_corpus([str(corpus)], cache=True)
    assert (plain.cache, first.cache, second.cache) == (None, "stored", "hit")
    assert isinstance(second.ids, np.memmap) and not second.ids.flags.writeable
    assert np.array_equal(second.ids, plain.ids) and second.ids.dtype == plain.ids.dtype
    assert np.array_equal(second.vocab.codepoints, plain.vocab.codepoints)
    assert second.fingerprint == fingerprint(plain.ids) == first.fingerprint
    assert second.nbytes == plain.nbytes
    assert stat_mode(cache_dir) == 0o700


def stat_mode(path):
    return os.stat(path).st_mode & 0o777


def test_an_edited_file_is_encoded_again_and_the_old_entry_removed(corpus, cache_dir):
    read_corpus([str(corpus)], cache=True)
    corpus.write_text(corpus.read_text() + "zebra!\n", encoding="utf-8")
    again = read_corpus([str(corpus)], cache=True)
    assert again.cache == "stored" and again.vocab.index("z") >= 0
    assert len(K.entries()) == 1 and K.entries()[0]["chars"] == len(again.ids)


@pytest.mark.parametrize("damage", ["no json", "truncated ids", "bad json", "surrogate vocab"])
def test_a_damaged_entry_is_never_used(corpus, cache_dir, damage):
    good = read_corpus([str(corpus)]).ids
    read_corpus([str(corpus)], cache=True)
    base = K.entries()[0]["base"]
    if damage == "no json":                 # as a killed encoding leaves it
        os.unlink(base + ".json")
    elif damage == "truncated ids":
        os.truncate(base + ".ids", 100)
    elif damage == "bad json":
        open(base + ".json", "w").write("{not json")
    else:
        meta = json.load(open(base + ".json"))
        meta["codepoints"][-1] = 0xD800
        json.dump(meta, open(base + ".json", "w"))
    again = read_corpus([str(corpus)], cache=True)
    assert again.cache == "stored" and np.array_equal(again.ids, good)


def test_a_fifo_is_read_once_and_not_cached(corpus, cache_dir, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat {corpus} > {fifo}"])
    got = read_corpus([str(fifo)], cache=True)      # read once, copied aside for the second pass
    writer.wait()
    assert got.cache is None and np.array_equal(got.ids, read_corpus([str(corpus)]).ids)
    assert not K.entries()


def test_train_uses_the_cache_and_resume_still_checks_the_corpus(corpus, tmp_path, bundled_text):
    env = {"CHARRNN_CORPUS_CACHE": str(tmp_path / "cache")}
    out_a, out_b, out_c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    args = [*TINY, "--steps", "20"]
    assert run_cli("train", corpus, "--out", out_a, *args, env=env).returncode == 0
    assert len(list((tmp_path / "cache").glob("*.ids"))) == 1
    assert run_cli("train", corpus, "--out", out_b, *args, env=env).returncode == 0     # from the map
    assert run_cli("train", corpus, "--out", out_c, *args, "--no-cache", env=env).returncode == 0
    a, b, c = (C.load(o / "latest.npz") for o in (out_a, out_b, out_c))
    assert np.array_equal(a.flat, b.flat) and np.array_equal(a.flat, c.flat)
    assert a.meta["fingerprint"] == b.meta["fingerprint"] == c.meta["fingerprint"]
    # another text of the same length and characters: the fingerprint tells them apart
    other = tmp_path / "other.txt"
    text = corpus.read_text(encoding="utf-8")
    other.write_text(text[1:] + text[0], encoding="utf-8")
    r = run_cli("train", other, "--resume", out_a, "--steps", "30", "-q", env=env)
    assert r.returncode == 1 and "not the text" in r.stderr.decode()


def test_a_cache_that_cannot_be_written_costs_a_warning(corpus, tmp_path):
    (tmp_path / "afile").write_text("x")
    r = run_cli("train", corpus, "--out", tmp_path / "r", *TINY, "--steps", "5",
                env={"CHARRNN_CORPUS_CACHE": str(tmp_path / "afile" / "sub")})
    err = r.stderr.decode()
    assert r.returncode == 0 and err.count("warning: corpus cache") == 1, err
    # and a full disk, as a file-size limit: the partial entry is removed, never used
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # noqa: E731
    code = ("import sys; from charrnn.data import read_corpus; "
            f"c = read_corpus([{str(corpus)!r}], cache=True, warn=lambda m: print(m, file=sys.stderr)); "
            "print(c.cache, len(c.ids))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=limit,
                       env=dict(os.environ, CHARRNN_CORPUS_CACHE=str(tmp_path / "full")))
    assert r.returncode == 0 and r.stdout.split() == ["None", "30000"], r.stderr
    assert "cannot write" in r.stderr and not list((tmp_path / "full").iterdir())


def test_cache_command_lists_and_clears(corpus, tmp_path):
    env = {"CHARRNN_CORPUS_CACHE": str(tmp_path / "cache")}
    r = run_cli("cache", env=env)
    assert r.returncode == 0 and r.stdout == b"" and b"no cached corpora" in r.stderr
    assert run_cli("train", corpus, "--out", tmp_path / "r", *TINY, "--steps", "2", env=env).returncode == 0
    lines = run_cli("cache", env=env).stdout.decode().splitlines()
    assert lines[0].split("\t")[:2] == ["corpus", "chars"]
    assert lines[1].split("\t")[:2] == [str(corpus.resolve()), "30000"]   # TSV: plain numbers
    r = run_cli("cache", "--clear", env=env)
    assert r.returncode == 0 and b"removed" in r.stderr and not list((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("bound", [["--steps", "40"], ["--epochs", "0.2"]])
def test_pause_then_resume_equals_a_run_never_paused(corpus, tmp_path, bound):
    whole, paused = tmp_path / "whole", tmp_path / "paused"
    assert run_cli("train", corpus, "--out", whole, *TINY, *bound, "--eval-every", "10").returncode == 0
    r = run_cli("train", corpus, "--out", paused, *TINY, *bound, "--eval-every", "10", "--pause-at", "15")
    assert r.returncode == 0, r.stderr
    ck = C.load(paused / "latest.npz")
    assert ck.train_state["step"] == 15 and ck.train_state["last_val"] is not None   # evaluated there
    assert run_cli("train", corpus, "--resume", paused, "-q").returncode == 0
    a, b = C.load(whole / "latest.npz"), C.load(paused / "latest.npz")
    assert a.train_state["step"] == b.train_state["step"]
    assert np.array_equal(a.flat, b.flat)


def test_pause_at_in_a_time_run_and_bad_values(corpus, tmp_path):
    r = run_cli("train", corpus, "--out", tmp_path / "t", *TINY, "--time", "60", "--pause-at", "2s",
                "--eval-every", "100000", "--no-plan")
    assert r.returncode == 0, r.stderr
    ts = C.load(tmp_path / "t" / "latest.npz").train_state
    assert 2.0 <= ts["elapsed"] < 10 and ts["horizon"] == {"seconds": 60.0}
    for value in ("5m", "0", "x"):
        r = run_cli("train", corpus, "--out", tmp_path / "u", *TINY, "--steps", "10", "--pause-at", value)
        assert r.returncode == 2 and b"--pause-at" in r.stderr and r.stderr.count(b"\n") == 1


def _mapped_mb(name):
    """Resident MB of this process's mappings of files whose path contains name."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if not line[0].isupper() or line.startswith("VmFlags"):   # a mapping's header line
                inside = name in line if "-" in line.split()[0] else inside
                continue
            if inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total / 1024


def test_a_mapped_corpus_stays_out_of_memory_over_a_whole_epoch(tmp_path, cache_dir, bundled_text, monkeypatch):
    from charrnn import data as D
    path = tmp_path / "big.txt"
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(40_000_000 // len(bundled_text) + 1):
            f.write(bundled_text)
    mapped = read_corpus([str(path)], cache=True)
    assert mapped.cache == "stored"
    plain = read_corpus([str(path)])

    def peak(release):
        monkeypatch.setattr(D._Release, "RELEASE", release)
        b, ref, most = D.Batches(mapped.ids, 8, 256), D.Batches(plain.ids, 8, 256), 0.0
        for k in range(b.per_stream // 256):
            x, y, _ = b.next()
            x2, y2, _ = ref.next()
            if k % 500 == 0:
                assert np.array_equal(x, x2) and np.array_equal(y, y2)
                most = max(most, _mapped_mb(".ids"))
        return most

    import mmap
    release = D._Release.RELEASE
    assert peak(1 << 40) > 30            # never released: the whole 40 MB becomes resident
    mapped.ids._mmap.madvise(mmap.MADV_DONTNEED)     # the next measurement starts from nothing
    assert peak(release) < 16            # 8 streams x 256 K ids, and the kernel's read-ahead


def test_a_checkpoints_vocabulary_is_never_stored_as_the_corpus_own(corpus, cache_dir):
    from charrnn.vocab import Vocab
    own = read_corpus([str(corpus)]).vocab
    wider = Vocab(np.union1d(own.codepoints, [ord("\u00e9"), ord("\u4e2d")]))
    resumed = read_corpus([str(corpus)], vocab=wider, cache=True)     # as --resume reads it
    assert resumed.cache is None and np.array_equal(resumed.vocab.codepoints, wider.codepoints)
    assert not K.entries()
    fresh = read_corpus([str(corpus)], cache=True)
    assert fresh.cache == "stored" and np.array_equal(fresh.vocab.codepoints, own.codepoints)
    again = read_corpus([str(corpus)], vocab=own, cache=True)         # the same vocabulary: mapped
    assert again.cache == "hit"
