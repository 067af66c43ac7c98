"""Dynamic evaluation: score a text while adapting the weights to it as it is read.

Krause, Kahembwe, Murray and Renals, "Dynamic Evaluation of Neural Sequence Models"
(ICML 2018), the RMS form with a decay towards the trained weights. The text is read
as one stream in segments of `segment` characters, the state carried throughout. Each
segment is first scored with the current weights (so every character is predicted
before the model has seen it), then the weights take one step on that segment's mean
loss:

    w <- w - lr g / (rms + eps),   then   w <- w + decay (w0 - w)

where w0 are the trained weights and rms (P,) is the root mean square of the training
gradients, read from the checkpoint's optimizer state (Adagrad: sqrt(mem / steps);
RMSprop: sqrt(sq); Adam: sqrt(v / (1 - 0.999^steps))): statistics of the training
data, as the paper takes them, without needing the training text. SGD keeps no such
state, so an SGD checkpoint cannot be adapted. The checkpoint is never changed: the
adapted weights are a copy that lives for one evaluation.

Defaults measured on tinyshakespeare's validation split (docs/quality.md, bench/dyneval.py):
with the default run's model, lr 1e-4, decay 0.01, segments of 50 gave 0.074 nats/char
below static scoring on its first 40,000 characters; lr 3e-5 0.067, 3e-4 lost 0.01-0.05;
segments of 20 0.046, of 100 0.069.
"""
import numpy as np

from charrnn import model as M
from charrnn.errors import UsageError
from charrnn.kernels import optim as O

SEGMENT = 50
LR = 1e-4
DECAY = 1e-2
EPS = 1e-8
RMS_FLOOR = 0.1


class CannotAdapt(UsageError):
    """The checkpoint holds no gradient statistics to adapt with."""


def gradient_rms(ck) -> np.ndarray:
    """(P,) RMS of the training gradients, from the optimizer state; raises CannotAdapt."""
    t, step = ck.train_cfg, ck.train_state.get("step", 0)
    if t.optimizer == "sgd" or step < 1:
        why = "it was trained with SGD, which keeps no gradient statistics" if t.optimizer == "sgd" \
            else "it has not been trained (step 0)"
        raise CannotAdapt(f"cannot adapt this checkpoint: {why}")
    s = ck.optim
    if t.optimizer == "adagrad":
        ms = s["mem"].astype(np.float64) / step
    elif t.optimizer == "rmsprop":
        ms = s["sq"].astype(np.float64) / (1.0 - 0.99 ** step)
    else:
        ms = s["v"].astype(np.float64) / (1.0 - 0.999 ** step)
    rms = np.sqrt(ms)
    # a parameter that training never moved (a character seen only in the evaluated text:
    # its l0.Wx row) has rms 0, and lr g / (0 + eps) would throw it far off; each
    # parameter array's entries are floored at RMS_FLOOR times that array's mean
    for name, view in M.views(rms, ck.model_cfg).items():
        np.maximum(view, RMS_FLOOR * view.mean(), out=view)
    return rms.astype(ck.weights.dtype)


def dynamic_losses(ck, ids, segment=SEGMENT, lr=LR, decay=DECAY, rms=None) -> np.ndarray:
    """Loss in nats of predicting ids[1:] from ids[:-1] (float64, len(ids) - 1) with
    dynamic evaluation. ids: int array of one text; rms: `gradient_rms(ck)`, computed
    here when not given. Raises CannotAdapt, or UsageError for a bad setting."""
    if lr <= 0 or segment < 1 or not 0 <= decay < 1:
        raise UsageError(f"dynamic evaluation needs lr > 0, segment >= 1 and decay in [0, 1) "
                         f"(got {lr}, {segment}, {decay})")
    rms = gradient_rms(ck) if rms is None else rms
    n = len(ids) - 1
    out = np.zeros(max(0, n))
    if n < 1:
        return out
    cfg, dtype = ck.model_cfg, ck.weights.dtype
    w0 = np.ascontiguousarray(ck.weights)
    w = w0.copy()
    p = M.views(w, cfg)
    grad = np.zeros_like(w)
    g = M.views(grad, cfg)
    T = min(segment, n)
    ws = M.Workspace(cfg, T, 1, dtype)
    state = M.State(cfg, 1, dtype)
    ids = np.asarray(ids)
    for a in range(0, n, T):
        b = min(a + T, n)
        x = np.ascontiguousarray(ids[a:b].reshape(-1, 1), dtype=np.int32)
        y = np.ascontiguousarray(ids[a + 1:b + 1].reshape(-1, 1), dtype=np.int32)
        M.forward(cfg, p, ws, x, y, state, g=g)          # scored before adapting to it
        out[a:b] = ws.losses[:b - a]
        M.backward(cfg, p, g, ws, x)
        O.dynamic_step(w, grad, w0, rms, lr, decay, EPS)
    return out
