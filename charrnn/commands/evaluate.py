"""charrnn eval: exact losses of files and strings."""

import click

from charrnn.commands.common import (CONTEXT, DataError, checkpoint_option, load_checkpoint,
                                     resolve_checkpoint)


@click.command("eval", context_settings=CONTEXT)
@click.argument("files", nargs=-1, type=click.Path(allow_dash=True))
@checkpoint_option
@click.option("--text", "texts", multiple=True, help="Score this string (repeatable); ranks them.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--heatmap", is_flag=True, help="Print the text coloured by the model's surprise.")
@click.option("--heatmap-chars", type=click.IntRange(1), default=3000, show_default=True,
              help="Characters of each file shown by --heatmap.")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of the files.")
def eval_cmd(files, checkpoint, texts, as_json, heatmap, heatmap_chars, encoding):
    """Measure how well a model predicts text: loss, bits per char, perplexity.

    Every character is scored exactly, with the model's state carried through
    the whole file. Characters outside the model's vocabulary are skipped,
    counted and reported.

    \b
    Examples:
      charrnn eval notes.txt more.txt
      cat notes.txt | charrnn eval - --json
      charrnn eval --text "the apple and pear salad" --text "the apple and pair salad"
      charrnn eval notes.txt --heatmap
    """
    import json
    import signal

    import numpy as np
    if not files and not texts:
        raise click.UsageError("name FILES to evaluate, or strings with --text")
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    from charrnn import evaluate as E
    from charrnn.data import CorpusError
    ck = load_checkpoint(resolve_checkpoint(checkpoint))
    rows, all_losses, unknown_total, shown = [], [], 0, []
    for path in files:
        try:
            ids, unknown, examples = E.encode_known(path, ck.vocab, encoding)
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
        unknown_total += unknown
        if heatmap:
            shown.append((path, ck.vocab.decode(ids[1:heatmap_chars + 1]), losses[:heatmap_chars]))
    scored = []
    for text in texts:
        ids, losses = E.score_text(ck, text)
        scored.append({"text": text, "chars": len(losses), "unknown": len(text) - len(ids),
                       "logprob": -float(losses.sum()), "loss": float(losses.mean()) if len(losses) else float("nan")})
        if heatmap:
            shown.append((repr(text), ck.vocab.decode(ids), losses))
    ranked = sorted(scored, key=lambda r: -r["logprob"])
    total = E.summarize(np.concatenate(all_losses), unknown_total) if all_losses else None
    if as_json:
        obj = {}
        if rows:
            obj["files"], obj["total"] = rows, total
        if ranked:
            obj["texts"] = [{"rank": k + 1, **r} for k, r in enumerate(ranked)]
        click.echo(json.dumps(obj, indent=2))
        return
    from charrnn.ui import eval_tables, heatmap_text, stdout_console
    console = stdout_console()
    for table in eval_tables(rows, total, ranked):
        table.show(console)
    if heatmap:
        for name, text, losses in shown:
            console.print(f"[bold]{name}[/bold]" if console.is_terminal else name)
            console.print(heatmap_text(text, losses), soft_wrap=True)
