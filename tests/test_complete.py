"""charrnn complete: beam search for the likeliest next words, with exact
probabilities checked against the plain NumPy reference."""
import json
import math

import numpy as np
import pytest

from charrnn import checkpoint as C
from charrnn.complete import complete, is_boundary
from conftest import run_cli, train_small
from reference import reference_losses

SENTENCES = ["hello, welcome to the class.", "hello, welcome to the class!",
             "hello, welcome to the course.", "good morning, welcome to the class.",
             "hello, welcome to the campus.", "see you in class, hello again."]


@pytest.fixture(scope="module")
def class_model(tmp_path_factory):
    rng = np.random.default_rng(0)
    text = "\n".join(SENTENCES[k] for k in rng.integers(0, len(SENTENCES), 3000)) + "\n"
    tmp = tmp_path_factory.mktemp("complete")
    train_small(tmp, text, steps=400, hidden=48, layers=1, optimizer="adam", lr=1e-2,
                val_frac=0.05)
    return tmp / "run"


def ref_logprobs(ck, prefix):
    """log P(every next character) after reading "\\n" + prefix, from the reference."""
    ids = ck.vocab.encode("\n" + prefix).astype(np.int64)
    V = len(ck.vocab)
    p = {k: v.astype(np.float64) for k, v in ck.params.items()}
    L, H = ck.model_cfg.layers, ck.model_cfg.hidden
    x = np.repeat(ids[:, None], V, axis=1)               # V identical streams
    y = np.zeros_like(x)
    y[-1] = np.arange(V)                                  # each scores one next character
    losses, _, _ = reference_losses(ck.model_cfg.model, p, x, y, np.zeros((L, V, H)),
                                    np.zeros((L, V, H)), V)
    return -losses[-1]


def ref_probability(ck, text, s):
    """P(s then a boundary | text), as a product of the reference's probabilities."""
    logp = 0.0
    for k, ch in enumerate(s):
        logp += ref_logprobs(ck, text + s[:k])[ck.vocab.index(ch)]
    last = ref_logprobs(ck, text + s)
    bound = [i for i, ch in enumerate(ck.vocab.chars.tolist()) if is_boundary(ch)]
    return math.exp(logp) * np.exp(last[bound]).sum()


def test_known_continuation_ranks_first_with_exact_probabilities(class_model):
    ck = C.load(class_model / "best.npz")
    found = complete(ck, "hello, welcome to the ", words=3, beam=8)
    assert found[0][0] == "class", found
    assert {s for s, _ in found} >= {"class", "course"}, found
    assert all(a[1] >= b[1] for a, b in zip(found, found[1:]))
    for s, prob in found:
        assert prob == pytest.approx(ref_probability(ck, "hello, welcome to the ", s), rel=1e-4)
    # ending inside a word: its completions, "" meaning the word is complete as typed
    s, prob = complete(ck, "hello, welcome to the", words=1)[0]
    assert s == "" and prob == pytest.approx(ref_probability(ck, "hello, welcome to the", s), rel=1e-4)
    # ending at a boundary other than a space: the next word may begin with one
    s, prob = complete(ck, "hello,", words=1)[0]
    assert s == " welcome" and prob == pytest.approx(ref_probability(ck, "hello,", s), rel=1e-4)
    # inside a word: the rest of it
    assert complete(ck, "hello, welcome to the cou", words=1)[0][0] == "rse"


def test_beam_width_one_is_greedy(class_model):
    ck = C.load(class_model / "best.npz")
    bound = np.array([is_boundary(ch) for ch in ck.vocab.chars.tolist()])
    chars = ck.vocab.chars.tolist()
    for text in ["good morning, wel", "see you in ", "hello, we"]:
        # greedy, written out: the likeliest event each time, a boundary counted as one
        s, worded = "", not is_boundary(text[-1])
        while True:
            lp = ref_logprobs(ck, text + s)
            best = int(np.argmax(np.where(bound, -np.inf, lp))) if worded else int(np.argmax(lp))
            if worded and np.log(np.exp(lp[bound]).sum()) > lp[best]:
                break
            s += chars[best]
            worded = worded or not bound[best]
        got = complete(ck, text, words=5, beam=1)
        assert len(got) == 1 and got[0][0] == s, (text, got, s)


def test_cli_table_lines_json_and_errors(class_model):
    r = run_cli("complete", "hello, welcome to the ", "-c", class_model, "--words", "3")
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "rank\tcontinuation\tprobability"
    assert lines[1].split("\t")[:2] == ["1", "class"] and 0 < float(lines[1].split("\t")[2]) <= 1
    r = run_cli("complete", "hello, welcome to the ", "-c", class_model, "--json")
    got = json.loads(r.stdout)
    assert got[0]["text"] == "class" and got[0]["rank"] == 1
    for args, words in [(["--words", "0"], "--words"), (["--beam", "0"], "--beam")]:
        r = run_cli("complete", "hello", "-c", class_model, *args)
        assert r.returncode == 2 and words in r.stderr.decode()
    r = run_cli("complete", "hello Zürich", "-c", class_model)
    err = r.stderr.decode()
    assert r.returncode == 2 and "'Zü'" in err and err.count("\n") == 1
