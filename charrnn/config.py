"""Frozen configuration records, convertible to and from plain dicts (stored as JSON)."""
from dataclasses import asdict, dataclass, fields

CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
OPTIMIZERS = ("adagrad", "adam", "rmsprop", "sgd")
DEFAULT_LR = {"adagrad": 0.05, "adam": 2e-3, "rmsprop": 2e-3, "sgd": 1.0}
DTYPES = ("float32", "float64")
# "locked": one dropout mask per stream and TBPTT chunk, on the inputs of layers 1.. and on
# the top layer's output (variational dropout, AWD-LSTM's LockedDropout); "step": a fresh mask
# at every time step, between layers only (what version-1 checkpoints did)
DROPOUT_KINDS = ("locked", "step")
SCHEDULES = ("constant", "cosine", "step", "wsd")
# the thread counts the libraries under charrnn read at start-up (train --threads, sweep trials)
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
# defaults of `charrnn train`, chosen by measurement (docs/quality.md)
# warm-up, stable, decay over the last fifth: the default run (2x256 Adagrad, 3000 steps)
# reached 1.475 with it, 1.501 constant, 1.514 cosine; 2x128 runs of 1500 steps: Adagrad
# 1.697 / 1.712 / 1.770, Adam 1.936 / 1.932 / 2.066 (docs/quality.md)
DEFAULT_SCHEDULE = {"adagrad": "wsd", "adam": "wsd", "rmsprop": "wsd", "sgd": "wsd"}
DEFAULT_WARMUP = 100        # steps: without it Adagrad sat on the unigram plateau 230-400 steps
DEFAULT_PATIENCE = 5        # evaluations without a new best
DEFAULT_AVG_DECAY = None    # the weight average (docs/quality.md)


def train_defaults() -> tuple[dict, dict]:
    """(model fields, training fields) of `charrnn train` with every default: one
    place for the CLI and the benchmarks."""
    model = {"model": "lstm", "hidden": 256, "layers": 2, "dropout": 0.0, "dropout_kind": "locked",
             "wdrop": 0.0}
    train = {"batch_size": 32, "seq_len": 64, "optimizer": "adagrad", "lr": DEFAULT_LR["adagrad"],
             "clip": 5.0, "schedule": DEFAULT_SCHEDULE["adagrad"], "warmup": float(DEFAULT_WARMUP),
             "min_lr": DEFAULT_LR["adagrad"] / 10, "patience": DEFAULT_PATIENCE,
             "avg_decay": DEFAULT_AVG_DECAY}
    return model, train


@dataclass(frozen=True)
class ModelConfig:
    """What a checkpoint needs to rebuild the network."""

    model: str = "lstm"
    hidden: int = 256
    layers: int = 2
    vocab_size: int = 0
    dropout: float = 0.0
    dropout_kind: str = "locked"   # see DROPOUT_KINDS
    wdrop: float = 0.0             # DropConnect on the recurrent weights Wh, one mask per chunk

    @property
    def gates(self) -> int:
        return GATES[self.model]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(**{f.name: d[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains; the stopping bounds (steps/epochs/time) may change on resume."""

    batch_size: int = 32
    seq_len: int = 64
    optimizer: str = "adagrad"
    lr: float = 0.05
    clip: float = 5.0
    steps: int | None = None
    epochs: float | None = None
    time: float | None = None
    eval_every: int = 200
    val_frac: float = 0.1
    seed: int = 1234
    dtype: str = "float32"
    schedule: str = "constant"   # see schedule.py; "constant" is what version-1 runs did
    warmup: float = 0.0          # >= 1: steps; in (0, 1): a fraction of the run
    min_lr: float = 0.0
    patience: int | None = None  # evaluations without a new best before stopping
    avg_decay: float | None = None  # exponential moving average of the weights (None: none)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})
