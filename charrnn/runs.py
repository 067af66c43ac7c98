"""Run folders: naming, the single-writer lock, listing, corpus fingerprints."""
import os
import time
from contextlib import contextmanager


class RunLockedError(Exception):
    pass


def default_run_dir(corpus, model, root="checkpoints") -> str:
    first = corpus[0]
    stem = "stdin" if first == "-" else os.path.splitext(os.path.basename(first.rstrip("/")))[0]
    return os.path.join(root, f"{stem}-{model}-{time.strftime('%Y%m%d-%H%M%S')}")


@contextmanager
def lock_run_dir(path):
    """Create the run folder, check it is writable, and hold an exclusive lock on
    it for the duration (flock: released by the kernel when the process dies, so a
    crash never leaves it stuck)."""
    import fcntl
    import click

    created = not os.path.exists(path)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        pfd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(pfd)
        os.unlink(probe)
    except OSError as e:
        raise click.ClickException(f"{path}: cannot write checkpoints here ({e.strerror}); "
                                   f"choose another folder with --out") from None
    try:    # never through a symlink planted in the run folder
        fd = os.open(os.path.join(path, ".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise click.ClickException(f"{os.path.join(path, '.lock')}: cannot open the run lock "
                                   f"({e.strerror}; is it a symlink?)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise click.ClickException(f"{path}: another charrnn train (pid {owner}) is writing "
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


def write_status(folder, status: dict):
    """status.json in a run folder: how the last `train` on it ended, replaced whole
    (a temporary that `checkpoint.remove_stale_temporaries` removes if we are killed,
    created exclusively, so never written through a planted symlink)."""
    import json

    from charrnn.checkpoint import TMP_PREFIX
    tmp = os.path.join(folder, f"{TMP_PREFIX}status-{os.getpid()}.json")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(status, f)
    os.replace(tmp, os.path.join(folder, "status.json"))


def preview_sampler(length=160, temp=0.8):
    """A function trainer -> short sample text, for the training display."""
    def preview(trainer):
        from charrnn.sampling import Generator
        gen = Generator(trainer.mcfg, trainer.p, trainer.vocab, seed=trainer.step)
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
        ck = next((os.path.join(folder, f) for f in ("latest.npz", "best.npz")
                   if os.path.isfile(os.path.join(folder, f))), None)
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
