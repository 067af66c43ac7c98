"""Memory bounded in the vocabulary size: the head runs in row chunks when its
logits would outgrow model.LOGIT_BYTES, with the same loss and gradient, and a
vocabulary above 65,536 trains within a memory bound."""
import os
import subprocess
import sys

import numpy as np
import pytest

from charrnn import model as M
from charrnn.config import ModelConfig


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_chunked_head_gives_the_same_loss_and_gradient(cell, monkeypatch, rng):
    cfg = ModelConfig(model=cell, hidden=5, layers=2, vocab_size=11)
    T, B = 6, 3
    flat = rng.uniform(-0.5, 0.5, M.num_params(cfg))
    p = M.views(flat, cfg)
    x = rng.integers(0, 11, (T, B)).astype(np.int32)
    y = rng.integers(0, 11, (T, B)).astype(np.int32)
    out = []
    for logit_bytes in (1 << 30, 11 * 8 * 4):          # all at once; 4 positions a chunk
        monkeypatch.setattr(M, "LOGIT_BYTES", logit_bytes)
        ws = M.Workspace(cfg, T, B, np.float64)
        grad = np.zeros_like(flat)
        g = M.views(grad, cfg)
        loss = M.forward(cfg, p, ws, x, y, M.State(cfg, B, np.float64), g=g)
        M.backward(cfg, p, g, ws, x)
        out.append((loss, grad, ws.logit_rows, ws.dh[0].copy()))
    (l1, g1, r1, d1), (l2, g2, r2, d2) = out
    assert r1 == T * B and r2 == 4
    assert l1 == pytest.approx(l2, rel=1e-13)
    assert np.allclose(g1, g2, rtol=1e-12, atol=1e-15) and np.allclose(d1, d2, rtol=1e-12, atol=1e-15)


def _peak_mb(args, tmp_path):
    code = ("import atexit, sys\n"
            "def peak():\n"
            "    for line in open('/proc/self/status'):\n"
            "        if line.startswith('VmHWM'): print('PEAK', int(line.split()[1]) // 1024, file=sys.stderr)\n"
            "atexit.register(peak)\n"
            "from charrnn.cli import main\n"
            f"main({args!r})\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    return int(r.stderr.decode().split("PEAK")[1].split()[0])


def test_a_vocabulary_above_65536_trains_within_a_memory_bound(tmp_path):
    rng = np.random.default_rng(0)
    chars = np.concatenate([np.arange(0x4E00, 0x4E00 + 20_000), np.arange(0x20000, 0x20000 + 50_000)])
    text = "".join(map(chr, np.concatenate([chars, rng.choice(chars, 70_000)])))
    big = tmp_path / "big.txt"
    big.write_text(text, encoding="utf-8")
    small = tmp_path / "small.txt"
    small.write_text("".join(rng.choice(list("abcdefgh \n"), len(text))), encoding="utf-8")
    args = ["--hidden", "8", "--layers", "1", "--batch-size", "32", "--seq-len", "64", "--steps", "4",
            "--eval-every", "4", "-q", "--no-preview", "--val-frac", "0.05"]
    base = _peak_mb(["train", str(small), "--out", str(tmp_path / "s"), *args], tmp_path)
    peak = _peak_mb(["train", str(big), "--out", str(tmp_path / "b"), *args], tmp_path)
    # the model: 70,000 x 8 x 5 floats (11 MB) with gradient, Adagrad state and the weight
    # average (and each saved once more into a checkpoint); the head's logits unchunked would
    # be 64 x 32 x 70,000 floats (573 MB) in training and again in evaluation
    assert peak - base < 240, (peak, base)
