import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "corpora" / "shakespeare.txt"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def bundled_text():
    return BUNDLED.read_text(encoding="utf-8")


@pytest.fixture
def small_corpus(tmp_path, bundled_text):
    """The first 100 KB of the bundled corpus, as a file."""
    path = tmp_path / "small.txt"
    path.write_text(bundled_text[:100_000], encoding="utf-8")
    return path


def run_cli(*args, input=None, env=None, timeout=300):
    """Run `python -m charrnn ARGS` as a real subprocess; returns CompletedProcess."""
    import subprocess
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)], input=input,
                          capture_output=True, timeout=timeout, env=full_env)


def train_small(tmp_dir, text, cell="lstm", steps=60, hidden=32, layers=1, seed=0, **kw):
    """Train a small model in-process on `text`; returns (trainer, run folder)."""
    from charrnn.config import ModelConfig, TrainConfig
    from charrnn.data import read_corpus
    from charrnn.training import Trainer, run
    path = Path(tmp_dir) / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    corpus = read_corpus([str(path)])
    mcfg = ModelConfig(model=cell, hidden=hidden, layers=layers, vocab_size=len(corpus.vocab))
    tcfg = TrainConfig(**{"batch_size": 8, "seq_len": 32, "seed": seed, "eval_every": steps, **kw})
    trainer = Trainer(mcfg, tcfg, corpus.ids, corpus.vocab, {"corpus": ["corpus.txt"]})
    out = Path(tmp_dir) / "run"
    out.mkdir(exist_ok=True)
    run(trainer, str(out), steps=steps, eval_every=steps)
    return trainer, out


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, bundled_text):
    """A small LSTM trained for a few seconds on 30 KB of the bundled corpus."""
    tmp = tmp_path_factory.mktemp("trained")
    trainer, out = train_small(tmp, bundled_text[:30_000], steps=150, hidden=48, layers=2)
    return out


@pytest.fixture(scope="session", autouse=True)
def corpus_cache_in_a_temporary_folder(tmp_path_factory):
    """Runs in the tests fill a corpus cache of their own, never the user's."""
    os.environ["CHARRNN_CORPUS_CACHE"] = str(tmp_path_factory.mktemp("corpus-cache"))
    yield


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject.toml): one test process per core, at most 4. Most tests run
    charrnn in subprocesses of a second or more of mostly single-threaded start-up, so
    two processes on 2 cores take the suite from about 6.5 to 4.5 minutes; beyond 4,
    the tests that time a reaction (Ctrl-C, a terminal) would share a core with too
    much else."""
    return max(1, min(4, len(os.sched_getaffinity(0))))
