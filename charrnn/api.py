"""charrnn from Python: load a trained model, then generate, stream, score, complete
and export, as the commands do (docs/api.md).

    import charrnn
    model = charrnn.load("checkpoints/shakespeare-lstm-20261123-101500")
    print(model.generate("ROMEO:", length=200, seed=7))      # what `charrnn sample` prints
    model.score("to be or not to be")["bpc"]

Same seed and options, same text as `charrnn sample`: both run `Model.samples`.
Bad input raises a charrnn.CharrnnError whose message is the line the command
prints: errors.UsageError for a bad argument (the command's exit status 2),
errors.DataError for a missing or bad file (status 1).

Importing this module loads nothing heavy and changes nothing; the kernels are set
up on the first call that needs them (charrnn.kernels.setup), and every call runs
its kernel work inside kernels.denormals_flushed(), leaving the caller's
floating-point mode as it was.
"""
import math
import numbers
import os

from charrnn.errors import CharrnnError, DataError, UsageError

# the defaults of `charrnn sample` and `charrnn complete`
LENGTH, TEMP, TOP_K, TOP_P = 1000, 0.8, 0, 1.0
WORDS, BEAM = 5, 8
MAX_SAMPLES = 100_000


def load(path) -> "Model":
    """The model in a checkpoint file, or in a run folder (its best.npz, else latest.npz:
    runs.run_checkpoint, the rule every command follows). Raises DataError naming the
    file: missing, unreadable, or not a valid charrnn checkpoint."""
    from charrnn import checkpoint, runs
    return Model(checkpoint.load(runs.checkpoint_path(path)))


def _int(value, name, lo, hi=None):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise UsageError(f"{value!r} is not a whole number", name)
    if value < lo or (hi is not None and value > hi):
        rng = f"{lo}<=x<={hi}" if hi is not None else f"x>={lo}"
        raise UsageError(f"{value} is not in the range {rng}", name)
    return int(value)


def _float(value, name, lo, lo_open=False):
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise UsageError(f"{value!r} is not a number", name)
    v = float(value)
    if not math.isfinite(v):
        raise UsageError(f"{value!r} is not a finite number", name)
    if v < lo or (lo_open and v == lo):
        raise UsageError(f"{v:g} must be {'>' if lo_open else '>='} {lo}", name)
    return v


def unknown_chars(vocab, text, name):
    """UsageError if `text` holds characters outside the vocabulary (the commands'
    message for --prime and complete's TEXT)."""
    if not isinstance(text, str):
        raise UsageError(f"{text!r} is not a string", name)
    unknown = vocab.missing(text)
    if unknown:
        raise UsageError(f"characters not in the model's vocabulary: {''.join(unknown)!r}", name)


def _count(n) -> str:
    """'1,234' for a count, '?' for anything else (a checkpoint's meta is only informative)."""
    return f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else "?"


def _no_bom(text):
    """A leading byte-order mark dropped, as the commands drop it (not a character)."""
    from charrnn.vocab import strip_bom
    return strip_bom(text) if isinstance(text, str) else text


def check_sample_options(vocab, *, prime, length, temp, top_k, top_p, stop, n, names=None):
    """Validate sampling options as `charrnn sample` does; returns them as the sampler
    takes them. Raises UsageError whose `param` is the option's key; `names` maps
    keys to how the caller spells them inside messages (the command: "--num")."""
    names = {"n": "n", **(names or {})}
    length = _int(length, "length", 0)
    temp = _float(temp, "temp", 0)
    top_k = _int(top_k, "top_k", 0)
    top_p = _float(top_p, "top_p", 0, lo_open=True)
    if top_p > 1:
        raise UsageError("must be at most 1", "top_p")
    n = _int(n, "n", 1, MAX_SAMPLES)
    unknown_chars(vocab, prime, "prime")
    if stop is not None and not isinstance(stop, str):
        raise UsageError(f"{stop!r} is not a string", "stop")
    if stop == "":
        raise UsageError("must not be empty", "stop")
    if length == 0 and n > 1:
        raise UsageError(f"0 (endless) needs {names['n']} 1: the next sample would never come",
                         "length")
    return dict(length=length, temp=temp, top_k=top_k, top_p=top_p, stop=stop, n=n)


class Model:
    """A trained model: a loaded checkpoint and what can be done with it.

    Attributes: `checkpoint` (checkpoint.Checkpoint: config, vocabulary, weights,
    training state), `config` (config.ModelConfig), `vocab` (the characters it
    knows, as one sorted str), `last_seed` (the seed of the last generate/stream
    call, so that a good sample can be made again). A Model holds no sampling state:
    calls are independent, and may run in several threads at once."""

    def __init__(self, ck):
        self.checkpoint = ck
        self.config = ck.model_cfg
        self.vocab = "".join(ck.vocab.chars.tolist())
        self.last_seed = None

    def __repr__(self):
        c = self.config
        where = f" from {self.checkpoint.path}" if getattr(self.checkpoint, "path", None) else ""
        return f"<charrnn.Model {c.model} {c.layers}x{c.hidden}, {len(self.vocab)} characters{where}>"

    # -- generating -------------------------------------------------------------------

    def sampler(self, n=1, seed=None):
        """A sampling.Many of n streams seeded with `seed` (None: fresh entropy, kept
        as its .seed and in last_seed); what `samples` draws from."""
        from charrnn.kernels import denormals_flushed
        with denormals_flushed():
            from charrnn.sampling import Many
            gen = Many(self.config, self.checkpoint.params, self.checkpoint.vocab, n, seed=seed)
        self.last_seed = gen.seed
        return gen

    def samples(self, gen, prime, length, temp, top_k, top_p, stop):
        """Yield (i, chunk): sample i's next piece of text (after the prime, which is
        not yielded), sample 0 streamed as it is made, then each later one in turn
        (sampling.Many.samples). Options as checked by check_sample_options. The
        kernel work of each step runs with denormals flushed, the caller's own
        floating-point mode restored between chunks. `charrnn sample` writes exactly
        this, each sample after its prime, separated by a blank line."""
        from charrnn.kernels import denormals_flushed
        with denormals_flushed():
            gen.reset()
            gen.prime(prime)
            it = gen.samples(length, temp=temp, top_k=top_k, top_p=top_p, stop=stop)
        while True:
            with denormals_flushed():
                item = next(it, None)
            if item is None:
                return
            yield item

    def generate(self, prime="", length=LENGTH, temp=TEMP, top_k=TOP_K, top_p=TOP_P, stop=None,
                 seed=None, n=1):
        """Sample text: `prime` followed by up to `length` generated characters, ended
        early where `stop` appears (the stop string not included), as `charrnn sample
        --prime PRIME --length LENGTH ... --seed SEED` prints it (less the final newline).

        temp: 0 is greedy (the likeliest character each time); top_k / top_p: sample
        only among the k likeliest characters / those holding top_p of the probability
        (0 and 1: all). seed: same seed, same text; None draws one (see last_seed).
        n > 1: a list of n samples made together; sample i is the same text for any n
        (`charrnn sample --num N`). Returns a str when n == 1, else a list of n str."""
        prime = _no_bom(prime)
        o = check_sample_options(self.checkpoint.vocab, prime=prime, length=length, temp=temp,
                                 top_k=top_k, top_p=top_p, stop=stop, n=n)
        if o["length"] == 0:
            raise UsageError("0 (endless) needs stream(): generate() would never return",
                             "length")
        gen = self.sampler(o["n"], seed)
        texts = [[prime] for _ in range(o["n"])]
        for i, chunk in self.samples(gen, prime, o["length"], o["temp"], o["top_k"], o["top_p"],
                                     o["stop"]):
            texts[i].append(chunk)
        out = ["".join(t) for t in texts]
        return out[0] if o["n"] == 1 else out

    def stream(self, prime="", length=LENGTH, temp=TEMP, top_k=TOP_K, top_p=TOP_P, stop=None,
               seed=None):
        """generate() for one sample, yielding its text in chunks as it is made: the
        prime first (if any), then pieces of about 20 ms of generation or up to a
        newline. length=0 never ends: stop iterating when you have enough."""
        prime = _no_bom(prime)
        o = check_sample_options(self.checkpoint.vocab, prime=prime, length=length, temp=temp,
                                 top_k=top_k, top_p=top_p, stop=stop, n=1)
        gen = self.sampler(1, seed)

        def chunks():
            if prime:
                yield prime
            for _, chunk in self.samples(gen, prime, o["length"], o["temp"], o["top_k"],
                                         o["top_p"], o["stop"]):
                yield chunk
        return chunks()

    # -- measuring ----------------------------------------------------------------------

    def score(self, text):
        """How well the model predicts `text`, read after a newline as `charrnn eval
        --text` does (so its first character is scored too). Characters outside the
        vocabulary are skipped (neither read nor scored) and counted. Returns a dict:
        chars (characters scored), unknown (skipped), loss (mean nats/char), bpc
        (bits/char), perplexity, logprob (total, natural log), losses (float64 array,
        (chars,), each character's loss in nats). With nothing scored, loss, bpc and
        perplexity are NaN."""
        if not isinstance(text, str):
            raise UsageError(f"{text!r} is not a string", "text")
        text = _no_bom(text)
        from charrnn.kernels import denormals_flushed
        with denormals_flushed():
            from charrnn import evaluate as E
            ids, losses = E.score_text(self.checkpoint, text)
        out = E.summarize(losses, len(text) - len(ids))
        out["logprob"] = -float(losses.sum())
        out["losses"] = losses
        return out

    def complete(self, text, k=WORDS, beam=BEAM):
        """The k likeliest next words after `text` with their exact probabilities, by
        beam search over characters (`charrnn complete TEXT --words K --beam W`):
        a list of (continuation, probability), likeliest first."""
        text = _no_bom(text)
        unknown_chars(self.checkpoint.vocab, text, "text")
        k = _int(k, "k", 1, 1000)
        beam = _int(beam, "beam", 1, 1000)
        from charrnn.kernels import denormals_flushed
        with denormals_flushed():
            from charrnn.complete import complete
            try:
                return complete(self.checkpoint, text, words=k, beam=beam)
            except ValueError as e:     # nothing to complete from
                raise UsageError(str(e), "text") from None

    # -- exporting ----------------------------------------------------------------------

    def export(self, path, format="onnx"):
        """Write the model to run elsewhere: ONNX, one step per call (`charrnn export`;
        needs the onnx extra). Raises DataError naming the file when it cannot."""
        if format != "onnx":
            raise UsageError(f"{format!r} is not one of 'onnx'", "format")
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise DataError(f"{path}: cannot write here (no such folder, or permission denied)")
        from charrnn.export import export_onnx
        try:
            export_onnx(self.checkpoint, path)
        except OSError as e:
            raise DataError(f"{path}: {e.strerror}") from None
        return path


# -- training -----------------------------------------------------------------------------

class Run:
    """What charrnn.train() returns: a run folder and how the training ended.

    folder: the run folder; best / latest: its best.npz (lowest validation loss) and
    latest.npz (where training stopped); summary: {"steps", "best_val", "last_val",
    "elapsed", "reason", "signal"} (best_val None when nothing was validated; reason
    "steps", "time", "patience", "paused", "stopped" by `stop`, or "signal"; signal: the
    number of the signal that stopped it, or None), None after a dry run; settings:
    {"model", "train", "plan"}, the configurations as dicts and the plan (or None)."""

    def __init__(self, folder, summary, settings):
        self.folder, self.summary, self.settings = folder, summary, settings
        self.best = os.path.join(folder, "best.npz")
        self.latest = os.path.join(folder, "latest.npz")

    def __repr__(self):
        s = self.summary or {}
        return f"<charrnn.Run {self.folder}: {s.get('reason', 'not run')} at step {s.get('steps')}>"

    def load(self) -> Model:
        """The run's model: charrnn.load(run.folder)."""
        return load(self.folder)


def train(corpus, out=None, *, callback=None, stop=None, handle_signals=False, dry_run=False,
          meta=None, mpi_timeout=None, **options) -> Run:
    """Train a model on `corpus` (a path, "-" for stdin, or a list of them) into the run
    folder `out` (default checkpoints/<corpus>-<model>-<time>), as `charrnn train` does:
    the same defaults (config.TRAIN_OPTIONS), the same planner for a `time=` budget, the
    same checks, messages, files and, for the same seed and options, the same weights.

    options: train's options by keyword, each as `charrnn train --OPTION` (docs/api.md):
    model, hidden, layers, dropout, dropout_kind, wdrop, avg_decay, batch_size, seq_len,
    optimizer, lr, schedule, warmup, min_lr, clip, steps, epochs, time ("5m" or seconds),
    plan, pause_at, patience, eval_every, val_frac, val_max_chars, resume (a checkpoint or run folder to
    continue), seed, dtype, encoding, max_chars, max_stream_bytes, cache.

    callback(kind, info): progress, in the training thread: "log" and "warning"
    ({"message"}), then the loop's "start", "step", "eval" and "done" (training.run).
    Without one, warnings go through warnings.warn. stop: a threading.Event, or a
    callable returning true to stop; asked before every step, so another thread stops
    the run, evaluated and saved (reason "stopped"). handle_signals: while the loop runs,
    SIGINT and SIGTERM stop it the same way (reason "signal"), and the previous handlers
    come back after; only from the main thread. Without it no signal handler is touched.
    dry_run: check everything, read the corpus and plan, and return the Run with its
    settings, writing nothing. meta: entries added to the checkpoints' metadata.
    Under `mpiexec -n N` (N > 1) each process is one rank of a data-parallel run
    (docs/scale-out.md): rank 0 writes and calls back, the others are silent;
    mpi_timeout: seconds a rank waits for the others before stopping them all
    (default distributed.TIMEOUT).

    The kernel work runs inside kernels.denormals_flushed(). Raises UsageError (a bad
    option), DataError (a corpus, checkpoint or run folder), DivergedError (a
    non-finite loss: the last good checkpoints are kept)."""
    import threading

    from charrnn import options as O
    opts = O.check_train(options)
    if isinstance(corpus, (str, os.PathLike)):
        corpus = [corpus]
    paths = [os.fspath(c) for c in corpus]
    if not paths:
        raise UsageError("give at least one corpus file", "corpus")
    if handle_signals and threading.current_thread() is not threading.main_thread():
        raise UsageError("works only in the main thread, where Python runs signal handlers",
                         "handle_signals")
    if stop is not None and not callable(stop) and not hasattr(stop, "is_set"):
        raise UsageError(f"{stop!r} is not a threading.Event or a callable", "stop")
    should_stop = getattr(stop, "is_set", stop)
    emit = callback or _warn_only
    from charrnn.kernels import denormals_flushed
    with denormals_flushed():
        return _train(paths, out, opts, emit, should_stop, handle_signals, dry_run, meta or {},
                      mpi_timeout)


def _warn_only(kind, info):
    if kind == "warning":
        import warnings
        warnings.warn(info["message"], stacklevel=4)


def _train(paths, out, o, emit, should_stop, handle_signals, dry_run, extra_meta, mpi_timeout=None):
    """charrnn.train's steps, in the order the command has always taken them: every
    check that needs no corpus first, then the run folder is locked, then the corpus.

    Under mpiexec (distributed.world()), every rank takes these steps; rank 0 alone
    guards, locks and writes the run folder, and emits events. Before training the ranks
    compare what they found (distributed.World.agree): an error on any rank, or ranks
    with other settings or corpora, stops all of them, rank 0 printing it."""
    import contextlib

    from charrnn import __version__, distributed, runs
    from charrnn import options as O
    from charrnn.config import TRAIN_OPTIONS, build_configs, run_bounds
    world = distributed.world(mpi_timeout)
    lead = world is None or world.rank == 0
    if not lead:
        emit = _silent
    with contextlib.ExitStack() as stack:
        try:
            ck, resume = None, o.get("resume")
            if resume is not None:
                from charrnn import checkpoint
                resume = runs.checkpoint_path(resume, resume=True)
                ck = checkpoint.load(resume)
                mcfg, tcfg = build_configs(o, resume=ck)    # its option checks, before the corpus
            steps, epochs, seconds = run_bounds(o, ck)
            out = os.fspath(out) if out is not None else (
                os.path.dirname(os.path.abspath(resume)) if ck is not None
                else runs.default_run_dir(paths, o.get("model", TRAIN_OPTIONS["model"])))
            if lead:
                runs.guard_run_folder(out, resume, ck)
            pause_at = O.pause_point(o.get("pause_at"), seconds is not None and steps is None and epochs is None)
            if world is not None and o.get("plan"):
                raise UsageError("the planner measures one process; under mpiexec give the model "
                                 "options (or --no-plan)", "plan")
            # checked and locked before the corpus is read: a locked or unwritable folder fails at once
            if lead and not dry_run:
                stack.enter_context(runs.lock_run_dir(out))
            from charrnn.data import MAX_CHARS, MAX_STREAM_BYTES, fingerprint as data_fingerprint, read_corpus
            data = read_corpus(paths, o.get("encoding", "utf-8"), ck.vocab if ck else None,
                               o.get("max_chars") or MAX_CHARS, cache=o.get("cache", True) and not dry_run,
                               warn=lambda m: emit("warning", {"message": m}),
                               max_stream_bytes=o.get("max_stream_bytes") or MAX_STREAM_BYTES)
            if len(data.vocab) < 2:
                raise DataError(f"{', '.join(paths)}: only one distinct character; "
                                f"there is nothing to learn")
            fingerprint = data.fingerprint or data_fingerprint(data.ids)
            plan = None
            if ck is not None:
                _check_resume(ck, resume, o, paths, data, fingerprint, emit)
            else:
                mcfg, tcfg, plan = _choose(o, steps, epochs, seconds, data, world is None, emit)
            meta = {"corpus": [os.path.basename(c) if c != "-" else "<stdin>" for c in paths],
                    "corpus_chars": int(len(data.ids)), "corpus_bytes": int(data.nbytes),
                    "fingerprint": fingerprint, "command": _call_text(paths, o),
                    "version": __version__, **extra_meta}
            if plan is not None:
                meta["plan"] = plan.to_dict()
            if world is not None:
                meta["processes"] = world.size
                if tcfg.batch_size < world.size:
                    raise UsageError(f"{tcfg.batch_size} streams cannot be split across {world.size} "
                                     f"MPI processes: give {world.size} or more, or fewer "
                                     f"processes", "batch_size")
            settings = {"model": mcfg.to_dict(), "train": tcfg.to_dict(), "plan": meta.get("plan")}
            trainer = None
            if not dry_run:
                _check_memory(mcfg, tcfg)
                from charrnn import training
                trainer = training.Trainer(mcfg, tcfg, data.ids, data.vocab, meta, resume=ck, world=world)
            failure = None
        except CharrnnError as e:
            if world is None:
                raise
            failure = e
        if world is not None:
            world.agree(failure, None if failure else {**settings, "bounds": [steps, epochs, seconds],
                                                       "pause_at": pause_at,
                                                       "resume_step": ck.train_state["step"] if ck else None},
                        None if failure else fingerprint)
            world.out = out if lead else None
        if dry_run:
            return Run(out, None, settings)
        if plan is not None:    # the time spent planning counts against the budget
            seconds = max(1.0, seconds - plan.seconds_spent)
        summary = _run(trainer, out, dict(steps=steps, epochs=epochs, seconds=seconds,
                                          eval_every=tcfg.eval_every, on_event=emit, pause_at=pause_at),
                       should_stop, handle_signals, quiet_errors=not lead)
    return Run(out, summary, settings)


def _run(trainer, out, run_options, should_stop, handle_signals, quiet_errors) -> dict:
    """training.run(trainer, out, **run_options) with the stops asked for (signals,
    should_stop): the run's summary."""
    import contextlib

    from charrnn import training
    caught = {}
    with _stop_signals(caught) if handle_signals else contextlib.nullcontext():
        def asked():
            return "signal" if caught else (should_stop is not None and should_stop())
        try:
            result = training.run(trainer, out, should_stop=asked, **run_options)
        except training.NonFiniteError as e:
            from charrnn.errors import DivergedError
            error = DivergedError(f"{e}; stopped without saving it, the last good checkpoints "
                                  f"in {out} are kept (try a lower --lr or --clip)")
            error.quiet = quiet_errors
            raise error from None
    best = result["best_val"]
    return {"steps": result["step"], "best_val": None if math.isinf(best) else best,
            "last_val": result["last_val"], "elapsed": result["elapsed"],
            "reason": result["reason"], "signal": caught.get("signal")}


def _check_resume(ck, resume, o, paths, data, fingerprint, emit):
    """Resuming: the same text as the run's, and what a new --avg-decay will do."""
    if "avg_decay" in o and o["avg_decay"] is not None and ck.avg is None:
        emit("log", {"message": f"{resume} has no weight average: starting one from its weights at "
                                f"step {ck.train_state['step']:,} (decay {o['avg_decay']:g})"})
    if ck.meta.get("fingerprint") not in (None, fingerprint):
        raise DataError(f"{', '.join(paths)}: not the text this run was trained on "
                        f"({len(data.ids):,} chars now, {_count(ck.meta.get('corpus_chars'))} "
                        f"then); resume with the same files, or start a new run")


def _choose(o, steps, epochs, seconds, data, may_plan, emit):
    """A new run's (ModelConfig, TrainConfig, Plan or None): the planner's for a --time
    budget (may_plan: not under MPI), else the options with the regularisation rule of a
    step- or epoch-bound run over its text many times."""
    from charrnn.config import build_configs
    from charrnn.planner import plan_run, run_regularisation
    n_train = int((1.0 - o.get("val_frac", 0.1)) * len(data.ids))
    plan = chosen = None
    if seconds is not None and o.get("plan") is not False and may_plan:
        plan = plan_run(seconds, n_train, len(data.vocab), o, dtype=o.get("dtype", "float32"),
                        log=lambda m: emit("log", {"message": m}))
        chosen = plan.settings
    else:
        reg = run_regularisation(o, steps, epochs, n_train, len(data.vocab))
        if reg:
            emit("log", {"message": f"dropout {reg['dropout']:g}, wdrop {reg['wdrop']:g}: "
                                    f"{reg.pop('why')} (--wdrop 0 turns it off)"})
            chosen = reg
    return (*build_configs(o, len(data.vocab), chosen), plan)


def _silent(kind, info):
    """Events of a rank other than 0: it shows nothing."""


def _call_text(paths, options) -> str:
    """How the run was asked for, for the checkpoint's metadata (the command records its
    command line instead)."""
    args = [repr(paths[0] if len(paths) == 1 else paths)]
    args += [f"{k}={v!r}" for k, v in options.items()]
    return f"charrnn.train({', '.join(args)})"


class _stop_signals:
    """While training, SIGINT/SIGTERM only record themselves in caught["signal"]; the
    loop then saves and returns. A second signal cannot interrupt the save. The
    previous handlers come back on exit."""

    def __init__(self, caught):
        self.caught = caught

    def __enter__(self):
        import signal

        def handler(signum, frame):
            self.caught.setdefault("signal", signum)
        self.old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def __exit__(self, *exc):
        import signal
        for s, h in self.old.items():
            signal.signal(s, h)


def _check_memory(mcfg, tcfg):
    """Refuse, before allocating, a model this machine's memory cannot hold."""
    from charrnn import model as M
    from charrnn.checkpoint import OPTIM_SLOTS
    need = M.training_bytes(mcfg, tcfg.seq_len, tcfg.batch_size, tcfg.dtype, len(OPTIM_SLOTS[tcfg.optimizer]))
    have = M.available_bytes()
    if have is not None and need > have:
        raise DataError(f"this model needs about {need / 2**30:.1f} GiB to train "
                        f"({M.num_params(mcfg):,} parameters, B={tcfg.batch_size} T={tcfg.seq_len}), "
                        f"and {have / 2**30:.1f} GiB is available: lower --hidden, --layers or --batch-size")
