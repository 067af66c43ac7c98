"""Validation bounded for large corpora (issue 24 item 3): --val-max-chars reads the start
of the held-out text; the default leaves every smaller split, so every figure measured
before it, untouched."""
import numpy as np
import pytest

import charrnn
from charrnn.config import TRAIN_OPTIONS, ModelConfig, TrainConfig, build_configs
from charrnn.data import split
from charrnn.errors import UsageError
from charrnn.training import Trainer
from charrnn.vocab import Vocab

V = 12


def _trainer(n, **kw):
    ids = np.random.default_rng(0).integers(0, V, n).astype(np.uint8)
    vocab = Vocab(np.arange(97, 97 + V, dtype=np.int64))
    mc = ModelConfig(model="lstm", hidden=8, layers=1, vocab_size=V)
    return ids, Trainer(mc, TrainConfig(batch_size=4, seq_len=8, **kw), ids, vocab)


def test_the_default_bounds_only_splits_beyond_10_million_characters():
    assert TRAIN_OPTIONS["val_max_chars"] == 10_000_000
    _, t = build_configs({}, vocab_size=V)
    assert t.val_max_chars == 10_000_000
    ids, trainer = _trainer(20_000, val_max_chars=t.val_max_chars)
    assert np.array_equal(trainer.val_ids, split(ids, 0.1)[1])      # 2,000: whole


def test_a_bound_reads_the_start_of_the_held_out_text():
    ids, whole = _trainer(20_000)
    _, bounded = _trainer(20_000, val_max_chars=640)
    assert whole.val_held == bounded.val_held == 2_000
    assert np.array_equal(bounded.val_ids, split(ids, 0.1)[1][:640])
    whole.val_ids = whole.val_ids[:640]             # the same text, the same figure
    assert bounded.evaluate() == whole.evaluate()


def test_a_checkpoint_keeps_its_bound_and_older_ones_read_everything(tmp_path):
    _, trainer = _trainer(20_000, val_max_chars=640)
    ck = trainer.to_checkpoint()
    assert TrainConfig.from_dict(ck.train_cfg.to_dict()).val_max_chars == 640
    old = {k: v for k, v in ck.train_cfg.to_dict().items() if k != "val_max_chars"}
    assert TrainConfig.from_dict(old).val_max_chars is None
    with pytest.raises(UsageError, match="--val-max-chars"):
        build_configs({"val_max_chars": 100}, resume=ck)
    with pytest.raises(UsageError):
        charrnn.train(str(tmp_path / "none.txt"), val_max_chars=0)
