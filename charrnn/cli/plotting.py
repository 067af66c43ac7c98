"""Loss curves from a run's log.jsonl: in the terminal (plotext) or as a PNG
(matplotlib, an optional extra)."""
import json
import math


def load_log(path) -> dict:
    """{"step": [...], "train": [...], "val_step": [...], "val": [...]}; skips bad lines."""
    out = {"step": [], "train": [], "val_step": [], "val": []}
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                r = json.loads(line)
                step = int(r["step"])
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(r.get("train_loss"), (int, float)) and math.isfinite(r["train_loss"]):
                out["step"].append(step)
                out["train"].append(r["train_loss"])
            if isinstance(r.get("val_loss"), (int, float)):
                out["val_step"].append(step)
                out["val"].append(r["val_loss"])
    return out


def _series(curves):
    """(label, steps, losses, style) to draw: a run's two curves, or, given
    {trial name: curves}, each trial's validation curve."""
    if "step" in curves:
        out = [("train (smoothed)", curves["step"], curves["train"], "-")]
        if curves["val"]:
            out.append(("validation", curves["val_step"], curves["val"], "o-"))
        return out
    return [(name, c["val_step"], c["val"], "o-") for name, c in curves.items()]


def plot_terminal(curves, width=None, height=None, title="") -> str:
    """curves: one run's load_log(), or {name: load_log()} of a sweep's trials."""
    import plotext as plt
    plt.clf()
    for label, x, y, _ in _series(curves):
        plt.plot(x, y, label=label, marker="braille")
    plt.title(f"{title}: loss (nats/char)")
    plt.xlabel("step")
    if width or height:
        plt.plotsize(width or 80, height or 20)
    import sys
    if not sys.stdout.isatty():
        plt.theme("clear")
    return plt.build()


def plot_png(curves, path, title=""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for label, x, y, style in _series(curves):
        ax.plot(x, y, style, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/char)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
