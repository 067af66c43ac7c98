"""charrnn sweep: many training runs over a grid of settings, locally or on Dask."""
import os
import signal
import sys

import click

from charrnn.cli.common import CONTEXT, Duration, read_corpus
from charrnn.cli.train import train as _train
from charrnn.errors import DataError

# train's options that a sweep sets itself, for each trial: never given to a sweep
SWEEP_SETS = {"corpus", "out", "resume", "steps", "epochs", "time", "pause_at", "dry_run",
              "plan", "quiet", "preview", "threads"}
# train's options that are no hyper-parameter: a sweep takes them as fixed values only
NEVER_GRIDDED = {"encoding", "max_chars", "max_stream_bytes", "val_frac", "cache"}


class _AsGiven(click.ParamType):
    """Train's own type, to check a value as train would; the value is kept as the user
    spelled it, to be passed on to each trial's command line."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name

    def convert(self, value, param, ctx):
        self.inner.convert(value, param, ctx)
        return value

    def get_metavar(self, *args, **kw):
        return self.inner.get_metavar(*args, **kw)

    def shell_complete(self, ctx, param, incomplete):
        return self.inner.shell_complete(ctx, param, incomplete)


def _spelling(opt) -> str:
    return next(o for o in opt.opts if o.startswith("--"))


def _train_options():
    """train's options a sweep passes on to every trial ([click.Option], in train's order),
    read from the train command itself: an option added to train is a sweep option too."""
    return [p for p in _train.params if isinstance(p, click.Option) and p.name not in SWEEP_SETS
            and p.nargs == 1 and any(o.startswith("--") for o in p.opts)]


def grid_keys() -> list[str]:
    """The keys --grid takes: train's options that take a value, spelled as train does."""
    return [_spelling(p)[2:] for p in _train_options() if not p.is_flag and p.name not in NEVER_GRIDDED]


class SweepCommand(click.Command):
    """sweep's own options, then (under their own heading in --help) train's, added from the
    train command: a value given is the same for every trial."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        own = {p.name for p in self.params} | {o for p in self.params for o in p.opts + p.secondary_opts}
        for opt in _train_options():
            if opt.name in own or set(opt.opts + opt.secondary_opts) & own:
                continue        # sweep's own option of that name wins (--seed, --encoding, ...)
            shown = opt.show_default and opt.default is not None and not callable(opt.default)
            default = ("on" if opt.default else "off") if opt.is_flag and shown else opt.default
            decls = ["/".join([_spelling(opt)] + opt.secondary_opts)] if opt.secondary_opts else \
                [o for o in opt.opts]
            copy = click.Option(decls + [opt.name], is_flag=opt.is_flag or None, default=None,
                                multiple=opt.multiple, metavar=opt.metavar,
                                help=(opt.help or "") + (f"  [train's default: {default}]" if shown else ""),
                                type=None if opt.is_flag else _AsGiven(opt.type))
            copy.from_train = True
            self.params.append(copy)

    def format_options(self, ctx, formatter):
        rows = {False: [], True: []}
        for p in self.get_params(ctx):
            record = p.get_help_record(ctx)
            if record is not None:
                rows[getattr(p, "from_train", False)].append(record)
        with formatter.section("Options"):
            formatter.write_dl(rows[False])
        if rows[True]:
            with formatter.section("Train's options: each the same for every trial (vary one "
                                   "with --grid KEY=V1,V2)"):
                formatter.write_dl(rows[True])


def fixed_argv(ctx) -> list[str]:
    """The train options given to this sweep, as each trial's command line spells them."""
    argv = []
    for p in ctx.command.params:
        if not getattr(p, "from_train", False):
            continue
        if ctx.get_parameter_source(p.name) != click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[p.name]
        if p.is_flag:
            argv.append(p.opts[0] if value else p.secondary_opts[0])
        else:
            for v in (value if p.multiple else [value]):
                argv += [_spelling(p), str(v)]
    return argv


@click.command(cls=SweepCommand, context_settings=CONTEXT)
@click.argument("corpus", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--grid", "grid_items", multiple=True, metavar="KEY=V1,V2,...",
              help="Values of one train option to try (repeat for more options; every "
                   "combination is a trial). Keys: train's options that take a value: "
                   + " ".join(grid_keys()) + ".")
@click.option("--random", "random_n", type=click.IntRange(1), default=None,
              help="Train only this many combinations of the grid, drawn at random (--seed).")
@click.option("--time", "--budget", "seconds", type=Duration(), default=None,
              help="Each trial's training time: 90s, 5m, 1h  [default: 5m unless --steps]")
@click.option("--steps", type=click.IntRange(1), default=None, help="Each trial's step count instead.")
@click.option("--halving", is_flag=True,
              help="Successive halving: all trials train a first slice of the budget, the best "
                   "half continue from their checkpoints, and so on to one full-budget trial.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Sweep folder  [default: sweeps/<corpus>-<digest of the sweep>, so the same "
                   "command continues the same sweep]")
@click.option("--workers", type=click.IntRange(1, 1024), default=None,
              help="Trials at once on the local pool, one thread each  [default: the cores]")
@click.option("--scheduler", default=None, envvar="DASK_SCHEDULER_ADDRESS", metavar="ADDRESS",
              help="Run the trials on this Dask cluster (tcp://host:8786; needs charrnn[dask]) "
                   "[env: DASK_SCHEDULER_ADDRESS]")
@click.option("--ship/--no-ship", default=True, show_default=True,
              help="With --scheduler: send the corpus to every worker once (--no-ship: the "
                   "workers read the same path, on a file system they share).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seed of the --random draw (each trial's own --seed is train's unless gridded).")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of the corpus.")
@click.option("--quiet", "-q", is_flag=True, help="No live table on stderr; only the result.")
@click.pass_context
def sweep(ctx, corpus, grid_items, random_n, seconds, steps, halving, out, workers, scheduler, ship,
          seed, encoding, quiet, **_fixed):
    """Train one run per combination of settings and rank them by validation loss.

    Every trial is an ordinary run folder inside the sweep folder (sample, plot or
    resume it like any run). Ctrl-C saves the running trials; the same command
    continues the sweep, without redoing finished trials. Any of train's options
    (--model gru, --dropout 0.2, ...) is the same for every trial, checked as train
    checks it; --grid varies one. CORPUS must be regular files: each trial reads it.

    stdout: the trials ranked, best first, as a table on a terminal, else
    tab-separated lines with a header (runs and eval's rule).

    \b
    Examples:
      charrnn sweep corpora/shakespeare.txt --grid hidden=128,256 --grid dropout=0,0.2 --time 5m
      charrnn sweep input.txt --grid lr=0.02,0.05,0.1 --grid hidden=256,512 --halving --time 10m
      charrnn sweep input.txt --grid hidden=256,512 --steps 2000 --scheduler tcp://10.0.0.5:8786
      charrnn sweep input.txt --model gru --dropout 0.1 --grid hidden=256,512 --steps 2000
    """
    from charrnn.sweep import sweep as S
    if seconds is not None and steps is not None:
        raise click.UsageError("give one of --time and --steps")
    if scheduler and workers:
        raise click.UsageError("--workers sizes the local pool; a Dask cluster's size is its workers'")
    bound, budget = ("steps", steps) if steps is not None else ("time", seconds or 300.0)
    try:
        grid = S.parse_grid(grid_items, grid_keys())
        points = S.expand(grid, random_n, seed)
        rungs = S.rung_points(len(points), budget, halving, bound == "time")
    except S.SweepError as e:
        raise click.UsageError(str(e)) from None
    fixed = fixed_argv(ctx)
    both = [k for k in grid if f"--{k}" in fixed]
    if both:
        raise click.UsageError(f"--{both[0]} is given both as a fixed value and in --grid: "
                               f"list all its values in --grid")
    fixed += ["--encoding", encoding]
    paths = [os.path.abspath(c) for c in corpus]
    for path in paths:      # each trial reads the corpus again: a pipe or a device cannot be
        from charrnn.data import is_stream
        if is_stream(path):
            raise DataError(f"{path}: not a regular file; every trial of a sweep reads the corpus "
                            f"again: save it to a file and name the file")
    _check_trial(paths, {}, fixed, bound, budget, "")       # the fixed options alone, first
    for settings in points:
        _check_trial(paths, settings, fixed, bound, budget, f"trial {S.trial_name(settings)}: ")
    spec = {"corpus": paths, "grid": grid, "random": random_n, "seed": seed, "bound": bound,
            "budget": budget, "halving": halving, "encoding": encoding}
    if fixed[:-2]:      # only when given: the folder of a sweep without them is unchanged
        spec["fixed"] = fixed[:-2]
    out = out or os.path.join("sweeps", f"{_stem(paths[0])}-{S.spec_id(spec)}")
    data = read_corpus(paths, encoding, cache=True)     # a bad corpus fails before any trial
    if len(data.vocab) < 2:
        raise DataError(f"{', '.join(corpus)}: only one distinct character; there is nothing to learn")
    del data
    from charrnn.sweep import executors as X
    try:
        pool = X.DaskCluster(scheduler, ship=ship) if scheduler else X.LocalPool(workers)
    except X.ClusterError as e:
        raise DataError(str(e)) from None
    try:
        ledger = S.Ledger(out, spec)
        trials = ledger.open([S.Trial(S.trial_name(s), s) for s in points])
    except S.SweepError as e:
        pool.close()
        raise DataError(str(e)) from None
    except OSError as e:
        pool.close()
        raise DataError(f"{out}: cannot write the sweep folder ({e.strerror})") from None
    from charrnn.cli.progress import SweepDisplay
    from charrnn.cli.ui import sweep_table
    display = SweepDisplay(trials, out, quiet)
    if not quiet:
        click.echo(f"sweep of {len(trials)} trial(s) in {out}/ on the {pool.where}; each "
                   + (f"{budget:,} steps" if bound == "steps" else f"{budget:g} s")
                   + (f", successive halving over {len(rungs)} rungs" if len(rungs) > 1 else ""), err=True)
    try:
        interrupted = _run(trials, rungs, pool, ledger, display, paths, fixed, bound, budget)
    except S.SweepError as e:      # the ledger could not be written
        display.close()
        raise DataError(str(e)) from None
    display.close()
    from charrnn.cli.ui import stdout_console
    sweep_table(trials, out).show(stdout_console())
    if interrupted:
        click.echo(f"interrupted: running trials were saved; run the same command to continue "
                   f"(--out {out})", err=True)
        sys.exit(130)
    if all(t.state == "failed" for t in trials):
        raise DataError(f"every trial failed; the first: {trials[0].error}")


def _run(trials, rungs, pool, ledger, display, paths, fixed, bound, budget) -> bool:
    """Train the rungs in order; True if a stop signal ended it early."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from charrnn.sweep import sweep as S
    from charrnn.sweep.trial import run_trial
    stopped = []

    def on_signal(signum, frame):
        if not stopped:
            stopped.append(signum)
            pool.request_stop()
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    payload = None
    try:
        payload = pool.corpus_payload(paths)
        n = len(trials)
        for r, point in enumerate(rungs):
            chosen = S.select(trials, r, n)
            todo = [t for t in chosen if t.rung < r and t.state != "done"]
            futures = {}
            for t in todo:
                task = {"name": t.name, "folder": os.path.abspath(os.path.join(ledger.folder, t.name)),
                        "corpus": paths, "corpus_payload": payload, "args": S.settings_argv(t.settings),
                        "fixed": fixed, "bound": bound, "budget": budget, "pause_at": point}
                futures[pool.executor.submit(run_trial, task, pool.stop)] = t
                t.state, t.error = "running", None
            ledger.save(trials)
            while futures:
                done, _ = wait(list(futures), timeout=1.0, return_when=FIRST_COMPLETED)
                for f in done:
                    t = futures.pop(f)
                    _record(t, f, r)
                    ledger.save(trials)
                display.update()
            if stopped:
                return True
        for t in trials:
            if t.state == "paused":
                t.state = "pruned"
        ledger.save(trials)
        return False
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        pool.close()


def _record(t, future, rung):
    try:
        res = future.result()
    except Exception as e:  # noqa: BLE001 - a lost worker fails its trial, not the sweep
        t.state, t.error = "failed", f"{type(e).__name__}: {e}"[:300]
        return
    t.state = res["state"] if res["state"] != "queued" else "interrupted"
    t.error = res["error"]
    for k in ("step", "best_val", "elapsed"):
        if res.get(k) is not None:
            setattr(t, k, res[k])
    if t.state in ("paused", "done"):
        t.rung = rung


def _check_trial(paths, settings, fixed, bound, budget, label):
    """A trial's train options (its settings and the fixed ones), parsed and checked as
    train would, before any trial runs; a usage error starts with `label`."""
    from charrnn.cli.common import usage_error
    from charrnn.cli.train import given_options
    from charrnn.errors import UsageError
    from charrnn.options import check_train
    from charrnn.sweep import sweep as S
    argv = [*paths, *S.settings_argv(settings), *fixed]
    argv += ["--steps", str(budget)] if bound == "steps" else ["--time", f"{budget:g}s"]
    try:
        ctx = _train.make_context("train", argv, resilient_parsing=False)
        try:
            check_train(given_options(ctx, ctx.params))
        except UsageError as e:
            raise usage_error(e) from None
    except click.UsageError as e:      # BadParameter included
        raise click.UsageError(f"{label}{e.format_message()}") from None


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]

