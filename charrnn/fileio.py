"""Files written whole or not at all, and folders only we can write.

`atomic_write` is the one way charrnn replaces a file (status.json, the sweep
ledger, corpus-cache entries, shipped corpora): a reader, or a crash, only ever
sees the old file or the new one, and a symlink planted where the temporary goes
is never followed. `unsafe_folder` is the one rule for a folder whose contents
charrnn trusts (Numba's kernel cache holds pickles; the corpus cache holds the
ids a model trains on).
"""
import os
import stat
import tempfile

TMP_PREFIX = ".tmp-"     # what checkpoint.remove_stale_temporaries clears in a run folder


def _umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status; elsewhere
    os.umask is set and put back, which another thread creating a file then could see)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, write_fn, *, mode="w", encoding="utf-8", perms=None, prefix=TMP_PREFIX,
                 suffix=None):
    """Replace `path` with what `write_fn(f)` writes to the open file object f.

    mode "w" gives write_fn a text file (`encoding`), "wb" a binary one. The
    temporary is created in path's folder with O_EXCL (mkstemp: never through a
    symlink), named `prefix` ... `suffix` (default: path's extension), given
    `perms` (default 0o666 less the umask, as any file the user writes), flushed
    and fsync-ed, then os.replace-d over path, and the folder is fsync-ed so the
    rename survives a crash. On any failure the temporary is removed and path is
    untouched; the exception propagates. Returns what write_fn returned."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', not {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if suffix is None:
        suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    try:
        os.fchmod(fd, (0o666 & ~_umask()) if perms is None else perms)
        with (os.fdopen(fd, "wb") if mode == "wb" else
              os.fdopen(fd, "w", encoding=encoding, newline="")) as f:
            fd = None
            result = write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_folder(folder)
    return result


def fsync_folder(folder):
    """Make a rename in `folder` durable (best effort: some file systems refuse)."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def unsafe_folder(folder, create=True) -> str | None:
    """Why `folder` must not be trusted with files charrnn reads back, or None if it
    may. With create, a missing folder (and missing parents) is made, private (0700).

    Trusted means no other user can put files in it or swap it for their own: it
    is a real folder owned by us (the effective user) and not writable by group or
    others (a sticky bit does not help: others could still add files), and every
    folder above it is owned by us or root and not writable by group or others,
    unless sticky (/tmp: others cannot rename or remove our entries there). A
    symlink on the way must be ours or root's, as its target is checked too."""
    folder = os.path.abspath(os.fspath(folder))
    problem = _unsafe_parents(folder)       # before creating anything in a folder not ours
    if problem:
        return problem
    if create:
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError as e:
            return f"cannot be created ({e.strerror})"
    try:
        st = os.lstat(folder)
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (os.geteuid(), 0):
            return f"is a symlink owned by another user (uid {st.st_uid})"
        st = os.stat(folder)
    except OSError as e:
        return f"cannot be used ({e.strerror})"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if st.st_uid != os.geteuid():
        return f"belongs to another user (uid {st.st_uid}), who can write to it"
    if st.st_mode & 0o022:
        return "other users can write to it"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "is not writable"
    return _unsafe_parents(folder)          # again: a symlink may have led elsewhere


def _unsafe_parents(folder) -> str | None:
    for above in _ancestors(folder):
        try:
            lst = os.lstat(above)
            st = os.stat(above)
        except FileNotFoundError:
            continue                        # to be created by us, private
        except OSError as e:
            return f"its parent {above} cannot be used ({e.strerror})"
        if stat.S_ISLNK(lst.st_mode) and lst.st_uid not in (os.geteuid(), 0):
            return f"its parent {above} is a symlink owned by another user (uid {lst.st_uid})"
        if st.st_uid not in (os.geteuid(), 0):
            return f"other users can replace it (its parent {above} belongs to uid {st.st_uid})"
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return f"other users can replace it (its parent {above} is writable by others)"
    return None


def _ancestors(folder):
    """The folders above `folder`, as given and as resolved, nearest first."""
    seen = []
    for start in (folder, os.path.realpath(folder)):
        p = os.path.dirname(start)
        while True:
            if p not in seen:
                seen.append(p)
            parent = os.path.dirname(p)
            if parent == p:
                break
            p = parent
    return seen
