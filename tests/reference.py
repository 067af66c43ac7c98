"""A plain, obviously-correct NumPy reference: one time step at a time, float64,
written from the textbook equations with a dense one-hot input (no lookup)."""
import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference_losses(model, p, x, y, h0, c0, V):
    """Per-position losses (T, B) of a stacked cell network with named weights p."""
    T, B = x.shape
    L = h0.shape[0]
    h = [h0[l].copy() for l in range(L)]
    c = [c0[l].copy() for l in range(L)]
    losses = np.zeros((T, B))
    for t in range(T):
        inp = np.eye(V)[x[t]]                      # (B, V) one-hot
        for l in range(L):
            Wx, Wh, b = p[f"l{l}.Wx"], p[f"l{l}.Wh"], p[f"l{l}.b"]
            H = Wh.shape[0]
            if model == "rnn":
                h[l] = np.tanh(inp @ Wx + h[l] @ Wh + b)
            elif model == "lstm":
                a = inp @ Wx + h[l] @ Wh + b
                i, f = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H])
                g, o = np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
                c[l] = f * c[l] + i * g
                h[l] = o * np.tanh(c[l])
            else:  # gru, PyTorch's formulation with the bias on the input side
                ax, ah = inp @ Wx + b, h[l] @ Wh
                r = sigmoid(ax[:, :H] + ah[:, :H])
                z = sigmoid(ax[:, H:2 * H] + ah[:, H:2 * H])
                n = np.tanh(ax[:, 2 * H:] + r * ah[:, 2 * H:])
                h[l] = (1 - z) * n + z * h[l]
            inp = h[l]
        logits = inp @ p["Wy"] + p["by"]
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        losses[t] = -logp[np.arange(B), y[t]]
    return losses, np.array(h), np.array(c)
