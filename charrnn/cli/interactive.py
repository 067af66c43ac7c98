"""An interactive session: the model is loaded once, then each line typed primes it
and a continuation streams to stdout, until end of input (Ctrl-D).

Ctrl-C stops the continuation being written (or clears the line being typed) and
gives a new prompt; it never ends the session. On a terminal, lines are edited
and recalled with the standard library's readline, where Python has it, with the
history kept in ~/.cache/charrnn/history. When stdin is not a terminal, prompts are
read from it a line at a time, with no prompt shown: `printf 'ROMEO:\\nJULIET:\\n' |
charrnn sample --interactive` writes one continuation per line read.

Input lines are text as editors write it: the line end (LF or CRLF) and a leading
byte-order mark are not part of the prime. On stdout each line read gets its
continuation and one newline; a line skipped (a character outside the vocabulary,
bytes that are not text) gets just the newline when piped, so that with
`--stop $'\\n'` the n-th output line answers the n-th input line. A line longer
than MAX_LINE bytes ends the session with an error naming stdin: an input such as
/dev/zero has no line end to wait for.
"""
import os
import sys

from charrnn.errors import DataError
from charrnn.vocab import strip_bom

PROMPT = "> "
MAX_LINE = 1 << 20      # bytes of one piped input line


def _readline_history():
    """Line editing and history where readline exists; returns a function saving it."""
    try:
        import readline
    except ImportError:
        return lambda: None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "charrnn", "history")
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    readline.set_history_length(1000)

    def save():
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            readline.write_history_file(path)
        except OSError:
            pass
    return save


def session(gen, vocab, *, length, carry, out=None, err=None, **sample_kw):
    """Run the read-prime-continue loop with Generator `gen` until end of input.
    carry: keep the model's state from one line to the next (a running text); else
    every line starts from a fresh state. sample_kw go to gen.stream."""
    out, err = out or sys.stdout, err or sys.stderr
    tty = sys.stdin.isatty()
    save = _readline_history() if tty else (lambda: None)
    if tty:
        err.write("Type a line to prime the model; Ctrl-C stops a continuation, Ctrl-D ends.\n")
        err.flush()
    state = {"started": False}
    try:
        while True:
            try:            # Ctrl-C anywhere in a round: a new prompt, never the end
                try:
                    line = input(PROMPT) if tty else _piped_line(sys.stdin)
                except UnicodeDecodeError as e:
                    _skip(f"not valid {e.encoding} text, line skipped", tty, out, err)
                    continue
                if line is None:
                    break
                _continue_line(gen, vocab, strip_bom(line), carry, state, length, out, err,
                               sample_kw, tty)
            except KeyboardInterrupt:
                out.write("\n")
                out.flush()
            except EOFError:
                break
    finally:
        save()


def _piped_line(stdin) -> str | None:
    """The next line of piped input without its line end (LF or CRLF); None at the end.
    Reads at most MAX_LINE bytes of it (DataError beyond: no line end in sight)."""
    src = getattr(stdin, "buffer", None)
    raw = (src or stdin).readline(MAX_LINE + 1)
    if not raw:
        return None
    nl = b"\n" if isinstance(raw, bytes) else "\n"
    if len(raw) > MAX_LINE and not raw.endswith(nl):
        raise DataError(f"<stdin>: a line longer than {MAX_LINE:,} bytes; sample --interactive "
                        f"reads one prime per line (is the input text?)")
    if isinstance(raw, bytes):
        raw = raw.decode(getattr(stdin, "encoding", None) or "utf-8")
    if raw.endswith("\n"):
        raw = raw[:-2] if raw.endswith("\r\n") else raw[:-1]
    return raw


def _skip(why, tty, out, err):
    """A line that gets no continuation: a warning, and (piped) an empty record."""
    err.write(f"warning: {why}\n")
    err.flush()
    if not tty:
        out.write("\n")
        out.flush()


def _continue_line(gen, vocab, line, carry, state, length, out, err, sample_kw, tty=False):
    """Prime with one line and stream its continuation, ending it with a newline."""
    unknown = vocab.missing(line)
    if unknown:
        _skip(f"not in the model's vocabulary, line skipped: {''.join(unknown)!r}", tty, out, err)
        return
    if carry and state["started"]:  # the running text: what came before, a line end, the line
        nl = "\n" if vocab.index("\n") >= 0 else ""
        gen.prime(vocab.decode([gen.last]) + nl + line)
    else:
        gen.reset()
        gen.prime(line)
    state["started"] = True
    for chunk in gen.stream(length, **sample_kw):
        out.write(chunk)
        out.flush()
    out.write("\n")
    out.flush()
