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


def _find_mkl():
    """Path of Intel MKL's runtime library when it is installed (pip install
    charrnn[mkl]) and not turned off with CHARRNN_BLAS=openblas, else None."""
    import glob
    import os
    import site
    import sys

    if os.environ.get("CHARRNN_BLAS", "").lower() == "openblas":
        return None
    for prefix in dict.fromkeys([sys.prefix, sys.base_prefix, site.getuserbase()]):
        found = sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")))
        if found:
            return found[0]
    return None


def _select_blas():
    """'mkl' or 'openblas'. With MKL its symbols are made visible to Numba's JIT
    linker, so that kernels can call it by name (and be cached)."""
    path = _find_mkl()
    if path is None:
        return "openblas"
    import llvmlite.binding as ll

    try:
        ll.load_library_permanently(path)
    except RuntimeError:
        return "openblas"
    return "mkl"


def _use_cache_folder(jit_options, blas):
    """Cache compiled kernels in a folder of their own, numba-<tag>, under
    NUMBA_CACHE_DIR if set, else under ~/.cache/charrnn ($XDG_CACHE_HOME). The tag
    hashes what Numba's cache key leaves out:
      - the BLAS: a kernel compiled against MKL calls it by name and must never be
        loaded without it;
      - the compile options and the source of every kernel module: Numba checks only
        a kernel's own file, so a kernel that inlines a changed helper from another
        module (act.tanh, blas.gemm) would be served stale, after an edit as after an
        upgrade.
    Not Numba's default, a __pycache__ beside the source: inside site-packages,
    `pip uninstall` left it behind, and that leftover charrnn/kernels/__pycache__
    made `import charrnn` find an empty namespace package instead of a later
    editable install. If the folder cannot be written, Numba falls back to its
    default. Must run before any @njit."""
    import glob
    import hashlib
    import os

    from numba.core import config

    digest = hashlib.sha1(repr((blas, sorted(jit_options.items()))).encode())
    for path in sorted(glob.glob(os.path.join(os.path.dirname(__file__), "*.py"))):
        with open(path, "rb") as f:
            digest.update(f.read())
    base = config.CACHE_DIR or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "charrnn")
    folder = os.path.join(base, f"numba-{digest.hexdigest()[:12]}")
    problem = _unusable(folder)
    if problem:     # Numba's index files are pickles: never from a folder others can write
        _warn(f"kernel cache {folder}: {problem}; compiling in memory (each start is slower)")
        jit_options["cache"] = False
    config.CACHE_DIR = folder


def _unusable(folder) -> str | None:
    """Why the kernel cache folder cannot be used (created private, 0700), or None."""
    import os
    import stat
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        st = os.stat(folder)
    except OSError as e:
        return f"cannot be created ({e.strerror})"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        return "other users can write to it"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "is not writable"
    return None


_warned = set()


def _warn(message):
    """One line on stderr, once per message."""
    import sys
    if message not in _warned:
        _warned.add(message)
        print(f"warning: {message}", file=sys.stderr)


# nogil: data-parallel training runs kernels in several threads at once (charrnn.parallel).
# (Tried and dropped: lifting LLVM's preference for 256-bit vectors on this AVX-512 Xeon.
# The LSTM gate pass ran 27% faster, a training step no faster, and sampling a 2x512
# LSTM 4x slower.)
JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})

BLAS = _select_blas()
_use_cache_folder(JIT, BLAS)


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

    save = caching.IndexDataCacheFile.save

    def safe_save(self, key, data):
        try:
            save(self, key, data)
        except OSError as e:    # a full disk, a file-size limit: the kernel still runs
            _warn(f"kernel cache: cannot write ({e.strerror}); compiled kernels are kept in "
                  f"memory only")

    caching.IndexDataCacheFile._load_index = safe_index
    caching.IndexDataCacheFile._load_data = safe_data
    caching.IndexDataCacheFile.save = safe_save


_tolerate_broken_cache()
