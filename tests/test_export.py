"""charrnn export --format onnx: onnxruntime's logits equal charrnn's over a few
hundred steps, for every cell and 1-2 layers."""
import json

import numpy as np
import pytest

from charrnn import checkpoint as C
from conftest import run_cli, train_small

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def charrnn_logits(ck, ids):
    """Logits after each id, from charrnn's own sampling kernels (batch 1)."""
    from charrnn.kernels import sample as K
    from charrnn.sampling import Generator
    g = Generator(ck.model_cfg, ck.params, ck.vocab, seed=0)
    out = []
    for i in ids:
        K.feed(g.kind, np.array([i], np.int64), g.Wx0, g.Wxu, g.Wh, g.b, g.h, g.c, g.ax, g.ah)
        out.append(g.h[-1] @ g.Wy + g.by)
    return np.array(out)


@pytest.mark.parametrize("cell, layers", [("rnn", 1), ("lstm", 1), ("gru", 1), ("rnn", 2), ("lstm", 2), ("gru", 2)])
def test_onnxruntime_matches_charrnn(cell, layers, tmp_path, bundled_text):
    _, run = train_small(tmp_path, bundled_text[:20_000], cell=cell, steps=30, hidden=24, layers=layers)
    out = tmp_path / "m.onnx"
    r = run_cli("export", run, "-o", out)
    assert r.returncode == 0, r.stderr.decode()
    ck = C.load(run / "best.npz")
    ids = ck.vocab.encode(bundled_text[30_000:30_300]).astype(np.int64)
    want = charrnn_logits(ck, ids)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    L, H = layers, 24
    h, c = np.zeros((L, 1, H), np.float32), np.zeros((L, 1, H), np.float32)
    got = []
    for i in ids:
        logits, h, c = sess.run(None, {"id": np.array([i]), "h": h, "c": c})
        got.append(logits[0])
    assert np.abs(np.array(got) - want).max() < 1e-5
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["vocab"]) == "".join(ck.vocab.chars.tolist())
    assert meta["cell"] == cell and meta["layers"] == str(layers)


def test_batched_streams_and_bad_input(trained_run, tmp_path):
    out = tmp_path / "m.onnx"
    assert run_cli("export", trained_run, "-o", out).returncode == 0
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    h = np.zeros((2, 3, 48), np.float32)
    logits, h2, c2 = sess.run(None, {"id": np.array([1, 2, 1]), "h": h, "c": h})
    assert logits.shape[0] == 3 and np.allclose(logits[0], logits[2]) and h2.shape == (2, 3, 48)
    r = run_cli("export", trained_run, "--format", "tflite", "-o", out)
    assert r.returncode == 2 and "--format" in r.stderr.decode()
    r = run_cli("export", trained_run, "-o", tmp_path / "no" / "such" / "dir.onnx")
    assert r.returncode == 1 and "cannot write" in r.stderr.decode()
    assert r.stderr.decode().count("\n") == 1


def test_without_onnx_says_what_to_install(trained_run, tmp_path):
    # a stand-in `onnx` that fails to import, first on the path
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "onnx.py").write_text("raise ImportError('no onnx here')\n")
    import os
    r = run_cli("export", trained_run, "-o", tmp_path / "m.onnx",
                env={"PYTHONPATH": f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    err = r.stderr.decode()
    assert r.returncode == 1 and 'pip install "charrnn[onnx]"' in err and err.count("\n") == 1
