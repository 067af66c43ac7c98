"""GRU layer over T steps: forward and backward through time.

Gate order in every (., 3H) array: [r z n] (reset, update, new), PyTorch's order.
    r = s(xr + hr)   z = s(xz + hz)   n = tanh(xn + r * hn)   h' = (1 - z) n + z h
where [xr xz xn] = x Wx + b and [hr hz hn] = h Wh. The single bias b sits on the
input side, so in PyTorch terms b_ih = b and b_hh = 0.
Loops write through small scratch rows so that each touches few arrays and LLVM
vectorises it (measured: 2-3x faster than one fused loop per row).
"""
import numpy as np
from numba import njit

from charrnn.kernels import JIT
from charrnn.kernels.act import sigmoid, tanh
from charrnn.kernels.blas import gemm_prepared


@njit(**JIT)
def gru_forward(gates, bias, Whp, hs, hns, tmp):
    """Run T steps; `gates` enters holding x Wx and leaves holding [r z n].

    gates (T, B, 3H) in/out; bias (3H,), added here; Whp: blas.prepare(Wh (H, 3H), B);
    hs (T+1, B, H) with hs[0] the initial state; hns (T, B, H) out: hn = (h Wh)[:, 2H:],
    needed by the backward pass; tmp (B, 3H) scratch.
    """
    T, B, G = gates.shape
    H = G // 3
    one = gates.dtype.type(1.0)
    nrow = np.empty(H, gates.dtype)
    for t in range(T):
        gemm_prepared(hs[t], Whp, tmp, 0.0)
        for b in range(B):
            a = gates[t, b]
            rr = tmp[b]
            for j in range(2 * H):
                a[j] = sigmoid(a[j] + bias[j] + rr[j])
            h_prev = hs[t, b]
            h_out = hs[t + 1, b]
            for j in range(H):
                n = tanh(a[2 * H + j] + bias[2 * H + j] + a[j] * rr[2 * H + j])
                nrow[j] = n
                h_out[j] = (one - a[H + j]) * n + a[H + j] * h_prev[j]
            hn_out = hns[t, b]
            for j in range(H):
                a[2 * H + j] = nrow[j]
                hn_out[j] = rr[2 * H + j]


@njit(**JIT)
def gru_backward(gates, dgh, dhs, WhTp, hs, hns, dh):
    """Backward through time. `gates` enters holding [r z n] and leaves holding the
    gradient of the input-side pre-activations [xr xz xn]; dgh (T, B, 3H) out: the
    gradient of the recurrent products [hr hz hn] (dWh = h^T dgh).

    dhs (T, B, H): gradient reaching each h_t from above; WhTp: blas.prepare(Wh.T, B).
    dh (B, H) in/out: the gradient w.r.t. the final state on entry, w.r.t. hs[0] on exit.
    """
    T, B, G = gates.shape
    H = G // 3
    one = gates.dtype.type(1.0)
    dtot = np.empty(H, gates.dtype)
    for t in range(T - 1, -1, -1):
        for b in range(B):
            a = gates[t, b]
            dg = dgh[t, b]
            dh_b = dh[b]
            dh_in = dhs[t, b]
            h_prev = hs[t, b]
            hn_t = hns[t, b]
            for j in range(H):
                dtot[j] = dh_in[j] + dh_b[j]
            # few arrays per loop, so that each vectorises (one loop over all
            # touched 10 arrays and ran scalar: GRU 2x256 B32 backward 21 -> 13 ms)
            for j in range(H):
                d_h = dtot[j]
                z = a[H + j]
                n = a[2 * H + j]
                a[2 * H + j] = d_h * (one - z) * (one - n * n)          # dn
                a[H + j] = d_h * (h_prev[j] - n) * z * (one - z)        # dz
                dh_b[j] = d_h * z                                       # the path z h
            for j in range(H):
                r = a[j]
                dn = a[2 * H + j]
                d_r = dn * hn_t[j] * r * (one - r)
                a[j] = d_r
                dg[j] = d_r
                dg[2 * H + j] = dn * r          # the recurrent side sees r * hn
            for j in range(H):
                dg[H + j] = a[H + j]
        gemm_prepared(dgh[t], WhTp, dh, 1.0)
