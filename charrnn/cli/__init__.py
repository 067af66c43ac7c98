"""The command line: the Click group and the entry point, which turns every failure
into one line on stderr. Everything that imports click, rich, tqdm or plotext lives
in this package: one module per command group (train.py, sample.py, ...), common.py
(shared option types), progress.py, ui.py, plotting.py and interactive.py. The
commands call the library (charrnn.api and below); heavy imports (numpy, numba)
happen inside them so `charrnn --help` is instant."""
import os
import sys

import click

from charrnn import __version__
from charrnn.cli import evaluate, export, manage, sample, serve, sweep, train
from charrnn.cli.common import CONTEXT, err
from charrnn.errors import CharrnnError

_debug = {"on": False}      # set by the group's --debug option, read when a command fails

def main(argv=None):
    """Entry point: runs the Click group, turning every failure into one line on
    stderr and an exit status (2 usage, 1 data, 3 non-finite loss, 130/143 signals).
    `charrnn --debug ...` or CHARRNN_DEBUG=1 shows tracebacks of unexpected errors.
    charrnn's own errors (errors.CharrnnError) are mapped to their exit status here."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _debug["on"] = False
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0") and not ({"-h", "--help", "-V", "--version"} & set(argv)):
        err("NUMBA_DISABLE_JIT is set: the kernels would run interpreted, far slower and rounding "
            "differently from the compiled ones (a different model); unset it to run charrnn")
        sys.exit(2)
    import signal

    from charrnn import kernels
    kernels.own_process()           # flush denormals for good: this process is ours
    if hasattr(signal, "SIGXFSZ"):  # a file-size limit: a failed write (named), not a kill
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if sys.stdout is None:          # started with stdout closed (>&-)
        if argv[:1] == ["train"]:
            sys.stdout = open(os.devnull, "w")
        elif not ({"-h", "--help", "-V", "--version"} & set(argv)) and argv:
            err("standard output is closed: redirect it to a file or a pipe")
            sys.exit(1)
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
    except CharrnnError as e:           # the API's errors: 2 usage, 1 bad data
        err(str(e))
        sys.exit(e.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        _quiet_broken_pipe()
    except UnicodeEncodeError as e:     # the user's environment, not charrnn
        err(f"the output encoding ({e.encoding}) cannot hold {e.object[e.start:e.end]!r}: "
            f"set PYTHONIOENCODING=utf-8 or use a UTF-8 locale")
        sys.exit(1)
    except MemoryError:
        err("out of memory: try a smaller model (--hidden, --layers) or --batch-size")
        sys.exit(1)
    except OSError as e:                # a full disk or output device, a failing file system
        where = f"{e.filename}: " if e.filename else "writing output: "
        err(f"{where}{e.strerror or e}")
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - the last line of defence for users
        if _debug["on"] or os.environ.get("CHARRNN_DEBUG") == "1":
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
    _debug["on"] = debug


for _command in (train.train, sample.sample, evaluate.eval_cmd, sample.complete, export.export,
                 manage.info, manage.runs, manage.plot, manage.cache, sweep.sweep, serve.serve):
    cli.add_command(_command)
