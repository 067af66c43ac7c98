"""charrnn train: options, the planner, run-folder guards, then the training loop."""
import os
import sys

import click

from charrnn import __version__
from charrnn.config import (CELLS, DEFAULT_LR, DEFAULT_PATIENCE, DEFAULT_SCHEDULE, DEFAULT_WARMUP,
                            DROPOUT_KINDS, DTYPES, OPTIMIZERS, SCHEDULES, train_defaults)
from charrnn.cli.common import (CONTEXT, AvgDecay, DataError, Duration, Patience, StopTraining,
                                     Warmup, finite_float, load_checkpoint, read_corpus,
                                     resolve_checkpoint, stream_limit_option)

DEFAULTS = {**train_defaults()[0], **train_defaults()[1]}

DEFAULT_STEPS = 3000


ARCH_OPTIONS = ("model", "hidden", "layers", "dropout", "dropout_kind", "wdrop", "dtype", "batch_size",
                "seq_len", "optimizer", "val_frac", "seed")
MIN_SECONDS = 5.0   # a --time budget below this cannot load the kernels and train


@click.command(context_settings=CONTEXT)
@click.argument("corpus", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("--model", type=click.Choice(CELLS), default="lstm", show_default=True, help="Cell type.")
@click.option("--hidden", type=click.IntRange(1, 8192), default=256, show_default=True,
              help="Hidden units per layer.")
@click.option("--layers", type=click.IntRange(1, 16), default=2, show_default=True, help="Stacked layers.")
@click.option("--dropout", type=finite_float(0), default=DEFAULTS["dropout"], show_default=True,
              help="Dropout probability, in [0, 1): with --dropout-kind locked, one mask per stream "
                   "and chunk on every layer's input above the first and on the top layer's output.")
@click.option("--dropout-kind", type=click.Choice(DROPOUT_KINDS), default=DEFAULTS["dropout_kind"],
              show_default=True,
              help="locked: one mask per stream for a whole --seq-len chunk (variational dropout), "
                   "between layers and before the output layer; step: a new mask at every time "
                   "step, between layers only (charrnn 0.x's --dropout).")
@click.option("--wdrop", type=finite_float(0), default=DEFAULTS["wdrop"], show_default=True,
              help="DropConnect on the recurrent weights, in [0, 1): each step drops this fraction "
                   "of every layer's Wh (one mask for the whole chunk and all streams).")
@click.option("--avg-decay", type=AvgDecay(), default=DEFAULTS["avg_decay"], show_default=True,
              help="Keep an exponential moving average of the weights with this decay, in (0, 1), "
                   "or 'off'. Validation, best.npz and sampling use the average; training "
                   "continues on the raw weights.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=32, show_default=True,
              help="Parallel text streams per step.")
@click.option("--seq-len", type=click.IntRange(1, 100_000), default=64, show_default=True,
              help="Time steps per step (truncated BPTT length).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adagrad", show_default=True,
              help="Update rule.")
@click.option("--lr", type=finite_float(0, lo_open=True), default=None,
              help="Peak learning rate  [default: adagrad 0.05, adam/rmsprop 0.002, sgd 1.0]")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=None,
              help="Learning-rate schedule over the run's --steps, --epochs or --time  "
                   "[default: wsd: warm-up, stable, then a linear decay over the last fifth]")
@click.option("--warmup", type=Warmup(), default=DEFAULT_WARMUP, show_default=True,
              help="Linear warm-up: a number of steps, or a fraction of the run (0.05).")
@click.option("--min-lr", type=finite_float(0), default=None,
              help="Rate a decaying schedule ends at  [default: --lr / 10]")
@click.option("--clip", type=finite_float(0), default=5.0, show_default=True,
              help="Clip the gradient to this global L2 norm (0 = off).")
@click.option("--steps", type=click.IntRange(0), default=None,
              help=f"Train up to this total step count (a resumed run continues to it)  "
                   f"[default: {DEFAULT_STEPS} unless --epochs or --time]")
@click.option("--epochs", type=finite_float(0, lo_open=True), default=None,
              help="Train up to this many passes over the training text.")
@click.option("--time", "seconds", type=Duration(), default=None,
              help="Train for this long: 90, 90s, 20m, 1h30m. Without model options, "
                   "plans the best model for this budget (see --plan).")
@click.option("--plan/--no-plan", "use_plan", default=None,
              help="Let the planner choose the model and training settings for the --time budget "
                   "(the options you give still win)  [default: on with --time]")
@click.option("--dry-run", is_flag=True,
              help="Print the settings (and the plan) the run would use, then exit without training.")
@click.option("--pause-at", default=None, metavar="STEP|DURATION",
              help="Stop early, evaluated and saved, at this step (or, in a --time run, after this "
                   "much training: 90s, 5m), keeping the schedule of the whole run; --resume "
                   "continues it as if it never stopped.")
@click.option("--patience", type=Patience(), default=DEFAULT_PATIENCE, show_default=True,
              help="Stop after K evaluations without a new best validation loss ('off': never).")
@click.option("--eval-every", type=click.IntRange(0), default=200, show_default=True,
              help="Evaluate on the validation text and save every K steps (0 = only at the end).")
@click.option("--val-frac", type=finite_float(0), default=0.1, show_default=True,
              help="Fraction of the text, at its end, held out for validation.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder  [default: checkpoints/<corpus>-<model>-<time>]")
@click.option("--resume", type=click.Path(), default=None,
              help="Continue from a checkpoint (or a run folder's latest.npz).")
@click.option("--seed", type=click.IntRange(0), default=1234, show_default=True, help="Random seed.")
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
              help="Floating-point precision.")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of the corpus.")
@click.option("--max-chars", type=click.IntRange(1), default=4_000_000_000, show_default=True,
              help="Refuse a corpus longer than this (an endless input such as /dev/zero stops here).")
@stream_limit_option
@click.option("--cache/--no-cache", "use_cache", default=True, show_default=True,
              help="Encode the corpus files once into the corpus cache and memory-map them "
                   "(see `charrnn cache`); later runs on the same files skip the encoding.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None,
              help="Threads for the matrix products and data-parallel shards  [default: all "
                   "cores]. On a machine busy with other work, --threads 1 keeps its speed where "
                   "two threads wait for each other (README, Performance).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--preview/--no-preview", default=True, show_default=True,
              help="Show a short sample at every evaluation.")
@click.pass_context
def train(ctx, corpus, model, hidden, layers, dropout, dropout_kind, wdrop, avg_decay, batch_size, seq_len, optimizer, lr, schedule,
          warmup, min_lr, clip, steps, epochs, seconds, use_plan, dry_run, pause_at, patience, eval_every, val_frac, out,
          resume, seed, dtype, encoding, max_chars, use_cache, threads, quiet, preview):
    """Train a character-level language model on CORPUS (files, or - for stdin).

    Writes checkpoints/<run>/latest.npz, best.npz (lowest validation loss) and
    log.jsonl. Ctrl-C saves and stops; --resume continues exactly. With --time
    and no model options, charrnn plans the model for the budget on this machine.

    \b
    Examples:
      charrnn train corpora/shakespeare.txt
      charrnn train corpora/shakespeare.txt --time 20m
      charrnn train my_texts/*.txt --model gru --hidden 512 --time 1h30m
      charrnn train input.txt --steps 10000 --resume checkpoints/input-lstm-20261123-101500
    """
    def given(name):
        return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE

    _check_train_options(given, ctx.params)
    if threads is not None:
        _set_threads(threads)
    from charrnn import runs
    ck = None
    if resume is not None:
        resume = resolve_checkpoint(resume, prefer="latest.npz")
        ck = load_checkpoint(resume)
        saved = {**ck.model_cfg.to_dict(), **ck.train_cfg.to_dict()}
        clash = [k for k in ARCH_OPTIONS if given(k) and saved.get(k) != ctx.params[k]]
        if clash:
            raise click.UsageError(
                f"--resume keeps the checkpoint's settings; drop {', '.join('--' + k.replace('_', '-') for k in clash)}")
        if use_plan:
            raise click.UsageError("--plan chooses a new model; it cannot be used with --resume")
        floor = min_lr if min_lr is not None else ck.train_cfg.min_lr
        if lr is not None and floor > lr:   # the schedule would decay upwards
            raise click.BadParameter(f"{lr:g} is below the run's --min-lr {floor:g}; give a lower "
                                     f"--min-lr too", param_hint="--lr")
        if steps is None and epochs is None and seconds is None:
            steps, epochs, seconds = _saved_bound(ck)
    elif steps is None and epochs is None and seconds is None:
        steps = DEFAULT_STEPS
    out = out or (os.path.dirname(os.path.abspath(resume)) if ck is not None
                  else runs.default_run_dir(corpus, model))
    _guard_run_folder(out, resume, ck)
    pause_at = _pause_point(pause_at, seconds is not None and steps is None and epochs is None)
    import contextlib
    # checked and locked before the corpus is read: a locked or unwritable folder fails at once
    with contextlib.nullcontext() if dry_run else runs.lock_run_dir(out):
        data = read_corpus(list(corpus), encoding, ck.vocab if ck else None, max_chars,
                           cache=use_cache and not dry_run)
        if len(data.vocab) < 2:
            raise DataError(f"{', '.join(corpus)}: only one distinct character; "
                            f"there is nothing to learn")
        from charrnn.config import ModelConfig, TrainConfig
        from charrnn.data import fingerprint as data_fingerprint
        fingerprint = data.fingerprint or data_fingerprint(data.ids)
        plan = None
        if ck is not None:
            mcfg = ck.model_cfg
            old = ck.train_cfg
            keep = {k: ctx.params[k] for k in ("schedule", "warmup", "min_lr", "clip", "patience", "avg_decay")
                    if given(k)}
            if given("avg_decay") and avg_decay is not None and ck.avg is None and not quiet:
                click.echo(f"{resume} has no weight average: starting one from its weights at step "
                           f"{ck.train_state['step']:,} (decay {avg_decay:g})", err=True)
            tcfg = TrainConfig(**{**old.to_dict(), "steps": steps, "epochs": epochs, "time": seconds,
                                  "lr": lr if lr is not None else old.lr,
                                  "eval_every": eval_every if given("eval_every") else old.eval_every, **keep})
            if ck.meta.get("fingerprint") not in (None, fingerprint):
                raise DataError(f"{', '.join(corpus)}: not the text this run was trained on "
                                f"({len(data.ids):,} chars now, {ck.meta.get('corpus_chars', '?'):,} then); "
                                f"resume with the same files, or start a new run")
        else:
            chosen = {k: ctx.params[k] for k in ctx.params if given(k)}
            if seconds is not None and use_plan is not False:
                from charrnn.planner import plan_run
                n_train = int((1.0 - val_frac) * len(data.ids))
                plan = plan_run(seconds, n_train, len(data.vocab), chosen, dtype=dtype,
                                log=None if quiet else lambda m: click.echo(m, err=True))
                chosen = {**plan.settings, **chosen}
            pick = lambda k, default: chosen.get(k, default)  # noqa: E731
            model, optimizer = pick("model", model), pick("optimizer", optimizer)
            lr = pick("lr", None) or DEFAULT_LR[optimizer]
            mcfg = ModelConfig(model=model, hidden=pick("hidden", hidden), layers=pick("layers", layers),
                               vocab_size=len(data.vocab), dropout=pick("dropout", dropout),
                               dropout_kind=pick("dropout_kind", dropout_kind), wdrop=pick("wdrop", wdrop))
            tcfg = TrainConfig(batch_size=pick("batch_size", batch_size), seq_len=pick("seq_len", seq_len),
                               optimizer=optimizer, lr=lr, clip=clip, steps=steps, epochs=epochs,
                               time=seconds, eval_every=pick("eval_every", eval_every), val_frac=val_frac,
                               seed=seed, dtype=dtype,
                               warmup=pick("warmup", warmup if given("warmup") or steps is None
                                            else float(min(warmup, max(1, steps // 10)))),
                               schedule=pick("schedule", schedule or DEFAULT_SCHEDULE[optimizer]),
                               min_lr=min_lr if min_lr is not None else lr / 10,
                               patience=pick("patience", patience), avg_decay=pick("avg_decay", avg_decay))
            if tcfg.min_lr > tcfg.lr:
                raise click.BadParameter(f"{tcfg.min_lr:g} is above the learning rate {tcfg.lr:g}",
                                         param_hint="--min-lr")
        from charrnn.data import CorpusError
        from charrnn.training import NonFiniteError, Trainer, run
        meta = {"corpus": [os.path.basename(c) if c != "-" else "<stdin>" for c in corpus],
                "corpus_chars": int(len(data.ids)), "corpus_bytes": int(data.nbytes),
                "fingerprint": fingerprint, "command": "charrnn " + " ".join(sys.argv[1:]),
                "version": __version__}
        if plan is not None:
            meta["plan"] = plan.to_dict()
        if dry_run:
            import json
            click.echo(json.dumps({"model": mcfg.to_dict(), "train": tcfg.to_dict(),
                                   "plan": meta.get("plan")}, indent=2))
            return
        _check_memory(mcfg, tcfg)
        try:
            trainer = Trainer(mcfg, tcfg, data.ids, data.vocab, meta, resume=ck)
        except CorpusError as e:
            raise DataError(str(e)) from None
        if plan is not None:    # the time spent planning counts against the budget
            seconds = max(1.0, seconds - plan.seconds_spent)
        from charrnn.cli.progress import TrainDisplay, summary
        display = TrainDisplay(quiet=quiet, preview=runs.preview_sampler() if preview else None)
        try:
            result = run(trainer, out, steps=steps, epochs=epochs, seconds=seconds,
                         eval_every=tcfg.eval_every, on_event=display, pause_at=pause_at)
        except NonFiniteError as e:
            display.on_done({})
            raise StopTraining(f"{e}; stopped without saving it, the last good checkpoints "
                               f"in {out} are kept (try a lower --lr or --clip)", 3) from None
        interrupted = result["signal"] is not None
        if not quiet:
            import shlex
            click.echo(summary(result, out, interrupted, " ".join(shlex.quote(c) for c in corpus)), err=True)
        if interrupted:
            import signal
            sys.exit(130 if result["signal"] == signal.SIGINT else 143)


def _set_threads(n):
    """Thread counts for every library that reads one, before any of them loads (the
    command imports Numba and the BLAS only after this)."""
    from charrnn.config import THREAD_VARIABLES
    os.environ.update({var: str(n) for var in THREAD_VARIABLES})


def _pause_point(value, by_time):
    """--pause-at as a step number, or as seconds of training in a time-bound run."""
    if value is None:
        return None
    if by_time:
        from charrnn.schedule import parse_duration
        try:
            return parse_duration(value)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--pause-at") from None
    try:
        step = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: a step number (a duration only in a --time run)",
                                 param_hint="--pause-at") from None
    if step < 1:
        raise click.BadParameter(f"{value!r}: must be a step number >= 1", param_hint="--pause-at")
    return step


def _check_memory(mcfg, tcfg):
    """Refuse, before allocating, a model this machine's memory cannot hold."""
    from charrnn import model as M
    from charrnn.checkpoint import OPTIM_SLOTS
    need = M.training_bytes(mcfg, tcfg.seq_len, tcfg.batch_size, tcfg.dtype, len(OPTIM_SLOTS[tcfg.optimizer]))
    have = M.available_bytes()
    if have is not None and need > have:
        raise DataError(f"this model needs about {need / 2**30:.1f} GiB to train "
                        f"({M.num_params(mcfg):,} parameters, B={tcfg.batch_size} T={tcfg.seq_len}), "
                        f"and {have / 2**30:.1f} GiB is available: lower --hidden, --layers or --batch-size")


def _guard_run_folder(out, resume, ck):
    """Never lose a run: a fresh run may not write into a folder holding one, and a run
    resumed from another checkpoint than the folder's latest.npz (its best.npz, say)
    may not overwrite a newer latest.npz there."""
    latest = os.path.join(out, "latest.npz")
    if ck is None:
        found = [n for n in ("latest.npz", "best.npz") if os.path.exists(os.path.join(out, n))]
        if found:
            raise DataError(f"{out}: already holds a run ({found[0]}); continue it with "
                            f"--resume {out}, or choose another --out")
        return
    if os.path.abspath(resume) == os.path.abspath(latest) or not os.path.isfile(latest):
        return
    from charrnn.checkpoint import CheckpointError, load
    try:
        theirs = load(latest).train_state["step"]
    except CheckpointError:
        theirs = None
    if theirs is None or theirs > ck.train_state["step"]:
        raise DataError(f"{latest} is newer (step {theirs}) than {resume} (step "
                        f"{ck.train_state['step']}); resuming here would overwrite it: give --out "
                        f"NEW_FOLDER to branch off from {os.path.basename(resume)}")


def _check_train_options(given, p):
    """Every check that needs no corpus, before one is read (it may be large)."""
    if sum(p[k] is not None for k in ("steps", "epochs", "seconds")) > 1:
        raise click.UsageError("give at most one of --steps, --epochs, --time")
    for name in ("dropout", "wdrop"):
        if not p[name] < 1:
            raise click.BadParameter(f"{p[name]:g} is not a probability below 1", param_hint=f"--{name}")
    if not p["val_frac"] < 1:
        raise click.BadParameter("must be below 1", param_hint="--val-frac")
    if p["seconds"] is not None and p["seconds"] < MIN_SECONDS:
        raise click.BadParameter(f"{p['seconds']:g}s is too short to train anything; "
                                 f"give at least {MIN_SECONDS:g}s", param_hint="--time")
    if p["use_plan"] and p["seconds"] is None:
        raise click.BadParameter("plans for a time budget: give --time too", param_hint="--plan")
    steps = p["steps"] if p["steps"] is not None else (
        DEFAULT_STEPS if p["epochs"] is None and p["seconds"] is None and p["resume"] is None else None)
    if steps is not None and p["warmup"] >= 1 and p["warmup"] >= steps > 0 and given("warmup"):
        raise click.BadParameter(f"{p['warmup']:g} warm-up steps do not fit in a run of {steps} steps",
                                 param_hint="--warmup")
    lr = p["lr"] if p["lr"] is not None else (DEFAULT_LR[p["optimizer"]] if given("optimizer") or
                                              p["resume"] is None else None)
    if p["min_lr"] is not None and lr is not None and p["min_lr"] > lr:
        raise click.BadParameter(f"{p['min_lr']:g} is above the learning rate {lr:g}", param_hint="--min-lr")


def _saved_bound(ck):
    """(steps, epochs, seconds) that continue a resumed run to the bound it was
    started with: the same final step or epoch, or what is left of its time budget."""
    t, ts = ck.train_cfg, ck.train_state
    horizon = ts.get("horizon") or {}
    if "seconds" in horizon:
        left = horizon["seconds"] - ts.get("elapsed", 0.0)
        if left <= 0:
            raise click.UsageError(f"this run used its whole --time budget "
                                   f"({horizon['seconds']:.0f} s); give --time, --steps or --epochs "
                                   f"to train further")
        return None, None, left
    if t.epochs is not None:
        return None, t.epochs, None
    return t.steps or DEFAULT_STEPS, None, None
