"""Run folders: naming, the single-writer lock, listing, corpus fingerprints, and the
one rule for "the checkpoint of a run folder" (`run_checkpoint`)."""
import os
import time
from contextlib import contextmanager

from charrnn.errors import DataError

BEST, LATEST = "best.npz", "latest.npz"


def run_checkpoint(folder, resume=False) -> str | None:
    """The checkpoint of a run folder, or None if it holds neither file.

    To use a model (sample, score, complete, export, info): best.npz, the lowest
    validation loss, else latest.npz. To continue or describe its training (resume=True:
    train --resume, `charrnn runs`): latest.npz, where training stopped, else best.npz."""
    for name in ((LATEST, BEST) if resume else (BEST, LATEST)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def checkpoint_path(path, resume=False) -> str:
    """A checkpoint file from a path naming a file or a run folder (`run_checkpoint`);
    raises DataError when there is none. The file itself is not read here."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found = run_checkpoint(path, resume)
        if found is None:
            raise DataError(f"{path}: no best.npz or latest.npz in this folder")
        return found
    if not os.path.exists(path):
        raise DataError(f"{path}: no such checkpoint")
    return path


def newest_checkpoint(root="checkpoints") -> str:
    """The checkpoint (`run_checkpoint`) of the run under root written most recently."""
    found = []
    if os.path.isdir(root):
        for run in os.listdir(root):
            p = run_checkpoint(os.path.join(root, run))
            if p is not None:
                found.append((os.path.getmtime(p), p))
    if not found:
        raise DataError(f"no checkpoint found under ./{root}/; train one with 'charrnn train FILE' "
                        f"or name one with --checkpoint")
    return max(found)[1]


def default_run_dir(corpus, model, root="checkpoints") -> str:
    first = corpus[0]
    stem = "stdin" if first == "-" else os.path.splitext(os.path.basename(first.rstrip("/")))[0]
    return os.path.join(root, f"{stem}-{model}-{time.strftime('%Y%m%d-%H%M%S')}")


@contextmanager
def lock_run_dir(path):
    """Create the run folder, check it is writable, and hold an exclusive lock on
    it for the duration (flock: released by the kernel when the process dies, so a
    crash never leaves it stuck). Raises DataError when it cannot."""
    import fcntl

    created = not os.path.exists(path)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        pfd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(pfd)
        os.unlink(probe)
    except OSError as e:
        raise DataError(f"{path}: cannot write checkpoints here ({e.strerror}); "
                        f"choose another folder with --out") from None
    try:    # never through a symlink planted in the run folder
        fd = os.open(os.path.join(path, ".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise DataError(f"{os.path.join(path, '.lock')}: cannot open the run lock "
                        f"({e.strerror}; is it a symlink?)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise DataError(f"{path}: another charrnn train (pid {owner}) is writing "
                        f"to this run folder; wait for it or use --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    from charrnn.checkpoint import remove_stale_temporaries
    remove_stale_temporaries(path)
    failed = True
    try:
        yield
        failed = False
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        if failed and created and os.listdir(path) == [".lock"]:   # nothing was written: no trace
            try:
                os.unlink(os.path.join(path, ".lock"))
                os.rmdir(path)
            except OSError:
                pass


def guard_run_folder(out, resume, ck):
    """Never lose a run: a fresh run (ck None) may not write into a folder holding one,
    and a run resumed from another checkpoint than the folder's latest.npz (its
    best.npz, say) may not overwrite a newer latest.npz there. Raises DataError."""
    latest = os.path.join(out, "latest.npz")
    if ck is None:
        found = [n for n in ("latest.npz", "best.npz") if os.path.exists(os.path.join(out, n))]
        if found:
            raise DataError(f"{out}: already holds a run ({found[0]}); continue it with "
                            f"--resume {out}, or choose another --out")
        return
    if os.path.abspath(resume) == os.path.abspath(latest) or not os.path.isfile(latest):
        return
    from charrnn.checkpoint import CheckpointError, load
    try:
        theirs = load(latest).train_state["step"]
    except CheckpointError:
        theirs = None
    if theirs is None or theirs > ck.train_state["step"]:
        raise DataError(f"{latest} is newer (step {theirs}) than {resume} (step "
                        f"{ck.train_state['step']}); resuming here would overwrite it: give --out "
                        f"NEW_FOLDER to branch off from {os.path.basename(resume)}")


def write_status(folder, status: dict):
    """status.json in a run folder: how the last `train` on it ended, replaced whole
    (fileio.atomic_write; its temporary, .tmp-*.json, is one that
    `checkpoint.remove_stale_temporaries` removes if we are killed)."""
    import json

    from charrnn.fileio import atomic_write
    atomic_write(os.path.join(folder, "status.json"), lambda f: json.dump(status, f))


def preview_sampler(length=160, temp=0.8):
    """A function trainer -> short sample text, for the training display."""
    def preview(trainer):
        from charrnn.sampling import Generator
        gen = Generator(trainer.mcfg, trainer.eval_p, trainer.vocab, seed=trainer.step)
        return gen.text("\n", length, temp=temp)
    return preview


def list_runs(root="checkpoints") -> list[dict]:
    """Runs under root with a checkpoint, newest first (reads only train_state/config)."""
    import json

    import numpy as np
    found = []
    if not os.path.isdir(root):
        return found
    for name in os.listdir(root):
        folder = os.path.join(root, name)
        ck = run_checkpoint(folder, resume=True)     # how far its training got
        if ck is None:
            continue
        try:
            with np.load(ck, allow_pickle=False) as z:
                ts = json.loads(str(z["train_state"]))
                cfg = json.loads(str(z["config"]))["model"]
            model = f"{cfg['model']} {cfg['layers']}x{cfg['hidden']}"
            step, best = ts["step"], ts.get("best_val")
        except Exception:  # noqa: BLE001 - a broken run is listed, not fatal
            model, step, best = "(unreadable)", 0, None
        mtime = os.path.getmtime(ck)
        found.append({"name": name, "model": model, "step": step, "best_val": best, "mtime": mtime,
                      "updated": time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime))})
    return sorted(found, key=lambda r: -r["mtime"])
