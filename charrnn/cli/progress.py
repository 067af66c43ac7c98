"""What a person sees while training: a tqdm bar on a terminal, plain log lines
otherwise, nothing with --quiet. Everything goes to stderr."""
import math
import sys
import time


def fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class TrainDisplay:
    """Turns training events into a progress bar / log lines on stderr.

    preview(trainer) -> str, if given, is called at each evaluation to show a
    short sample above the bar.
    """

    def __init__(self, quiet=False, stream=None, preview=None, plain=None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.plain = (not self.stream.isatty()) if plain is None else plain
        self.preview = preview
        self.bar = None
        self.last_line = 0.0
        self.last_val = None

    def write(self, text):
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def __call__(self, kind, info):
        getattr(self, "on_" + kind)(info)

    def on_start(self, info):
        t = info["trainer"]
        m, tc = t.mcfg, t.tcfg
        from charrnn.kernels import BLAS
        from charrnn.model import num_params
        self.final = info["final_step"]
        self.seconds = info["seconds"]
        self.first = None       # (step, seconds) at the first step, which includes loading the kernels
        self.write(f"{m.model} {m.layers}x{m.hidden}, {num_params(m):,} parameters, vocabulary {m.vocab_size}; "
                   f"{len(t.train_ids):,} training / {len(t.val_ids):,} validation chars"
                   + (f" (the first of {t.val_held:,} held out: --val-max-chars)"
                      if len(t.val_ids) < getattr(t, "val_held", 0) else "") + "; "
                   f"B={tc.batch_size} T={tc.seq_len} {tc.optimizer} lr={tc.lr:g} {tc.dtype}, "
                   f"{'MKL' if BLAS == 'mkl' else 'OpenBLAS'}"
                   + (f", {t.shards} threads data-parallel" if t.shards > 1 else "")
                   + (f", {t.world.size} MPI processes" if getattr(t, "world", None) else "")
                   + (f"; resuming at step {t.step}" if t.step else ""))
        if self.quiet or self.plain:
            return
        from tqdm import tqdm
        total = self.final if self.final is not None else (int(self.seconds) if self.seconds else None)
        self.by_time = self.final is None and self.seconds is not None
        self.bar = tqdm(total=total, initial=0 if self.by_time else t.step, file=self.stream,
                        dynamic_ncols=True, unit="s" if self.by_time else "step",
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")

    def _postfix(self, info):
        val = f"{self.last_val:.3f}" if self.last_val is not None else "-"
        return (f"epoch {info['epoch']:.2f}, loss {info['smooth']:.3f}, val {val}, "
                f"{info['cps'] / 1000:.1f}k chars/s")

    def on_step(self, info):
        if self.first is None:
            self.first = (info["step"], info["run_seconds"])
        if self.quiet:
            return
        if self.bar is not None:
            n = int(info["run_seconds"]) if self.by_time else info["step"]
            if n != self.bar.n:
                self.bar.update(n - self.bar.n)
                self.bar.set_postfix_str(self._postfix(info), refresh=False)
        elif time.monotonic() - self.last_line >= 10:
            self.last_line = time.monotonic()
            self.write(f"step {info['step']}{'/' + str(self.final) if self.final else ''} " + self._postfix(info)
                       + f", {fmt_time(info['elapsed'])} elapsed" + self._eta(info))

    def _eta(self, info):
        # timed from the end of the first step: it includes loading (or compiling) the
        # kernels, which made the first line's estimate hours instead of minutes
        step0, seconds0 = self.first
        done = info["step"] - step0
        if self.final and done > 0:
            left = (self.final - info["step"]) * (info["run_seconds"] - seconds0) / done
            return f", {fmt_time(left)} left"
        if self.seconds:
            return f", {fmt_time(max(0, self.seconds - info['run_seconds']))} left"
        return ""

    def on_eval(self, info):
        self.last_val = info["val_loss"]
        if self.quiet:
            return
        from charrnn.evaluate import LN2     # loaded by now: training runs
        val = info["val_loss"]
        line = (f"step {info['step']}: val {val:.4f} nats/char ({val / LN2:.3f} bits/char)"
                + (" *best*" if info["best"] else "")) if val is not None else f"step {info['step']}: saved"
        self.write(line)
        if self.preview is not None:
            text = self.preview(info["trainer"])
            self.write("    " + text.replace("\n", "\n    "))

    def on_done(self, info):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def summary(result, out_dir, interrupted=False, corpus="CORPUS") -> str:
    """The end-of-run summary (a few lines)."""
    import os

    from charrnn.evaluate import LN2
    best = result["best_val"]
    why = {"steps": f"reached --steps {result['step']}",
           "time": "used the time budget",
           "patience": f"early stop: no new best in {result.get('patience')} evaluations",
           "signal": "interrupted",
           "stopped": "stopped",
           "paused": "paused by --pause-at"}.get(result.get("reason"), "")
    lines = [("stopped" if interrupted else "done") + f" at step {result['step']} after "
             f"{fmt_time(result['elapsed'])}" + (f" ({why})" if why else "")]
    if best is not None and math.isfinite(best):
        lines.append(f"best validation loss {best:.4f} nats/char = {best / LN2:.3f} bits/char "
                     f"(perplexity {math.exp(best):.2f})")
    lines.append(f"checkpoints: {os.path.join(out_dir, 'best.npz')}, {os.path.join(out_dir, 'latest.npz')}")
    lines.append(f"sample:      charrnn sample --checkpoint {out_dir} --temp 0.8")
    if interrupted or result.get("reason") == "paused":
        lines.append(f"resume:      charrnn train {corpus} --resume {os.path.join(out_dir, 'latest.npz')}")
    return "\n".join(lines)


class SweepDisplay:
    """A sweep's progress on stderr: a live table of the trials on a terminal (step and
    validation loss read from each trial's log.jsonl), else a line per finished trial."""

    def __init__(self, trials, folder, quiet=False, stream=None):
        self.trials, self.folder, self.quiet = trials, folder, quiet
        self.stream = stream or sys.stderr
        self.seen = {t.name: t.state for t in trials}
        self.live = None
        if not quiet and self.stream.isatty():
            from rich.console import Console
            from rich.live import Live
            self.live = Live(self._table(), console=Console(file=self.stream), refresh_per_second=1,
                             transient=False)
            self.live.start()

    def _table(self):
        import os

        from rich.table import Table

        from charrnn.sweep.trial import progress
        t = Table(title=f"sweep {self.folder}", title_justify="left")
        for col in ("trial", "state", "rung", "step", "best val", "note"):
            t.add_column(col, justify="left" if col in ("trial", "state", "note") else "right",
                         no_wrap=col == "trial")
        for tr in self.trials:
            step, val = tr.step, tr.best_val
            if tr.state == "running":
                now = progress(os.path.join(self.folder, tr.name))
                step = now.get("step") or step
                if now.get("val") is not None and (val is None or now["val"] < val):
                    val = now["val"]
            t.add_row(tr.name, tr.state, str(max(tr.rung, 0)) if tr.rung >= 0 else "-", f"{step:,}",
                      f"{val:.4f}" if val is not None else "-", (tr.error or "")[:60])
        return t

    def update(self):
        if self.quiet:
            return
        if self.live is not None:
            self.live.update(self._table())
            return
        for tr in self.trials:
            if self.seen.get(tr.name) != tr.state:
                self.seen[tr.name] = tr.state
                if tr.state != "running":
                    best = f"{tr.best_val:.4f}" if tr.best_val is not None else "-"
                    print(f"trial {tr.name}: {tr.state} at step {tr.step:,}, best val {best}"
                          + (f": {tr.error}" if tr.error else ""), file=self.stream, flush=True)

    def close(self):
        self.update()
        if self.live is not None:
            self.live.stop()
