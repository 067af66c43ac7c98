"""The training loop: TBPTT steps, evaluation, checkpoints, the run log.

`Trainer` holds the whole training state (weights, optimizer state, carried
hidden state, stream position, random generator, counters), so that a checkpoint
of it resumes bit for bit. `run` drives it and reports through `on_event(kind,
info)`, so the caller decides how progress looks (minGPT's callback), and stops
when `should_stop()` says so: the loop installs no signal handler (the caller
may: api.train(handle_signals=True), which the command asks for).
"""
import json
import math
import os
import time

import numpy as np

from charrnn import checkpoint as C
from charrnn import model as M
from charrnn import parallel as P
from charrnn import runs
from charrnn import schedule as S
from charrnn import wavefront as W
from charrnn.config import ModelConfig, TrainConfig
from charrnn.data import Batches, eval_streams, split
from charrnn.kernels import blas
from charrnn.kernels import optim as O

EVAL_CHUNK = 256
_INTERRUPTED = object()     # evaluate()'s result when should_stop() cut it short


class NonFiniteError(Exception):
    """The loss or the gradient became NaN or infinite."""


class Trainer:
    def __init__(self, mcfg: ModelConfig, tcfg: TrainConfig, ids, vocab, meta=None,
                 resume: C.Checkpoint | None = None, shards: int | None = None, world=None,
                 wavefront: bool | None = None):
        """shards: data-parallel shards of a step (default `parallel.shard_count`).
        wavefront: a one-shard step runs its layers side by side (charrnn.wavefront;
        default: when shards is not given and `wavefront.applies`).
        world: a distributed.World: this process is one rank of several, and takes its
        share of the streams on one thread (the rank's shard of `world.size`)."""
        self.mcfg, self.tcfg, self.vocab = mcfg, tcfg, vocab
        self.meta = dict(meta or {})
        self.dtype = np.dtype(tcfg.dtype)
        self.train_ids, self.val_ids = split(ids, tcfg.val_frac)
        self.val_held = len(self.val_ids)   # held out; validation reads the first val_max_chars
        if tcfg.val_max_chars is not None:
            self.val_ids = self.val_ids[:tcfg.val_max_chars]
        B, T = tcfg.batch_size, tcfg.seq_len
        self.batches = Batches(self.train_ids, B, T)
        self.world = world
        if world is not None:
            self.rows = world.stream_bounds(B)[world.rank]
            self.shards = 1     # (one thread a rank, as the command sets it: shard k of N)
        else:
            self.shards = P.shard_count(mcfg, B, self.dtype) if shards is None else max(1, min(shards, B))
        if wavefront is None:
            wavefront = world is None and shards is None and W.applies(mcfg, self.dtype, blas.threads())
        if wavefront:
            self.shards = 1
        if world is not None:
            lo, hi = self.rows
            self.parallel, self.ws = None, M.Workspace(mcfg, T, hi - lo, self.dtype)
        elif self.shards > 1:
            self.parallel, self.ws = P.DataParallel(mcfg, T, B, self.dtype, self.shards), None
        else:
            self.parallel, self.ws = None, M.Workspace(mcfg, T, B, self.dtype)
        self.wavefront = W.Wavefront(mcfg) if wavefront else None
        self.one_thread = self.shards == 1 and P.one_thread(mcfg, B if world is None else
                                                            self.rows[1] - self.rows[0])
        self.state = M.State(mcfg, B, self.dtype)
        self.grad = np.zeros(M.num_params(mcfg), self.dtype)
        self.g = M.views(self.grad, mcfg)
        self.avg, self.avg_steps, self.smooth = None, 0, None
        if resume is None:
            self.rng = np.random.default_rng(tcfg.seed)
            self.flat = M.init_params(mcfg, self.dtype, self.rng)
            self.optim = {s: np.zeros_like(self.flat) for s in C.OPTIM_SLOTS[tcfg.optimizer]}
            self.step, self.best_val, self.elapsed, self.chars = 0, math.inf, 0.0, 0
            self.last_val, self.since_best, self.horizon = None, 0, None
        else:
            ts = resume.train_state
            self.flat, self.optim = resume.flat, resume.optim
            self.state.h[:], self.state.c[:] = resume.state_h, resume.state_c
            self.rng = np.random.default_rng()
            self.rng.bit_generator.state = ts["rng"]
            self.step, self.elapsed, self.chars = ts["step"], ts.get("elapsed", 0.0), ts.get("chars", 0)
            self.best_val = ts["best_val"] if ts["best_val"] is not None else math.inf
            self.last_val = ts.get("last_val")
            self.since_best = ts.get("since_best", 0)
            self.horizon = ts.get("horizon")
            self.smooth = ts.get("smooth")
            if ts["pos"] > self.batches.per_stream:
                from charrnn.data import CorpusError
                where = f"{resume.path}: " if getattr(resume, "path", None) else ""
                raise CorpusError(f"{where}the checkpoint's stream position {ts['pos']:,} is beyond "
                                  f"this text's {self.batches.per_stream:,} characters per stream")
            self.batches.pos = ts["pos"]
            self.meta = {**resume.meta, **self.meta}
            if tcfg.avg_decay is not None and resume.avg is not None:
                self.avg, self.avg_steps = resume.avg.copy(), ts.get("avg_steps", 0)
        if tcfg.avg_decay is not None and self.avg is None:
            # a new run, or a run without an average resumed with one: start it here
            self.avg = self.flat.copy()
        self.wbuf = ([np.zeros((mcfg.hidden, mcfg.gates * mcfg.hidden), self.dtype)
                      for _ in range(mcfg.layers)] if mcfg.wdrop > 0 else None)
        self.p = M.views(self.flat, mcfg)
        # what validation, previews and best.npz use: the weight average, if there is one
        self.eval_p = M.views(self.avg, mcfg) if self.avg is not None else self.p
        self._eval_ws = None
        self.cut_by = None      # why a validation pass across ranks was cut (_rank_evaluate)
        self._nan_at = int(os.environ.get("CHARRNN_TEST_NAN_AT_STEP", "-1"))  # test seam

    @property
    def epoch(self) -> float:
        return self.chars / max(1, len(self.train_ids))

    @property
    def progress(self) -> float:
        """How far through its horizon the run is, in [0, 1]: step / final step, or
        elapsed seconds / the time budget ({"steps": N} or {"seconds": S})."""
        h = self.horizon or {}
        if "steps" in h:
            return min(1.0, self.step / h["steps"]) if h["steps"] > 0 else 1.0
        if "seconds" in h:
            return min(1.0, self.elapsed / h["seconds"]) if h["seconds"] > 0 else 1.0
        return 0.0

    @property
    def lr(self) -> float:
        """The learning rate of the next update, from the schedule and the progress."""
        t = self.tcfg
        return S.lr_at(t.schedule, t.lr, t.min_lr, t.warmup, self.step, self.progress)

    def train_step(self) -> float:
        """One TBPTT step; returns the mean training loss (nats/char).
        Raises NonFiniteError, leaving the weights untouched, if it is not finite."""
        cfg, tcfg = self.mcfg, self.tcfg
        x, y, wrapped = self.batches.next()
        if wrapped:
            self.state.reset()
        T, B = x.shape
        masks = M.dropout_masks(cfg, T, B, self.dtype, self.rng)
        wmasks = M.weight_masks(cfg, self.dtype, self.rng)
        p = self.p if wmasks is None else M.drop_connect(self.p, wmasks, self.wbuf)
        if self.world is not None:
            loss = self._rank_step(p, x, y, masks) / x.size
        elif self.parallel is not None:
            loss = self.parallel.step(p, self.grad, self.g, x, y, self.state, masks) / x.size
        elif self.wavefront is not None:
            loss = self.wavefront.step(p, self.g, self.ws, x, y, self.state, masks) / x.size
        else:
            with blas.one_thread_products(self.one_thread):
                loss = M.forward(cfg, p, self.ws, x, y, self.state, masks, g=self.g) / x.size
                M.backward(cfg, p, self.g, self.ws, x, masks)
        if wmasks is not None:
            M.drop_connect_backward(self.g, wmasks)
        if self.step + 1 == self._nan_at:
            self.grad[0] = np.nan
        norm = math.sqrt(O.sumsq(self.grad))
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise NonFiniteError(f"step {self.step + 1}: the {'loss' if not math.isfinite(loss) else 'gradient'} "
                                 f"is not finite")
        scale = min(1.0, tcfg.clip / norm) if tcfg.clip > 0 and norm > 0 else 1.0
        self._update(scale)
        if self.avg is not None:
            # the decay grows to avg_decay over the first steps, so that the average
            # does not drag the initial weights along (TensorFlow's num_updates rule)
            self.avg_steps += 1
            O.ema(self.avg, self.flat, min(self.tcfg.avg_decay, (1 + self.avg_steps) / (10 + self.avg_steps)))
        self.step += 1
        self.chars += x.size
        self.smooth = loss if self.smooth is None else 0.98 * self.smooth + 0.02 * loss
        return loss

    def _rank_step(self, p, x, y, masks) -> float:
        """This rank's streams forward and backward (on one thread, as the command runs a
        rank: as DataParallel.step runs its shard); then the losses and the gradient summed
        over the ranks in rank order (DataParallel's: shard 0, then += each other). Returns
        the summed loss."""
        lo, hi = self.rows
        xs, ys = np.ascontiguousarray(x[:, lo:hi]), np.ascontiguousarray(y[:, lo:hi])
        ms = None if masks is None else [m if m is None else np.ascontiguousarray(m[..., lo:hi, :])
                                         for m in masks]
        with blas.one_thread_products(self.one_thread):
            loss = M.forward(self.mcfg, p, self.ws, xs, ys, self.state.rows(lo, hi), ms,
                             mean_over=x.size, g=self.g)
            M.backward(self.mcfg, p, self.g, self.ws, xs, ms)
        losses = self.world.allgather_floats([loss], "summing the loss")[:, 0]
        total = losses[0].item()
        for other in losses[1:]:
            total += other.item()
        self.world.sum_gradient(self.grad)
        return total

    def _update(self, scale):
        t, lr, w, g, s = self.tcfg, self.lr, self.flat, self.grad, self.optim
        if t.optimizer == "adagrad":
            O.adagrad(w, g, s["mem"], lr, 1e-8, scale)
        elif t.optimizer == "adam":
            O.adam(w, g, s["m"], s["v"], lr, 0.9, 0.999, 1e-8, self.step + 1, scale)
        elif t.optimizer == "rmsprop":
            O.rmsprop(w, g, s["sq"], lr, 0.99, 1e-8, scale)
        else:
            O.sgd(w, g, lr, scale)

    def evaluate(self, should_stop=None):
        """Mean loss (nats/char) over the whole validation split, state carried
        through contiguous streams; None without a validation split; _INTERRUPTED
        if should_stop() turns true meanwhile (asked every chunk).
        With data-parallel steps the streams are split across the same threads
        (each stream's losses are the same; only the order of the sum differs)."""
        if len(self.val_ids) < 2:
            return None
        streams = eval_streams(self.val_ids)
        E, N = streams.shape
        if self.world is not None:
            return self._rank_evaluate(streams, should_stop)
        n = max(1, min(self.shards, E // P.MIN_STREAMS))
        if self._eval_ws is None or self._eval_ws[0] != (E, n):
            cut = np.linspace(0, E, n + 1).astype(int)
            self._eval_ws = ((E, n), list(zip(cut[:-1], cut[1:])),
                             [M.Workspace(self.mcfg, EVAL_CHUNK, hi - lo, self.dtype, train=False)
                              for lo, hi in zip(cut[:-1], cut[1:])])
        _, bounds, wss = self._eval_ws
        stopped = _Latch(should_stop)
        if n == 1:
            total = M.loss_sum(self.mcfg, self.eval_p, wss[0], streams, self.dtype,
                               should_stop=stopped)
        else:
            total = P.sharded_loss_sum(self.mcfg, self.eval_p, wss, streams, bounds, self.dtype,
                                       stopped)
        if stopped.reason:
            return _INTERRUPTED
        return total / (E * (N - 1))

    def _rank_evaluate(self, streams, should_stop=None):
        """evaluate() across ranks: the streams split as one process with `world.size`
        shards splits them (sharded_loss_sum), rank k taking shard k, the sums added in
        the same order. A rank that is told to stop (should_stop, asked every chunk) cuts
        its share short; every rank still meets at the gathering of the sums, which says
        whether any was cut, and then every rank returns _INTERRUPTED, with the first
        such rank's reason in `self.cut_by`."""
        E, N = streams.shape
        n = max(1, min(self.world.size, E // P.MIN_STREAMS))
        cut = np.linspace(0, E, n + 1).astype(int)
        mine, stopped = 0.0, _Latch(should_stop)
        if self.world.rank < n:
            lo, hi = cut[self.world.rank], cut[self.world.rank + 1]
            if self._eval_ws is None or self._eval_ws[0] != (E, n):
                self._eval_ws = ((E, n), None, [M.Workspace(self.mcfg, EVAL_CHUNK, hi - lo, self.dtype,
                                                            train=False)])
            with blas.one_thread_products(n > 1):     # as sharded_loss_sum, or loss_sum
                mine = M.loss_sum(self.mcfg, self.eval_p, self._eval_ws[2][0], streams[lo:hi], self.dtype,
                                  should_stop=stopped)
        code = _reason_code(stopped.reason)     # 0: not cut during the pass
        said = self.world.allgather_floats([mine, code], "summing the validation loss")
        codes = [int(c) for c in said[:, 1] if c]
        if codes:
            self.cut_by = REASONS[codes[0]]
            return _INTERRUPTED
        sums = [v.item() for v in said[:n, 0]]
        return (sums[0] + sum(sums[1:])) / (E * (N - 1))     # sharded_loss_sum's order

    def to_checkpoint(self) -> C.Checkpoint:
        if self.world is not None:     # every rank's own streams' state, into one
            lo, hi = self.rows
            for k, (h, c) in enumerate(self.world.allgather_objects(
                    (self.state.h[:, lo:hi].copy(), self.state.c[:, lo:hi].copy()))):
                a, b = self.world.stream_bounds(self.tcfg.batch_size)[k]
                self.state.h[:, a:b], self.state.c[:, a:b] = h, c
        ts = {"step": self.step, "pos": self.batches.pos, "rng": self.rng.bit_generator.state,
              "best_val": None if math.isinf(self.best_val) else self.best_val,
              "last_val": self.last_val, "elapsed": self.elapsed, "chars": self.chars,
              "epoch": self.epoch, "since_best": self.since_best, "horizon": self.horizon,
              "smooth": self.smooth, "avg_steps": self.avg_steps}
        return C.Checkpoint(self.mcfg, self.tcfg, self.vocab, self.flat, self.optim,
                            self.state.h, self.state.c, ts, self.meta, avg=self.avg)


class _Latch:
    """should_stop() asked until it first says stop, then remembered: a loop and its
    evaluation see one answer. `reason`: None, or why ("stopped", or the str that
    should_stop returned); a call returns it (a latch wrapped in another passes it on)."""

    def __init__(self, should_stop):
        self.should_stop, self.reason = should_stop, None

    def __call__(self):
        if self.reason is None and self.should_stop is not None:
            said = self.should_stop()
            if said:
                self.reason = said if isinstance(said, str) else "stopped"
        return self.reason


def _test_seam_hold(step, out_dir, stop, lead):
    """Tests set CHARRNN_TEST_HOLD_AT_STEP=<step>[:<text in the run folder's path>] to
    hold a run, saved, at that step until it is told to stop (a stop signal, in the
    command): a test that interrupts a run mid-way then never races it to the end. With
    CHARRNN_TEST_HELD_FILE=<path> too, the process that writes (rank 0 under MPI) creates
    that file once it holds, every save done: the moment a test can act. Does nothing
    when unset."""
    hold = os.environ.get("CHARRNN_TEST_HOLD_AT_STEP")
    if not hold:
        return
    at, _, where = hold.partition(":")
    if step == int(at) and where in str(out_dir):
        if lead and os.environ.get("CHARRNN_TEST_HELD_FILE"):
            open(os.environ["CHARRNN_TEST_HELD_FILE"], "w").close()
        while not stop():
            time.sleep(0.02)


REASONS = (None, "steps", "time", "patience", "paused", "stopped", "signal")


def _reason_code(reason) -> int:
    """reason's index in REASONS (None: 0; a should_stop's own str: "stopped")."""
    return REASONS.index(reason) if reason in REASONS else REASONS.index("stopped")


def _agree_reason(world, reason):
    """Whether and why every rank stops before the next step: rank 0's reason, else the
    first other rank's stop (a signal reaches each rank on its own)."""
    code = _reason_code(reason)
    codes = world.allgather_floats([code], "agreeing to stop")[:, 0].astype(int)
    first = codes[0] if codes[0] else next((c for c in codes[1:] if c), 0)
    return reason if (code == first and reason is not None) else REASONS[first]


def total_steps(trainer: Trainer, steps=None, epochs=None) -> int | None:
    """The run's final step number from --steps or --epochs (None: time-bounded)."""
    if steps is not None:
        return steps
    if epochs is not None:
        per = trainer.tcfg.batch_size * trainer.tcfg.seq_len
        return math.ceil(epochs * len(trainer.train_ids) / per)
    return None


def run(trainer: Trainer, out_dir, *, steps=None, epochs=None, seconds=None,
        eval_every=200, on_event=lambda kind, info: None, log_every=None, pause_at=None,
        should_stop=None) -> dict:
    """Train until the step/epoch/time bound, early stopping (tcfg.patience
    evaluations without a new best) or should_stop(); evaluate every `eval_every`
    steps, save latest.npz / best.npz and append to log.jsonl. The result's
    "reason" says which ended the run: "steps", "time", "patience", "paused", or
    the stop: "stopped", or the str should_stop() returned ("signal" from the
    command's handlers).

    should_stop: a callable asked before every step and between the chunks of an
    evaluation (a sharded evaluation asks it from its worker threads too, so it must
    be thread-safe: a threading.Event's is_set is); truthy stops the run, saved. The
    loop changes no signal handler.

    pause_at: stop early, evaluated and saved, at this step (a step- or epoch-bound
    run) or at this many seconds of training (a time-bound run), with the schedule's
    horizon still the whole run, so that resuming continues it as if never paused
    (successive halving pauses trials at its rungs)."""
    final = total_steps(trainer, steps, epochs)

    def at_pause():
        if pause_at is None:
            return False
        return trainer.step >= pause_at if final is not None else trainer.elapsed >= pause_at

    # the schedule's horizon: this run's end, in steps or in seconds since the run began
    trainer.horizon = {"steps": final} if final is not None else \
        {"seconds": trainer.elapsed + seconds} if seconds is not None else None
    patience = trainer.tcfg.patience
    log_every = log_every or max(1, min(50, eval_every // 4))
    stop = _Latch(should_stop)
    log_path = os.path.join(out_dir, "log.jsonl")
    window_t, window_chars = time.perf_counter(), 0
    cps = 0.0
    t_start = time.perf_counter()
    elapsed0 = trainer.elapsed
    saved_step = trainer.step if trainer.step > 0 else None
    reason = None
    # a time-bound run ends evaluated: its last step leaves the time of one evaluation (the
    # last one's) in the budget, so that best.npz sees the end of the schedule's decay
    eval_seconds, time_up = 0.0, False
    on_event("start", {"trainer": trainer, "final_step": final, "seconds": seconds})

    def save(best: bool):
        ck = trainer.to_checkpoint()    # (with ranks: gathers every rank's state)
        if not lead:
            return
        C.save(os.path.join(out_dir, "latest.npz"), ck)
        if best:
            C.save(os.path.join(out_dir, "best.npz"), ck)

    def log(record):
        if not lead:
            return
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    world = trainer.world
    lead = world is None or world.rank == 0     # the one process that writes

    while True:
        if world is not None and world.rank > 0:
            reason = stop.reason if stop() else None    # rank 0 decides the rest
        elif final is not None and trainer.step >= final:
            reason = "steps"
        elif seconds is not None and (time_up or seconds <= 0):
            reason = "time"
        elif patience is not None and trainer.since_best >= patience:
            reason = "patience"
        elif stop():
            reason = stop.reason
        elif at_pause():
            reason = "paused"
        if world is not None:
            reason = _agree_reason(world, reason)
        if reason is not None:
            break
        lr = trainer.lr
        loss = trainer.train_step()
        trainer.elapsed = elapsed0 + (time.perf_counter() - t_start)
        if world is not None:   # rank 0's clock: every rank pauses at the same step
            trainer.elapsed = world.from_root(trainer.elapsed)
        smooth = trainer.smooth     # training state: a resumed run's log continues it
        window_chars += trainer.tcfg.batch_size * trainer.tcfg.seq_len
        dt = time.perf_counter() - window_t
        if dt > 1.0:
            cps, window_t, window_chars = window_chars / dt, time.perf_counter(), 0
        info = {"step": trainer.step, "final_step": final, "loss": loss, "smooth": smooth,
                "cps": cps, "elapsed": trainer.elapsed, "epoch": trainer.epoch, "lr": lr,
                "run_seconds": time.perf_counter() - t_start, "seconds": seconds}
        on_event("step", info)
        is_eval = eval_every > 0 and trainer.step % eval_every == 0
        # (trainer.elapsed and eval_seconds are rank 0's on every rank: all evaluate together)
        time_up = seconds is not None and trainer.elapsed - elapsed0 + eval_seconds >= seconds
        done = (final is not None and trainer.step >= final) or at_pause() or time_up
        if is_eval or done:
            t_eval = time.perf_counter()
            if lead and os.environ.get("CHARRNN_TEST_EVALUATING_FILE"):    # test seam
                open(os.environ["CHARRNN_TEST_EVALUATING_FILE"], "w").close()
            val = trainer.evaluate(stop)
            if val is _INTERRUPTED:     # (with ranks: every rank, the reason the first cut's)
                reason = stop.reason if world is None else trainer.cut_by
                break
            eval_seconds = time.perf_counter() - t_eval
            if world is not None:
                eval_seconds = world.from_root(eval_seconds)
            trainer.last_val = val
            improved = val is None or val < trainer.best_val
            if val is not None and improved:
                trainer.best_val = val
            trainer.since_best = 0 if improved else trainer.since_best + 1
            save(best=improved)
            saved_step = trainer.step
            _test_seam_hold(trainer.step, out_dir, stop, lead)
            on_event("eval", {**info, "val_loss": val, "best": improved, "trainer": trainer})
            if world is not None:   # every kernel loaded (training, evaluation, previews):
                world.started = True    # the short deadline from now on
        if is_eval or done or trainer.step % log_every == 0:
            log({"step": trainer.step, "train_loss": smooth,
                 "val_loss": trainer.last_val if (is_eval or done) else None,
                 "lr": lr, "chars_per_sec": cps, "elapsed": round(trainer.elapsed, 3)})
    if saved_step != trainer.step:
        save(best=not os.path.exists(os.path.join(out_dir, "best.npz")))
    # why and where this invocation ended (a sweep reads it)
    if lead:
        runs.write_status(out_dir, {"end": reason, "step": trainer.step,
                                    "elapsed": round(trainer.elapsed, 3),
                                    "best_val": None if math.isinf(trainer.best_val) else trainer.best_val})
    result = {"step": trainer.step, "best_val": trainer.best_val, "last_val": trainer.last_val,
              "elapsed": trainer.elapsed, "out_dir": out_dir,
              "reason": reason, "patience": patience}
    on_event("done", result)
    return result
