"""Exact evaluation of a model on text: every character's loss, the state carried
through the whole text in chunks (one stream, so nothing is cut).

Characters outside the model's vocabulary are skipped (neither read nor scored)
and counted. The first character of a file is read but not scored (there is
nothing to predict it from); a --text string is scored from its first character,
read after a newline, as if it began a line.
"""
import math

import numpy as np

from charrnn import model as M
from charrnn.data import MAX_STREAM_BYTES, text_chunks

CHUNK = 1024
LN2 = math.log(2)


def encode_known(path, vocab, encoding="utf-8", max_stream_bytes=MAX_STREAM_BYTES):
    """(ids, n_unknown, examples) of a file ("-": stdin), unknown characters dropped, a
    leading byte-order mark too (data.text_chunks: a CorpusError naming the file when it
    cannot be read, or is a stream longer than max_stream_bytes)."""
    parts, unknown, examples = [], 0, set()
    for text in text_chunks(path, encoding, None, max_stream_bytes):
        ids, known = vocab.lookup(text)
        if not known.all():
            bad = np.flatnonzero(~known)
            unknown += len(bad)
            if len(examples) < 10:
                examples.update(text[i] for i in bad[:10].tolist())
        parts.append(ids[known].astype(vocab.id_dtype))
    return (np.concatenate(parts) if parts else np.zeros(0, vocab.id_dtype)), unknown, sorted(examples)[:10]


def per_char_losses(ck, ids) -> np.ndarray:
    """Loss in nats of predicting ids[1:] from ids[:-1] (float64, len(ids) - 1)."""
    if len(ids) < 2:
        return np.zeros(0)
    dtype = ck.flat.dtype
    ws = M.Workspace(ck.model_cfg, min(CHUNK, len(ids) - 1), 1, dtype, train=False)
    out = np.zeros((1, len(ids) - 1))
    M.loss_sum(ck.model_cfg, ck.params, ws, ids.reshape(1, -1), dtype, losses_out=out)
    return out[0]


def summarize(losses, unknown=0, name=None) -> dict:
    """{chars, unknown, loss, bpc, perplexity} of per-character losses; the figures are
    NaN when nothing was scored, and a perplexity beyond float range is infinite."""
    n = len(losses)
    mean = float(losses.sum() / n) if n else float("nan")
    out = {"chars": n, "unknown": unknown, "loss": mean, "bpc": mean / LN2,
           "perplexity": math.exp(mean) if mean <= 709 else float("inf") if n else float("nan")}
    if name is not None:
        out = {"file": name, **out}
    return out


def score_text(ck, text):
    """(ids scored, per-char losses) of a string, read after a newline when the
    vocabulary has one; unknown characters are dropped (and counted by the caller)."""
    ids, known = ck.vocab.lookup(text)
    ids = ids[known]
    nl = ck.vocab.index("\n")
    return ids, per_char_losses(ck, np.concatenate([[nl], ids]) if nl >= 0 else ids)
