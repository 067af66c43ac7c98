"""Gradient clipping and optimizer updates: one fused pass over the flat parameter buffer.

Each update takes `scale`, the clipping factor min(1, clip / ||g||), so clipping
costs no extra pass over memory. Hyper-parameters follow PyTorch's defaults and
are cast to the parameters' dtype first: mixing float64 scalars into a float32
loop kept it from vectorising (Adam over 238k parameters: 1.1 ms -> 0.2 ms).
"""
import numpy as np
from numba import njit

from charrnn.kernels import JIT


@njit(**JIT)
def sumsq(g):
    """Sum of squares of g (P,), accumulated in float64 (NaN/inf propagate).
    Eight running sums, so that the loop vectorises (one sum is a serial chain of
    additions: 0.33 ms -> 0.05 ms for 270k parameters)."""
    acc = np.zeros(8)
    n = g.shape[0] - g.shape[0] % 8
    for i in range(0, n, 8):
        for k in range(8):
            v = np.float64(g[i + k])
            acc[k] += v * v
    s = acc.sum()
    for i in range(n, g.shape[0]):
        s += np.float64(g[i]) * g[i]
    return s


@njit(**JIT)
def sgd(w, g, lr, scale):
    """w -= lr * scale * g."""
    step = w.dtype.type(lr * scale)
    for i in range(w.shape[0]):
        w[i] -= step * g[i]


@njit(**JIT)
def adagrad(w, g, mem, lr, eps, scale):
    """The classic minimal char-rnn's Adagrad: mem += g^2; w -= lr g / sqrt(mem + eps),
    with g scaled by `scale` first. eps inside the root (1e-8) damps the first steps
    of parameters whose gradients are tiny; PyTorch's form, lr g / (sqrt(mem) + 1e-10),
    moves every such weight by a full +-lr at step 1, and a 2x256 LSTM then sat on the
    unigram plateau (loss 3.3) for hundreds of steps or not, by chance (measured)."""
    t = w.dtype.type
    lr_, eps_, scale_ = t(lr), t(eps), t(scale)
    for i in range(w.shape[0]):
        gi = g[i] * scale_
        mem[i] += gi * gi
        w[i] -= lr_ * gi / np.sqrt(mem[i] + eps_)


@njit(**JIT)
def rmsprop(w, g, sq, lr, alpha, eps, scale):
    """sq = alpha sq + (1 - alpha) g^2; w -= lr g / (sqrt(sq) + eps)."""
    t = w.dtype.type
    lr_, a_, a1, eps_, scale_ = t(lr), t(alpha), t(1.0 - alpha), t(eps), t(scale)
    for i in range(w.shape[0]):
        gi = g[i] * scale_
        sq[i] = a_ * sq[i] + a1 * gi * gi
        w[i] -= lr_ * gi / (np.sqrt(sq[i]) + eps_)


@njit(**JIT)
def adam(w, g, m, v, lr, beta1, beta2, eps, step, scale):
    """Adam with bias correction (`step` counts from 1), in the usual folded form
    lr sqrt(bc2)/bc1 * m / (sqrt(v) + eps sqrt(bc2)), which equals
    lr (m / bc1) / (sqrt(v / bc2) + eps)."""
    t = w.dtype.type
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    lr_ = t(lr * np.sqrt(bc2) / bc1)
    eps_ = t(eps * np.sqrt(bc2))
    b1, b1c, b2, b2c, scale_ = t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2), t(scale)
    for i in range(w.shape[0]):
        gi = g[i] * scale_
        m[i] = b1 * m[i] + b1c * gi
        v[i] = b2 * v[i] + b2c * gi * gi
        w[i] -= lr_ * m[i] / (np.sqrt(v[i]) + eps_)


@njit(**JIT)
def ema(avg, w, decay):
    """avg = decay avg + (1 - decay) w: the weight average that validation and best.npz
    use while training goes on with w."""
    t = avg.dtype.type
    d, c = t(decay), t(1.0 - decay)
    for i in range(avg.shape[0]):
        avg[i] = d * avg[i] + c * w[i]


@njit(**JIT)
def dynamic_step(w, g, w0, rms, lr, decay, eps):
    """Dynamic evaluation's update (Krause et al. 2018, RMS with a decay to the prior):
    w -= lr g / (rms + eps); w += decay (w0 - w). rms (P,) is the root mean square of
    the training gradients; w0 the trained weights."""
    t = w.dtype.type
    lr_, d_, eps_ = t(lr), t(decay), t(eps)
    for i in range(w.shape[0]):
        wi = w[i] - lr_ * g[i] / (rms[i] + eps_)
        w[i] = wi + d_ * (w0[i] - wi)
