"""Hand-written backward passes against centred finite differences, in float64."""
import numpy as np
import pytest

from charrnn import model as M
from charrnn.config import ModelConfig

V, B, T, H = 7, 3, 5, 4


def setup(cell, layers, rng, dropout=0.0):
    cfg = ModelConfig(model=cell, hidden=H, layers=layers, vocab_size=V, dropout=dropout)
    flat = M.init_params(cfg, np.float64, rng)
    flat += rng.normal(0, 0.3, flat.shape)     # break the zero biases' symmetry
    x = rng.integers(0, V, (T, B)).astype(np.int32)
    y = rng.integers(0, V, (T, B)).astype(np.int32)
    h0 = rng.normal(0, 0.5, (layers, B, H))
    c0 = rng.normal(0, 0.5, (layers, B, H))
    masks = None
    if dropout:
        # per-step masks ("step" dropout) between layers; none on the output
        masks = [None] + [(rng.random((T, B, H)) > dropout) / (1 - dropout) for _ in range(1, layers)] + [None]
    return cfg, flat, x, y, h0, c0, masks


def mean_loss(cfg, flat, x, y, h0, c0, masks):
    ws = M.Workspace(cfg, T, B, np.float64)
    st = M.State(cfg, B, np.float64)
    st.h[:], st.c[:] = h0, c0
    return M.forward(cfg, M.views(flat, cfg), ws, x, y, st, masks) / (T * B)


def central_diff(f, arr, i, h=1e-3):
    """d f / d arr[i] by the 5-point centred stencil, error O(h^4)."""
    old = arr[i]
    vals = []
    for k in (2, 1, -1, -2):
        arr[i] = old + k * h
        vals.append(f())
    arr[i] = old
    return (8 * (vals[1] - vals[2]) - (vals[0] - vals[3])) / (12 * h)


def rel_err(a, n):
    return np.max(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), 1e-12))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_gradients_match_finite_differences(cell, layers, rng):
    cfg, flat, x, y, h0, c0, masks = setup(cell, layers, rng)
    ws = M.Workspace(cfg, T, B, np.float64)
    st = M.State(cfg, B, np.float64)
    st.h[:], st.c[:] = h0, c0
    p = M.views(flat, cfg)
    grad = np.zeros_like(flat)
    M.forward(cfg, p, ws, x, y, st, masks)
    M.backward(cfg, p, M.views(grad, cfg), ws, x, masks)
    loss = lambda: mean_loss(cfg, flat, x, y, h0, c0, masks)  # noqa: E731
    num = np.array([central_diff(loss, flat, i) for i in range(flat.size)])
    an, nu = M.views(grad, cfg), M.views(num, cfg)
    for name in an:
        assert rel_err(an[name], nu[name]) < 1e-6, name
    # the initial state's gradients, h0 and (LSTM) c0
    for which, arr in [("h", h0)] + ([("c", c0)] if cell == "lstm" else []):
        for l in range(layers):
            analytic = (ws.dh if which == "h" else ws.dc)[l]
            numeric = np.array([[central_diff(loss, arr, (l, b, j)) for j in range(H)]
                                for b in range(B)])
            assert rel_err(analytic, numeric) < 1e-6, f"{which}0 layer {l}"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradients_with_dropout_masks(cell, rng):
    cfg, flat, x, y, h0, c0, masks = setup(cell, 2, rng, dropout=0.3)
    ws = M.Workspace(cfg, T, B, np.float64)
    st = M.State(cfg, B, np.float64)
    st.h[:], st.c[:] = h0, c0
    grad = np.zeros_like(flat)
    M.forward(cfg, M.views(flat, cfg), ws, x, y, st, masks)
    M.backward(cfg, M.views(flat, cfg), M.views(grad, cfg), ws, x, masks)
    loss = lambda: mean_loss(cfg, flat, x, y, h0, c0, masks)  # noqa: E731
    idx = rng.choice(flat.size, 80, replace=False)
    numeric = np.array([central_diff(loss, flat, i) for i in idx])
    assert rel_err(grad[idx], numeric) < 1e-6


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_gradients_with_locked_dropout_and_dropconnect(cell, layers, rng):
    """Fixed locked masks (B, H) on layer inputs and the top output, and a fixed
    DropConnect mask on each Wh: the gradient w.r.t. the raw weights, as training
    takes it (masked Wh forward and backward, then the mask on dWh)."""
    cfg = ModelConfig(model=cell, hidden=H, layers=layers, vocab_size=V, dropout=0.3,
                      dropout_kind="locked", wdrop=0.4)
    _, flat, x, y, h0, c0, _ = setup(cell, layers, rng)
    masks = M.dropout_masks(cfg, T, B, np.float64, rng)
    wmasks = M.weight_masks(cfg, np.float64, rng)
    assert masks[-1].shape == (B, H) and len(masks) == layers + 1
    assert all((m == 0).any() and (m > 1).any() for m in wmasks)
    bufs = [np.zeros((H, cfg.gates * H)) for _ in range(layers)]

    def loss():
        q = M.drop_connect(M.views(flat, cfg), wmasks, bufs)
        ws = M.Workspace(cfg, T, B, np.float64)
        st = M.State(cfg, B, np.float64)
        st.h[:], st.c[:] = h0, c0
        return M.forward(cfg, q, ws, x, y, st, masks) / (T * B)

    ws = M.Workspace(cfg, T, B, np.float64)
    st = M.State(cfg, B, np.float64)
    st.h[:], st.c[:] = h0, c0
    q = M.drop_connect(M.views(flat, cfg), wmasks, bufs)
    grad = np.zeros_like(flat)
    g = M.views(grad, cfg)
    M.forward(cfg, q, ws, x, y, st, masks)
    M.backward(cfg, q, g, ws, x, masks)
    M.drop_connect_backward(g, wmasks)
    num = np.array([central_diff(loss, flat, i) for i in range(flat.size)])
    nu = M.views(num, cfg)
    for name in g:
        assert rel_err(g[name], nu[name]) < 1e-6, name
    # dropped recurrent weights get no gradient, and the masks changed the loss
    for l, m in enumerate(wmasks):
        assert np.all(g[f"l{l}.Wh"][m == 0] == 0)
    assert abs(loss() - mean_loss(cfg, flat, x, y, h0, c0, None)) > 1e-6
