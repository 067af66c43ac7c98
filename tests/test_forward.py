"""The compiled forward pass against the plain NumPy reference, and TBPTT properties."""
import numpy as np
import pytest

from charrnn import model as M
from charrnn.config import ModelConfig
from reference import reference_losses

V, B, T, H = 7, 2, 5, 4


def run(cfg, flat, x, y, h0, c0, dtype):
    ws = M.Workspace(cfg, x.shape[0], x.shape[1], dtype)
    st = M.State(cfg, x.shape[1], dtype)
    st.h[:], st.c[:] = h0, c0
    M.forward(cfg, M.views(flat.astype(dtype), cfg), ws, x, y, st, grad=False)
    return ws.losses[:x.size].reshape(x.shape), st


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 3])
def test_forward_matches_reference(cell, layers, rng):
    cfg = ModelConfig(model=cell, hidden=H, layers=layers, vocab_size=V)
    flat = M.init_params(cfg, np.float64, rng) + rng.normal(0, 0.5, M.num_params(cfg))
    x = rng.integers(0, V, (T, B)).astype(np.int32)
    y = rng.integers(0, V, (T, B)).astype(np.int32)
    h0, c0 = rng.normal(0, 0.5, (2, layers, B, H))
    ref, ref_h, ref_c = reference_losses(cell, M.views(flat, cfg), x, y, h0, c0, V)
    got, st = run(cfg, flat, x, y, h0, c0, np.float64)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(st.h, ref_h, rtol=1e-12, atol=1e-12)
    if cell == "lstm":
        np.testing.assert_allclose(st.c, ref_c, rtol=1e-12, atol=1e-12)
    # float32 kernels (rational tanh/sigmoid) stay within float32 accuracy
    got32, _ = run(cfg, flat, x, y, h0, c0, np.float32)
    np.testing.assert_allclose(got32, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_chunked_state_carry_equals_one_long_pass(cell, rng):
    cfg = ModelConfig(model=cell, hidden=H, layers=2, vocab_size=V)
    flat = M.init_params(cfg, np.float64, rng)
    x = rng.integers(0, V, (12, B)).astype(np.int32)
    y = rng.integers(0, V, (12, B)).astype(np.int32)
    zeros = np.zeros((2, B, H))
    whole, _ = run(cfg, flat, x, y, zeros, zeros, np.float64)
    first, st = run(cfg, flat, x[:5], y[:5], zeros, zeros, np.float64)
    second, _ = run(cfg, flat, x[5:], y[5:], st.h, st.c, np.float64)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-13, atol=1e-13)
