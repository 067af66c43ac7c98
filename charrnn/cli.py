"""The command line: parse, validate, call the library, print. Heavy imports
(numpy, numba) happen inside the commands so that `charrnn --help` is instant."""
import math
import os
import sys

import click

from charrnn import __version__
from charrnn.config import CELLS, DEFAULT_LR, DTYPES, OPTIMIZERS

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


def read_corpus(paths, encoding, vocab=None):
    from charrnn.data import CorpusError, read_corpus as _read
    try:
        return _read(paths, encoding, vocab)
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


# ------------------------------------------------------------------ train

ARCH_OPTIONS = ("model", "hidden", "layers", "dropout", "dtype", "batch_size", "seq_len",
                "optimizer", "val_frac", "seed")


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
              help="Learning rate  [default: adagrad 0.1, adam/rmsprop 0.002, sgd 1.0]")
@click.option("--clip", type=finite_float(0), default=5.0, show_default=True,
              help="Clip the gradient to this global L2 norm (0 = off).")
@click.option("--steps", type=click.IntRange(0), default=None,
              help=f"Train up to this total step count (a resumed run continues to it)  "
                   f"[default: {DEFAULT_STEPS} unless --epochs or --time]")
@click.option("--epochs", type=finite_float(0, lo_open=True), default=None,
              help="Train up to this many passes over the training text.")
@click.option("--time", "seconds", type=finite_float(0, lo_open=True), default=None,
              help="Train for this many seconds.")
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
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--preview/--no-preview", default=True, show_default=True,
              help="Show a short sample at every evaluation.")
@click.pass_context
def train(ctx, corpus, model, hidden, layers, dropout, batch_size, seq_len, optimizer, lr, clip,
          steps, epochs, seconds, eval_every, val_frac, out, resume, seed, dtype, encoding, quiet,
          preview):
    """Train a character-level language model on CORPUS (files, or - for stdin).

    Writes checkpoints/<run>/latest.npz, best.npz (lowest validation loss) and
    log.jsonl. Ctrl-C saves and stops; --resume continues exactly.

    \b
    Examples:
      charrnn train corpora/shakespeare.txt
      charrnn train my_texts/*.txt --model gru --hidden 512 --time 600
      charrnn train input.txt --steps 10000 --resume checkpoints/input-lstm-20261123-101500
    """
    if sum(v is not None for v in (steps, epochs, seconds)) > 1:
        raise click.UsageError("give at most one of --steps, --epochs, --time")
    if not dropout < 1:
        raise click.BadParameter("must be below 1", param_hint="--dropout")
    if not val_frac < 1:
        raise click.BadParameter("must be below 1", param_hint="--val-frac")
    from charrnn import runs

    ck = None
    if resume is not None:
        ck = load_checkpoint(resolve_checkpoint(resume, prefer="latest.npz"))
        given = {k for k in ARCH_OPTIONS
                 if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
        saved = {**ck.model_cfg.to_dict(), **ck.train_cfg.to_dict()}
        clash = [k for k in sorted(given) if saved.get(k) != locals()[k]]
        if clash:
            raise click.UsageError(
                f"--resume keeps the checkpoint's settings; drop {', '.join('--' + k.replace('_', '-') for k in clash)}")
    if steps is None and epochs is None and seconds is None:
        steps = DEFAULT_STEPS if ck is None else ck.train_cfg.steps or DEFAULT_STEPS
    data = read_corpus(list(corpus), encoding, ck.vocab if ck else None)
    if len(data.vocab) < 2:
        raise DataError(f"{', '.join(corpus)}: only one distinct character; "
                        f"there is nothing to learn")
    from charrnn.config import ModelConfig, TrainConfig
    fingerprint = runs.fingerprint(data.ids)
    if ck is not None:
        mcfg = ck.model_cfg
        old = ck.train_cfg
        tcfg = TrainConfig(**{**old.to_dict(), "steps": steps, "epochs": epochs, "time": seconds,
                              "clip": clip if ctx.get_parameter_source("clip") == click.core.ParameterSource.COMMANDLINE else old.clip,
                              "lr": lr if lr is not None else old.lr, "eval_every": eval_every})
        if ck.meta.get("fingerprint") not in (None, fingerprint):
            raise DataError(f"{', '.join(corpus)}: not the text this run was trained on "
                            f"({len(data.ids):,} chars now, {ck.meta.get('corpus_chars', '?'):,} then); "
                            f"resume with the same files, or start a new run")
        out = out or os.path.dirname(os.path.abspath(resolve_checkpoint(resume, prefer="latest.npz")))
    else:
        mcfg = ModelConfig(model=model, hidden=hidden, layers=layers, vocab_size=len(data.vocab),
                           dropout=dropout)
        tcfg = TrainConfig(batch_size=batch_size, seq_len=seq_len, optimizer=optimizer,
                           lr=lr if lr is not None else DEFAULT_LR[optimizer], clip=clip,
                           steps=steps, epochs=epochs, time=seconds, eval_every=eval_every,
                           val_frac=val_frac, seed=seed, dtype=dtype)
        out = out or runs.default_run_dir(corpus, model)
    from charrnn.data import CorpusError
    from charrnn.training import NonFiniteError, Trainer, run
    meta = {"corpus": [os.path.basename(c) if c != "-" else "<stdin>" for c in corpus],
            "corpus_chars": int(len(data.ids)), "corpus_bytes": int(data.nbytes),
            "fingerprint": fingerprint, "command": "charrnn " + " ".join(sys.argv[1:]),
            "version": __version__}
    try:
        trainer = Trainer(mcfg, tcfg, data.ids, data.vocab, meta, resume=ck)
    except CorpusError as e:
        raise DataError(str(e)) from None
    from charrnn.progress import TrainDisplay, summary
    with runs.lock_run_dir(out):
        display = TrainDisplay(quiet=quiet, preview=runs.preview_sampler() if preview else None)
        try:
            result = run(trainer, out, steps=steps, epochs=epochs, seconds=seconds,
                         eval_every=eval_every, on_event=display)
        except NonFiniteError as e:
            display.on_done({})
            raise StopTraining(f"{e}; stopped without saving it, the last good checkpoints "
                               f"in {out} are kept (try a lower --lr or --clip)", 3) from None
    interrupted = result["signal"] is not None
    if not quiet:
        click.echo(summary(result, out, interrupted), err=True)
    if interrupted:
        import signal
        sys.exit(130 if result["signal"] == signal.SIGINT else 143)
