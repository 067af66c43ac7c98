"""Rich renderings for stdout: eval tables, the surprise heatmap, info, runs.
Colour only on terminals and never with NO_COLOR (rich honours both)."""
import math

from rich.console import Console
from rich.table import Table
from rich.text import Text


def stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=False)


class Grid:
    """A table as data: a title, column names, rows of strings. `show` renders it
    as a rich table on a terminal (nothing cut: long cells fold), and as plain
    tab-separated lines, a header line first, anywhere else (gh, kubectl -o)."""

    def __init__(self, title, columns, left=(), terminal_header=True, whole=()):
        """left: left-justified columns; whole: columns never folded on a terminal
        either (run names, paths: what a user copies)."""
        self.title, self.columns, self.left, self.rows = title, list(columns), set(left), []
        self.terminal_header, self.whole = terminal_header, set(whole)

    def add_row(self, *cells):
        self.rows.append([str(c) for c in cells])

    def show(self, console: Console):
        if not console.is_terminal:
            clean = lambda c: c.replace("\t", " ").replace("\n", " | ")  # noqa: E731
            console.file.write("\t".join(self.columns) + "\n")
            for r in self.rows:
                console.file.write("\t".join(clean(c) for c in r) + "\n")
            console.file.flush()
            return
        t = Table(title=self.title, title_justify="left", show_header=self.terminal_header)
        for k, col in enumerate(self.columns):
            widest = max([len(r[k]) for r in self.rows] + [len(col)])
            t.add_column(col, justify="left" if col in self.left else "right", overflow="fold",
                         no_wrap=col in self.whole, min_width=widest if col in self.whole else None)
        for r in self.rows:
            t.add_row(*(Text(c) for c in r))
        width = console.width
        if self.whole:      # wider than the terminal rather than cut: the terminal wraps it
            from rich.measure import Measurement
            width = max(width, min(400, Measurement.get(console, console.options, t).maximum))
        console.print(t, width=width, crop=False)


def heatmap_text(text, losses) -> Text:
    """Each character coloured by its loss: green (expected) to red (surprising)."""
    out = Text()
    for ch, loss in zip(text, losses):
        # 0 nats -> green, >= 4 nats (1 in 55) -> red
        x = min(1.0, max(0.0, float(loss) / 4.0))
        r, g = int(255 * min(1.0, 2 * x)), int(255 * min(1.0, 2 * (1 - x)))
        out.append(ch, style=f"rgb({r},{g},60)" if ch != "\n" else None)
    return out


def info_table(ck, path) -> Grid:
    """Key and value rows (plain: 'key<TAB>value' lines under a 'key<TAB>value' header)."""
    from charrnn.model import num_params
    m, t, ts, meta = ck.model_cfg, ck.train_cfg, ck.train_state, ck.meta
    tab = Grid(str(path), ("key", "value"), left=("key", "value"), terminal_header=False)
    best = ts.get("best_val")
    rows = [
        ("model", f"{m.model}, {m.layers} layer(s) x {m.hidden} hidden, dropout {m.dropout:g}"
                  + (f" ({m.dropout_kind})" if m.dropout else "") + (f", wdrop {m.wdrop:g}" if m.wdrop else "")),
        ("weights", f"average (decay {t.avg_decay:g}) of the trained weights" if ck.avg is not None
         else "as trained"),
        ("parameters", f"{num_params(m):,} ({t.dtype})"),
        ("vocabulary", f"{m.vocab_size} characters: {ck.vocab.preview(60)}"),
        # checkpoint.load checked both: a list of names, a count
        ("corpus", f"{', '.join(meta.get('corpus', ['?']))} ({meta.get('corpus_chars', 0):,} chars)"),
        ("training", f"step {ts['step']:,}, epoch {ts.get('epoch', 0):.2f}, "
                     f"{ts.get('elapsed', 0):.0f} s; B={t.batch_size} T={t.seq_len} "
                     f"{t.optimizer} lr={t.lr:g} clip={t.clip:g}"),
        ("schedule", f"{t.schedule}, warm-up {t.warmup:g}" + (" steps" if t.warmup >= 1 else " of the run")
                     + f", min lr {t.min_lr:g}, patience {t.patience if t.patience else 'off'}"),
        ("best val loss", f"{best:.4f} nats/char = {best / math.log(2):.3f} bits/char" if best else "-"),
        ("command", meta.get("command", "?")),
        ("charrnn", meta.get("version", "?")),
    ]
    plan = meta.get("plan")
    if isinstance(plan, dict):
        rows.append(("plan", "\n".join(str(r) for r in plan.get("reasons", []))))
    rows.insert(0, ("checkpoint", str(path)))
    for k, v in rows:
        tab.add_row(k, v)
    return tab


def runs_table(runs, root="checkpoints") -> Grid:
    t = Grid(f"runs under {root}/, newest first",
             ("run", "model", "steps", "best val (nats/char)", "bits/char", "updated"),
             left=("run", "model", "updated"), whole=("run",))
    for r in runs:
        best = r["best_val"]
        t.add_row(r["name"], r["model"], f"{r['step']:,}",
                  f"{best:.4f}" if best is not None else "-",
                  f"{best / math.log(2):.3f}" if best is not None else "-", r["updated"])
    return t


def sweep_table(trials, folder) -> Grid:
    """A sweep's trials, best validation loss first."""
    from charrnn.sweep.sweep import ranked
    t = Grid(f"sweep {folder}/, best first", ("rank", "trial", "state", "step", "best val (nats/char)",
                                              "bits/char", "note"),
             left=("trial", "state", "note"), whole=("trial",))
    for k, r in enumerate(ranked(trials), 1):
        best = r.best_val
        t.add_row(k, r.name, r.state, f"{r.step:,}", f"{best:.4f}" if best is not None else "-",
                  f"{best / math.log(2):.3f}" if best is not None else "-", r.error or "")
    return t
