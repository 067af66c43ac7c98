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
def torch_sample(model, n, temp=0.8, seed=0):
    """n characters, one at a time (batch 1, carried state, multinomial draw)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(1, 1, dtype=torch.int64)
    state = None
    for _ in range(n):
        logits, state = model(x, state)
        probs = torch.softmax(logits[-1, 0] / temp, dim=-1)
        x = torch.multinomial(probs, 1, generator=gen).view(1, 1)
