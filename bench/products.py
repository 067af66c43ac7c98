"""Timing one matrix product through charrnn's BLAS, for the profiles (profile_b.py,
profile_c.py)."""
import time

import numpy as np

from charrnn.kernels import blas

F32 = np.float32


def ms(fn, n, warm=1):
    """Milliseconds per call of fn over n calls, after `warm` untimed ones."""
    for _ in range(warm):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e3


def product(rng, m, k, n, ta=False, tb=False):
    """A call of (m x k) @ (k x n) -> (m x n) float32, an operand transposed if asked."""
    a = rng.random((k, m), F32).T if ta else rng.random((m, k), F32)
    b = rng.random((n, k), F32).T if tb else rng.random((k, n), F32)
    c = np.zeros((m, n), F32)
    return lambda: blas.gemm(a, b, c, 1.0, 0.0)
