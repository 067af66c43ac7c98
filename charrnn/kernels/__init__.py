"""Numba kernels: pure functions on arrays, results written into `out`/workspace arrays.

Every kernel is compiled lazily (float64 in tests, float32 in training) with
`cache=True` and `error_model="numpy"`: the Python error model adds a
zero-division check to every `/`, which stops LLVM from vectorising a loop
(measured: the rational tanh below runs at 1.1 ns/element with the check,
0.36 ns without).

Importing this package changes nothing: `setup()` does what the kernels need,
once, when the first kernel module is imported (each takes `JIT` from here, and
asking for `JIT` or `BLAS` runs it). What it changes in the process, and why:
- picks the BLAS and, with MKL, loads it with its symbols global (llvmlite's
  load_library_permanently; Numba's JIT linker finds cblas_* by name). A loaded
  library cannot be unloaded: this stays.
- with MKL, loads Numba's NumPy support without the import of scipy.linalg it makes
  only to probe for a BLAS (`_load_numba_numpy_without_scipy`): a third of a warm
  start.
- loads the BLAS inside `denormals_flushed()`, so that the threads OpenBLAS starts
  flush denormals (fpenv.py says why, and why those threads keep it). The calling
  thread's floating-point mode is restored: kernel work is wrapped in
  `denormals_flushed()` by its callers (the API), or `own_process()` asks for it for
  good (the `charrnn` command, which owns its process).
- caches compiled kernels in a folder of charrnn's own (`cache_folder()`), through
  a cache locator that Numba consults for charrnn's kernel files only: Numba's
  configuration (`numba.config.CACHE_DIR`) and where other code's functions are
  cached stay as they were.
- makes a corrupt cache file in that folder a cache miss, not a failure (Numba's
  cache-file class is patched, but only acts differently for charrnn's folder).
"""
import os
import threading

_lock = threading.RLock()
_own_process = False
_cache_folder = None
KERNELS_DIR = os.path.dirname(os.path.abspath(__file__))


def own_process():
    """The caller owns the process (the `charrnn` command): `setup()` then sets
    flush-to-zero for good in the thread that runs it, instead of only around the
    loading of the BLAS. Call before the first kernel is used."""
    global _own_process
    _own_process = True
    if "JIT" in globals():
        from charrnn.kernels.fpenv import flush_denormals
        flush_denormals()


def setup():
    """Prepare the kernels: choose the BLAS, the cache folder and the compile options
    (see the module docstring for each effect). Idempotent and thread-safe; returns
    (BLAS, JIT). Runs by itself when a kernel module is first imported."""
    global BLAS, JIT, _cache_folder
    with _lock:
        if "JIT" in globals():
            return BLAS, JIT
        from charrnn.kernels.fpenv import denormals_flushed, flush_denormals
        # nogil: data-parallel training runs kernels in several threads at once (charrnn.parallel).
        # (Tried and dropped: lifting LLVM's preference for 256-bit vectors on this AVX-512 Xeon.
        # The LSTM gate pass ran 27% faster, a training step no faster, and sampling a 2x512
        # LSTM 4x slower.)
        jit = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
        if _own_process:
            flush_denormals()   # first of all: the BLAS threads then inherit it
        with denormals_flushed():
            blas = _select_blas()
            if blas == "openblas":      # SciPy's OpenBLAS: it starts its threads as it loads
                from numba.np.linalg import ensure_blas
                ensure_blas()
            else:
                _load_numba_numpy_without_scipy()
        _cache_folder = _use_cache_folder(jit, blas)
        _tolerate_broken_cache()
        BLAS = blas
        JIT = jit               # last: its presence means "set up"
        return BLAS, JIT


def __getattr__(name):
    # PEP 562: `from charrnn.kernels import JIT` sets the kernels up on first use
    if name in ("JIT", "BLAS"):
        setup()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def denormals_flushed():
    """Context manager: FTZ/DAZ in the calling thread within, restored after
    (kernels/fpenv.py). Wrap kernel work called from library code in it."""
    from charrnn.kernels.fpenv import denormals_flushed as scope
    return scope()


def cache_folder() -> str | None:
    """The folder charrnn's compiled kernels are cached in (None: compiled in memory,
    the folder was refused; or not set up yet)."""
    setup()
    return _cache_folder


def _find_mkl():
    """Path of Intel MKL's runtime library when it is installed (pip install
    charrnn[mkl]) and not turned off with CHARRNN_BLAS=openblas, else None."""
    import glob
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


def _load_numba_numpy_without_scipy():
    """With MKL charrnn never calls SciPy. Numba's NumPy support (numba.np.arraymath,
    loaded by the first kernel a process compiles or loads) imports scipy.linalg as it
    loads, only to note whether np.dot may use a BLAS: 0.37 s, a third of a warm
    `charrnn sample`'s start, in every process. Load it here with that probe asking
    whether SciPy is installed instead. Nothing else changes: Numba's np.dot and
    np.linalg still import SciPy when they are compiled or called."""
    import importlib.util
    import sys

    if "numba.np.arraymath" in sys.modules:
        return
    from numba.np import linalg

    def installed():
        if importlib.util.find_spec("scipy") is None:
            raise ImportError("scipy is not installed")

    probe, linalg.ensure_blas = linalg.ensure_blas, installed
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        linalg.ensure_blas = probe


def _use_cache_folder(jit_options, blas):
    """Cache compiled kernels in a folder of their own, numba-<tag>, under
    NUMBA_CACHE_DIR if set, else under ~/.cache/charrnn ($XDG_CACHE_HOME); returns it,
    or None (and cache=False in jit_options) when the folder is refused. The tag
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
    editable install. Numba's index files are pickles, loaded as code: a folder
    that another user owns or can write (or whose parents let them swap it,
    fileio.unsafe_folder), however it was chosen, is never used; charrnn says so
    once and compiles in memory. Must run before any @njit."""
    import glob
    import hashlib

    from numba.core import caching, config

    from charrnn.fileio import unsafe_folder

    if config.CACHE_LOCATOR_CLASSES:
        _warn("kernel cache: NUMBA_CACHE_LOCATOR_CLASSES is set, so charrnn cannot vouch for "
              "the cache folder; compiling in memory (each start is slower)")
        jit_options["cache"] = False
        return None
    digest = hashlib.sha1(repr((blas, sorted(jit_options.items()))).encode())
    for path in sorted(glob.glob(os.path.join(KERNELS_DIR, "*.py"))):
        with open(path, "rb") as f:
            digest.update(f.read())
    base = config.CACHE_DIR or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "charrnn")
    folder = os.path.abspath(os.path.join(base, f"numba-{digest.hexdigest()[:12]}"))
    problem = unsafe_folder(folder)
    if problem:
        _warn(f"kernel cache {folder}: {problem}; compiling in memory (each start is slower)")
        jit_options["cache"] = False
        return None

    class CharrnnCacheLocator(caching.UserProvidedCacheLocator):
        """charrnn's kernel files, cached under `folder`; every other file: not ours."""

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = os.path.join(folder, self.get_suitable_cache_subpath(py_file))

        @classmethod
        def from_function(cls, py_func, py_file):
            if os.path.dirname(os.path.abspath(py_file)) != KERNELS_DIR:
                return None
            # the source-file mixin's: checks the file, creates and probes the folder
            return super(caching.UserProvidedCacheLocator, cls).from_function(py_func, py_file)

    classes = caching.CacheImpl._locator_classes
    classes[:] = [c for c in classes if c.__name__ != "CharrnnCacheLocator"]
    classes.insert(0, CharrnnCacheLocator)
    return folder


_warned = set()


def _warn(message):
    """One line on stderr, once per message."""
    import sys
    if message not in _warned:
        _warned.add(message)
        print(f"warning: {message}", file=sys.stderr)


def _tolerate_broken_cache():
    """A corrupt file in charrnn's kernel cache must never make charrnn fail: treat
    an index or data file there that does not unpickle as a cache miss (Numba then
    recompiles and overwrites it), and a failed write as "kept in memory". Numba
    itself only tolerates a missing file. Other folders behave as Numba made them."""
    from numba.core import caching

    cls = caching.IndexDataCacheFile
    if getattr(cls, "_charrnn_tolerant", False):
        return
    load_index, load_data, save = cls._load_index, cls._load_data, cls.save

    def ours(self):
        return _cache_folder is not None and \
            os.path.abspath(self._cache_path).startswith(_cache_folder + os.sep)

    def safe_index(self):
        try:
            return load_index(self)
        except Exception:  # noqa: BLE001 - any unreadable index is a miss
            if not ours(self):
                raise
            return {}

    def safe_data(self, name):
        try:
            return load_data(self, name)
        except Exception:  # noqa: BLE001
            if not ours(self):
                raise
            return None

    def safe_save(self, key, data):
        try:
            save(self, key, data)
        except OSError as e:    # a full disk, a file-size limit: the kernel still runs
            if not ours(self):
                raise
            _warn(f"kernel cache: cannot write ({e.strerror}); compiled kernels are kept in "
                  f"memory only")

    cls._load_index, cls._load_data, cls.save = safe_index, safe_data, safe_save
    cls._charrnn_tolerant = True
