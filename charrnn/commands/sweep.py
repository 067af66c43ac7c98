"""charrnn sweep: many training runs over a grid of settings, locally or on Dask."""
import os
import signal
import sys

import click

from charrnn.commands.common import CONTEXT, DataError, Duration, read_corpus



@click.command(context_settings=CONTEXT)
@click.argument("corpus", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--grid", "grid_items", multiple=True, metavar="KEY=V1,V2,...",
              help="Values of one train option to try (repeat for more options; every "
                   "combination is a trial). Keys: model hidden layers dropout batch-size seq-len "
                   "optimizer lr schedule warmup min-lr clip seed dtype patience eval-every.")
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
def sweep(corpus, grid_items, random_n, seconds, steps, halving, out, workers, scheduler, ship, seed,
          encoding, quiet):
    """Train one run per combination of settings and rank them by validation loss.

    Every trial is an ordinary run folder inside the sweep folder (sample, plot or
    resume it like any run). Ctrl-C saves the running trials; the same command
    continues the sweep, without redoing finished trials.

    \b
    Examples:
      charrnn sweep corpora/shakespeare.txt --grid hidden=128,256 --grid dropout=0,0.2 --time 5m
      charrnn sweep input.txt --grid lr=0.02,0.05,0.1 --grid hidden=256,512 --halving --time 10m
      charrnn sweep input.txt --grid hidden=256,512 --steps 2000 --scheduler tcp://10.0.0.5:8786
    """
    from charrnn import sweep as S
    if seconds is not None and steps is not None:
        raise click.UsageError("give one of --time and --steps")
    if scheduler and workers:
        raise click.UsageError("--workers sizes the local pool; a Dask cluster's size is its workers'")
    bound, budget = ("steps", steps) if steps is not None else ("time", seconds or 300.0)
    try:
        grid = S.parse_grid(grid_items)
        points = S.expand(grid, random_n, seed)
        rungs = S.rung_points(len(points), budget, halving, bound == "time")
    except S.SweepError as e:
        raise click.UsageError(str(e)) from None
    paths = [os.path.abspath(c) for c in corpus]
    for settings in points:
        _check_trial(paths, settings, bound, budget)
    spec = {"corpus": paths, "grid": grid, "random": random_n, "seed": seed, "bound": bound,
            "budget": budget, "halving": halving, "encoding": encoding}
    out = out or os.path.join("sweeps", f"{_stem(paths[0])}-{S.spec_id(spec)}")
    data = read_corpus(paths, encoding, cache=True)     # a bad corpus fails before any trial
    if len(data.vocab) < 2:
        raise DataError(f"{', '.join(corpus)}: only one distinct character; there is nothing to learn")
    del data
    from charrnn import executors as X
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
    from charrnn.progress import SweepDisplay
    from charrnn.ui import sweep_table
    display = SweepDisplay(trials, out, quiet)
    if not quiet:
        click.echo(f"sweep of {len(trials)} trial(s) in {out}/ on the {pool.where}; each "
                   + (f"{budget:,} steps" if bound == "steps" else f"{budget:g} s")
                   + (f", successive halving over {len(rungs)} rungs" if len(rungs) > 1 else ""), err=True)
    interrupted = _run(trials, rungs, pool, ledger, display, paths, bound, budget)
    display.close()
    from charrnn.ui import stdout_console
    sweep_table(trials, out).show(stdout_console())
    if interrupted:
        click.echo(f"interrupted: running trials were saved; run the same command to continue "
                   f"(--out {out})", err=True)
        sys.exit(130)
    if all(t.state == "failed" for t in trials):
        raise DataError(f"every trial failed; the first: {trials[0].error}")


def _run(trials, rungs, pool, ledger, display, paths, bound, budget) -> bool:
    """Train the rungs in order; True if a stop signal ended it early."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from charrnn import sweep as S
    from charrnn.trial import run_trial
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
                        "bound": bound, "budget": budget, "pause_at": point}
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


def _check_trial(paths, settings, bound, budget):
    """Each trial's train options, parsed and checked as train would, before any runs."""
    from charrnn import sweep as S
    from charrnn.commands.train import _check_train_options, train
    argv = [*paths, *S.settings_argv(settings)]
    argv += ["--steps", str(budget)] if bound == "steps" else ["--time", f"{budget:g}s"]
    try:
        ctx = train.make_context("train", argv, resilient_parsing=False)
        given = lambda name: ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE  # noqa: E731
        _check_train_options(given, ctx.params)
    except click.UsageError as e:      # BadParameter included
        raise click.UsageError(f"trial {S.trial_name(settings)}: {e.format_message()}") from None


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]

