"""Rich renderings for stdout: eval tables, the surprise heatmap, info, runs.
Colour only on terminals and never with NO_COLOR (rich honours both)."""
import math

from rich.console import Console
from rich.table import Table
from rich.text import Text


def stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def eval_tables(rows, total, ranked):
    tables = []
    if rows:
        t = Table(title="loss per character", title_justify="left")
        for col in ("file", "chars", "skipped", "nats/char", "bits/char", "perplexity"):
            t.add_column(col, justify="left" if col == "file" else "right",
                         overflow="fold" if col == "file" else "ellipsis")
        for r in rows + ([{"file": "total", **total}] if total and len(rows) > 1 else []):
            t.add_row(r["file"], f"{r['chars']:,}", f"{r['unknown']:,}", f"{r['loss']:.4f}",
                      f"{r['bpc']:.4f}", f"{r['perplexity']:.3f}")
        tables.append(t)
    if ranked:
        t = Table(title="texts, likeliest first", title_justify="left")
        for col in ("rank", "text", "log P (nats)", "nats/char", "chars"):
            t.add_column(col, justify="left" if col == "text" else "right")
        for k, r in enumerate(ranked):
            t.add_row(str(k + 1), r["text"], f"{r['logprob']:.3f}", f"{r['loss']:.4f}", str(r["chars"]))
        tables.append(t)
    return tables


def heatmap_text(text, losses) -> Text:
    """Each character coloured by its loss: green (expected) to red (surprising)."""
    out = Text()
    for ch, loss in zip(text, losses):
        # 0 nats -> green, >= 4 nats (1 in 55) -> red
        x = min(1.0, max(0.0, float(loss) / 4.0))
        r, g = int(255 * min(1.0, 2 * x)), int(255 * min(1.0, 2 * (1 - x)))
        out.append(ch, style=f"rgb({r},{g},60)" if ch != "\n" else None)
    return out


def info_table(ck, path) -> Table:
    from charrnn.model import num_params
    m, t, ts, meta = ck.model_cfg, ck.train_cfg, ck.train_state, ck.meta
    tab = Table(show_header=False, title=str(path), title_justify="left")
    tab.add_column(style="bold")
    tab.add_column()
    best = ts.get("best_val")
    rows = [
        ("model", f"{m.model}, {m.layers} layer(s) x {m.hidden} hidden, dropout {m.dropout:g}"),
        ("parameters", f"{num_params(m):,} ({t.dtype})"),
        ("vocabulary", f"{m.vocab_size} characters: {ck.vocab.preview(60)}"),
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
    for k, v in rows:
        tab.add_row(k, Text(v))
    return tab


def runs_table(runs) -> Table:
    t = Table(title="runs under checkpoints/, newest first", title_justify="left")
    for col in ("run", "model", "steps", "best val (nats/char)", "bits/char", "updated"):
        t.add_column(col, justify="left" if col in ("run", "model", "updated") else "right")
    for r in runs:
        best = r["best_val"]
        t.add_row(r["name"], r["model"], f"{r['step']:,}",
                  f"{best:.4f}" if best is not None else "-",
                  f"{best / math.log(2):.3f}" if best is not None else "-", r["updated"])
    return t
