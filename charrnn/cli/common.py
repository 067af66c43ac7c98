"""What the commands share: errors, checkpoint and corpus helpers, option types (whose
checks and messages are the library's: charrnn.options)."""
import contextlib

import click

from charrnn import options as O
from charrnn.errors import DataError, UsageError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def err(message: str):
    click.echo(f"error: {message}", err=True)


def usage_error(e: UsageError) -> click.UsageError:
    """The library's UsageError as the command reports it: naming its option (--min-lr)."""
    if e.param is None:
        return click.UsageError(e.message)
    return click.BadParameter(e.message, param_hint="--" + e.param.replace("_", "-"))


@contextlib.contextmanager
def api_usage_errors():
    """Report the API's usage errors as this command's (exit 2, naming the option)."""
    try:
        yield
    except UsageError as e:
        raise usage_error(e) from None


class _Checked(click.ParamType):
    """A Click type whose check is a parser of charrnn.options: the same words either way."""

    def parse(self, value):
        raise NotImplementedError

    def convert(self, value, param, ctx):
        try:
            return self.parse(value)
        except UsageError as e:
            self.fail(e.message, param, ctx)


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
    class FiniteFloat(_Checked):
        name = "float"

        def parse(self, value):
            return O.finite_float(value, lo, lo_open)
    return FiniteFloat()


class Duration(_Checked):
    """Seconds, from 90, 90s, 20m, 1h30m (schedule.parse_duration)."""
    name = "duration"
    parse = staticmethod(O.duration)


class Warmup(_Checked):
    """Warm-up: a whole number of steps (>= 1), or a fraction of the run in [0, 1)."""
    name = "steps|fraction"
    parse = staticmethod(O.warmup)


class Patience(_Checked):
    """A count of evaluations >= 1, or 'off'."""
    name = "K|off"
    parse = staticmethod(O.patience)


class AvgDecay(_Checked):
    """The weight average's decay, in (0, 1), or 'off'."""
    name = "DECAY|off"
    parse = staticmethod(O.avg_decay)


def checkpoint_option(f):
    return click.option("--checkpoint", "-c", type=click.Path(), default=None,
                        help="A checkpoint file or a run folder (its best.npz)  "
                             "[default: the newest under ./checkpoints/]")(f)


class ByteSize(_Checked):
    """A number of bytes: 500000000, 500M, 2G (K, M, G, T: powers of 1024)."""
    name = "bytes"
    parse = staticmethod(O.byte_size)


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
