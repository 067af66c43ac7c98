"""charrnn eval: exact losses of files and strings."""

import click

from charrnn.cli.common import (CONTEXT, checkpoint_option, load_checkpoint, resolve_checkpoint, stream_limit,
                                stream_limit_option)
from charrnn.errors import DataError


@click.command("eval", context_settings=CONTEXT)
@click.argument("files", nargs=-1, type=click.Path(allow_dash=True))
@checkpoint_option
@click.option("--text", "texts", multiple=True, help="Score this string (repeatable); ranks them.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--heatmap", is_flag=True, help="Print the text coloured by the model's surprise.")
@click.option("--heatmap-chars", type=click.IntRange(1), default=3000, show_default=True,
              help="Characters of each file shown by --heatmap.")
@stream_limit_option
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of the files.")
@click.option("--dynamic", is_flag=True,
              help="Also score FILES with dynamic evaluation: the model adapts to each file as it "
                   "reads it (each segment scored first, then learnt from); the checkpoint is "
                   "never changed.")
@click.option("--dynamic-lr", type=click.FloatRange(0, min_open=True), default=None,
              help="Dynamic evaluation's step size  [default: 0.0001]")
@click.option("--dynamic-decay", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Pull back towards the trained weights at every segment  [default: 0.01]")
@click.option("--dynamic-segment", type=click.IntRange(1, 100_000), default=None,
              help="Characters read between two adaptation steps  [default: 50]")
def eval_cmd(files, checkpoint, texts, as_json, heatmap, heatmap_chars, encoding, dynamic,
             dynamic_lr, dynamic_decay, dynamic_segment):
    """Measure how well a model predicts text: loss, bits per char, perplexity.

    Every character is scored exactly, with the model's state carried through
    the whole file. Characters outside the model's vocabulary are skipped,
    counted and reported. A byte-order mark starting a file or a --text is not
    a character of it.

    stdout: on a terminal, tables; otherwise tab-separated lines, a header first,
    plain numbers (no thousands separators); --json: one JSON object. A figure
    that is undefined (no character scored: an empty or one-character file, only
    unknown characters) is null in JSON and an empty field in TSV, never NaN.

    \b
    Examples:
      charrnn eval notes.txt more.txt
      cat notes.txt | charrnn eval - --json
      charrnn eval --text "the apple and pear salad" --text "the apple and pair salad"
      charrnn eval notes.txt --heatmap
      charrnn eval held_out.txt --dynamic
    """
    import json
    import signal

    import numpy as np
    if not files and not texts:
        raise click.UsageError("name FILES to evaluate, or strings with --text")
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    from charrnn import evaluate as E
    from charrnn.data import CorpusError
    tuned = [n for n, v in (("--dynamic-lr", dynamic_lr), ("--dynamic-decay", dynamic_decay),
                             ("--dynamic-segment", dynamic_segment)) if v is not None]
    if tuned and not dynamic:
        raise click.UsageError(f"{tuned[0]} tunes --dynamic: give --dynamic too")
    if dynamic and not files:
        raise click.UsageError("--dynamic scores FILES: name the files to evaluate")
    ck = load_checkpoint(resolve_checkpoint(checkpoint))
    if dynamic:
        from charrnn import dynamic as D
        try:
            rms = D.gradient_rms(ck)        # once, for every file
        except D.CannotAdapt as e:
            raise click.BadParameter(f"{ck.path}: {e}", param_hint="--dynamic") from None
        dyn = {"lr": dynamic_lr or D.LR, "decay": D.DECAY if dynamic_decay is None else dynamic_decay,
               "segment": dynamic_segment or D.SEGMENT}
    rows, all_losses, unknown_total, shown, dyn_losses = [], [], 0, [], []
    for path in files:
        try:
            ids, unknown, examples = E.encode_known(path, ck.vocab, encoding, stream_limit())
        except CorpusError as e:
            raise DataError(str(e)) from None
        except OSError as e:
            raise DataError(f"{path}: {e.strerror}") from None
        if unknown:
            click.echo(f"warning: {path}: {unknown} character(s) not in the model's vocabulary "
                       f"were skipped, e.g. {''.join(examples)!r}", err=True)
        losses = E.per_char_losses(ck, ids)
        rows.append(E.summarize(losses, unknown, "<stdin>" if path == "-" else path))
        all_losses.append(losses)
        if dynamic:
            adapted = D.dynamic_losses(ck, ids, rms=rms, **dyn)
            rows[-1]["dynamic"] = {**E.summarize(adapted), **dyn}
            dyn_losses.append(adapted)
        unknown_total += unknown
        if heatmap:
            shown.append((path, ck.vocab.decode(ids[1:heatmap_chars + 1]), losses[:heatmap_chars]))
    scored = []
    from charrnn.vocab import strip_bom
    for text in map(strip_bom, texts):
        ids, losses = E.score_text(ck, text)
        scored.append({"text": text, "chars": len(losses), "unknown": len(text) - len(ids),
                       "logprob": -float(losses.sum()) if len(losses) else 0.0,
                       "loss": float(losses.mean()) if len(losses) else None})
        if heatmap:
            shown.append((repr(text), ck.vocab.decode(ids), losses))
    ranked = sorted(scored, key=lambda r: -r["logprob"])
    total = E.summarize(np.concatenate(all_losses), unknown_total) if all_losses else None
    if dyn_losses:
        total["dynamic"] = {**E.summarize(np.concatenate(dyn_losses)), **dyn}
    if as_json:
        obj = {}
        if rows:
            obj["files"], obj["total"] = rows, total
        if ranked:
            obj["texts"] = [{"rank": k + 1, **r} for k, r in enumerate(ranked)]
        click.echo(json.dumps(_defined(obj), indent=2, allow_nan=False))
        return
    from charrnn.cli.ui import heatmap_text, stdout_console
    console = stdout_console()
    for table in _tables(rows, total, ranked, console.is_terminal):
        table.show(console)
    if heatmap:
        for name, text, losses in shown:
            console.print(f"[bold]{name}[/bold]" if console.is_terminal else name)
            console.print(heatmap_text(text, losses), soft_wrap=True)


def _defined(obj):
    """obj with every non-finite number (an undefined mean, an overflowing perplexity)
    replaced by None: JSON's null, never NaN or Infinity, which are not JSON."""
    import math
    if isinstance(obj, dict):
        return {k: _defined(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_defined(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _tables(rows, total, ranked, terminal):
    """eval's tables (ui.Grid). On a terminal numbers read well ("12,345", "-" for an
    undefined figure); elsewhere each cell is what a program parses: "12345", and an
    empty field for an undefined figure."""
    import math

    from charrnn.cli.ui import Grid

    def num(x, spec):
        if x is None or not math.isfinite(x):
            return "-" if terminal else ""
        return format(x, spec)
    count = (lambda n: f"{n:,}") if terminal else str
    tables = []
    if rows:
        t = Grid("loss per character", ("file", "chars", "skipped", "nats/char", "bits/char",
                                         "perplexity"), left=("file",), whole=("file",))
        for r in rows + ([{"file": "total", **total}] if total and len(rows) > 1 else []):
            t.add_row(r["file"], count(r["chars"]), count(r["unknown"]), num(r["loss"], ".4f"),
                      num(r["bpc"], ".4f"), num(r["perplexity"], ".3f"))
            if "dynamic" in r:      # eval --dynamic: the adapted figures under the static ones
                d = r["dynamic"]
                t.add_row(f"{r['file']} (dynamic)", count(d["chars"]), count(r["unknown"]),
                          num(d["loss"], ".4f"), num(d["bpc"], ".4f"), num(d["perplexity"], ".3f"))
        tables.append(t)
    if ranked:
        t = Grid("texts, likeliest first", ("rank", "text", "log P (nats)", "nats/char", "chars"),
                 left=("text",))
        for k, r in enumerate(ranked):
            t.add_row(str(k + 1), r["text"], num(r["logprob"], ".3f"), num(r["loss"], ".4f"),
                      str(r["chars"]))
        tables.append(t)
    return tables
