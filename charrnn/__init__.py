"""charrnn: character-level RNN/LSTM/GRU language models on the CPU, compiled with Numba.

    import charrnn
    model = charrnn.load("checkpoints/my_text-lstm-20261123-101500")   # a run folder or a .npz
    model.generate("ROMEO:", length=200, seed=7)
    run = charrnn.train("my_text.txt", time="5m")                       # as `charrnn train`
    charrnn.load(run.folder).generate(length=300)

The public names (load, Model, train, Run, CharrnnError, UsageError, DataError,
DivergedError; docs/api.md) are
imported on first use (PEP 562), so `import charrnn` and `charrnn --help` load
nothing heavy, and importing charrnn changes no process-wide state.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "load": "charrnn.api",
    "Model": "charrnn.api",
    "train": "charrnn.api",
    "Run": "charrnn.api",
    "CharrnnError": "charrnn.errors",
    "UsageError": "charrnn.errors",
    "DataError": "charrnn.errors",
    "DivergedError": "charrnn.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
