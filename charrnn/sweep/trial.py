"""Run one sweep trial: `charrnn train` in a child process with one thread.

`run_trial(task, stop)` is what an executor runs, on this machine or on a Dask
worker: it knows neither. The task is a plain dict (picklable); `stop` is a
callable polled twice a second, and when it turns true the trial gets SIGINT,
which makes train save and exit 130, so the sweep can continue it later. A child
process per trial gives each trial its own thread counts (set before Numba or
BLAS load), its own signal handling, and isolation: a trial that fails cannot
take the others down.
"""
import json
import os
import signal
import subprocess
import sys
import threading

from charrnn.config import THREAD_VARIABLES

# one thread per trial: the pool runs one trial per core
ONE_THREAD = {**{var: "1" for var in THREAD_VARIABLES}, "MKL_DYNAMIC": "FALSE"}
POLL = 0.5      # seconds between looks at `stop`


def train_argv(task: dict) -> list[str]:
    """The `charrnn train` arguments of a task: a fresh run, or a resumed one."""
    folder = task["folder"]
    resume = os.path.isfile(os.path.join(folder, "latest.npz"))
    argv = ["train", *task["corpus"], "--quiet"]
    fixed = list(task.get("fixed", ()))     # the sweep's fixed train options: train checks a
    if resume:                              # resumed run's against its checkpoint
        argv += ["--resume", folder, *fixed]
        if task["bound"] == "steps":    # a time run continues to its stored budget
            argv += ["--steps", str(int(task["budget"]))]
    else:
        argv += ["--out", folder, *task["args"], *fixed]
        argv += (["--steps", str(int(task["budget"]))] if task["bound"] == "steps"
                 else ["--time", f"{task['budget']:g}s", "--no-plan"])
    if task.get("pause_at") is not None:
        p = task["pause_at"]
        argv += ["--pause-at", str(int(p)) if task["bound"] == "steps" else f"{p:g}s"]
    return argv


def run_trial(task: dict, stop=None) -> dict:
    """Train one trial to its next pause point or its end. Returns {"name", "state",
    "step", "best_val", "elapsed", "error"}; state is "paused", "done",
    "interrupted", "failed" or "queued" (stopped before it began)."""
    result = {"name": task["name"], "state": "failed", "step": 0, "best_val": None,
              "elapsed": 0.0, "error": None}
    if stop is not None and stop():
        return {**result, "state": "queued"}
    corpus = materialize(task["corpus_payload"]) if task.get("corpus_payload") else None
    if corpus is not None:
        task = {**task, "corpus": corpus}
    env = dict(os.environ, **ONE_THREAD)
    env.pop("CHARRNN_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", *train_argv(task)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    # stderr is read by a thread, so a chatty trial cannot fill the pipe and stall
    err_lines: list[bytes] = []
    reader = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
    reader.start()
    signalled = False
    while True:
        try:
            rc = proc.wait(timeout=POLL)
            break
        except subprocess.TimeoutExpired:
            if not signalled and stop is not None and stop():
                proc.send_signal(signal.SIGINT)     # train saves, then exits 130
                signalled = True
    reader.join(timeout=5)
    end = last_end(task["folder"])
    result.update({k: end[k] for k in ("step", "best_val", "elapsed") if k in end})
    if rc == 0:
        result["state"] = "paused" if end.get("end") == "paused" else "done"
    elif rc in (130, 143):
        result["state"] = "interrupted"
    else:
        text = [ln.decode(errors="replace").strip() for ln in err_lines if ln.strip()]
        result["error"] = (text[-1] if text else f"train exited with status {rc}")[:300]
    return result


def last_end(folder) -> dict:
    """What train wrote on ending: status.json, {"end", "step", "elapsed", "best_val"}."""
    try:
        with open(os.path.join(folder, "status.json"), encoding="utf-8") as f:
            status = json.load(f)
        return status if isinstance(status, dict) else {}
    except (OSError, ValueError):
        return {}


def progress(folder) -> dict:
    """{"step", "val"} from a running trial's log.jsonl (its last lines only)."""
    path = os.path.join(folder, "log.jsonl")
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 8192))
            tail = f.read().decode(errors="replace").splitlines()
    except OSError:
        return {}
    out = {}
    for line in reversed(tail):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        out.setdefault("step", r.get("step"))
        if r.get("val_loss") is not None and "val" not in out:
            out["val"] = r["val_loss"]
        if "val" in out:
            break
    return out


def materialize(payload) -> list[str]:
    """A shipped corpus written once to this machine's temporary folder (named by its
    digest, so every trial on a worker after the first finds it there), atomically.
    That folder is created private; if it exists and another user owns or can write
    it (fileio.unsafe_folder: they could have put another text there), a fresh
    private folder is used instead."""
    import hashlib
    import tempfile

    from charrnn.fileio import atomic_write, unsafe_folder
    paths = []
    for name, data in payload:
        digest = hashlib.sha256(data).hexdigest()[:16]
        folder = os.path.join(tempfile.gettempdir(), f"charrnn-corpus-{digest}")
        if unsafe_folder(folder):
            folder = tempfile.mkdtemp(prefix=f"charrnn-corpus-{digest}-")
        path = os.path.join(folder, os.path.basename(name))
        if not os.path.isfile(path) or os.path.getsize(path) != len(data):
            atomic_write(path, lambda f: f.write(data), mode="wb",
                         prefix=f"{os.path.basename(name)}.tmp-", suffix="")
        paths.append(path)
    return paths
