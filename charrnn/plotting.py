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


def plot_terminal(curves, width=None, height=None, title="") -> str:
    import plotext as plt
    plt.clf()
    plt.plot(curves["step"], curves["train"], label="train (smoothed)", marker="braille")
    if curves["val"]:
        plt.plot(curves["val_step"], curves["val"], label="validation", marker="braille")
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
    ax.plot(curves["step"], curves["train"], label="train (smoothed)")
    if curves["val"]:
        ax.plot(curves["val_step"], curves["val"], "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/char)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
