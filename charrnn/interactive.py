"""An interactive session: the model is loaded once, then each line typed primes it
and a continuation streams to stdout, until end of input (Ctrl-D).

Ctrl-C stops the continuation being written (or clears the line being typed) and
gives a new prompt; it never ends the session. On a terminal, lines are edited
and recalled with the standard library's readline, where Python has it, with the
history kept in ~/.cache/charrnn/history. When stdin is not a terminal, prompts are
read from it a line at a time, with no prompt shown: `printf 'ROMEO:\\nJULIET:\\n' |
charrnn sample --interactive` writes one continuation per line read.
"""
import os
import sys

PROMPT = "> "


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
                line = input(PROMPT) if tty else sys.stdin.readline()
                if not tty:
                    if line == "":
                        break
                    line = line.rstrip("\n")
                _continue_line(gen, vocab, line, carry, state, length, out, err, sample_kw)
            except KeyboardInterrupt:
                out.write("\n")
                out.flush()
            except EOFError:
                break
    finally:
        save()


def _continue_line(gen, vocab, line, carry, state, length, out, err, sample_kw):
    """Prime with one line and stream its continuation, ending it with a newline."""
    unknown = vocab.missing(line)
    if unknown:
        err.write(f"warning: not in the model's vocabulary, line skipped: {''.join(unknown)!r}\n")
        err.flush()
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
