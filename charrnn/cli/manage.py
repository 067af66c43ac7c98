"""charrnn info, runs and plot."""
import os

import click

from charrnn.cli.common import CONTEXT, load_checkpoint, newest_checkpoint, resolve_checkpoint
from charrnn.errors import DataError


@click.command(context_settings=CONTEXT)
@click.argument("checkpoint", type=click.Path(), required=False)
def info(checkpoint):
    """Show what a checkpoint holds: the model, its training and how it was made.

    stdout: a table on a terminal, else "key<TAB>value" lines under a header.

    \b
    Examples:
      charrnn info checkpoints/shakespeare-lstm-20261123-101500
      charrnn info model.npz
    """
    path = resolve_checkpoint(checkpoint)
    ck = load_checkpoint(path)
    from charrnn.cli.ui import info_table, stdout_console
    info_table(ck, path).show(stdout_console())


@click.command(context_settings=CONTEXT)
@click.argument("folder", type=click.Path(file_okay=False), required=False)
@click.option("--root", type=click.Path(file_okay=False), default="checkpoints", show_default=True,
              help="Folder holding the run folders.")
def runs(folder, root):
    """List the training runs under ./checkpoints/ (or FOLDER) with their best
    validation loss. A sweep folder lists its trials, best first, with their state.
    stdout: a table on a terminal, else tab-separated lines with a header first.

    \b
    Examples:
      charrnn runs
      charrnn runs --root /data/models
      charrnn runs sweeps/shakespeare-1a2b3c4d
    """
    from charrnn.runs import list_runs
    from charrnn.sweep.sweep import is_sweep
    from charrnn.cli.ui import runs_table, stdout_console, sweep_table
    root = folder or root
    if is_sweep(root):
        trials = _sweep_trials(root)
        if not trials:
            raise DataError(f"{root}: a sweep with no trials recorded yet")
        sweep_table(trials, root.rstrip("/")).show(stdout_console())
        return
    found = list_runs(root)
    if not found:
        click.echo(f"no runs under {root}/", err=True)
        return
    runs_table(found, root).show(stdout_console())


@click.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(), required=False)
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Write the plot to this PNG file (needs matplotlib: pip install 'charrnn[png]').")
@click.option("--width", type=click.IntRange(20), default=None, help="Plot width in characters.")
@click.option("--height", type=click.IntRange(8), default=None, help="Plot height in lines.")
def plot(run, png, width, height):
    """Draw a run's training and validation loss curves in the terminal.

    RUN is a run folder (or its log.jsonl), or a sweep folder (the validation curves
    of its best 12 trials together); default: the newest run.

    \b
    Examples:
      charrnn plot
      charrnn plot checkpoints/shakespeare-lstm-20261123-101500
      charrnn plot checkpoints/shakespeare-lstm-20261123-101500 --png curves.png
    """
    from charrnn.cli.plotting import plot_terminal
    from charrnn.sweep.sweep import is_sweep
    if run is None:
        run = os.path.dirname(newest_checkpoint())
    if is_sweep(run):
        return _plot_sweep(run, png, width, height)
    log = run if run.endswith(".jsonl") else os.path.join(run, "log.jsonl")
    if not os.path.isfile(log):
        raise DataError(f"{run}: no log.jsonl (is it a run folder written by charrnn train?)")
    curves = _load_log(log)
    if not curves["step"]:
        raise DataError(f"{log}: no logged steps yet")
    if png:
        _write_png(curves, png, os.path.basename(os.path.dirname(os.path.abspath(log))))
        return
    click.echo(plot_terminal(curves, width, height,
                             title=os.path.basename(os.path.dirname(os.path.abspath(log)))))


def _plot_sweep(folder, png, width, height):
    """The validation curves of a sweep's trials together."""
    from charrnn.cli.plotting import plot_terminal
    curves = {}
    for t in _sweep_trials(folder)[:12]:
        log = os.path.join(folder, t.name, "log.jsonl")
        if os.path.isfile(log):
            c = _load_log(log)
            if c["val"]:
                curves[t.name] = c
    if not curves:
        raise DataError(f"{folder}: no trial has a validation loss yet")
    title = f"sweep {os.path.basename(os.path.abspath(folder))}: validation"
    if png:
        _write_png(curves, png, title)
        return
    click.echo(plot_terminal(curves, width, height, title=title))


def _sweep_trials(folder):
    """sweep.load_trials, its error (an unreadable sweep.jsonl, named) as a DataError."""
    from charrnn.sweep.sweep import SweepError, load_trials
    try:
        return load_trials(folder)
    except SweepError as e:
        raise DataError(str(e)) from None


def _load_log(log):
    """plotting.load_log; an unreadable log.jsonl is a DataError naming it."""
    from charrnn.cli.plotting import load_log
    try:
        return load_log(log)
    except OSError as e:
        raise DataError(f"{log}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise DataError(f"{log}: not a charrnn log (not UTF-8 text)") from None


def _write_png(curves, png, title):
    from charrnn.cli.plotting import plot_png
    try:
        plot_png(curves, png, title=title)
    except ImportError:
        raise DataError("--png needs matplotlib: pip install 'charrnn[png]'") from None
    except OSError as e:
        raise DataError(f"{png}: cannot write the plot ({e.strerror or e})") from None
    click.echo(f"wrote {png}", err=True)


@click.command(context_settings=CONTEXT)
@click.option("--clear", is_flag=True, help="Remove every cached corpus.")
def cache(clear):
    """List the corpus cache: corpora encoded once and memory-mapped by later runs.

    Its folder is $CHARRNN_CORPUS_CACHE, else ~/.cache/charrnn/corpora (or under
    $XDG_CACHE_HOME). An entry is used while its files' size and modification time
    are unchanged; `charrnn train --no-cache` skips it. stdout: a table on a terminal,
    else tab-separated lines with a header first and plain numbers.

    \b
    Examples:
      charrnn cache
      charrnn cache --clear
    """
    from charrnn import corpus_cache as K
    if clear:
        freed = K.clear()
        click.echo(f"removed {freed / 2**20:,.1f} MB from {K.folder()}", err=True)
        return
    found = K.entries()
    if not found:
        click.echo(f"no cached corpora in {K.folder()}", err=True)
        return
    import time

    from charrnn.cli.ui import Grid, stdout_console
    console = stdout_console()
    sep = "," if console.is_terminal else ""    # TSV: numbers a program parses
    t = Grid(f"cached corpora in {K.folder()}", ("corpus", "chars", "MB on disk", "encoded", "entry"),
             left=("corpus", "encoded", "entry"), whole=("corpus",))
    for e in found:
        t.add_row(" + ".join(s["path"] for s in e["sources"]), f"{e['chars']:{sep}}",
                  f"{e['size'] / 2**20:{sep}.1f}", time.strftime("%Y-%m-%d %H:%M", time.localtime(e["created"])),
                  os.path.basename(e["base"]))
    t.show(console)
