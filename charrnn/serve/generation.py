"""Generations for the server: each request in a worker thread of its own, so the event
loop stays free while the kernels run (they release the GIL: two requests use two cores).

A generation shares nothing mutable with another: it builds its own api.Model over the
loaded checkpoint (whose arrays nobody writes) and its own sampler (states, random
streams), exactly as `charrnn sample --seed S --num N --prime PROMPT` does, so the same
seed and settings give the same text. Between chunks (about 20 ms of generation each)
the thread looks at its cancel event: a client that hangs up stops its generation there.
"""
import itertools
import logging
import threading

from charrnn.serve.request import ApiError

log = logging.getLogger("charrnn.serve")


class Stops:
    """One sample's text cut at the first of several stop strings (the sampler itself
    stops at a single one): holds back a tail that could be the start of one."""

    def __init__(self, stops):
        self.stops, self.keep = stops, max(map(len, stops)) - 1
        self.held, self.done = "", False

    def feed(self, text):
        """The part of `text` that may be sent now ("" once a stop was found)."""
        if self.done:
            return ""
        text = self.held + text
        found = [at for at in (text.find(s) for s in self.stops) if at >= 0]
        if found:
            self.held, self.done = "", True
            return text[:min(found)]
        cut = max(0, len(text) - self.keep)
        self.held = text[cut:]
        return text[:cut]

    def flush(self):
        out, self.held = self.held, ""
        return out


class Job:
    """One running generation: `cancel` (set it to stop the thread at its next chunk)."""

    def __init__(self, number):
        self.number = number
        self.cancel = threading.Event()


class Generations:
    """The generations of one server: admitted up to `limit` at once, counted for
    /health (active, finished, cancelled), each run by `start` in a worker thread.
    `closing` (set at shutdown) stops them all."""

    def __init__(self, model, limit):
        self.model, self.limit = model, limit
        self.lock = threading.Lock()
        self.active = self.finished = self.cancelled = 0
        self.numbers = itertools.count(1)
        self.closing = threading.Event()

    def counts(self):
        with self.lock:
            return {"active": self.active, "finished": self.finished,
                    "cancelled": self.cancelled, "limit": self.limit}

    def start(self, req, emit) -> Job:
        """Run the Completion `req` in a new thread; emit(event) is called from it with
        ("text", index, text), ("end", index, finish_reason, chars) for each choice in
        order, then ("done", completion_chars); or ("error", message) when it failed, or
        ("cancelled",) when job.cancel or `closing` stopped it. Raises ApiError
        (429) when `limit` generations are running already."""
        with self.lock:
            if self.active >= self.limit:
                raise ApiError(429, f"the server is busy: {self.limit} generations are running; "
                               f"try again shortly", None, type="server_busy",
                               code="too_many_requests")
            self.active += 1
        job = Job(next(self.numbers))
        threading.Thread(target=self._run, args=(job, req, emit), daemon=True,
                         name=f"charrnn-generation-{job.number}").start()
        return job

    def _run(self, job, req, emit):
        stopped = True
        try:
            # one BLAS thread per generation: requests, not the products, use the cores.
            # MKL's own threading of these 8-row products ran a 2x256 LSTM 3x slower on a
            # busy 2-core machine (450 against 1330 chars/s); the text is the same bit for
            # bit (checked: n=3, 3000 characters). MKL keeps it per thread; OpenBLAS's
            # count is the process's, 1 for all of this server's generations.
            from charrnn.kernels import blas
            blas.set_thread_local(1)
            stopped = self._generate(job, req, emit)
        except Exception as e:  # noqa: BLE001 - a failure answers this request only
            stopped = False
            log.exception("generation %d failed", job.number)
            emit(("error", f"{type(e).__name__}: {e}"))
        finally:
            if stopped:
                emit(("cancelled",))
            with self.lock:
                self.active -= 1
                if stopped:
                    self.cancelled += 1
                else:
                    self.finished += 1

    def _generate(self, job, req, emit):
        """Returns True when cancelled before the end."""
        from charrnn.api import Model
        total = 0
        for p, prompt in enumerate(req.prompts):
            model = Model(self.model.checkpoint)    # its own: a Model keeps last_seed
            gen = model.sampler(req.n, req.seed)
            one = req.stop[0] if len(req.stop) == 1 else None
            cuts = [Stops(req.stop) if len(req.stop) > 1 else None for _ in range(req.n)]
            made = [0] * req.n
            cur = 0                 # the sample being sent; those before it are finished

            def end(i):
                tail = cuts[i].flush() if cuts[i] else ""
                if tail:
                    emit(("text", p * req.n + i, tail))
                    made[i] += len(tail)
                reason = "stop" if made[i] < req.max_tokens else "length"
                emit(("end", p * req.n + i, reason, made[i]))

            for i, chunk in model.samples(gen, prompt, req.max_tokens, req.temperature,
                                          req.top_k, req.top_p, one):
                if job.cancel.is_set() or self.closing.is_set():
                    return True
                while cur < i:
                    end(cur)
                    cur += 1
                text = cuts[i].feed(chunk) if cuts[i] else chunk
                if text:
                    made[i] += len(text)
                    emit(("text", p * req.n + i, text))
                if cuts[i] and cuts[i].done and i == req.n - 1:
                    break           # the last sample met a stop: nothing more to send
            if job.cancel.is_set() or self.closing.is_set():
                return True
            for i in range(cur, req.n):
                end(i)
            total += sum(made)
        emit(("done", total))
        return False
