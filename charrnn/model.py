"""The stacked network: parameter layout, workspaces and the layer loop.

All parameters live in one flat, contiguous buffer; named arrays are views into
it, in the order of `param_shapes`, and gradients use the same layout, so that
clipping and the optimizer are single passes. Per layer l (G = gates * H, D = V
for l = 0, else H):
    l{l}.Wx (D, G)   input weights; layer 0's are looked up by row (one-hot input)
    l{l}.Wh (H, G)   recurrent weights
    l{l}.b  (G,)     bias
    Wy (H, V), by (V,)   output layer
Arrays are time-major: (T, B, ...). The kernels write into workspace arrays.
"""
import numpy as np

from charrnn.config import ModelConfig
from charrnn.kernels import blas, gru, head, lstm, rnn

LOGIT_BYTES = 32 << 20     # the head's logits (positions x V) stay within this


def param_shapes(cfg: ModelConfig) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of the parameters, in their order in the flat buffer."""
    H, V, G = cfg.hidden, cfg.vocab_size, cfg.gates * cfg.hidden
    shapes = []
    for l in range(cfg.layers):
        shapes += [(f"l{l}.Wx", (V if l == 0 else H, G)), (f"l{l}.Wh", (H, G)), (f"l{l}.b", (G,))]
    return shapes + [("Wy", (H, V)), ("by", (V,))]


def num_params(cfg: ModelConfig) -> int:
    return sum(int(np.prod(s)) for _, s in param_shapes(cfg))


def views(flat: np.ndarray, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Named, C-contiguous views into a flat (P,) buffer."""
    out, k = {}, 0
    for name, shape in param_shapes(cfg):
        n = int(np.prod(shape))
        out[name] = flat[k:k + n].reshape(shape)
        k += n
    return out


def init_params(cfg: ModelConfig, dtype, rng: np.random.Generator) -> np.ndarray:
    """Flat (P,) parameters, every one uniform(+-1/sqrt(H)) as PyTorch initialises its
    cells and nn.Linear, biases included. Measured on tinyshakespeare (2x256 LSTM, Adam):
    zero biases with a forget bias of 1 learned markedly slower (loss 2.18 vs 2.01 at
    step 450; PyTorch 2.00)."""
    bound = 1.0 / np.sqrt(cfg.hidden)
    return rng.uniform(-bound, bound, num_params(cfg)).astype(dtype)


class State:
    """Hidden state carried between calls: h, c (L, B, H); c unused except by LSTM."""

    def __init__(self, cfg: ModelConfig, batch: int, dtype):
        self.h = np.zeros((cfg.layers, batch, cfg.hidden), dtype)
        self.c = np.zeros((cfg.layers, batch, cfg.hidden), dtype)

    def reset(self):
        self.h[:] = 0
        self.c[:] = 0

    def rows(self, lo: int, hi: int) -> "State":
        """The state of streams lo..hi-1: views, so that writes reach this State."""
        part = State.__new__(State)
        part.h, part.c = self.h[:, lo:hi], self.c[:, lo:hi]
        return part


class Workspace:
    """Preallocated buffers for sequences of up to T steps over B streams.

    Per layer: gates (T, B, G), hs (T+1, B, H); LSTM cs (T+1, B, H), tcs (T, B, H);
    GRU hns (T, B, H), dgh (T, B, G), tmp (B, G) per layer; with dropout, xin (T, B, H) masked inputs
    and (locked dropout) top (T, B, H), the top layer's masked output.
    Head: logits (T*B, V), losses (T*B,), dtop (T*B, H). Per layer, buffers for
    the recurrent weights prepared (packed) for the per-step products.
    """

    def __init__(self, cfg: ModelConfig, T: int, B: int, dtype, train: bool = True):
        L, H, V, G = cfg.layers, cfg.hidden, cfg.vocab_size, cfg.gates * cfg.hidden
        z = lambda *shape: np.zeros(shape, dtype)  # noqa: E731
        self.T, self.B = T, B
        self.gates = [z(T, B, G) for _ in range(L)]
        self.hs = [z(T + 1, B, H) for _ in range(L)]
        self.cs = [z(T + 1, B, H) for _ in range(L)] if cfg.model == "lstm" else None
        self.tcs = [z(T, B, H) for _ in range(L)] if cfg.model == "lstm" else None
        self.hns = [z(T, B, H) for _ in range(L)] if cfg.model == "gru" else None
        self.dgh = [z(T, B, G) for _ in range(L)] if cfg.model == "gru" and train else None
        self.xin = [z(T, B, H) for _ in range(L)] if cfg.dropout > 0 and train else None
        self.top = z(T, B, H) if cfg.dropout > 0 and train and cfg.dropout_kind == "locked" else None
        # GRU: each layer's recurrent product (a layer's own: charrnn.wavefront runs layers at once)
        self.tmp = [z(B, G) for _ in range(L)] if cfg.model == "gru" else None
        self.dh = [z(B, H) for _ in range(L)]
        self.dc = [z(B, H) for _ in range(L)] if cfg.model == "lstm" else None
        # recurrent weights packed for the T per-step products (MKL; None otherwise)
        self.pack_fwd = [blas.prepared_buffer(B, H, G, dtype) for _ in range(L)]
        self.pack_bwd = [blas.prepared_buffer(B, G, H, dtype) for _ in range(L)] if train else None
        # the head's logits, for at most `logit_rows` positions at a time: with a large
        # vocabulary the head runs in row chunks, so memory grows with V only as V x H does
        self.logit_rows = max(1, min(T * B, LOGIT_BYTES // (max(1, V) * np.dtype(dtype).itemsize)))
        self.logits = z(self.logit_rows, V)
        self.dby = z(V) if self.logit_rows < T * B and train else None
        self.head_done = False
        self.losses = np.zeros(T * B, np.float64)
        self.dtop = z(T * B, H) if train else None


def forward(cfg, p, ws, x, y, state, masks=None, grad=True, mean_over=None, g=None):
    """Run the network over x (T, B) int32 and score the targets y (T, B) int32.

    p: named parameter views; ws: a Workspace with ws.T >= T; state: State, read as
    the initial state and overwritten with the final one; masks: None, or L + 1 dropout
    masks (scaled by 1/(1-p)), each None or broadcastable to (T, B, H): masks[l] for the
    input of layer l >= 1, masks[L] for the top layer's output (`dropout_masks`).
    With grad=True ws.logits[:T*B] is left holding dloss/dlogits of the *mean* loss,
    ready for `backward`; the mean is over `mean_over` positions (default T*B; a
    data-parallel shard gives the whole minibatch's). When the vocabulary is too large
    for the head's logits of all T*B positions (ws.logit_rows < T*B), the head runs in
    chunks and takes its gradient at once: then `g`, the gradient views, is required. ws.losses[:T*B] holds each
    position's loss in nats. Returns the summed loss (float64).
    The layers one after another; charrnn.wavefront runs the same steps with the layers
    side by side, in time chunks.
    """
    T, B = x.shape
    G = cfg.gates * cfg.hidden
    head.embed(x, p["l0.Wx"], ws.gates[0][:T])
    for l in range(cfg.layers):
        Whp = begin_layer(cfg, p, ws, state, l)
        if l > 0:
            mask_input(ws, masks, l, 0, T)
            input_product(p, ws, masks, l, 0, T, 0, G)
        layer_steps(cfg, p, ws, l, 0, T, Whp)
        end_layer(cfg, ws, state, l, T)
    return head_forward(cfg, p, ws, y, masks, grad, mean_over, g)


def begin_layer(cfg, p, ws, state, l):
    """Load layer l's initial state from `state`; returns its Wh prepared for the steps."""
    ws.hs[l][0] = state.h[l]
    if cfg.model == "lstm":
        ws.cs[l][0] = state.c[l]
    return blas.prepare(p[f"l{l}.Wh"], ws.B, ws.pack_fwd[l])


def mask_input(ws, masks, l, t0, t1):
    """Layer l's (>= 1) dropout-masked input of steps t0..t1-1 into ws.xin[l] (if masked)."""
    m = _mask_steps(masks, l, t0, t1)
    if m is not None:
        np.multiply(ws.hs[l - 1][t0 + 1:t1 + 1], m, out=ws.xin[l][t0:t1])


def _mask_steps(masks, l, t0, t1):
    """masks[l] for steps t0..t1-1 (a locked (B, H) mask is the same at every step), or None."""
    if masks is None or masks[l] is None:
        return None
    return masks[l] if masks[l].ndim == 2 else masks[l][t0:t1]


def input_product(p, ws, masks, l, t0, t1, c0, c1):
    """Columns c0..c1-1 of layer l's (>= 1) input product, steps t0..t1-1, into ws.gates[l]
    (after mask_input)."""
    masked = masks is not None and masks[l] is not None
    inp = (ws.xin[l] if masked else ws.hs[l - 1][1:])[t0:t1]
    n, B = t1 - t0, ws.B
    out = ws.gates[l][t0:t1].reshape(n * B, -1)[:, c0:c1]
    blas.gemm(inp.reshape(n * B, -1), p[f"l{l}.Wx"][:, c0:c1], out, 1.0, 0.0)


def layer_steps(cfg, p, ws, l, t0, t1, Whp):
    """Layer l's recurrence over steps t0..t1-1 (its input product in ws.gates[l] and
    its state at t0 in ws.hs[l][t0], ws.cs[l][t0])."""
    gates, hs, b = ws.gates[l][t0:t1], ws.hs[l][t0:t1 + 1], p[f"l{l}.b"]
    if cfg.model == "lstm":
        lstm.lstm_forward(gates, b, Whp, hs, ws.cs[l][t0:t1 + 1], ws.tcs[l][t0:t1])
    elif cfg.model == "gru":
        gru.gru_forward(gates, b, Whp, hs, ws.hns[l][t0:t1], ws.tmp[l])
    else:
        rnn.rnn_forward(gates, b, Whp, hs)


def end_layer(cfg, ws, state, l, T):
    """Store layer l's final state (after step T) into `state`."""
    state.h[l] = ws.hs[l][T]
    if cfg.model == "lstm":
        state.c[l] = ws.cs[l][T]


def head_forward(cfg, p, ws, y, masks, grad=True, mean_over=None, g=None):
    """The output layer and the loss over the top layer's outputs (`forward`'s last part)."""
    T, B = y.shape
    top = _top(ws, T, masks, cfg.layers).reshape(T * B, -1)
    scale = 1.0 / (mean_over or T * B) if grad else 0.0
    N, R = T * B, ws.logit_rows
    ws.head_done = False
    if N <= R:      # the whole head at once; backward takes its gradient from ws.logits
        logits = ws.logits[:N]
        blas.gemm(top, p["Wy"], logits, 1.0, 0.0)
        return head.softmax_xent(logits, p["by"], y.reshape(-1), ws.losses[:N], scale)
    # a large vocabulary: the head in chunks of R positions, its gradient taken at once
    if grad and g is None:
        raise ValueError("forward(grad=True) with a chunked head needs the gradient views g")
    targets, total = y.reshape(-1), 0.0
    for a in range(0, N, R):
        b = min(a + R, N)
        logits = ws.logits[:b - a]
        blas.gemm(top[a:b], p["Wy"], logits, 1.0, 0.0)
        total += head.softmax_xent(logits, p["by"], targets[a:b], ws.losses[a:b], scale)
        if grad:
            blas.gemm(top[a:b].T, logits, g["Wy"], 1.0, 0.0 if a == 0 else 1.0)
            head.colsum(logits, ws.dby)
            if a == 0:
                g["by"][:] = ws.dby
            else:
                g["by"] += ws.dby
            blas.gemm(logits, p["Wy"].T, ws.dtop[a:b], 1.0, 0.0)
    ws.head_done = grad
    return total


def _top(ws, T, masks, L, fill=True):
    """The head's input (T, B, H): the top layer's output, or with masks[L] given, that
    output masked into ws.top (by forward; backward, fill=False, finds it there)."""
    if masks is not None and masks[L] is not None:
        if fill:
            np.multiply(ws.hs[L - 1][1:T + 1], masks[L], out=ws.top[:T])
        return ws.top[:T]
    return ws.hs[L - 1][1:T + 1]


def dropout_masks(cfg: ModelConfig, T: int, B: int, dtype, rng: np.random.Generator):
    """Dropout masks for one training step (None without dropout), scaled by 1/(1-p),
    for `forward`/`backward`: a list of L + 1 (masks[l]: layer l's input, masks[L]: the
    head's input). "locked": one (B, H) mask per stream for the whole chunk, on layers
    1.. and the top output; "step" (version 1): a fresh (T, B, H) mask per time step, on
    layers 1.. only, drawn exactly as version 1 drew them."""
    p, L, H = cfg.dropout, cfg.layers, cfg.hidden
    if p <= 0 or (cfg.dropout_kind == "step" and L < 2):
        return None
    keep = np.dtype(dtype).type(1.0 / (1.0 - p))
    shape = (B, H) if cfg.dropout_kind == "locked" else (T, B, H)
    masks = [None] + [(rng.random(shape, dtype=dtype) >= p) * keep for _ in range(1, L)]
    masks.append((rng.random(shape, dtype=dtype) >= p) * keep if cfg.dropout_kind == "locked" else None)
    return masks


def weight_masks(cfg: ModelConfig, dtype, rng: np.random.Generator):
    """DropConnect masks (H, G) for each layer's recurrent weights Wh, one per step
    (chunk), scaled by 1/(1-wdrop); None when cfg.wdrop is 0."""
    p = cfg.wdrop
    if p <= 0:
        return None
    keep = np.dtype(dtype).type(1.0 / (1.0 - p))
    G = cfg.gates * cfg.hidden
    return [(rng.random((cfg.hidden, G), dtype=dtype) >= p) * keep for _ in range(cfg.layers)]


def drop_connect(p: dict, wmasks, out: list) -> dict:
    """The parameters with each layer's Wh replaced by Wh * wmasks[l], written into
    out[l] (H, G): what forward and backward use during a DropConnect step."""
    q = dict(p)
    for l, m in enumerate(wmasks):
        np.multiply(p[f"l{l}.Wh"], m, out=out[l])
        q[f"l{l}.Wh"] = out[l]
    return q


def drop_connect_backward(g: dict, wmasks):
    """Turn gradients w.r.t. the masked Wh into gradients w.r.t. Wh (in place): the
    dropped weights get none."""
    for l, m in enumerate(wmasks):
        np.multiply(g[f"l{l}.Wh"], m, out=g[f"l{l}.Wh"])


def backward(cfg, p, g, ws, x, masks=None):
    """Gradients of the mean loss of the last `forward(grad=True)` into the named
    views `g` (overwritten). Leaves ws.dh[l] (and ws.dc[l]) holding the gradient
    w.r.t. the initial state. Destroys ws.gates and ws.logits."""
    T, B = x.shape
    dabove = head_backward(cfg, p, g, ws, masks, T)
    for l in range(cfg.layers - 1, -1, -1):
        WhTp = begin_layer_backward(cfg, p, ws, l)
        layer_steps_backward(cfg, ws, l, 0, T, dabove, WhTp)
        weight_gradients(cfg, g, ws, x, masks, l, T)
        if l > 0:
            input_backward(p, ws, masks, l, 0, T, 0, cfg.hidden, dabove)


def head_backward(cfg, p, g, ws, masks, T):
    """The output layer's gradients; returns the gradient reaching the top layer's
    outputs, ws.dtop as (T, B, H), which the layers below reuse for theirs."""
    B, L, H = ws.B, cfg.layers, cfg.hidden
    dabove = ws.dtop[:T * B]
    if not ws.head_done:    # else forward took the head's gradient, chunk by chunk
        top = _top(ws, T, masks, L, fill=False).reshape(T * B, H)
        dlogits = ws.logits[:T * B]
        blas.gemm(top.T, dlogits, g["Wy"], 1.0, 0.0)
        head.colsum(dlogits, g["by"])
        blas.gemm(dlogits, p["Wy"].T, dabove, 1.0, 0.0)
    d3 = dabove.reshape(T, B, H)
    if masks is not None and masks[L] is not None:
        np.multiply(d3, masks[L], out=d3)
    return d3


def begin_layer_backward(cfg, p, ws, l):
    """Zero layer l's gradient w.r.t. the final state; returns Wh.T prepared for the steps."""
    ws.dh[l][:] = 0
    if cfg.model == "lstm":
        ws.dc[l][:] = 0
    return blas.prepare(p[f"l{l}.Wh"].T, ws.B, ws.pack_bwd[l])


def layer_steps_backward(cfg, ws, l, t0, t1, dabove, WhTp):
    """Layer l backward through steps t1-1 down to t0, from the gradient dabove (T, B, H)
    reaching its outputs and the one carried in ws.dh[l], ws.dc[l] from step t1."""
    gates, hs, dhs = ws.gates[l][t0:t1], ws.hs[l][t0:t1 + 1], dabove[t0:t1]
    if cfg.model == "lstm":
        lstm.lstm_backward(gates, dhs, WhTp, ws.cs[l][t0:t1 + 1], ws.tcs[l][t0:t1], ws.dh[l], ws.dc[l])
    elif cfg.model == "gru":
        gru.gru_backward(gates, ws.dgh[l][t0:t1], dhs, WhTp, hs, ws.hns[l][t0:t1], ws.dh[l])
    else:
        rnn.rnn_backward(gates, dhs, WhTp, hs, ws.dh[l])


def weight_gradients(cfg, g, ws, x, masks, l, T):
    """Layer l's weight gradients, each one GEMM over all T*B positions (not one per step)."""
    recurrent_gradients(cfg, g, ws, l, T)
    input_gradients(cfg, g, ws, x, masks, l, T, 0, cfg.gates * cfg.hidden)


def recurrent_gradients(cfg, g, ws, l, T):
    """Layer l's gradients of Wh and b, after its steps backward."""
    B, H = ws.B, cfg.hidden
    gates = ws.gates[l][:T]
    G = gates.shape[2]
    dgh = ws.dgh[l][:T] if cfg.model == "gru" else gates
    blas.gemm(ws.hs[l][:T].reshape(T * B, H).T, dgh.reshape(T * B, G), g[f"l{l}.Wh"], 1.0, 0.0)
    head.colsum(gates.reshape(T * B, G), g[f"l{l}.b"])


def input_gradients(cfg, g, ws, x, masks, l, T, c0, c1):
    """Layer l's gradient of Wx: for l >= 1 its columns c0..c1-1; layer 0's embedding
    rows all at once."""
    B, H = ws.B, cfg.hidden
    gates = ws.gates[l][:T]
    if l == 0:
        head.embed_backward(x, gates, g["l0.Wx"])
        return
    masked = masks is not None and masks[l] is not None
    inp = ws.xin[l][:T] if masked else ws.hs[l - 1][1:T + 1]
    dG = gates.reshape(T * B, -1)[:, c0:c1]
    blas.gemm(inp.reshape(T * B, H).T, dG, g[f"l{l}.Wx"][:, c0:c1], 1.0, 0.0)


def input_backward(p, ws, masks, l, t0, t1, c0, c1, dabove):
    """Columns c0..c1-1 of the gradient reaching layer l-1's outputs at steps t0..t1-1,
    from layer l's (>= 1) input side, written over dabove (T, B, H) there (layer l's own
    gradient from above, used by then)."""
    n, B = t1 - t0, ws.B
    dG = ws.gates[l][t0:t1].reshape(n * B, -1)
    out = dabove[t0:t1].reshape(n * B, -1)[:, c0:c1]
    blas.gemm(dG, p[f"l{l}.Wx"][c0:c1].T, out, 1.0, 0.0)
    m = _mask_steps(masks, l, t0, t1)
    if m is not None:
        d3 = dabove[t0:t1, :, c0:c1]
        np.multiply(d3, m[..., c0:c1], out=d3)


def training_bytes(cfg: ModelConfig, T: int, B: int, dtype, optim_slots: int) -> int:
    """About how many bytes a training run allocates for this model: parameters, gradient
    and optimizer state, per-step workspaces (evaluation's are bounded by LOGIT_BYTES)."""
    L, H, V, G = cfg.layers, cfg.hidden, cfg.vocab_size, cfg.gates * cfg.hidden
    per = np.dtype(dtype).itemsize
    params = num_params(cfg) * per * (2 + optim_slots)
    work = (L * T * B * (2 * G + 5 * H) + T * B * (V + H + 2)) * per
    return int(params + work + LOGIT_BYTES)


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def loss_sum(cfg, p, ws, streams, dtype, losses_out=None, should_stop=None) -> float:
    """Summed loss of predicting streams[:, 1:] from streams[:, :-1], state carried
    through chunks of ws.T steps from a zero state. streams (E, N) ints.
    With losses_out (E, N-1) float64 given, it receives each position's loss.
    Returns early (a partial sum) once should_stop() is true (asked every chunk)."""
    E, N = streams.shape
    state = State(cfg, E, dtype)
    total = 0.0
    for a in range(0, N - 1, ws.T):
        if should_stop is not None and should_stop():
            break
        b = min(a + ws.T, N - 1)
        x = np.ascontiguousarray(streams[:, a:b].T, dtype=np.int32)
        y = np.ascontiguousarray(streams[:, a + 1:b + 1].T, dtype=np.int32)
        total += forward(cfg, p, ws, x, y, state, grad=False)
        if losses_out is not None:
            losses_out[:, a:b] = ws.losses[:x.size].reshape(b - a, E).T
    return total
