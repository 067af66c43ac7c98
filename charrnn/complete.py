"""Autocomplete: the likeliest next words after a text, by beam search over characters.

A continuation is a string s holding at least one word character (not a space
or punctuation), followed by a word boundary: its probability is
    P(s | text) * P(a boundary | text + s),
the exact probability that the next word is s, where the boundary is one event:
the sum of the probabilities of every boundary character. Boundary characters
before the first word character are part of s (after "to the", s = " class").
Beam search keeps the W likeliest unfinished strings at each length and stops
when the best of them is less likely than the K-th continuation found, since
probabilities only fall as a string grows; with W = 1 it is greedy decoding
over the characters and the boundary event.
"""
import math
import unicodedata
from dataclasses import dataclass

import numpy as np

from charrnn.sampling import Generator
from charrnn.kernels import sample as K

MAX_CHARS = 40


def is_boundary(ch: str) -> bool:
    """Whitespace and punctuation end a word."""
    return ch.isspace() or unicodedata.category(ch)[0] in "PSZC"


@dataclass
class Beam:
    s: str             # the continuation so far
    last: str          # the character to read next: the last of text + s
    logp: float
    h: np.ndarray      # (L, H) state before reading `last`
    c: np.ndarray
    worded: bool       # s holds a word character (or continues text's unfinished word)


class Stepper:
    """Next-character log-probabilities from a state: the sampler's cell kernels."""

    def __init__(self, ck):
        self.gen = Generator(ck.model_cfg, ck.params, ck.vocab, seed=0)
        self.vocab = ck.vocab
        self.boundary = np.array([is_boundary(ch) for ch in ck.vocab.chars.tolist()])

    def read(self, h, c, text):
        """State after reading `text` from (h, c) (copies; the inputs are untouched)."""
        g = self.gen
        h, c = h.copy(), c.copy()
        ids = self.vocab.encode(text).astype(np.int64)
        K.feed(g.kind, ids, g.Wx0, g.Wxu, g.Wh, g.b, h, c, g.ax, g.ah)
        return h, c

    def logprobs(self, h):
        """log P(next character) (V,) float64 given the state whose top layer is h[-1]."""
        z = h[-1].astype(np.float64) @ self.gen.Wy.astype(np.float64) + self.gen.by
        z -= z.max()
        return z - math.log(np.exp(z).sum())


def complete(ck, text: str, words: int = 5, beam: int = 8, max_chars: int = MAX_CHARS):
    """The `words` likeliest continuations of `text`: [(string, probability)], likeliest
    first. `text` must be in the model's vocabulary (KeyError otherwise). When text
    ends inside a word, its continuation may be empty (the word is complete)."""
    st = Stepper(ck)
    L, H = ck.model_cfg.layers, ck.model_cfg.hidden
    dtype = ck.params["Wy"].dtype
    zero = np.zeros((L, H), dtype)
    start = ("\n" if st.vocab.index("\n") >= 0 else "") + text   # read as if a line begins
    if not start:
        raise ValueError("give some text to complete")
    h, c = st.read(zero, zero, start[:-1])
    in_word = bool(text) and not is_boundary(text[-1])
    live = [Beam("", start[-1], 0.0, h, c, in_word)]
    done: dict[str, float] = {}
    chars = st.vocab.chars.tolist()
    n_boundary = int(st.boundary.sum())
    for _ in range(max_chars):
        cands = []      # (logp, string, next beam or None when the word ends there)
        for b in live:
            bh, bc = st.read(b.h, b.c, b.last)
            lp = st.logprobs(bh)
            if b.worded:
                cands.append((b.logp + _logsumexp(lp[st.boundary]), b.s, None))
            for v in np.argsort(-lp, kind="stable")[:beam + n_boundary]:
                if b.worded and st.boundary[v]:
                    continue            # part of the boundary event above
                ch = chars[v]
                cands.append((b.logp + lp[v], b.s + ch,
                              Beam(b.s + ch, ch, b.logp + lp[v], bh, bc, b.worded or not st.boundary[v])))
        cands.sort(key=lambda t: -t[0])
        live = []
        for logp, s, nxt in cands:
            if len(live) >= beam:
                break
            if nxt is None:
                done[s] = max(done.get(s, -math.inf), logp)
                if beam == 1:
                    break               # greedy: the likeliest next event ends the word
            else:
                live.append(nxt)
        if beam == 1 and done:
            break
        kth = sorted(done.values(), reverse=True)[words - 1] if len(done) >= words else -math.inf
        if not live or live[0].logp < kth:
            break
    ranked = sorted(done.items(), key=lambda t: -t[1])[:words]
    return [(s, math.exp(lp)) for s, lp in ranked]


def _logsumexp(x):
    if x.size == 0:
        return -math.inf
    m = x.max()
    return float(m + math.log(np.exp(x - m).sum()))
