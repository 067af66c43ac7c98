"""Generation, one character at a time: a step of the stacked cells for batch 1,
softmax with temperature, top-k / top-p filtering and the draw.

Layer weights arrive stacked: Wx0 (V, G) (looked up by row), Wxu (max(L-1, 1), H, G)
for layers 1.., Wh (L, H, G), b (L, G). kind: 0 rnn, 1 lstm, 2 gru. The state
h, c (L, H) is updated in place. Randomness comes in as uniforms drawn by NumPy.
"""
import numpy as np
from numba import njit

from charrnn.kernels import JIT
from charrnn.kernels.act import sigmoid, tanh
from charrnn.kernels.blas import gemm, gemv


@njit(**JIT)
def cell_gates(kind, ax, ah, hl, cl):
    """One stream's gate math: ax, ah (G,) the input and recurrent pre-activations;
    hl, cl (H,) its hidden and cell state, updated (cl unused but by LSTM)."""
    H = hl.shape[0]
    one = hl.dtype.type(1.0)
    if kind == 0:
        for j in range(H):
            hl[j] = tanh(ax[j] + ah[j])
    elif kind == 1:
        for j in range(H):
            i = sigmoid(ax[j] + ah[j])
            f = sigmoid(ax[H + j] + ah[H + j])
            g = tanh(ax[2 * H + j] + ah[2 * H + j])
            o = sigmoid(ax[3 * H + j] + ah[3 * H + j])
            cl[j] = f * cl[j] + i * g
            hl[j] = o * tanh(cl[j])
    else:
        for j in range(H):
            r = sigmoid(ax[j] + ah[j])
            z = sigmoid(ax[H + j] + ah[H + j])
            n = tanh(ax[2 * H + j] + r * ah[2 * H + j])
            hl[j] = (one - z) * n + z * hl[j]


@njit(**JIT)
def cell_step(kind, x_id, Wx0, Wxu, Wh, b, h, c, ax, ah):
    """Advance every layer by one character x_id. ax, ah (G,) scratch."""
    L = h.shape[0]
    for l in range(L):
        if l == 0:
            w = Wx0[x_id]
            for j in range(ax.shape[0]):
                ax[j] = w[j] + b[0, j]
        else:
            gemv(h[l - 1], Wxu[l - 1], ax)
            for j in range(ax.shape[0]):
                ax[j] += b[l, j]
        gemv(h[l], Wh[l], ah)
        cell_gates(kind, ax, ah, h[l], c[l])


@njit(**JIT)
def feed(kind, ids, Wx0, Wxu, Wh, b, h, c, ax, ah):
    """Read ids (N,) through the network, updating the state (priming)."""
    for k in range(ids.shape[0]):
        cell_step(kind, ids[k], Wx0, Wxu, Wh, b, h, c, ax, ah)


@njit(**JIT)
def choose(logits, inv_temp, top_k, top_p, u, probs, spare):
    """Draw an id from softmax(logits * inv_temp) restricted to the top_k ids
    (top_k <= 0: all) and to the smallest set whose mass reaches top_p (1: all;
    ids tied with the last one taken are kept too), using the uniform u in [0, 1).
    inv_temp = inf means argmax. probs, spare (V,) float64 scratch: nothing is
    allocated per character."""
    V = logits.shape[0]
    best = 0
    for v in range(1, V):
        if logits[v] > logits[best]:
            best = v
    if np.isinf(inv_temp) or top_k == 1:
        return best
    m = logits[best]
    for v in range(V):
        probs[v] = np.exp((np.float64(logits[v]) - m) * inv_temp)
    if 0 < top_k < V or top_p < 1.0:
        for v in range(V):                 # (a loop: the slice copy compiled for 2 s)
            spare[v] = probs[v]
        spare.sort()                       # ascending, in place
        cutoff = 0.0                       # keep the ids with probs >= cutoff
        if 0 < top_k < V:
            cutoff = spare[V - top_k]
            for v in range(V):             # those the top-k cut drops
                if spare[v] < cutoff:
                    spare[v] = 0.0
        if top_p < 1.0:
            target = top_p * spare.sum()
            cum = 0.0
            for k in range(V - 1, -1, -1):
                cum += spare[k]
                if cum >= target:
                    cutoff = max(cutoff, spare[k])
                    break
        for v in range(V):
            if probs[v] < cutoff:
                probs[v] = 0.0
    total = probs.sum()
    target = u * total
    cum = 0.0
    last = best
    for v in range(V):
        if probs[v] > 0.0:
            cum += probs[v]
            last = v
            if cum > target:
                return v
    return last


@njit(**JIT)
def generate(kind, x_id, n, Wx0, Wxu, Wh, b, Wy, by, h, c, uniforms, inv_temp, top_k, top_p,
             break_id, out):
    """Generate up to n ids into out (n,), starting by reading x_id; returns how
    many were made: it stops early just after emitting break_id (a newline), so
    that the caller can flush whole lines. Consumes uniforms[k] for out[k]."""
    G = Wh.shape[2]
    V = by.shape[0]
    L = h.shape[0]
    ax = np.empty(G, h.dtype)
    ah = np.empty(G, h.dtype)
    logits = np.empty(V, h.dtype)
    probs = np.empty(V, np.float64)
    spare = np.empty(V, np.float64)
    for k in range(n):
        cell_step(kind, x_id, Wx0, Wxu, Wh, b, h, c, ax, ah)
        gemv(h[L - 1], Wy, logits)
        for v in range(V):
            logits[v] += by[v]
        x_id = choose(logits, inv_temp, top_k, top_p, uniforms[k], probs, spare)
        out[k] = x_id
        if x_id == break_id:
            return k + 1
    return n


# ---------------------------------------------------------------- many streams at once
# N streams go through one product per layer and step, their rows padded to a multiple
# of BLOCK. A row of an MKL product depends on the product's shape below 8 rows (row 0
# came out different for 1, 2, 3 and 5 rows) but was the same bit for bit for every
# multiple of 8 tried (8 to 256 rows, six weight shapes): so stream i computes the same
# numbers whatever N is (tests/test_sample.py checks it on the machine at hand).
BLOCK = 8


@njit(**JIT)
def batch_step(kind, x_ids, Wx0, Wxu, Wh, b, h, c, ax, ah):
    """Advance the R streams by one character each: x_ids (R,), h, c (L, R, H) updated;
    ax, ah (R, G) scratch. (Weights packed once for R-row products, as training does,
    ran faster but gave rows that depend on R: measured, and dropped.)"""
    L, R = h.shape[0], h.shape[1]
    for l in range(L):
        if l == 0:
            for r in range(R):
                w = Wx0[x_ids[r]]
                for j in range(ax.shape[1]):
                    ax[r, j] = w[j] + b[0, j]
        else:
            gemm(h[l - 1], Wxu[l - 1], ax, 1.0, 0.0)
            for r in range(R):
                for j in range(ax.shape[1]):
                    ax[r, j] += b[l, j]
        gemm(h[l], Wh[l], ah, 1.0, 0.0)
        for r in range(R):
            cell_gates(kind, ax[r], ah[r], h[l, r], c[l, r])


@njit(**JIT)
def feed_batch(kind, ids, Wx0, Wxu, Wh, b, h, c, ax, ah):
    """Read ids (T, R) through the R streams (priming)."""
    for t in range(ids.shape[0]):
        batch_step(kind, ids[t], Wx0, Wxu, Wh, b, h, c, ax, ah)


@njit(**JIT)
def generate_batch(kind, x_ids, n, Wx0, Wxu, Wh, b, Wy, by, h, c, uniforms, inv_temp,
                   top_k, top_p, out, ax, ah, logits):
    """n characters for each of the R streams, starting by reading x_ids (R,); out (R, n)
    receives them, x_ids the last ones. Stream r consumes uniforms[r, t] for out[r, t].
    h, c (L, R, H); ax, ah (R, G), logits (R, V) scratch."""
    V = by.shape[0]
    L = h.shape[0]
    probs = np.empty(V, np.float64)
    spare = np.empty(V, np.float64)
    for t in range(n):
        batch_step(kind, x_ids, Wx0, Wxu, Wh, b, h, c, ax, ah)
        gemm(h[L - 1], Wy, logits, 1.0, 0.0)
        for r in range(x_ids.shape[0]):
            row = logits[r]
            for v in range(V):
                row[v] += by[v]
            x = choose(row, inv_temp, top_k, top_p, uniforms[r, t], probs, spare)
            out[r, t] = x
            x_ids[r] = x
