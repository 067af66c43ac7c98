"""Gradient clipping and optimizer updates: one fused pass over the flat parameter buffer.

Each update takes `scale`, the clipping factor min(1, clip / ||g||), so clipping
costs no extra pass over memory. Hyper-parameters follow PyTorch's defaults.
"""
import numpy as np
from numba import njit

from charrnn.kernels import JIT


@njit(**JIT)
def sumsq(g):
    """Sum of squares of g (P,), accumulated in float64 (NaN/inf propagate)."""
    s = 0.0
    for i in range(g.shape[0]):
        s += np.float64(g[i]) * g[i]
    return s


@njit(**JIT)
def sgd(w, g, lr, scale):
    """w -= lr * scale * g."""
    step = lr * scale
    for i in range(w.shape[0]):
        w[i] -= step * g[i]


@njit(**JIT)
def adagrad(w, g, mem, lr, eps, scale):
    """mem += g^2; w -= lr g / (sqrt(mem) + eps), with g scaled by `scale` first."""
    for i in range(w.shape[0]):
        gi = g[i] * scale
        mem[i] += gi * gi
        w[i] -= lr * gi / (np.sqrt(mem[i]) + eps)


@njit(**JIT)
def rmsprop(w, g, sq, lr, alpha, eps, scale):
    """sq = alpha sq + (1 - alpha) g^2; w -= lr g / (sqrt(sq) + eps)."""
    for i in range(w.shape[0]):
        gi = g[i] * scale
        sq[i] = alpha * sq[i] + (1.0 - alpha) * gi * gi
        w[i] -= lr * gi / (np.sqrt(sq[i]) + eps)


@njit(**JIT)
def adam(w, g, m, v, lr, beta1, beta2, eps, step, scale):
    """Adam with bias correction; `step` counts from 1."""
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    for i in range(w.shape[0]):
        gi = g[i] * scale
        m[i] = beta1 * m[i] + (1.0 - beta1) * gi
        v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi
        w[i] -= lr * (m[i] / bc1) / (np.sqrt(v[i] / bc2) + eps)
