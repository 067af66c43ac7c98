"""The matrix-product layer: strided and transposed views, packed weights, and the
two BLAS backends (MKL and OpenBLAS) giving the same gradients."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from charrnn.kernels import BLAS, blas
from conftest import ROOT


def views(rng, rows, cols, dtype):
    """The same matrix as a C array, as the transpose of a C array, and as a
    strided window into a wider array."""
    m = rng.standard_normal((rows, cols)).astype(dtype)
    wide = rng.standard_normal((rows, cols + 9)).astype(dtype)
    wide[:, 4:4 + cols] = m
    return m, [m, np.ascontiguousarray(m.T).T, wide[:, 4:4 + cols]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M", [6, 1])       # one row: OpenBLAS takes its ?gemv path
def test_gemm_on_every_layout(dtype, M, rng):
    tol = 1e-4 if dtype == np.float32 else 1e-12
    a, a_views = views(rng, M, 9, dtype)
    b, b_views = views(rng, 9, 7, dtype)
    for av in a_views:
        for bv in b_views:
            for alpha, beta in [(1.0, 0.0), (2.0, 1.0), (0.5, -1.0)]:
                c0 = rng.standard_normal((M, 7)).astype(dtype)
                c = c0.copy()
                blas.gemm(av, bv, c, alpha, beta)
                np.testing.assert_allclose(c, alpha * (a @ b) + beta * c0, rtol=tol, atol=tol)
            # an output with strided rows leaves its neighbours alone
            wide = np.zeros((M, 20), dtype)
            blas.gemm(av, bv, wide[:, 5:12], 1.0, 0.0)
            np.testing.assert_allclose(wide[:, 5:12], a @ b, rtol=tol, atol=tol)
            assert not wide[:, :5].any() and not wide[:, 12:].any()


@pytest.mark.skipif(BLAS != "mkl", reason="without MKL the tests above already run on OpenBLAS")
def test_every_product_layout_on_openblas_too():
    # float32, the type charrnn trains in: each layout is a kernel compiled for OpenBLAS
    # from nothing (18 more for float64); OpenBLAS's float64 products are checked on the
    # kernels' own layouts by test_mkl_and_openblas_give_the_same_gradients
    env = dict(os.environ, CHARRNN_BLAS="openblas")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", __file__,
                        "-k", "gemm_on_every_layout and float32 or prepared_product or refuses"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0 and " passed" in r.stdout and "failed" not in r.stdout, r.stdout[-2000:]


def test_gemm_refuses_mismatched_shapes(rng):
    with pytest.raises(ValueError, match="shapes"):
        blas.gemm(np.ones((2, 3)), np.ones((4, 5)), np.zeros((2, 5)), 1.0, 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transposed", [False, True])
def test_prepared_product_equals_plain_product(dtype, transposed, rng):
    tol = 1e-4 if dtype == np.float32 else 1e-12
    M, K, N = 5, 12, 20
    w = rng.standard_normal((K, N)).astype(dtype)
    wv = np.ascontiguousarray(w.T).T if transposed else w
    wp = blas.prepare(wv, M, blas.prepared_buffer(M, K, N, dtype))
    h = rng.standard_normal((M, K)).astype(dtype)
    c0 = rng.standard_normal((M, N)).astype(dtype)
    for beta in (0.0, 1.0):
        c = c0.copy()
        blas.gemm_prepared(h, wp, c, beta)
        np.testing.assert_allclose(c, h @ w + beta * c0, rtol=tol, atol=tol)


def test_gemv(rng):
    w = rng.standard_normal((30, 17)).astype(np.float32)
    x = rng.standard_normal(30).astype(np.float32)
    out = np.zeros(17, np.float32)
    blas.gemv(x, w, out)
    np.testing.assert_allclose(out, x @ w, rtol=1e-5, atol=1e-5)


def gradients():
    """The loss and gradient of each cell on one fixed batch, in float64, with this
    process's BLAS."""
    from charrnn import model as M
    from charrnn.config import ModelConfig
    out = {"blas": BLAS}
    for cell in ("rnn", "lstm", "gru"):
        rng = np.random.default_rng(1)
        cfg = ModelConfig(model=cell, hidden=8, layers=2, vocab_size=6)
        flat = M.init_params(cfg, np.float64, rng)
        x = rng.integers(0, 6, (7, 3)).astype(np.int32)
        y = rng.integers(0, 6, (7, 3)).astype(np.int32)
        ws, st = M.Workspace(cfg, 7, 3, np.float64), M.State(cfg, 3, np.float64)
        grad = np.zeros_like(flat)
        loss = M.forward(cfg, M.views(flat, cfg), ws, x, y, st)
        M.backward(cfg, M.views(flat, cfg), M.views(grad, cfg), ws, x)
        out[cell] = [loss] + grad.tolist()
    return out


@pytest.mark.skipif(BLAS != "mkl", reason="MKL is not installed: only one backend to test")
def test_mkl_and_openblas_give_the_same_gradients():
    code = "import json, test_blas; print(json.dumps(test_blas.gradients()))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, CHARRNN_BLAS="openblas", PYTHONPATH=os.pathsep.join(
                           [str(ROOT / "tests"), str(ROOT)])))
    assert r.returncode == 0, r.stderr
    mkl, openblas = gradients(), json.loads(r.stdout)
    assert (mkl["blas"], openblas["blas"]) == ("mkl", "openblas")
    for cell in ("rnn", "lstm", "gru"):
        np.testing.assert_allclose(mkl[cell], openblas[cell], rtol=1e-10, atol=1e-13)


@pytest.mark.skipif(BLAS != "mkl", reason="OpenBLAS comes through SciPy: it is imported")
def test_with_mkl_kernels_start_without_importing_scipy_linalg():
    # scipy.linalg took a third of a warm `charrnn sample`'s start; Numba's own np.dot,
    # compiled after charrnn's kernels in the same process, still finds SciPy's BLAS
    code = ("import sys, numpy as np\nfrom numba import njit\nfrom charrnn.kernels import optim\n"
            "optim.sumsq(np.ones(3))\nprint('scipy.linalg' in sys.modules)\n"
            "print(njit(lambda a, b: np.dot(a, b))(np.eye(2), np.full((2, 2), 3.0)).sum())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["False", "12.0"], r.stderr
