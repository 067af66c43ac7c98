"""Data-parallel steps: the streams split across threads give the gradient, loss and
carried state of one pass over all of them."""
import numpy as np
import pytest

from charrnn import model as M
from charrnn import parallel as P
from charrnn.config import ModelConfig

V, T, B, H = 9, 6, 7, 5


def one_pass(cfg, flat, x, y, h0, c0, masks):
    ws = M.Workspace(cfg, T, B, np.float64)
    st = M.State(cfg, B, np.float64)
    st.h[:], st.c[:] = h0, c0
    grad = np.zeros_like(flat)
    loss = M.forward(cfg, M.views(flat, cfg), ws, x, y, st, masks)
    M.backward(cfg, M.views(flat, cfg), M.views(grad, cfg), ws, x, masks)
    return loss, grad, st


@pytest.mark.parametrize("cell,dropout", [("rnn", 0.0), ("lstm", 0.3), ("gru", 0.0)])
@pytest.mark.parametrize("shards", [2, 3])
def test_shards_give_the_gradient_of_one_pass(cell, dropout, shards, rng):
    cfg = ModelConfig(model=cell, hidden=H, layers=2, vocab_size=V, dropout=dropout)
    flat = M.init_params(cfg, np.float64, rng)
    x = rng.integers(0, V, (T, B)).astype(np.int32)
    y = rng.integers(0, V, (T, B)).astype(np.int32)
    h0, c0 = rng.normal(0, 0.5, (2, 2, B, H))
    masks = None
    if dropout:
        # a per-step (T, B, H) mask between the layers and a locked (B, H) one on the output:
        # each shard takes its own streams' rows of either shape
        masks = [None, (rng.random((T, B, H)) > dropout) / (1 - dropout),
                 (rng.random((B, H)) > dropout) / (1 - dropout)]
    loss, grad, st = one_pass(cfg, flat, x, y, h0, c0, masks)

    dp = P.DataParallel(cfg, T, B, np.float64, shards)
    state = M.State(cfg, B, np.float64)
    state.h[:], state.c[:] = h0, c0
    pgrad = np.full_like(flat, np.nan)          # every entry must be overwritten
    ploss = dp.step(M.views(flat, cfg), pgrad, M.views(pgrad, cfg), x, y, state, masks)
    assert ploss == pytest.approx(loss, rel=1e-13)
    np.testing.assert_allclose(pgrad, grad, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(state.h, st.h, rtol=1e-13)
    np.testing.assert_allclose(state.c, st.c, rtol=1e-13)
    assert not np.array_equal(state.h, h0)


def test_shard_count_follows_threads_streams_and_weight_size(monkeypatch):
    monkeypatch.setattr(P.blas, "threads", lambda: 4)
    monkeypatch.setattr(P, "BLAS", "mkl")          # whichever BLAS this process loaded
    lstm = lambda hidden: ModelConfig(model="lstm", hidden=hidden, layers=2, vocab_size=65)  # noqa: E731
    assert P.shard_count(lstm(128), 50, np.float32) == 4        # one per thread
    assert P.shard_count(lstm(128), 20, np.float32) == 2        # at least 8 streams each
    assert P.shard_count(lstm(128), 12, np.float32) == 1
    assert P.shard_count(lstm(256), 64, np.float32) == 4        # 256x1024 float32: 1 MiB
    assert P.shard_count(lstm(256), 64, np.float64) == 1        # 2 MiB re-read per step
    assert P.shard_count(lstm(512), 64, np.float32) == 1
    monkeypatch.setattr(P, "BLAS", "openblas")     # no weight-size limit: see shard_count
    assert P.shard_count(lstm(512), 64, np.float32) == 4
    assert P.shard_count(lstm(128), 12, np.float32) == 1
    monkeypatch.setattr(P.blas, "threads", lambda: 1)
    assert P.shard_count(lstm(128), 50, np.float32) == 1


@pytest.mark.skipif(P.BLAS != "openblas", reason="OpenBLAS: run by the test below under MKL")
def test_openblas_products_run_on_one_thread_during_a_step_only():
    """OpenBLAS has one thread count for the process: 1 while shards run (their threads
    would otherwise fight over the cores), the full count again after the step."""
    get_threads = P.blas._api[0]
    assert get_threads() == P.blas.threads()
    cfg = ModelConfig(model="lstm", hidden=H, layers=2, vocab_size=V)
    flat = M.init_params(cfg, np.float64, np.random.default_rng(0))
    seen, forward = [], M.forward

    def spy(*args, **kw):
        seen.append(get_threads())
        return forward(*args, **kw)

    x = np.zeros((T, B), np.int32)
    dp = P.DataParallel(cfg, T, B, np.float64, 2)
    grad = np.zeros_like(flat)
    M.forward = spy
    try:
        for _ in range(20):     # the worker thread of a later step may start at once
            dp.step(M.views(flat, cfg), grad, M.views(grad, cfg), x, x, M.State(cfg, B, np.float64))
            assert get_threads() == P.blas.threads()
    finally:
        M.forward = forward
    assert seen == [1] * 40


@pytest.mark.skipif(P.BLAS != "mkl", reason="without MKL the tests above already run on OpenBLAS")
def test_data_parallel_steps_on_openblas_too():
    """The data-parallel tests, and the training header naming the BLAS, on OpenBLAS."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, CHARRNN_BLAS="openblas", OPENBLAS_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                        "-k", "shards_give or one_thread_during or header_names"],
                       capture_output=True, text=True, env=env, timeout=300,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0 and "8 passed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]


def test_training_header_names_the_data_parallel_threads(tmp_path, bundled_text):
    import io

    from charrnn.config import TrainConfig
    from charrnn.data import read_corpus
    from charrnn.kernels import BLAS
    from charrnn.cli.progress import TrainDisplay
    from charrnn.training import Trainer

    (tmp_path / "c.txt").write_text(bundled_text[:5_000], encoding="utf-8")
    corpus = read_corpus([str(tmp_path / "c.txt")])
    cfg = ModelConfig(model="lstm", hidden=8, layers=1, vocab_size=len(corpus.vocab))
    for shards, expected in [(1, "MKL\n"), (2, "MKL, 2 threads data-parallel\n")]:
        trainer = Trainer(cfg, TrainConfig(batch_size=4), corpus.ids, corpus.vocab, shards=shards)
        out = io.StringIO()
        TrainDisplay(stream=out, plain=True)("start", {"trainer": trainer, "final_step": 1, "seconds": None})
        header = out.getvalue().splitlines(keepends=True)[0]
        assert header.endswith(expected if BLAS == "mkl" else expected.replace("MKL", "OpenBLAS"))


def test_shard_counts_outside_2_to_B_are_refused():
    cfg = ModelConfig(model="rnn", hidden=H, layers=1, vocab_size=V)
    for shards in (1, B + 1):
        with pytest.raises(ValueError, match="shards"):
            P.DataParallel(cfg, T, B, np.float64, shards)


def test_threads_option_sets_every_thread_count(tmp_path, small_corpus):
    from charrnn import checkpoint as C
    from conftest import run_cli
    args = ["--hidden", "16", "--layers", "1", "--batch-size", "16", "--seq-len", "16", "--steps", "8",
            "--no-preview"]
    one = run_cli("train", small_corpus, "--out", tmp_path / "one", *args, "--threads", "1")
    env = {v: "1" for v in ("NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    by_env = run_cli("train", small_corpus, "--out", tmp_path / "env", *args, env=env)
    assert one.returncode == 0 and by_env.returncode == 0
    assert "data-parallel" not in one.stderr.decode().splitlines()[0]
    assert np.array_equal(C.load(tmp_path / "one" / "latest.npz").flat, C.load(tmp_path / "env" / "latest.npz").flat)
    r = run_cli("train", small_corpus, "--out", tmp_path / "bad", *args, "--threads", "0")
    assert r.returncode == 2 and b"--threads" in r.stderr
