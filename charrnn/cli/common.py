"""What the commands share: errors, checkpoint and corpus helpers, option types."""
import math

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class DataError(click.ClickException):
    """Bad data (a corpus, a checkpoint): exit status 1."""
    exit_code = 1


class StopTraining(click.ClickException):
    def __init__(self, message, code):
        super().__init__(message)
        self.exit_code = code


def err(message: str):
    click.echo(f"error: {message}", err=True)


def resolve_checkpoint(path, prefer="best.npz"):
    """A checkpoint file from a file or a run folder (runs.run_checkpoint: its best, else
    latest; prefer="latest.npz" to resume), or the newest under ./checkpoints/."""
    from charrnn.runs import checkpoint_path
    if path is None:
        return newest_checkpoint()
    return checkpoint_path(path, resume=prefer == "latest.npz")


def newest_checkpoint(root="checkpoints"):
    """runs.newest_checkpoint, named on stderr."""
    from charrnn.runs import newest_checkpoint as newest
    path = newest(root)
    click.echo(f"using {path}", err=True)
    return path


def load_checkpoint(path):
    from charrnn.checkpoint import CheckpointError, load
    try:
        return load(path)
    except CheckpointError as e:
        raise DataError(str(e)) from None


def read_corpus(paths, encoding, vocab=None, max_chars=None, cache=False, max_stream_bytes=None):
    """data.read_corpus for a command: its errors as DataError (exit 1, naming the file);
    max_stream_bytes defaults to the command's --max-stream-bytes (`stream_limit_option`),
    else data.MAX_STREAM_BYTES."""
    from charrnn.data import MAX_CHARS, CorpusError, read_corpus as _read
    try:
        return _read(paths, encoding, vocab, max_chars or MAX_CHARS, cache=cache,
                     warn=lambda m: click.echo(f"warning: {m}", err=True),
                     max_stream_bytes=max_stream_bytes or stream_limit())
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


class AvgDecay(click.ParamType):
    """The weight average's decay, in (0, 1), or 'off'."""
    name = "DECAY|off"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, float):
            return value
        if str(value).lower() in ("off", "none", "0"):
            return None
        try:
            v = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a decay in (0, 1) (or 'off')", param, ctx)
        if not 0 < v < 1:
            self.fail(f"{value} is not in (0, 1): a decay such as 0.999 (or 'off')", param, ctx)
        return v


def checkpoint_option(f):
    return click.option("--checkpoint", "-c", type=click.Path(), default=None,
                        help="A checkpoint file or a run folder (its best.npz)  "
                             "[default: the newest under ./checkpoints/]")(f)


class ByteSize(click.ParamType):
    """A number of bytes: 500000000, 500M, 2G (K, M, G, T: powers of 1024)."""
    name = "bytes"
    UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        unit = text[-1:] if text[-1:] in self.UNITS else ""
        try:
            n = float(text[:len(text) - len(unit)])
        except ValueError:
            self.fail(f"{value!r} is not a size: give bytes, or 500M, 2G", param, ctx)
        if not math.isfinite(n) or n * self.UNITS[unit] < 1:
            self.fail(f"{value!r} is not a size of at least one byte", param, ctx)
        return int(n * self.UNITS[unit])


STREAM_LIMIT_KEY = "charrnn.max_stream_bytes"


def stream_limit_option(f):
    """--max-stream-bytes for a command that reads corpora: the bound on an input that
    is not a regular file (stdin, a FIFO, a device), which `read_corpus` and
    `stream_limit()` pick up without a parameter of the command's own."""
    def keep(ctx, param, value):
        ctx.meta[STREAM_LIMIT_KEY] = value
        return value
    return click.option(
        "--max-stream-bytes", type=ByteSize(), default=None, expose_value=False, callback=keep,
        show_default="1G",
        help="Refuse an input that is not a regular file (stdin, a FIFO, a device) after this "
             "many bytes: an endless one such as `yes |` stops here. A larger corpus: save it "
             "to a file. Sizes: 500M, 2G.")(f)


def stream_limit() -> int:
    """The running command's --max-stream-bytes, else data.MAX_STREAM_BYTES (1 GiB)."""
    ctx = click.get_current_context(silent=True)
    value = ctx.meta.get(STREAM_LIMIT_KEY) if ctx is not None else None
    if value is None:
        from charrnn.data import MAX_STREAM_BYTES
        value = MAX_STREAM_BYTES
    return value
