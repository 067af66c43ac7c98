"""charrnn train: the options (defaults from config.TRAIN_OPTIONS), then charrnn.train()
with the command line's options, a progress display, and the signals handled."""
import os
import sys

import click

from charrnn.cli.common import (CONTEXT, STREAM_LIMIT_KEY, AvgDecay, Duration, Patience, Warmup,
                                api_usage_errors, finite_float, stream_limit_option)
from charrnn.config import DEFAULT_STEPS, TRAIN_OPTIONS as DEFAULTS
from charrnn.options import CHOICES, INT_RANGES


def _int(name):
    return click.IntRange(*INT_RANGES[name])


def _choice(name):
    return click.Choice(CHOICES[name])


@click.command(context_settings=CONTEXT)
@click.argument("corpus", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("--model", type=_choice("model"), default=DEFAULTS["model"], show_default=True, help="Cell type.")
@click.option("--hidden", type=_int("hidden"), default=DEFAULTS["hidden"], show_default=True,
              help="Hidden units per layer.")
@click.option("--layers", type=_int("layers"), default=DEFAULTS["layers"], show_default=True, help="Stacked layers.")
@click.option("--dropout", type=finite_float(0), default=DEFAULTS["dropout"], show_default=True,
              help="Dropout probability, in [0, 1): with --dropout-kind locked, one mask per stream "
                   "and chunk on every layer's input above the first and on the top layer's output.")
@click.option("--dropout-kind", type=_choice("dropout_kind"), default=DEFAULTS["dropout_kind"],
              show_default=True,
              help="locked: one mask per stream for a whole --seq-len chunk (variational dropout), "
                   "between layers and before the output layer; step: a new mask at every time "
                   "step, between layers only (charrnn 0.x's --dropout).")
@click.option("--wdrop", type=finite_float(0), default=DEFAULTS["wdrop"], show_default=True,
              help="DropConnect on the recurrent weights, in [0, 1): each step drops this fraction "
                   "of every layer's Wh (one mask for the whole chunk and all streams).")
@click.option("--avg-decay", type=AvgDecay(), default=DEFAULTS["avg_decay"], show_default=True,
              help="Keep an exponential moving average of the weights with this decay, in (0, 1), "
                   "or 'off'; at step n the decay is min(DECAY, (1+n)/(10+n)), so 0.999 holds "
                   "from step 8,990 and a shorter run averages over about its last ninth. Validation, "
                   "best.npz and sampling use the average; training continues on the raw weights.")
@click.option("--batch-size", type=_int("batch_size"), default=DEFAULTS["batch_size"], show_default=True,
              help="Parallel text streams per step.")
@click.option("--seq-len", type=_int("seq_len"), default=DEFAULTS["seq_len"], show_default=True,
              help="Time steps per step (truncated BPTT length).")
@click.option("--optimizer", type=_choice("optimizer"), default=DEFAULTS["optimizer"], show_default=True,
              help="Update rule.")
@click.option("--lr", type=finite_float(0, lo_open=True), default=None,
              help="Peak learning rate  [default: adagrad 0.05, or with 32 or more streams in a run of "
                   "1600 steps or more 0.11 (gru), of 2000 or more 0.08 (lstm, rnn); adam/rmsprop "
                   "0.002, sgd 1.0]")
@click.option("--schedule", type=_choice("schedule"), default=None,
              help="Learning-rate schedule over the run's --steps, --epochs or --time  "
                   "[default: wsd: warm-up, stable, then a linear decay over the last fifth]")
@click.option("--warmup", type=Warmup(), default=None,
              help="Linear warm-up: a number of steps, or a fraction of the run (0.05)  [default: "
                   "100 steps, at most a tenth of a --steps run; 400 where adagrad takes 0.08 or 0.11]")
@click.option("--min-lr", type=finite_float(0), default=None,
              help="Rate a decaying schedule ends at  [default: --lr / 10]")
@click.option("--clip", type=finite_float(0), default=None,
              help="Clip the gradient to this global L2 norm (0 = off)  [default: 5; 1 where a gru "
                   "takes adagrad's 0.11]")
@click.option("--steps", type=_int("steps"), default=None,
              help=f"Train up to this total step count (a resumed run continues to it)  "
                   f"[default: {DEFAULT_STEPS} unless --epochs or --time]")
@click.option("--epochs", type=finite_float(0, lo_open=True), default=None,
              help="Train up to this many passes over the training text.")
@click.option("--time", type=Duration(), default=None,
              help="Train for this long: 90, 90s, 20m, 1h30m. Without model options, "
                   "plans the best model for this budget (see --plan).")
@click.option("--plan/--no-plan", default=None,
              help="Let the planner choose the model and training settings for the --time budget "
                   "(the options you give still win)  [default: on with --time]")
@click.option("--dry-run", is_flag=True,
              help="Print the settings (and the plan) the run would use, then exit without training.")
@click.option("--pause-at", default=None, metavar="STEP|DURATION",
              help="Stop early, evaluated and saved, at this step (or, in a --time run, after this "
                   "much training: 90s, 5m), keeping the schedule of the whole run; --resume "
                   "continues it as if it never stopped.")
@click.option("--patience", type=Patience(), default=DEFAULTS["patience"], show_default=True,
              help="Stop after K evaluations without a new best validation loss ('off': never).")
@click.option("--eval-every", type=_int("eval_every"), default=DEFAULTS["eval_every"], show_default=True,
              help="Evaluate on the validation text and save every K steps (0 = only at the end).")
@click.option("--val-frac", type=finite_float(0), default=DEFAULTS["val_frac"], show_default=True,
              help="Fraction of the text, at its end, held out for validation.")
@click.option("--val-max-chars", type=_int("val_max_chars"), default=DEFAULTS["val_max_chars"],
              show_default=True,
              help="Validate on at most this many characters, the start of the held-out text, so "
                   "that evaluating a large corpus stays cheap; smaller splits are read whole.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder  [default: checkpoints/<corpus>-<model>-<time>]")
@click.option("--resume", type=click.Path(), default=None,
              help="Continue from a checkpoint (or a run folder's latest.npz).")
@click.option("--seed", type=_int("seed"), default=DEFAULTS["seed"], show_default=True, help="Random seed.")
@click.option("--dtype", type=_choice("dtype"), default=DEFAULTS["dtype"], show_default=True,
              help="Floating-point precision.")
@click.option("--encoding", default=DEFAULTS["encoding"], show_default=True, help="Text encoding of the corpus.")
@click.option("--max-chars", type=_int("max_chars"), default=DEFAULTS["max_chars"], show_default=True,
              help="Refuse a corpus longer than this (an endless input such as /dev/zero stops here).")
@stream_limit_option
@click.option("--cache/--no-cache", default=DEFAULTS["cache"], show_default=True,
              help="Encode the corpus files once into the corpus cache and memory-map them "
                   "(see `charrnn cache`); later runs on the same files skip the encoding.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None,
              help="Threads for the matrix products and data-parallel shards  [default: all "
                   "cores]. On a machine busy with other work, --threads 1 keeps its speed where "
                   "two threads wait for each other (README, Performance).")
@click.option("--mpi-timeout", type=finite_float(0, lo_open=True), default=None, metavar="SECONDS",
              help="Under mpiexec: how long a process waits for the others before stopping "
                   "them all with an error (a process that hung or died)  [default: 120]")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--preview/--no-preview", default=True, show_default=True,
              help="Show a short sample at every evaluation.")
@click.pass_context
def train(ctx, corpus, out, dry_run, threads, mpi_timeout, quiet, preview, **params):
    """Train a character-level language model on CORPUS (files, or - for stdin).

    Writes checkpoints/<run>/latest.npz, best.npz (lowest validation loss) and
    log.jsonl. Ctrl-C saves and stops; --resume continues exactly. With --time
    and no model options, charrnn plans the model for the budget on this machine.

    \b
    Examples:
      charrnn train corpora/shakespeare.txt
      charrnn train corpora/shakespeare.txt --time 20m
      charrnn train my_texts/*.txt --model gru --hidden 512 --time 1h30m
      charrnn train input.txt --steps 10000 --resume checkpoints/input-gru-20261123-101500
    """
    # the options given on the command line: charrnn.train() fills in the rest, from the
    # same table as this command's defaults
    options = given_options(ctx, params)
    from charrnn import distributed
    if distributed.env_size() > 1:    # one of mpiexec's processes: rank 0 alone shows anything
        quiet = quiet or distributed.env_rank() > 0
        if threads is None:             # one thread a process: run a process a core
            threads = 1
    if threads is not None:
        _set_threads(threads)
    from charrnn import api, runs
    from charrnn.cli.progress import TrainDisplay, summary
    display = TrainDisplay(quiet=quiet, preview=runs.preview_sampler() if preview and not quiet else None)

    def on_event(kind, info):
        if kind == "warning":
            click.echo(f"warning: {info['message']}", err=True)
        elif kind == "log":
            if not quiet:
                click.echo(info["message"], err=True)
        else:
            display(kind, info)
    with api_usage_errors():
        try:
            run = api.train(list(corpus), out, callback=on_event, handle_signals=True, dry_run=dry_run,
                            meta={"command": "charrnn " + " ".join(sys.argv[1:])},
                            mpi_timeout=mpi_timeout, **options)
        except Exception as e:
            if distributed.quiet(e):    # rank 0 reports it for every process
                sys.exit(e.exit_code)
            raise
        finally:
            display.on_done({})
    if distributed.env_rank() > 0:
        s = run.summary
        if s is not None and s["signal"] is not None:
            import signal
            sys.exit(130 if s["signal"] == signal.SIGINT else 143)
        return
    if dry_run:
        import json
        click.echo(json.dumps(run.settings, indent=2))
        return
    s = run.summary
    interrupted = s["signal"] is not None
    if not quiet:
        import shlex
        result = {"step": s["steps"], "best_val": s["best_val"], "elapsed": s["elapsed"],
                  "reason": s["reason"], "patience": run.settings["train"]["patience"]}
        click.echo(summary(result, run.folder, interrupted, " ".join(shlex.quote(c) for c in corpus)),
                   err=True)
    if interrupted:
        import signal
        sys.exit(130 if s["signal"] == signal.SIGINT else 143)


def given_options(ctx, params) -> dict:
    """The train options (config.TRAIN_OPTIONS) given on the command line, by
    charrnn.train()'s keywords (the parameters' names), as Click converted them;
    --max-stream-bytes too."""
    def given(name):
        return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    options = {k: v for k, v in params.items() if k in DEFAULTS and given(k)}
    if ctx.meta.get(STREAM_LIMIT_KEY) is not None:
        options["max_stream_bytes"] = ctx.meta[STREAM_LIMIT_KEY]
    return options


def _set_threads(n):
    """Thread counts for every library that reads one, before any of them loads (the
    command imports Numba and the BLAS only after this)."""
    from charrnn.config import THREAD_VARIABLES
    os.environ.update({var: str(n) for var in THREAD_VARIABLES})
