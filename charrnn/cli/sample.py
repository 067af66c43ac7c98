"""charrnn sample (one or many streams, interactive) and charrnn complete."""
import sys

import click

from charrnn.cli.common import (CONTEXT, checkpoint_option, finite_float, load_checkpoint,
                                     resolve_checkpoint)


@click.command(context_settings=CONTEXT)
@checkpoint_option
@click.option("--length", "-n", type=click.IntRange(0), default=1000, show_default=True,
              help="Characters generated per sample, after its prime (0 = endless, until "
                   "interrupted); fewer only where --stop ends it.")
@click.option("--temp", "-t", type=finite_float(0), default=0.8, show_default=True,
              help="Sampling temperature: lower is safer, higher is wilder; 0 = greedy.")
@click.option("--argmax", is_flag=True, help="Always take the likeliest character (same as --temp 0).")
@click.option("--top-k", type=click.IntRange(0), default=0, show_default=True,
              help="Sample only among the K likeliest characters (0 = all).")
@click.option("--top-p", type=finite_float(0, lo_open=True), default=1.0, show_default=True,
              help="Sample only among the likeliest characters holding this much probability.")
@click.option("--prime", "-p", default="",
              help="Text the model reads first; each sample starts with it (a leading byte-order "
                   "mark dropped).")
@click.option("--seed", type=click.IntRange(0), default=None, help="Random seed: same seed, same text.")
@click.option("--num", type=click.IntRange(1, 100_000), default=1, show_default=True,
              help="Number of samples, made together as parallel streams and written one after "
                   "another, with two newlines between consecutive samples.")
@click.option("--stop", default=None, help="End a sample where this string appears (not printed).")
@click.option("--interactive", "-i", is_flag=True,
              help="Read a line at a time, prime the model with it and continue it, until Ctrl-D.")
@click.option("--carry", is_flag=True,
              help="With --interactive: keep the model's state from line to line (one running "
                   "text) instead of starting each line afresh.")
def sample(checkpoint, length, temp, argmax, top_k, top_p, prime, seed, num, stop, interactive, carry):
    """Generate text from a trained model, streamed to stdout as it is made.

    Only the text goes to stdout, exactly: to a pipe or a file, each sample is
    the --prime followed by --length generated characters (fewer where --stop
    ends it), and --num samples are joined by two newlines ("\n\n"), with
    nothing after the last, so `--length 10` writes 10 characters. On a terminal
    a final newline is added when the text does not end with one. With
    --interactive, each input line gets its continuation followed by one newline
    (an empty one for a line skipped). Characters of --prime outside the model's
    vocabulary are an error.

    \b
    Examples:
      charrnn sample --temp 0.8
      charrnn sample -c checkpoints/shakespeare-lstm-20261123-101500 --prime "ROMEO:" -n 500
      charrnn sample --length 0 | head -c 300
      charrnn sample --num 5 --stop $'\\n\\n' --seed 7
      charrnn sample --interactive --length 200 --stop $'\\n\\n'
    """
    import os
    import signal
    # Numba colours its messages through colorama, whose exit handler then writes a colour
    # reset to a terminal's stdout: bytes that are not the text (set before Numba loads)
    os.environ.setdefault("NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING", "1")

    from charrnn.api import Model
    if top_p > 1:
        raise click.BadParameter("must be at most 1", param_hint="--top-p")
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)   # a closed reader ends us quietly, like `yes`
    from charrnn.vocab import strip_bom
    prime = strip_bom(prime)
    model = Model(load_checkpoint(resolve_checkpoint(checkpoint)))
    ck = model.checkpoint
    _check(model, prime=prime, length=length, temp=temp, top_k=top_k, top_p=top_p, stop=stop,
           n=num)
    if carry and not interactive:
        raise click.BadParameter("only with --interactive", param_hint="--carry")
    gen = model.sampler(1 if interactive else num, seed)
    if seed is None:    # so that a good sample can be made again
        click.echo(f"seed {gen.seed} (--seed {gen.seed} repeats this)", err=True)
    kw = dict(temp=0.0 if argmax else temp, top_k=top_k, top_p=top_p, stop=stop)
    if interactive:
        if prime or num != 1:
            raise click.UsageError("--interactive reads its primes from the input: drop --prime and --num")
        from charrnn.cli.interactive import session
        signal.signal(signal.SIGINT, signal.default_int_handler)
        session(gen, ck.vocab, length=length, carry=carry, **kw)
        return
    out = Output(sys.stdout)
    written = 0         # samples begun on stdout: each is its prime, then its text

    def begin_next():
        nonlocal written
        out.write(("\n\n" if written else "") + prime)
        written += 1
    try:
        for i, chunk in model.samples(gen, prime, length, **kw):
            while written <= i:
                begin_next()
            out.write(chunk)
            out.flush()
        while written < num:        # samples that stopped before their first character
            begin_next()
        out.end()
    except KeyboardInterrupt:
        out.end()
        sys.exit(130)


class Output:
    """stdout as `sample` promises it: the text exactly; on a terminal only, a final
    newline when the text does not end with one, so the prompt starts on its own line."""

    def __init__(self, stream):
        self.stream, self.last = stream, ""
        self.terminal = stream.isatty()

    def write(self, text):
        if text:
            self.stream.write(text)
            self.last = text[-1]

    def flush(self):
        self.stream.flush()

    def end(self):
        if self.terminal and self.last not in ("", "\n"):
            self.stream.write("\n")
        self.stream.flush()


def _check(model, **options):
    """The API's checks of sampling options (api.check_sample_options), reported as
    this command's usage errors, each naming its option."""
    from charrnn.api import check_sample_options
    from charrnn.errors import UsageError
    try:
        check_sample_options(model.checkpoint.vocab, names={"n": "--num"}, **options)
    except UsageError as e:
        flag = {"n": "--num"}.get(e.param, "--" + str(e.param).replace("_", "-"))
        raise click.BadParameter(e.message, param_hint=flag) from None


@click.command(context_settings=CONTEXT)
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

    stdout: a table on a terminal; otherwise tab-separated lines (rank,
    continuation with newlines and tabs escaped, probability), a header first;
    --json: a JSON list of {rank, text, probability}.

    \b
    Examples:
      charrnn complete "Hello, welcome to the"
      charrnn complete "ROMEO: I will" --words 10 --beam 16
      charrnn complete "to be or not to" --json
    """
    from charrnn.api import Model, unknown_chars
    from charrnn.errors import UsageError
    from charrnn.vocab import strip_bom
    text = strip_bom(text)
    model = Model(load_checkpoint(resolve_checkpoint(checkpoint)))
    try:
        unknown_chars(model.checkpoint.vocab, text, "TEXT")
    except UsageError as e:
        raise click.BadParameter(e.message, param_hint="TEXT") from None
    found = model.complete(text, k=words, beam=beam)
    if as_json:
        import json
        click.echo(json.dumps([{"rank": k + 1, "text": s, "probability": p}
                               for k, (s, p) in enumerate(found)], indent=2, allow_nan=False))
        return
    from charrnn.cli.ui import Grid, stdout_console
    console = stdout_console()
    g = Grid(f"after {text!r}", ("rank", "continuation", "probability"), left=("continuation",),
             whole=("continuation",))
    for k, (s, p) in enumerate(found):      # newlines and tabs shown escaped, as \n and \t
        shown = s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
        g.add_row(k + 1, shown, f"{p:.4%}" if console.is_terminal else f"{p:.6g}")
    g.show(console)
