"""PyTorch reference for the side-by-side benchmark: the same model, data, loss
and optimizer semantics as charrnn, written with stock PyTorch modules.

model   one-hot input (F.one_hot, as a classic char-rnn: the same parameters as
        charrnn's row lookup), stacked nn.RNN(tanh)/nn.LSTM/nn.GRU, nn.Linear head
loss    mean cross-entropy over the B*T targets of a step
data    B contiguous streams of the first 90% of the corpus, T steps per batch,
        hidden state carried and detached, reset when the streams wrap
optim   torch.optim.{Adagrad,Adam,RMSprop,SGD} with default hyper-parameters,
        global-norm clipping at 5
Used only by bench/bench.py; torch is never a dependency of charrnn itself.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
OPTIMS = {"adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam,
          "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD}


class CharModel(nn.Module):
    def __init__(self, cell, vocab, hidden, layers):
        super().__init__()
        self.vocab = vocab
        kw = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        self.rnn = CELLS[cell](vocab, hidden, layers, **kw)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        out, state = self.rnn(F.one_hot(x, self.vocab).float(), state)
        return self.head(out), state


def detach(state):
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class TorchTrainer:
    def __init__(self, ids, vocab, cell, hidden, layers, batch, seq, optimizer, lr, clip=5.0, seed=0):
        torch.manual_seed(seed)
        train = ids[:int(0.9 * len(ids))].astype(np.int64)
        per = len(train) // batch
        self.streams = torch.from_numpy(train[:batch * per].reshape(batch, per).copy())
        self.per, self.seq, self.pos = per, seq, 0
        self.model = CharModel(cell, vocab, hidden, layers)
        self.opt = OPTIMS[optimizer](self.model.parameters(), lr=lr)
        self.clip, self.state, self.vocab = clip, None, vocab

    def step(self):
        if self.pos + self.seq + 1 > self.per:
            self.pos, self.state = 0, None
        p, t = self.pos, self.seq
        x = self.streams[:, p:p + t].t().contiguous()
        y = self.streams[:, p + 1:p + t + 1].t().contiguous()
        self.pos += t
        logits, state = self.model(x, self.state)
        loss = F.cross_entropy(logits.reshape(-1, self.vocab), y.reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.state = detach(state)
        return loss.item()


@torch.inference_mode()
def torch_sample(model, n, temp=0.8, seed=0, batch=1):
    """n characters for each of `batch` streams, one step at a time (carried state,
    multinomial draw): batched like charrnn sample --num."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(1, batch, dtype=torch.int64)
    state = None
    for _ in range(n):
        logits, state = model(x, state)
        probs = torch.softmax(logits[-1] / temp, dim=-1)
        x = torch.multinomial(probs, 1, generator=gen).view(1, batch)


@torch.inference_mode()
def torch_val_loss(model, val_ids, max_streams=32, min_len=64, chunk=256):
    """Mean loss over the whole validation split, as charrnn measures it: E <= 32
    contiguous streams, state carried from zero through chunks of 256 steps."""
    model.eval()
    E = max(1, min(max_streams, len(val_ids) // min_len))
    per = len(val_ids) // E
    streams = torch.from_numpy(val_ids[:E * per].astype(np.int64).reshape(E, per))
    total, state = 0.0, None
    for a in range(0, per - 1, chunk):
        b = min(a + chunk, per - 1)
        x = streams[:, a:b].t().contiguous()
        y = streams[:, a + 1:b + 1].t().contiguous()
        logits, state = model(x, state)
        total += F.cross_entropy(logits.reshape(-1, model.vocab), y.reshape(-1), reduction="sum").item()
    model.train()
    return total / (E * (per - 1))


def train_for(ids, vocab, seconds, cell="lstm", hidden=256, layers=2, batch=32, seq=64,
              optimizer="adam", lr=2e-3, evals=10, seed=0):
    """Train for `seconds` of wall time, evaluations included, evaluating every
    seconds/evals and at the end; returns {best_val, steps, curve}."""
    import time
    tt = TorchTrainer(ids, vocab, cell, hidden, layers, batch, seq, optimizer, lr, seed=seed)
    val = ids[int(0.9 * len(ids)):]
    t0 = time.perf_counter()
    next_eval, steps, curve = seconds / evals, 0, []
    while True:
        now = time.perf_counter() - t0
        if now >= seconds:
            break
        tt.step()
        steps += 1
        now = time.perf_counter() - t0
        if now >= next_eval or now >= seconds:
            curve.append((round(now, 1), steps, torch_val_loss(tt.model, val)))
            next_eval += seconds / evals
    return {"best_val": min(v for _, _, v in curve), "steps": steps, "curve": curve}


if __name__ == "__main__":
    import argparse
    import json
    import os
    import sys
    ap = argparse.ArgumentParser(description="Train the PyTorch reference for a wall-clock budget "
                                 "and print the best validation loss as JSON (bench/quality.py).")
    ap.add_argument("corpus")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from charrnn.data import read_corpus
    c = read_corpus([a.corpus])
    print(json.dumps(train_for(c.ids, len(c.vocab), a.seconds, a.cell, a.hidden, a.layers, seed=a.seed)))
