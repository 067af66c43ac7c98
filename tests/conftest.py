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
