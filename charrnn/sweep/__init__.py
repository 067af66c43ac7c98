"""Sweeps: many training runs over a grid of settings.

    sweep.py      the grid, successive halving, the sweep ledger (no processes, no network)
    trial.py      one trial: `charrnn train` in a one-thread child process, polled stop
    executors.py  where trials run: a local pool, or a Dask cluster

The `charrnn sweep` command (charrnn/cli/sweep.py) drives them.
"""
