"""Numba kernels: pure functions on arrays, results written into `out`/workspace arrays.

Every kernel is compiled lazily (float64 in tests, float32 in training) with
`cache=True` and `error_model="numpy"`: the Python error model adds a
zero-division check to every `/`, which stops LLVM from vectorising a loop
(measured: the rational tanh below runs at 1.1 ns/element with the check,
0.36 ns without).
"""

from charrnn.kernels.fpenv import flush_denormals

# first of all: before Numba loads SciPy's BLAS, whose threads then inherit it
flush_denormals()

JIT = dict(cache=True, error_model="numpy", fastmath={"contract"})


def _tolerate_broken_cache():
    """A corrupt Numba cache file must never make charrnn fail: treat an index or
    data file that does not unpickle as a cache miss (Numba then recompiles and
    overwrites it). Numba itself only tolerates a missing file."""
    from numba.core import caching

    load_index, load_data = caching.IndexDataCacheFile._load_index, caching.IndexDataCacheFile._load_data

    def safe_index(self):
        try:
            return load_index(self)
        except Exception:  # noqa: BLE001 - any unreadable index is a miss
            return {}

    def safe_data(self, name):
        try:
            return load_data(self, name)
        except Exception:  # noqa: BLE001
            return None

    caching.IndexDataCacheFile._load_index = safe_index
    caching.IndexDataCacheFile._load_data = safe_data


_tolerate_broken_cache()
