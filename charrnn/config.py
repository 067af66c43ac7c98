"""Frozen configuration records, convertible to and from plain dicts (stored as JSON);
the one table of train's options and defaults (TRAIN_OPTIONS), shared by the command,
the API and the benchmarks; and build_configs, the pure translation from options to
the records. Imports nothing heavy."""
from dataclasses import asdict, dataclass, fields

CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
OPTIMIZERS = ("adagrad", "adam", "rmsprop", "sgd")
DEFAULT_LR = {"adagrad": 0.05, "adam": 2e-3, "rmsprop": 2e-3, "sgd": 1.0}
# Adagrad with at least FAST_ADAGRAD_STREAMS streams in a run of at least
# FAST_ADAGRAD_STEPS[cell] steps: a higher rate, FAST_ADAGRAD[cell] = (lr, clip), after a
# FAST_ADAGRAD_WARMUP-step warm-up. LSTM: 0.08; the default run of then (2x256, 3000 steps)
# 1.4686 over seeds 1/2/3 against 1.4858 at 0.05 with 100 steps (Intel Xeon; on a Zen 4 EPYC
# 1.4671 against 1.4727); with a 100- or 200-step warm-up 0.08 threw some seeds onto the
# unigram plateau (1.4975, 1.4982); with 16 streams it spiked back to the unigram loss at
# step 180. GRU: 0.11 with the gradient clipped to norm 1; the default run (2x256, 3900
# steps) 1.4612/1.4648/1.4637 over seeds 1/2/3 (one thread a run: 1.4539/1.4598/1.4662,
# against 1.4616/1.4621 for seeds 1/2 at 0.08); at 0.11 with clip 5 seed 2 spiked at step 600
# (1.4812), at 0.15 seed 1 reached 1.4595 (docs/quality.md). From 1600 steps for a GRU: a
# 2x192 GRU, 1643 steps (the 60 s plan that once chose it), 1.5100 against 1.5498 at 0.05;
# a 2x192 LSTM there did not gain (0.08: 1.5621, 0.05: 1.5565), so it keeps 2000. Shorter
# runs, which cannot spend 400 steps warming up, and runs bound by epochs or time (not
# measured) keep DEFAULT_LR, DEFAULT_WARMUP and DEFAULT_CLIP.
FAST_ADAGRAD_STREAMS, FAST_ADAGRAD_WARMUP = 32, 400
FAST_ADAGRAD_STEPS = {"rnn": 2000, "lstm": 2000, "gru": 1600}
FAST_ADAGRAD = {"rnn": (0.08, 5.0), "lstm": (0.08, 5.0), "gru": (0.11, 1.0)}
DEFAULT_CLIP = 5.0
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
DEFAULT_AVG_DECAY = 0.999   # the weight average: the default run 1.4727 with it, 1.4754 without (median of 3 seeds, each 0.003 better; docs/quality.md)
# a run given none of steps, epochs, time: the default model's (a 2x256 GRU) steps in the
# wall time of 3000 steps of the 2x256 LSTM it replaced (which ran 1.31x slower a step)
DEFAULT_STEPS = 3900
MIN_SECONDS = 5.0           # a time budget below this cannot load the kernels and train

# Every option of `charrnn train` and `charrnn.train()` with its default: the one table
# that the command's options (and --help), the API and build_configs read. None: not set,
# or derived from others when the run is built (build_configs): lr, warmup and schedule from
# the optimizer, the streams and the steps (default_rate, DEFAULT_SCHEDULE), min_lr = lr / 10,
# steps DEFAULT_STEPS unless epochs or time; a planned (time) run takes the planner's
# settings for what is not given.
TRAIN_OPTIONS = {
    # the network
    "model": "gru", "hidden": 256, "layers": 2, "dropout": 0.0, "dropout_kind": "locked",
    "wdrop": 0.0,
    # how it trains
    "avg_decay": DEFAULT_AVG_DECAY, "batch_size": 32, "seq_len": 64, "optimizer": "adagrad",
    "lr": None, "schedule": None, "warmup": None, "min_lr": None, "clip": None,
    # for how long
    "steps": None, "epochs": None, "time": None, "plan": None, "pause_at": None,
    "patience": DEFAULT_PATIENCE, "eval_every": 200, "val_frac": 0.1,
    "val_max_chars": 10_000_000,
    # the run and its text
    "resume": None, "seed": 1234, "dtype": "float32", "encoding": "utf-8",
    "max_chars": 4_000_000_000, "max_stream_bytes": None, "cache": True,
}
# the options a checkpoint fixes: resuming with another value is refused
ARCH_OPTIONS = ("model", "hidden", "layers", "dropout", "dropout_kind", "wdrop", "dtype", "batch_size",
                "seq_len", "optimizer", "val_frac", "val_max_chars", "seed")
# the options a resumed run may change (besides its bound, lr and eval_every)
RESUME_OPTIONS = ("schedule", "warmup", "min_lr", "clip", "patience", "avg_decay")


def default_rate(cell: str, optimizer: str, batch_size: int, steps: int | None) -> tuple[float, float, float]:
    """(peak learning rate, warm-up steps, clip) of a run of `cell`s given no --lr, no
    --warmup and no --clip, of `steps` steps (None: bound by epochs or time):
    FAST_ADAGRAD, or DEFAULT_LR with DEFAULT_WARMUP steps (at most a tenth of a step-bound
    run) and DEFAULT_CLIP."""
    if (optimizer == "adagrad" and batch_size >= FAST_ADAGRAD_STREAMS and steps is not None
            and steps >= FAST_ADAGRAD_STEPS[cell]):
        lr, clip = FAST_ADAGRAD[cell]
        return lr, float(FAST_ADAGRAD_WARMUP), clip
    warmup = DEFAULT_WARMUP if steps is None else min(DEFAULT_WARMUP, max(1, steps // 10))
    return DEFAULT_LR[optimizer], float(warmup), DEFAULT_CLIP


def train_defaults() -> tuple[dict, dict]:
    """(model fields, training fields) of a run of `charrnn train` (or charrnn.train())
    given no options, from TRAIN_OPTIONS with the derived values filled in: for the
    benchmarks and tests that build a Trainer directly."""
    d = TRAIN_OPTIONS
    lr, warmup, clip = default_rate(d["model"], d["optimizer"], d["batch_size"], DEFAULT_STEPS)
    model = {k: d[k] for k in ("model", "hidden", "layers", "dropout", "dropout_kind", "wdrop")}
    train = {"batch_size": d["batch_size"], "seq_len": d["seq_len"], "optimizer": d["optimizer"],
             "lr": lr, "clip": clip, "schedule": DEFAULT_SCHEDULE[d["optimizer"]],
             "warmup": warmup, "min_lr": lr / 10, "patience": d["patience"],
             "avg_decay": d["avg_decay"], "val_max_chars": d["val_max_chars"]}
    return model, train


def run_bounds(options: dict, resume=None) -> tuple:
    """(steps, epochs, seconds) of a run: the one of them given, else a resumed run's
    own bound (the same final step or epoch, or what is left of its time budget), else
    DEFAULT_STEPS. Raises UsageError when a resumed run has used its whole budget."""
    steps, epochs, seconds = (options.get(k) for k in ("steps", "epochs", "time"))
    if steps is not None or epochs is not None or seconds is not None:
        return steps, epochs, seconds
    if resume is None:
        return DEFAULT_STEPS, None, None
    t, ts = resume.train_cfg, resume.train_state
    horizon = ts.get("horizon") or {}
    if "seconds" in horizon:
        left = horizon["seconds"] - ts.get("elapsed", 0.0)
        if left <= 0:
            from charrnn.errors import UsageError
            raise UsageError(f"this run used its whole --time budget ({horizon['seconds']:.0f} s); "
                             f"give --time, --steps or --epochs to train further")
        return None, None, left
    if t.epochs is not None:
        return None, t.epochs, None
    return t.steps or DEFAULT_STEPS, None, None


def build_configs(options: dict, vocab_size: int | None = None, plan: dict | None = None,
                  resume=None) -> tuple["ModelConfig", "TrainConfig"]:
    """The configurations of a run from the caller's options: a pure function.

    options: the options given (keywords of TRAIN_OPTIONS, values checked by
    options.check_train); what is not given takes its default, from TRAIN_OPTIONS or
    derived. vocab_size: the corpus's (a fresh run). plan: a planner's settings
    (planner.Plan.settings), used where the options are silent. resume: the
    checkpoint.Checkpoint a run continues: its model and settings are kept, except
    what RESUME_OPTIONS, lr, eval_every and the bound change. TrainConfig's steps,
    epochs and time are the run's bound (run_bounds). Raises UsageError for a
    combination the run cannot have."""
    from charrnn.errors import UsageError
    o = options
    if resume is not None:
        saved = {**resume.model_cfg.to_dict(), **resume.train_cfg.to_dict()}
        clash = [k for k in ARCH_OPTIONS if k in o and saved.get(k) != o[k]]
        if clash:
            raise UsageError(f"--resume keeps the checkpoint's settings; drop "
                             f"{', '.join('--' + k.replace('_', '-') for k in clash)}")
        if o.get("plan"):
            raise UsageError("--plan chooses a new model; it cannot be used with --resume")
        if "avg_decay" in o and o["avg_decay"] is None and resume.train_cfg.avg_decay is not None:
            # its best validation loss is the average's: raw weights would be judged against it
            raise UsageError("off: this run keeps a weight average, which its best loss and "
                             "best.npz measure; resume it with one (or train a new run)", "avg_decay")
        old = resume.train_cfg
        floor = o["min_lr"] if o.get("min_lr") is not None else old.min_lr
        if o.get("lr") is not None and floor > o["lr"]:   # the schedule would decay upwards
            raise UsageError(f"{o['lr']:g} is below the run's --min-lr {floor:g}; give a lower "
                             f"--min-lr too", "lr")
        steps, epochs, seconds = run_bounds(o, resume)
        keep = {k: o[k] for k in RESUME_OPTIONS if k in o}
        tcfg = TrainConfig(**{**old.to_dict(), "steps": steps, "epochs": epochs, "time": seconds,
                              "lr": o["lr"] if o.get("lr") is not None else old.lr,
                              "eval_every": o.get("eval_every", old.eval_every), **keep})
        return resume.model_cfg, tcfg
    steps, epochs, seconds = run_bounds(o)
    chosen = {**(plan or {}), **o}

    def pick(k):
        return chosen[k] if k in chosen else TRAIN_OPTIONS[k]
    optimizer = pick("optimizer")
    rate, warmup, clip = default_rate(pick("model"), optimizer, pick("batch_size"), steps)
    lr = pick("lr") or rate
    warmup = pick("warmup") if "warmup" in chosen else warmup
    clip = pick("clip") if pick("clip") is not None else clip
    mcfg = ModelConfig(model=pick("model"), hidden=pick("hidden"), layers=pick("layers"),
                       vocab_size=vocab_size, dropout=pick("dropout"),
                       dropout_kind=pick("dropout_kind"), wdrop=pick("wdrop"))
    tcfg = TrainConfig(batch_size=pick("batch_size"), seq_len=pick("seq_len"), optimizer=optimizer,
                       lr=lr, clip=clip, steps=steps, epochs=epochs, time=seconds,
                       eval_every=pick("eval_every"), val_frac=pick("val_frac"),
                       val_max_chars=pick("val_max_chars"), seed=pick("seed"),
                       dtype=pick("dtype"), warmup=warmup,
                       schedule=pick("schedule") or DEFAULT_SCHEDULE[optimizer],
                       min_lr=pick("min_lr") if pick("min_lr") is not None else lr / 10,
                       patience=pick("patience"), avg_decay=pick("avg_decay"))
    if tcfg.min_lr > tcfg.lr:
        raise UsageError(f"{tcfg.min_lr:g} is above the learning rate {tcfg.lr:g}", "min_lr")
    return mcfg, tcfg


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
    """How a run trains; the stopping bounds (steps/epochs/time) may change on resume.

    The defaults of schedule, warmup, min_lr, patience and avg_decay are what a
    version-1 checkpoint, whose config lacks them, trained with (from_dict fills them
    in): they are not train's defaults. A run built from options (charrnn train,
    charrnn.train()) gets those from TRAIN_OPTIONS through build_configs."""

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
    # validation reads at most this many characters, the start of the held-out text (None:
    # all of it, as runs before the bound did); train's default bounds only large corpora
    val_max_chars: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})
