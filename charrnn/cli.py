"""The command line: parse, validate, call the library, print. Heavy imports
(numpy, numba) happen inside the commands so that `charrnn --help` is instant."""
import math
import os
import sys

import click

from charrnn import __version__
from charrnn.config import (CELLS, DEFAULT_LR, DEFAULT_PATIENCE, DEFAULT_SCHEDULE, DEFAULT_WARMUP,
                            DTYPES, OPTIMIZERS, SCHEDULES)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEFAULT_STEPS = 3000


class DataError(click.ClickException):
    """Bad data (a corpus, a checkpoint): exit status 1."""
    exit_code = 1


class StopTraining(click.ClickException):
    def __init__(self, message, code):
        super().__init__(message)
        self.exit_code = code


def err(message: str):
    click.echo(f"error: {message}", err=True)


def main(argv=None):
    """Entry point: runs the Click group, turning every failure into one line on
    stderr and an exit status (2 usage, 1 data, 3 non-finite loss, 130/143 signals).
    --debug or CHARRNN_DEBUG=1 shows tracebacks of unexpected errors."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("CHARRNN_DEBUG") == "1" or "--debug" in argv
    try:
        cli.main(args=argv, prog_name="charrnn", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        err(e.format_message().rstrip(".") + hint)
        sys.exit(2)
    except click.ClickException as e:
        err(e.format_message())
        sys.exit(e.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        _quiet_broken_pipe()
    except Exception as e:  # noqa: BLE001 - the last line of defence for users
        if debug:
            raise
        err(f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)")
        sys.exit(1)
    sys.exit(0)


def _quiet_broken_pipe():
    # the reader went away: leave silently, as a filter killed by SIGPIPE would
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError:
        pass
    sys.exit(141)


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="charrnn")
@click.option("--debug", is_flag=True, help="Show full tracebacks of unexpected errors.")
def cli(debug):
    """Learn to write like any text, one character at a time.

    Train a character-level RNN, LSTM or GRU on a text file, then sample new
    text from it or measure how well it predicts other text. Everything runs on
    the CPU, compiled with Numba.

    \b
    Examples:
      charrnn train corpora/shakespeare.txt
      charrnn sample --temp 0.8 | head -c 500
      charrnn eval notes.txt
      charrnn eval --text "the apple and pear salad" --text "the apple and pair salad"
    """


# ------------------------------------------------------------------ shared helpers

def resolve_checkpoint(path, prefer="best.npz"):
    """A checkpoint file from a file or a run folder (its best, else latest)."""
    if path is None:
        return newest_checkpoint()
    if os.path.isdir(path):
        for name in (prefer, "latest.npz", "best.npz"):
            candidate = os.path.join(path, name)
            if os.path.isfile(candidate):
                return candidate
        raise DataError(f"{path}: no best.npz or latest.npz in this folder")
    if not os.path.exists(path):
        raise DataError(f"{path}: no such checkpoint")
    return path


def newest_checkpoint(root="checkpoints"):
    """The most recently written best.npz (else latest.npz) under ./checkpoints/."""
    found = []
    if os.path.isdir(root):
        for run in os.listdir(root):
            for name in ("best.npz", "latest.npz"):
                p = os.path.join(root, run, name)
                if os.path.isfile(p):
                    found.append((os.path.getmtime(p), p))
                    break
    if not found:
        raise DataError(f"no checkpoint found under ./{root}/; train one with 'charrnn train FILE' "
                        f"or name one with --checkpoint")
    path = max(found)[1]
    click.echo(f"using {path}", err=True)
    return path


def load_checkpoint(path):
    from charrnn.checkpoint import CheckpointError, load
    try:
        return load(path)
    except CheckpointError as e:
        raise DataError(str(e)) from None


def read_corpus(paths, encoding, vocab=None, max_chars=None):
    from charrnn.data import MAX_CHARS, CorpusError, read_corpus as _read
    try:
        return _read(paths, encoding, vocab, max_chars or MAX_CHARS)
    except CorpusError as e:
        raise DataError(str(e)) from None


def finite_float(lo=None, lo_open=False):
    """A float option that rejects nan/inf and (optionally) values below lo."""
    class FiniteFloat(click.ParamType):
        name = "float"

        def convert(self, value, param, ctx):
            try:
                v = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number", param, ctx)
            if not math.isfinite(v):
                self.fail(f"{value!r} is not a finite number", param, ctx)
            if lo is not None and (v < lo or (lo_open and v == lo)):
                self.fail(f"{value} must be {'>' if lo_open else '>='} {lo}", param, ctx)
            return v
    return FiniteFloat()


class Duration(click.ParamType):
    """Seconds, from 90, 90s, 20m, 1h30m (schedule.parse_duration)."""
    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        from charrnn.schedule import parse_duration
        try:
            return parse_duration(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class Warmup(click.ParamType):
    """Warm-up: a whole number of steps (>= 1), or a fraction of the run in [0, 1)."""
    name = "steps|fraction"

    def convert(self, value, param, ctx):
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a step count or a fraction", param, ctx)
        if not math.isfinite(v) or v < 0 or (v >= 1 and v != int(v)):
            self.fail(f"{value!r}: give a whole number of steps, or a fraction in [0, 1)", param, ctx)
        return v


class Patience(click.ParamType):
    """A count of evaluations >= 1, or 'off'."""
    name = "K|off"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int):
            return value
        if str(value).lower() in ("off", "none"):
            return None
        try:
            v = int(value)
        except ValueError:
            self.fail(f"{value!r} is not a number of evaluations (or 'off')", param, ctx)
        if v < 1:
            self.fail(f"{v} must be at least 1 (or 'off' to never stop early)", param, ctx)
        return v


# ------------------------------------------------------------------ train

ARCH_OPTIONS = ("model", "hidden", "layers", "dropout", "dtype", "batch_size", "seq_len",
                "optimizer", "val_frac", "seed")
MIN_SECONDS = 5.0   # a --time budget below this cannot load the kernels and train


@cli.command(context_settings=CONTEXT)
@click.argument("corpus", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("--model", type=click.Choice(CELLS), default="lstm", show_default=True, help="Cell type.")
@click.option("--hidden", type=click.IntRange(1, 8192), default=256, show_default=True,
              help="Hidden units per layer.")
@click.option("--layers", type=click.IntRange(1, 16), default=2, show_default=True, help="Stacked layers.")
@click.option("--dropout", type=finite_float(0), default=0.0, show_default=True,
              help="Dropout between stacked layers (0 = off), in [0, 1).")
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
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--preview/--no-preview", default=True, show_default=True,
              help="Show a short sample at every evaluation.")
@click.pass_context
def train(ctx, corpus, model, hidden, layers, dropout, batch_size, seq_len, optimizer, lr, schedule,
          warmup, min_lr, clip, steps, epochs, seconds, use_plan, dry_run, patience, eval_every, val_frac, out,
          resume, seed, dtype, encoding, max_chars, quiet, preview):
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
        if steps is None and epochs is None and seconds is None:
            steps, epochs, seconds = _saved_bound(ck)
    elif steps is None and epochs is None and seconds is None:
        steps = DEFAULT_STEPS
    out = out or (os.path.dirname(os.path.abspath(resume)) if ck is not None
                  else runs.default_run_dir(corpus, model))
    _guard_run_folder(out, resume, ck)
    import contextlib
    # checked and locked before the corpus is read: a locked or unwritable folder fails at once
    with contextlib.nullcontext() if dry_run else runs.lock_run_dir(out):
        data = read_corpus(list(corpus), encoding, ck.vocab if ck else None, max_chars)
        if len(data.vocab) < 2:
            raise DataError(f"{', '.join(corpus)}: only one distinct character; "
                            f"there is nothing to learn")
        from charrnn.config import ModelConfig, TrainConfig
        fingerprint = runs.fingerprint(data.ids)
        plan = None
        if ck is not None:
            mcfg = ck.model_cfg
            old = ck.train_cfg
            keep = {k: ctx.params[k] for k in ("schedule", "warmup", "min_lr", "clip", "patience") if given(k)}
            tcfg = TrainConfig(**{**old.to_dict(), "steps": steps, "epochs": epochs, "time": seconds,
                                  "lr": lr if lr is not None else old.lr, "eval_every": eval_every, **keep})
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
                               vocab_size=len(data.vocab), dropout=pick("dropout", dropout))
            tcfg = TrainConfig(batch_size=pick("batch_size", batch_size), seq_len=pick("seq_len", seq_len),
                               optimizer=optimizer, lr=lr, clip=clip, steps=steps, epochs=epochs,
                               time=seconds, eval_every=pick("eval_every", eval_every), val_frac=val_frac,
                               seed=seed, dtype=dtype,
                               warmup=pick("warmup", warmup if given("warmup") or steps is None
                                            else float(min(warmup, max(1, steps // 10)))),
                               schedule=pick("schedule", schedule or DEFAULT_SCHEDULE[optimizer]),
                               min_lr=min_lr if min_lr is not None else lr / 10,
                               patience=pick("patience", patience))
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
        try:
            trainer = Trainer(mcfg, tcfg, data.ids, data.vocab, meta, resume=ck)
        except CorpusError as e:
            raise DataError(str(e)) from None
        if plan is not None:    # the time spent planning counts against the budget
            seconds = max(1.0, seconds - plan.seconds_spent)
        from charrnn.progress import TrainDisplay, summary
        display = TrainDisplay(quiet=quiet, preview=runs.preview_sampler() if preview else None)
        try:
            result = run(trainer, out, steps=steps, epochs=epochs, seconds=seconds,
                         eval_every=tcfg.eval_every, on_event=display)
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
    if not p["dropout"] < 1:
        raise click.BadParameter("must be below 1", param_hint="--dropout")
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


# ------------------------------------------------------------------ sample

def checkpoint_option(f):
    return click.option("--checkpoint", "-c", type=click.Path(), default=None,
                        help="A checkpoint file or a run folder (its best.npz)  "
                             "[default: the newest under ./checkpoints/]")(f)


@cli.command(context_settings=CONTEXT)
@checkpoint_option
@click.option("--length", "-n", type=click.IntRange(0), default=1000, show_default=True,
              help="Characters per sample (0 = endless, until interrupted).")
@click.option("--temp", "-t", type=finite_float(0), default=0.8, show_default=True,
              help="Sampling temperature: lower is safer, higher is wilder; 0 = greedy.")
@click.option("--argmax", is_flag=True, help="Always take the likeliest character (same as --temp 0).")
@click.option("--top-k", type=click.IntRange(0), default=0, show_default=True,
              help="Sample only among the K likeliest characters (0 = all).")
@click.option("--top-p", type=finite_float(0, lo_open=True), default=1.0, show_default=True,
              help="Sample only among the likeliest characters holding this much probability.")
@click.option("--prime", "-p", default="", help="Text the model reads first; the output starts with it.")
@click.option("--seed", type=click.IntRange(0), default=None, help="Random seed: same seed, same text.")
@click.option("--num", type=click.IntRange(1, 100_000), default=1, show_default=True,
              help="Number of samples, made together as parallel streams and written one after "
                   "another, separated by a blank line.")
@click.option("--stop", default=None, help="End a sample where this string appears (not printed).")
@click.option("--interactive", "-i", is_flag=True,
              help="Read a line at a time, prime the model with it and continue it, until Ctrl-D.")
@click.option("--carry", is_flag=True,
              help="With --interactive: keep the model's state from line to line (one running "
                   "text) instead of starting each line afresh.")
def sample(checkpoint, length, temp, argmax, top_k, top_p, prime, seed, num, stop, interactive, carry):
    """Generate text from a trained model, streamed to stdout as it is made.

    Only the generated text goes to stdout, so it pipes cleanly into other tools.
    Characters of --prime outside the model's vocabulary are an error.

    \b
    Examples:
      charrnn sample --temp 0.8
      charrnn sample -c checkpoints/shakespeare-lstm-20261123-101500 --prime "ROMEO:" -n 500
      charrnn sample --length 0 | head -c 300
      charrnn sample --num 5 --stop $'\\n\\n' --seed 7
      charrnn sample --interactive --length 200 --stop $'\\n\\n'
    """
    import signal
    if top_p > 1:
        raise click.BadParameter("must be at most 1", param_hint="--top-p")
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)   # a closed reader ends us quietly, like `yes`
    ck = load_checkpoint(resolve_checkpoint(checkpoint))
    from charrnn.sampling import Many
    unknown = ck.vocab.missing(prime)
    if unknown:
        raise click.BadParameter(f"characters not in the model's vocabulary: {''.join(unknown)!r}",
                                 param_hint="--prime")
    if stop == "":
        raise click.BadParameter("must not be empty", param_hint="--stop")
    if carry and not interactive:
        raise click.BadParameter("only with --interactive", param_hint="--carry")
    if length == 0 and num > 1:
        raise click.BadParameter("0 (endless) needs --num 1: the next sample would never come",
                                 param_hint="--length")
    gen = Many(ck.model_cfg, ck.params, ck.vocab, 1 if interactive else num, seed=seed)
    kw = dict(temp=0.0 if argmax else temp, top_k=top_k, top_p=top_p, stop=stop)
    if interactive:
        if prime or num != 1:
            raise click.UsageError("--interactive reads its primes from the input: drop --prime and --num")
        from charrnn.interactive import session
        signal.signal(signal.SIGINT, signal.default_int_handler)
        session(gen, ck.vocab, length=length, carry=carry, **kw)
        return
    out = sys.stdout
    written = 0         # samples begun on stdout: each is its prime, then its text

    def begin_next():
        nonlocal written
        out.write(("\n\n" if written else "") + prime)
        written += 1
    try:
        gen.reset()
        gen.prime(prime)
        for i, chunk in gen.samples(length, **kw):
            while written <= i:
                begin_next()
            out.write(chunk)
            out.flush()
        while written < num:        # samples that stopped before their first character
            begin_next()
        out.write("\n")
        out.flush()
    except KeyboardInterrupt:
        out.write("\n")
        out.flush()
        sys.exit(130)


# ------------------------------------------------------------------ eval

@cli.command("eval", context_settings=CONTEXT)
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


# ------------------------------------------------------------------ complete

@cli.command(context_settings=CONTEXT)
@click.argument("text")
@checkpoint_option
@click.option("--words", "-k", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="How many continuations to show.")
@click.option("--beam", "-w", type=click.IntRange(1, 1000), default=8, show_default=True,
              help="Beam width: unfinished strings kept at each length (1 = greedy).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def complete(text, checkpoint, words, beam, as_json):
    """Autocomplete: the likeliest next words after TEXT, with their probabilities.

    Each continuation runs up to the next word boundary (a space or punctuation);
    its probability is exact: the product of the model's probabilities of its
    characters and of a boundary after them. Found by beam search.

    \b
    Examples:
      charrnn complete "Hello, welcome to the"
      charrnn complete "ROMEO: I will" --words 10 --beam 16
      charrnn complete "to be or not to" --json
    """
    ck = load_checkpoint(resolve_checkpoint(checkpoint))
    unknown = ck.vocab.missing(text)
    if unknown:
        raise click.BadParameter(f"characters not in the model's vocabulary: {''.join(unknown)!r}",
                                 param_hint="TEXT")
    from charrnn.complete import complete as run_complete
    found = run_complete(ck, text, words=words, beam=beam)
    if as_json:
        import json
        click.echo(json.dumps([{"rank": k + 1, "text": s, "probability": p}
                               for k, (s, p) in enumerate(found)], indent=2))
        return
    from charrnn.ui import Grid, stdout_console
    console = stdout_console()
    g = Grid(f"after {text!r}", ("rank", "continuation", "probability"), left=("continuation",),
             whole=("continuation",))
    for k, (s, p) in enumerate(found):      # newlines and tabs shown escaped, as \n and \t
        shown = s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
        g.add_row(k + 1, shown, f"{p:.4%}" if console.is_terminal else f"{p:.6g}")
    g.show(console)


# ------------------------------------------------------------------ export

@cli.command(context_settings=CONTEXT)
@click.argument("checkpoint", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True,
              help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True,
              help="File to write.")
def export(checkpoint, fmt, output):
    """Export a model to run elsewhere: ONNX, one step per call (see README).

    Needs the onnx extra: pip install "charrnn[onnx]".

    \b
    Examples:
      charrnn export checkpoints/shakespeare-lstm-20261123-101500 -o model.onnx
      charrnn export model.npz --format onnx -o model.onnx
    """
    from charrnn.export import ExportError, export_onnx
    ck = load_checkpoint(resolve_checkpoint(checkpoint))
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise DataError(f"{output}: cannot write here (no such folder, or permission denied)")
    try:
        export_onnx(ck, output)
    except ExportError as e:
        raise DataError(str(e)) from None
    except OSError as e:
        raise DataError(f"{output}: {e.strerror}") from None
    click.echo(f"wrote {output} ({os.path.getsize(output):,} bytes)", err=True)


# ------------------------------------------------------------------ info, runs, plot

@cli.command(context_settings=CONTEXT)
@click.argument("checkpoint", type=click.Path(), required=False)
def info(checkpoint):
    """Show what a checkpoint holds: the model, its training and how it was made.

    \b
    Examples:
      charrnn info checkpoints/shakespeare-lstm-20261123-101500
      charrnn info model.npz
    """
    path = resolve_checkpoint(checkpoint)
    ck = load_checkpoint(path)
    from charrnn.ui import info_table, stdout_console
    info_table(ck, path).show(stdout_console())


@cli.command(context_settings=CONTEXT)
@click.option("--root", type=click.Path(file_okay=False), default="checkpoints", show_default=True,
              help="Folder holding the run folders.")
def runs(root):
    """List the training runs under ./checkpoints/ with their best validation loss.

    \b
    Examples:
      charrnn runs
      charrnn runs --root /data/models
    """
    from charrnn.runs import list_runs
    from charrnn.ui import runs_table, stdout_console
    found = list_runs(root)
    if not found:
        click.echo(f"no runs under {root}/", err=True)
        return
    runs_table(found, root).show(stdout_console())


@cli.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(), required=False)
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Write the plot to this PNG file (needs matplotlib: pip install 'charrnn[png]').")
@click.option("--width", type=click.IntRange(20), default=None, help="Plot width in characters.")
@click.option("--height", type=click.IntRange(8), default=None, help="Plot height in lines.")
def plot(run, png, width, height):
    """Draw a run's training and validation loss curves in the terminal.

    RUN is a run folder (or its log.jsonl); default: the newest run.

    \b
    Examples:
      charrnn plot
      charrnn plot checkpoints/shakespeare-lstm-20261123-101500
      charrnn plot checkpoints/shakespeare-lstm-20261123-101500 --png curves.png
    """
    from charrnn.plotting import load_log, plot_png, plot_terminal
    if run is None:
        run = os.path.dirname(newest_checkpoint())
    log = run if run.endswith(".jsonl") else os.path.join(run, "log.jsonl")
    if not os.path.isfile(log):
        raise DataError(f"{run}: no log.jsonl (is it a run folder written by charrnn train?)")
    curves = load_log(log)
    if not curves["step"]:
        raise DataError(f"{log}: no logged steps yet")
    if png:
        try:
            plot_png(curves, png, title=os.path.basename(os.path.dirname(os.path.abspath(log))))
        except ImportError:
            raise DataError("--png needs matplotlib: pip install 'charrnn[png]'") from None
        click.echo(f"wrote {png}", err=True)
        return
    click.echo(plot_terminal(curves, width, height,
                             title=os.path.basename(os.path.dirname(os.path.abspath(log)))))
