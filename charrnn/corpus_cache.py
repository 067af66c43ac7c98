"""Encoded corpora kept on disk, so a corpus is encoded once and memory-mapped after.

An entry is two files in the cache folder, named by a key of the source files
(real path, size, modification time, inode) and the text encoding:
`<key>.ids` holds the ids as raw little-endian integers of the vocabulary's id
type, and `<key>.json` the vocabulary, the length, the fingerprint of the ids
and the sources. The JSON file is written last, so an entry without it (a
killed encoding) is never used. Editing a source file changes the key; the old
entry is removed when the new one is written. Training maps the ids file
read-only (`np.memmap`), so its memory no longer grows with the corpus: the
kernel pages in what the streams read and can drop it again.

The folder is `$CHARRNN_CORPUS_CACHE`, else `$XDG_CACHE_HOME/charrnn/corpora`,
else `~/.cache/charrnn/corpora`; `charrnn cache` lists it and `--clear` empties it.
It is used only if no other user can write it or swap it (fileio.unsafe_folder: a
model would train on whatever ids they put there); otherwise charrnn says so once
on stderr and encodes in memory.
"""
import errno
import hashlib
import json
import os
import stat
import time

import numpy as np

from charrnn.fileio import atomic_write

FORMAT = 2      # 2: a leading byte-order mark is no longer a character of the text
DTYPES = ("uint8", "uint16", "int32")


def folder() -> str:
    env = os.environ.get("CHARRNN_CORPUS_CACHE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "charrnn", "corpora")


_refused: set = set()


def trusted_folder() -> str | None:
    """The cache folder, created private (0700) if missing, or None when it must not be
    used (fileio.unsafe_folder says why, on stderr, once per folder)."""
    import sys

    from charrnn.fileio import unsafe_folder
    d = folder()
    problem = unsafe_folder(d)
    if problem is None:
        return d
    if d not in _refused:
        _refused.add(d)
        print(f"warning: corpus cache {d}: {problem}; not used (the corpus is encoded in memory)",
              file=sys.stderr)
    return None


def cacheable(paths) -> bool:
    """Only regular files (stdin, FIFOs and devices are read once and never cached), and
    only with a cache folder that can be trusted (`trusted_folder`)."""
    try:
        regular = bool(paths) and all(p != "-" and stat.S_ISREG(os.stat(p).st_mode) for p in paths)
    except OSError:
        return False
    return regular and trusted_folder() is not None


def sources(paths) -> list[dict]:
    out = []
    for p in paths:
        st = os.stat(p)
        out.append({"path": os.path.realpath(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                    "inode": st.st_ino})
    return out


def key(srcs: list[dict], encoding) -> str:
    """The entry name for these `sources` read with this encoding."""
    blob = json.dumps([FORMAT, encoding, srcs], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _mapped(base, dtype, n):
    return np.memmap(base + ".ids", dtype=np.dtype(dtype).newbyteorder("<"), mode="r", shape=(n,))


def lookup(paths, encoding):
    """(ids memmap, codepoints, meta) of a valid entry for these sources, or None.
    An entry that does not check out (truncated, edited, unreadable) is ignored."""
    d = trusted_folder()
    if d is None:
        return None
    srcs = sources(paths)
    base = os.path.join(d, key(srcs, encoding))
    try:
        with open(base + ".json", encoding="utf-8") as f:
            meta = json.load(f)
        n, dtype = int(meta["chars"]), np.dtype(meta["dtype"])
        cps = np.asarray(meta["codepoints"], dtype=np.int64)
        if (meta.get("format") != FORMAT or meta["dtype"] not in DTYPES or n < 1
                or os.path.getsize(base + ".ids") != n * dtype.itemsize
                or len(cps) < 1 or np.any(np.diff(cps) <= 0) or cps[0] < 0 or cps[-1] > 0x10FFFF
                or np.any((cps >= 0xD800) & (cps <= 0xDFFF))
                or meta["sources"] != srcs):
            return None
        ids = _mapped(base, dtype, n)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return ids, cps.astype(np.int32), meta


class Writer:
    """Writes one entry's ids in chunks (plain writes: the page cache they go
    through is not the process's memory), then commits it with its JSON file."""

    def __init__(self, paths, encoding):
        self.dir = trusted_folder()
        if self.dir is None:
            raise OSError(errno.EPERM, "other users could write to it", folder())
        self.paths, self.encoding = paths, encoding
        self.base = os.path.join(self.dir, key(sources(paths), encoding))
        self.tmp = f"{self.base}.ids.tmp-{os.getpid()}"
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self.f = os.fdopen(fd, "wb")

    def write(self, ids: np.ndarray):
        self.f.write(ids.astype(ids.dtype.newbyteorder("<"), copy=False).tobytes())

    def commit(self, vocab, n, nbytes, fingerprint):
        """Make the entry visible; returns its ids, mapped. Sources are stat-ed again
        here: a file edited during the encoding gets an entry no lookup will match."""
        self.f.flush()     # the ids on disk before the JSON file that vouches for them
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.base + ".ids")
        meta = {"format": FORMAT, "chars": int(n), "bytes": int(nbytes),
                "dtype": np.dtype(vocab.id_dtype).name, "codepoints": vocab.codepoints.tolist(),
                "fingerprint": fingerprint, "encoding": self.encoding,
                "sources": sources(self.paths), "created": time.time()}
        # its temporary, <key>.json.tmp-*, is one that clear() removes
        atomic_write(self.base + ".json", lambda f: json.dump(meta, f), perms=0o600,
                     prefix=os.path.basename(self.base) + ".json.tmp-", suffix="")
        _remove_stale(self.base, meta["sources"])
        return _mapped(self.base, vocab.id_dtype, n)

    def abort(self):
        try:
            self.f.close()
            os.unlink(self.tmp)
        except OSError:
            pass


def _remove_stale(keep, srcs):
    """Entries for the same files as an older version of them."""
    paths = [s["path"] for s in srcs]
    for e in entries():
        if e["base"] != keep and [s.get("path") for s in e["sources"]] == paths:
            remove(e["base"])


def entries() -> list[dict]:
    """Every committed entry: {"base", "chars", "bytes", "sources", "created", "size"}."""
    found, d = [], folder()
    try:
        names = os.listdir(d)
    except OSError:
        return found
    for name in sorted(names):
        if not name.endswith(".json"):
            continue
        base = os.path.join(d, name[:-5])
        try:
            with open(base + ".json", encoding="utf-8") as f:
                meta = json.load(f)
            size = os.path.getsize(base + ".ids")
            found.append({"base": base, "chars": int(meta["chars"]), "bytes": int(meta["bytes"]),
                          "sources": list(meta["sources"]), "created": float(meta["created"]),
                          "size": size})
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def remove(base):
    for suffix in (".json", ".ids"):
        try:
            os.unlink(base + suffix)
        except FileNotFoundError:
            pass


def clear() -> int:
    """Remove every file in the cache folder that charrnn wrote; returns bytes freed."""
    d, freed = folder(), 0
    try:
        names = os.listdir(d)
    except OSError:
        return 0
    for name in names:
        if name.endswith((".ids", ".json")) or ".tmp-" in name:
            path = os.path.join(d, name)
            try:
                freed += os.path.getsize(path)
                os.unlink(path)
            except OSError:
                pass
    return freed
