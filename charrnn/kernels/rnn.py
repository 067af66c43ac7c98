"""Vanilla tanh RNN layer over T steps: h' = tanh(x Wx + b + h Wh)."""
from numba import njit

from charrnn.kernels import JIT
from charrnn.kernels.act import tanh
from charrnn.kernels.blas import gemm_prepared


@njit(**JIT)
def rnn_forward(gates, bias, Whp, hs):
    """gates (T, B, H) enters holding x Wx and leaves holding x Wx + h Wh; bias (H,);
    Whp: blas.prepare(Wh, B); hs (T+1, B, H) with hs[0] the initial state, filled
    for 1..T."""
    T, B, H = gates.shape
    for t in range(T):
        gemm_prepared(hs[t], Whp, gates[t], 1.0)     # the recurrent product, onto x Wx
        for b in range(B):
            a = gates[t, b]
            h_out = hs[t + 1, b]
            for j in range(H):
                h_out[j] = tanh(a[j] + bias[j])


@njit(**JIT)
def rnn_backward(gates, dhs, WhTp, hs, dh):
    """`gates` (T, B, H) leaves holding dloss/d(pre-activation). dhs (T, B, H): the
    gradient reaching each h_t from above. WhTp: blas.prepare(Wh.T, B). dh (B, H)
    in/out: the gradient w.r.t. the final state on entry, w.r.t. hs[0] on exit."""
    T, B, H = gates.shape
    one = gates.dtype.type(1.0)
    for t in range(T - 1, -1, -1):
        for b in range(B):
            a = gates[t, b]
            h_t = hs[t + 1, b]
            dh_b = dh[b]
            dh_in = dhs[t, b]
            for j in range(H):
                a[j] = (dh_in[j] + dh_b[j]) * (one - h_t[j] * h_t[j])
        gemm_prepared(gates[t], WhTp, dh, 0.0)
