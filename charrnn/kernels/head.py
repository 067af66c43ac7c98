"""Input lookup, output layer and softmax cross-entropy, over all B*T positions at once."""
import numpy as np
from numba import njit

from charrnn.kernels import JIT
from charrnn.kernels.act import exp


@njit(**JIT)
def embed(ids, Wx, out):
    """First layer's input projection of one-hot characters as a row lookup:
    out[t, b] = Wx[ids[t, b]]. ids (T, B) int; Wx (V, G); out (T, B, G). (The
    cell kernels add the bias.)"""
    T, B = ids.shape
    G = Wx.shape[1]
    for t in range(T):
        for k in range(B):
            w = Wx[ids[t, k]]
            o = out[t, k]
            for j in range(G):
                o[j] = w[j]


@njit(**JIT)
def embed_backward(ids, dgates, dWx):
    """dWx (V, G) = scatter-add of dgates (T, B, G) rows at ids (T, B); overwrites dWx."""
    dWx[:] = 0
    T, B = ids.shape
    G = dWx.shape[1]
    for t in range(T):
        for k in range(B):
            d = dWx[ids[t, k]]
            g = dgates[t, k]
            for j in range(G):
                d[j] += g[j]


@njit(**JIT)
def colsum(x, out):
    """out (G,) = sum over rows of x (N, G)."""
    out[:] = 0
    for n in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[j] += x[n, j]


@njit(**JIT)
def softmax_xent(logits, by, targets, losses, grad_scale):
    """Softmax cross-entropy over N positions, in place.

    logits (N, V) enter as h Wy and leave as grad_scale * (softmax(h Wy + by) - onehot),
    the gradient of grad_scale * sum(losses); with grad_scale 0 they leave as the
    probabilities. targets (N,) int; losses (N,) out: -log p(target) in nats,
    accumulated in float64. Returns the sum of the losses (float64).
    """
    N, V = logits.shape
    total = 0.0
    for n in range(N):
        row = logits[n]
        for v in range(V):
            row[v] += by[v]
        m = row[0]          # of the row's dtype: a float64 -inf here made exp run in float64
        for v in range(1, V):
            if row[v] > m:
                m = row[v]
        y = targets[n]
        zy = row[y] - m
        # exp in its own loop: a running sum in the same loop would stop vectorisation
        for v in range(V):
            row[v] = exp(row[v] - m)
        s = 0.0
        for v in range(V):
            s += row[v]
        loss = np.log(s) - zy
        losses[n] = loss
        total += loss
        if grad_scale != 0.0:
            inv = row.dtype.type(grad_scale / s)
            for v in range(V):
                row[v] *= inv
            row[y] -= row.dtype.type(grad_scale)
        else:
            inv = row.dtype.type(1.0 / s)
            for v in range(V):
                row[v] *= inv
    return total
