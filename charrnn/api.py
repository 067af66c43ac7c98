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

from charrnn.errors import DataError, UsageError

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
