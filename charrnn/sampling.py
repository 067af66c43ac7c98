"""Text generation from a model: priming, then streaming chunks of sampled text.

Uniforms come from NumPy's generator in fixed blocks and each generated
character consumes exactly one, so the same seed gives the same text however
the stream is chunked.
"""
import time

import numpy as np

from charrnn.kernels import sample as K

KINDS = {"rnn": 0, "lstm": 1, "gru": 2}
BLOCK = 4096


def stacked(mcfg, params):
    """The weights as the sampling kernels take them: Wx0 (V, G), Wxu (max(L-1, 1), H, G),
    Wh (L, H, G), b (L, G), Wy (H, V), by (V,)."""
    L, H, G = mcfg.layers, mcfg.hidden, mcfg.gates * mcfg.hidden
    dtype = params["Wy"].dtype
    Wxu = np.ascontiguousarray(np.stack([params[f"l{l}.Wx"] for l in range(1, L)])) \
        if L > 1 else np.zeros((1, H, G), dtype)
    Wh = np.ascontiguousarray(np.stack([params[f"l{l}.Wh"] for l in range(L)]))
    b = np.ascontiguousarray(np.stack([params[f"l{l}.b"] for l in range(L)]))
    return params["l0.Wx"], Wxu, Wh, b, params["Wy"], params["by"]


class Generator:
    """Samples from a model given its config, named parameter views and vocabulary."""

    def __init__(self, mcfg, params, vocab, seed=None):
        L, H, G = mcfg.layers, mcfg.hidden, mcfg.gates * mcfg.hidden
        self.mcfg, self.vocab = mcfg, vocab
        self.kind = KINDS[mcfg.model]
        dtype = params["Wy"].dtype
        self.Wx0, self.Wxu, self.Wh, self.b, self.Wy, self.by = stacked(mcfg, params)
        self.h = np.zeros((L, H), dtype)
        self.c = np.zeros((L, H), dtype)
        self.ax, self.ah = np.empty(G, dtype), np.empty(G, dtype)
        self.rng = np.random.default_rng(seed)
        self.uniforms = np.empty(0)
        self.newline = vocab.index("\n")
        self.last = self.newline if self.newline >= 0 else 0

    def reset(self):
        self.h[:] = 0
        self.c[:] = 0
        self.last = self.newline if self.newline >= 0 else 0

    def prime(self, text: str):
        """Read `text` (all characters must be in the vocabulary: KeyError otherwise)."""
        if not text:
            return
        ids = self.vocab.encode(text).astype(np.int64)
        K.feed(self.kind, ids[:-1], self.Wx0, self.Wxu, self.Wh, self.b, self.h, self.c,
               self.ax, self.ah)
        self.last = int(ids[-1])

    def _take_uniforms(self, n):
        while len(self.uniforms) < n:
            self.uniforms = np.concatenate([self.uniforms, self.rng.random(BLOCK)])
        u, self.uniforms = self.uniforms[:n], self.uniforms[n:]
        return u

    def ids(self, n, temp=1.0, top_k=0, top_p=1.0, break_on_newline=False) -> np.ndarray:
        """Up to n ids (fewer when stopping after a newline); greedy when temp == 0."""
        out = np.empty(n, np.int64)
        u = self._take_uniforms(n)
        inv_temp = np.inf if temp == 0 else 1.0 / temp
        made = K.generate(self.kind, self.last, n, self.Wx0, self.Wxu, self.Wh, self.b, self.Wy,
                          self.by, self.h, self.c, u, inv_temp, top_k, top_p,
                          self.newline if break_on_newline else -1, out)
        if made < n:   # return the unused uniforms, in order
            self.uniforms = np.concatenate([u[made:], self.uniforms])
        if made:
            self.last = int(out[made - 1])
        return out[:made]

    def text(self, prime, n, **kw) -> str:
        self.reset()
        self.prime(prime)
        return self.vocab.decode(self.ids(n, **kw))

    def stream(self, length, temp=1.0, top_k=0, top_p=1.0, stop=None, max_latency=0.02):
        """Yield text chunks until `length` characters (0: forever) or `stop` appears
        (the stop string itself is not yielded). Each chunk ends at a newline or after
        about `max_latency` seconds of generation."""
        made, chunk, held = 0, 16, ""
        while length == 0 or made < length:
            n = chunk if length == 0 else min(chunk, length - made)
            t0 = time.perf_counter()
            ids = self.ids(n, temp, top_k, top_p, break_on_newline=True)
            dt = time.perf_counter() - t0
            made += len(ids)
            if len(ids) == n and dt > 0:   # adapt the chunk to the measured speed
                chunk = int(min(4096, max(1, n * max_latency / dt)))
            text = held + self.vocab.decode(ids)
            if stop:
                at = text.find(stop)
                if at >= 0:
                    if at:
                        yield text[:at]
                    return
                # hold back a tail that could be the start of the stop string
                keep = min(len(stop) - 1, len(text))
                text, held = text[:len(text) - keep], text[len(text) - keep:]
            if text:
                yield text
        if held:
            yield held


class Many:
    """N samples at once: N streams through one batched step per character, padded to a
    multiple of K.BLOCK rows (kernels/sample.py says why), each with its own random
    stream spawned from the seed, so that sample i is the same text whatever N is."""

    def __init__(self, mcfg, params, vocab, n: int, seed=None):
        L, H, G = mcfg.layers, mcfg.hidden, mcfg.gates * mcfg.hidden
        self.mcfg, self.vocab, self.n = mcfg, vocab, n
        self.kind = KINDS[mcfg.model]
        dtype = params["Wy"].dtype
        self.Wx0, self.Wxu, self.Wh, self.b, self.Wy, self.by = stacked(mcfg, params)
        R = -(-n // K.BLOCK) * K.BLOCK       # rows: n streams and padding
        self.h = np.zeros((L, R, H), dtype)
        self.c = np.zeros((L, R, H), dtype)
        self.ax, self.ah = np.zeros((R, G), dtype), np.zeros((R, G), dtype)
        self.logits = np.zeros((R, mcfg.vocab_size), dtype)
        self.x = np.zeros(R, np.int64)
        root = np.random.SeedSequence(seed)
        self.seed = root.entropy
        self.rngs = [np.random.default_rng(np.random.SeedSequence(root.entropy, spawn_key=(i,)))
                     for i in range(n)]
        newline = vocab.index("\n")
        self.start = newline if newline >= 0 else 0
        self.x[:] = self.start

    def reset(self):
        """Every stream back to the zero state, as if after a newline."""
        self.h[:] = 0
        self.c[:] = 0
        self.x[:] = self.start

    @property
    def last(self) -> int:
        """The id that sample 0 reads next (its last character)."""
        return int(self.x[0])

    def prime(self, text: str):
        """Every stream reads `text` from its current state (characters must be in the
        vocabulary: KeyError otherwise); generation continues after its last character."""
        if not text:
            return
        ids = self.vocab.encode(text).astype(np.int64)
        if len(ids) > 1:
            feed = np.broadcast_to(ids[:-1, None], (len(ids) - 1,) + self.x.shape).copy()
            K.feed_batch(self.kind, feed, self.Wx0, self.Wxu, self.Wh, self.b, self.h, self.c,
                         self.ax, self.ah)
        self.x[:] = ids[-1]

    def stream(self, length, **kw):
        """Text chunks of sample 0 (see `samples`): one stream, as Generator.stream."""
        for _, chunk in self.samples(length, **kw):
            yield chunk

    def samples(self, length, temp=1.0, top_k=0, top_p=1.0, stop=None, max_latency=0.02):
        """Yield (i, text) chunks of the samples, in order: all of sample 0 first, as it is
        made, then sample 1 (made meanwhile and held back), and so on; each sample ends
        after `length` characters or where `stop` appears (not yielded)."""
        n = self.n
        texts, done = [""] * n, [False] * n
        cur, made, chunk = 0, 0, 16
        inv_temp = np.inf if temp == 0 else 1.0 / temp
        while cur < n:
            steps = chunk if length == 0 else min(chunk, length - made)
            u = np.zeros(self.x.shape + (steps,))
            for i in range(n):              # each stream draws its own, done or not
                u[i] = self.rngs[i].random(steps)
            out = np.zeros(self.x.shape + (steps,), np.int64)
            t0 = time.perf_counter()
            K.generate_batch(self.kind, self.x, steps, self.Wx0, self.Wxu, self.Wh, self.b,
                             self.Wy, self.by, self.h, self.c, u, inv_temp, top_k, top_p, out,
                             self.ax, self.ah, self.logits)
            dt = time.perf_counter() - t0
            made += steps
            if dt > 0:
                chunk = int(min(4096, max(1, steps * max_latency / dt)))
            for i in range(n):
                if done[i]:
                    continue
                before = len(texts[i])
                texts[i] += self.vocab.decode(out[i])
                at = texts[i].find(stop, max(0, before - len(stop) + 1)) if stop else -1
                if at >= 0:
                    texts[i], done[i] = texts[i][:at], True
                elif length and made >= length:
                    done[i] = True
            while cur < n:                  # write what may be written, in order
                keep = 0 if done[cur] or not stop else len(stop) - 1   # a stop may be starting
                upto = len(texts[cur]) - keep
                if upto > 0:                # and forget it: an endless sample stays small
                    yield cur, texts[cur][:upto]
                    texts[cur] = texts[cur][upto:]
                if not done[cur]:
                    break
                texts[cur] = ""
                cur += 1
