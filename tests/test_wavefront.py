"""The layers side by side (charrnn.wavefront): the loss, gradient and carried state of
the layer-by-layer pass, the same bits at every run, errors that stop every layer."""
import numpy as np
import pytest

from charrnn import model as M
from charrnn import wavefront as W
from charrnn.config import ModelConfig, TrainConfig
from charrnn.training import Trainer
from test_gradients import central_diff, rel_err

V, B, H = 9, 4, 6


def _inputs(cfg, T, rng, dtype=np.float64, dropout_kind=None):
    flat = M.init_params(cfg, dtype, rng)
    flat += rng.normal(0, 0.3, flat.shape).astype(dtype)    # break the biases' symmetry
    x = rng.integers(0, V, (T, B)).astype(np.int32)
    y = rng.integers(0, V, (T, B)).astype(np.int32)
    h0, c0 = rng.normal(0, 0.5, (2, cfg.layers, B, H)).astype(dtype)
    masks = None
    if dropout_kind == "locked":
        masks = M.dropout_masks(cfg, T, B, dtype, rng)
    elif dropout_kind == "step":       # version 1's per-step masks between the layers
        masks = [None] + [(rng.random((T, B, H)) > 0.3) / 0.7 for _ in range(1, cfg.layers)] + [None]
    return flat, x, y, h0, c0, masks


def _pass(cfg, flat, x, y, h0, c0, masks, wave=None):
    """(loss, gradient, final state, gradient w.r.t. the initial h) of one pass, layer by
    layer or (wave given) as a wavefront."""
    T = x.shape[0]
    dtype = flat.dtype
    ws = M.Workspace(cfg, T, B, dtype)
    st = M.State(cfg, B, dtype)
    st.h[:], st.c[:] = h0, c0
    grad = np.full_like(flat, np.nan)           # every entry must be written
    p, g = M.views(flat, cfg), M.views(grad, cfg)
    if wave is None:
        loss = M.forward(cfg, p, ws, x, y, st, masks)
        M.backward(cfg, p, g, ws, x, masks)
    else:
        loss = wave.forward(p, ws, x, y, st, masks, g=g)
        wave.backward(p, g, ws, x, masks)
    return loss, grad, st, np.array(ws.dh)


@pytest.mark.parametrize("cell,layers,T,dropout_kind", [
    ("lstm", 2, 23, None), ("lstm", 2, 7, "locked"), ("gru", 2, 23, "step"),
    ("rnn", 2, 12, "locked"), ("lstm", 3, 13, "step"), ("gru", 3, 5, None)])
def test_the_wavefront_gives_the_layer_by_layer_pass(cell, layers, T, dropout_kind, rng):
    kind = "locked" if dropout_kind == "locked" else "step"
    cfg = ModelConfig(model=cell, hidden=H, layers=layers, vocab_size=V,
                      dropout=0.3 if dropout_kind else 0.0, dropout_kind=kind)
    args = _inputs(cfg, T, rng, dropout_kind=dropout_kind)
    loss, grad, st, dh = _pass(cfg, *args)
    wloss, wgrad, wst, wdh = _pass(cfg, *args, wave=W.Wavefront(cfg))
    assert len(W.chunks(T)) > 1
    assert wloss == pytest.approx(loss, rel=1e-13)
    np.testing.assert_allclose(wgrad, grad, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(wst.h, st.h, rtol=1e-13)
    np.testing.assert_allclose(wst.c, st.c, rtol=1e-13)
    np.testing.assert_allclose(wdh, dh, rtol=1e-11, atol=1e-14)
    assert not np.array_equal(st.h, args[3])


def test_the_wavefront_gradient_matches_finite_differences(rng):
    """Checked directly too, not only against the layer-by-layer pass: float64, an LSTM
    of two layers with locked dropout, 9 steps (chunks of one step)."""
    T = 9
    cfg = ModelConfig(model="lstm", hidden=H, layers=2, vocab_size=V, dropout=0.3, dropout_kind="locked")
    flat, x, y, h0, c0, masks = _inputs(cfg, T, rng, dropout_kind="locked")
    wave = W.Wavefront(cfg)
    _, grad, _, _ = _pass(cfg, flat, x, y, h0, c0, masks, wave)

    def loss():
        ws, st = M.Workspace(cfg, T, B, np.float64), M.State(cfg, B, np.float64)
        st.h[:], st.c[:] = h0, c0
        return wave.forward(M.views(flat, cfg), ws, x, y, st, masks) / (T * B)

    idx = rng.choice(flat.size, 120, replace=False)
    numeric = np.array([central_diff(loss, flat, i) for i in idx])
    assert rel_err(grad[idx], numeric) < 1e-6        # (the gradient of the mean loss)


def test_the_wavefront_gives_the_same_bits_at_every_run(rng):
    """float32, chunks of three steps, two runs of the same step: identical bits."""
    T, Hs = 30, 32
    cfg = ModelConfig(model="lstm", hidden=Hs, layers=2, vocab_size=V, dropout=0.2, dropout_kind="locked")
    flat = M.init_params(cfg, np.float32, rng)
    x = rng.integers(0, V, (T, B)).astype(np.int32)
    y = rng.integers(0, V, (T, B)).astype(np.int32)
    masks = M.dropout_masks(cfg, T, B, np.float32, rng)
    runs = []
    for _ in range(3):
        ws, st = M.Workspace(cfg, T, B, np.float32), M.State(cfg, B, np.float32)
        grad = np.zeros_like(flat)
        wave = W.Wavefront(cfg)
        loss = wave.forward(M.views(flat, cfg), ws, x, y, st, masks)
        wave.backward(M.views(flat, cfg), M.views(grad, cfg), ws, x, masks)
        runs.append((loss, grad))
    for loss, grad in runs[1:]:
        assert loss == runs[0][0]
        assert np.array_equal(grad, runs[0][1])


def test_an_error_in_one_layer_stops_every_layer_and_is_raised(rng, monkeypatch):
    cfg = ModelConfig(model="lstm", hidden=H, layers=3, vocab_size=V)
    flat, x, y, h0, c0, _ = _inputs(cfg, 12, rng)
    steps = M.layer_steps

    def failing(cfg_, p, ws, l, t0, t1, Whp):
        if l == 1 and t0 > 0:
            raise MemoryError("layer 1 failed")
        return steps(cfg_, p, ws, l, t0, t1, Whp)

    monkeypatch.setattr(M, "layer_steps", failing)
    wave = W.Wavefront(cfg)
    with pytest.raises(MemoryError, match="layer 1 failed"):
        _pass(cfg, flat, x, y, h0, c0, None, wave)
    monkeypatch.setattr(M, "layer_steps", steps)        # and the object still works
    loss, grad, _, _ = _pass(cfg, flat, x, y, h0, c0, None, wave)
    assert loss == pytest.approx(_pass(cfg, flat, x, y, h0, c0, None)[0], rel=1e-13)


def test_which_steps_run_as_a_wavefront():
    lstm = lambda layers, hidden: ModelConfig(model="lstm", hidden=hidden, layers=layers, vocab_size=65)  # noqa: E731
    ob = {"blas_name": "openblas"}
    assert W.applies(lstm(2, 512), np.float32, threads=2, **ob)          # benchmark config (c)
    assert W.applies(lstm(2, 384), np.float32, threads=2, **ob)
    assert not W.applies(lstm(2, 512), np.float32, threads=2, blas_name="mkl")     # MKL: layer by layer
    assert not W.applies(lstm(2, 512), np.float32, threads=1, **ob)      # --threads 1
    assert not W.applies(lstm(1, 512), np.float32, threads=2, **ob)
    assert not W.applies(lstm(3, 512), np.float32, threads=2, **ob)      # a thread per layer
    assert W.applies(lstm(3, 512), np.float32, threads=4, **ob)
    assert not W.applies(lstm(2, 256), np.float32, threads=2, **ob)      # data-parallel shards instead
    assert W.applies(lstm(2, 256), np.float64, threads=2, **ob)


def test_training_as_a_wavefront_is_deterministic_and_learns(tmp_path, bundled_text):
    """Trainer(wavefront=True) on a small model: the same weights from the same seed,
    and the loss falls."""
    from charrnn.data import read_corpus
    (tmp_path / "c.txt").write_text(bundled_text[:30_000], encoding="utf-8")
    corpus = read_corpus([str(tmp_path / "c.txt")])
    ids, vocab = corpus.ids, corpus.vocab
    mcfg = ModelConfig(model="gru", hidden=48, layers=2, vocab_size=len(vocab), dropout=0.1,
                       dropout_kind="locked", wdrop=0.2)
    tcfg = TrainConfig(batch_size=8, seq_len=20, seed=3, val_frac=0.1)
    runs = []
    for _ in range(2):
        tr = Trainer(mcfg, tcfg, ids, vocab, wavefront=True)
        assert tr.wavefront is not None and tr.parallel is None
        losses = [tr.train_step() for _ in range(30)]
        runs.append((tr.flat.copy(), losses))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert np.mean(runs[0][1][-5:]) < np.mean(runs[0][1][:5]) - 0.3
