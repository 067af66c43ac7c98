"""Every matrix product in charrnn, through one BLAS: Intel MKL when it is
installed (`pip install charrnn[mkl]`), else SciPy's OpenBLAS (through Numba's
own entry point to it). One library only: two BLAS thread pools spinning against
each other on 2 cores made an LSTM step 3x slower (measured: 146 ms vs 47 ms).

The recurrent product of each time step reuses one weight matrix T times. With
MKL it is *packed* once per call of the layer (cblas_?gemm_pack), so the T
products skip re-packing it: measured on 2 threads, per product,
    (50x128)@(128x512)  OpenBLAS 41 us, MKL packed 30 us
    (32x256)@(256x768)  OpenBLAS 99 us, MKL packed 47 us
    (50x512)@(512x2048) OpenBLAS 637 us, MKL packed 358 us
(this is what oneDNN does inside PyTorch's LSTM). With OpenBLAS, `prepare`
returns the matrix itself and `gemm_prepared` is a plain product.

All functions take 2-D views with one unit stride: row-major (C) or transposed
(x.T of a row-major x), strided rows allowed.
"""
import ctypes
import os
from contextlib import contextmanager

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from charrnn.kernels import BLAS, JIT

ROW_MAJOR, NO_TRANS, TRANS, PACKED, B_MATRIX = 101, 111, 112, 151, 162


@njit(**JIT)
def _layout(rows, cols, stride0, stride1, itemsize):
    """(transposed?, leading dimension) of a 2-D view with one unit stride, given its
    shape and byte strides."""
    if stride1 == itemsize or cols == 1:
        return False, max(stride0 // itemsize, cols, 1)
    if stride0 == itemsize or rows == 1:
        return True, max(stride1 // itemsize, rows, 1)
    raise ValueError("BLAS operand has no unit stride")


@njit(**JIT)
def _product(a, b, c, alpha, beta):
    """c = alpha a @ b + beta c, each operand given as (shape, byte strides, itemsize,
    address): checks a (M, K) @ b (K, N) -> c (M, N), then calls the BLAS."""
    (M, K), (as0, as1), aisz, pa = a
    (K2, N), (bs0, bs1), bisz, pb = b
    (Mc, Nc), (cs0, cs1), isz, pc = c
    if K2 != K or Mc != M or Nc != N:
        raise ValueError("matrix product: shapes do not match")
    if aisz != isz or bisz != isz:
        raise ValueError("matrix product: dtypes differ")
    if cs1 != isz and N > 1:
        raise ValueError("matrix product: output rows must be contiguous")
    ta, lda = _layout(M, K, as0, as1, isz)
    tb, ldb = _layout(K, N, bs0, bs1, isz)
    if M > 0 and N > 0:
        _gemm(ta, tb, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, max(cs0 // isz, N, 1), isz)


if BLAS == "mkl":
    _I, _V, _F, _D = types.intc, types.uintp, types.float32, types.float64   # _V: an address

    def _ext(name, ret, *args):
        return types.ExternalFunction(name, ret(*args))

    _sgemm = _ext("cblas_sgemm", types.void, _I, _I, _I, _I, _I, _I, _F, _V, _I, _V, _I, _F, _V, _I)
    _dgemm = _ext("cblas_dgemm", types.void, _I, _I, _I, _I, _I, _I, _D, _V, _I, _V, _I, _D, _V, _I)
    _spack = _ext("cblas_sgemm_pack", types.void, _I, _I, _I, _I, _I, _I, _F, _V, _I, _V)
    _dpack = _ext("cblas_dgemm_pack", types.void, _I, _I, _I, _I, _I, _I, _D, _V, _I, _V)
    _scompute = _ext("cblas_sgemm_compute", types.void, _I, _I, _I, _I, _I, _I, _V, _I, _V, _I, _F, _V, _I)
    _dcompute = _ext("cblas_dgemm_compute", types.void, _I, _I, _I, _I, _I, _I, _V, _I, _V, _I, _D, _V, _I)
    _sgemv = _ext("cblas_sgemv", types.void, _I, _I, _I, _I, _F, _V, _I, _V, _I, _F, _V, _I)
    _dgemv = _ext("cblas_dgemv", types.void, _I, _I, _I, _I, _D, _V, _I, _V, _I, _D, _V, _I)

    # MKL's symbols are global (_select_blas loaded it so): bound once, here
    _mkl = ctypes.CDLL(None)
    for _fn in (_mkl.cblas_sgemm_pack_get_size, _mkl.cblas_dgemm_pack_get_size):
        _fn.restype, _fn.argtypes = ctypes.c_size_t, [ctypes.c_int] * 4
    _mkl.MKL_Set_Num_Threads_Local.argtypes = [ctypes.c_int]

    def prepared_buffer(m, k, n, dtype):
        """Buffer for `prepare` of a (k, n) matrix used in products with m rows."""
        get_size = _mkl.cblas_sgemm_pack_get_size if np.dtype(dtype) == np.float32 else \
            _mkl.cblas_dgemm_pack_get_size
        nbytes = get_size(B_MATRIX, m, n, k)
        return np.zeros(nbytes // np.dtype(dtype).itemsize + 1, dtype)

    @njit(**JIT)
    def _gemm(ta, tb, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, ldc, itemsize):
        opa = TRANS if ta else NO_TRANS
        opb = TRANS if tb else NO_TRANS
        if itemsize == 4:
            _sgemm(ROW_MAJOR, opa, opb, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, ldc)
        else:
            _dgemm(ROW_MAJOR, opa, opb, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, ldc)

    @njit(**JIT)
    def prepare(w, m, buf):
        """Pack w (K, N) for products with m-row left factors into buf (from
        `prepared_buffer`); returns what `gemm_prepared` takes."""
        K, N = w.shape
        tw, ldw = _layout(K, N, w.strides[0], w.strides[1], w.itemsize)
        op = TRANS if tw else NO_TRANS
        if buf.itemsize == 4:
            _spack(ROW_MAJOR, B_MATRIX, op, m, N, K, 1.0, w.ctypes.data, ldw, buf.ctypes.data)
        else:
            _dpack(ROW_MAJOR, B_MATRIX, op, m, N, K, 1.0, w.ctypes.data, ldw, buf.ctypes.data)
        return buf

    @njit(**JIT)
    def gemm_prepared(a, wp, c, beta):
        """c = a @ w + beta c, with wp = prepare(w, M, ...): a (M, K) row-major, M the
        row count given to `prepare` (MKL packs for it)."""
        M, K = a.shape
        N = c.shape[1]
        lda = max(a.strides[0] // a.itemsize, K, 1)
        ldc = max(c.strides[0] // c.itemsize, N, 1)
        if c.itemsize == 4:
            _scompute(ROW_MAJOR, NO_TRANS, PACKED, M, N, K, a.ctypes.data, lda, wp.ctypes.data, N, beta,
                      c.ctypes.data, ldc)
        else:
            _dcompute(ROW_MAJOR, NO_TRANS, PACKED, M, N, K, a.ctypes.data, lda, wp.ctypes.data, N, beta,
                      c.ctypes.data, ldc)

    @njit(**JIT)
    def gemv(x, w, out):
        """out (N,) = x (K,) @ w (K, N) with w row-major: one sequence at a time."""
        K, N = w.shape
        ldw = max(w.strides[0] // w.itemsize, N, 1)
        if out.itemsize == 4:
            _sgemv(ROW_MAJOR, TRANS, K, N, 1.0, w.ctypes.data, ldw, x.ctypes.data, 1, 0.0, out.ctypes.data, 1)
        else:
            _dgemv(ROW_MAJOR, TRANS, K, N, 1.0, w.ctypes.data, ldw, x.ctypes.data, 1, 0.0, out.ctypes.data, 1)

    PER_THREAD = True   # set_thread_local is the calling thread's own

    def threads():
        """Threads a product may use: MKL_NUM_THREADS, or MKL's count of cores."""
        return int(_mkl.MKL_Get_Max_Threads())

    def set_thread_local(n):
        """Products called from this thread use n threads (0: back to `threads()`).
        MKL keeps this per thread, so data-parallel workers can each run one.
        Called twice per data-parallel step: nothing is looked up here."""
        _mkl.MKL_Set_Num_Threads_Local(n)

else:
    from numba.np.linalg import ensure_blas

    ensure_blas()   # registers Numba's BLAS helper symbol; fails clearly without SciPy
    # Numba's own entry point to SciPy's ?gemm (column-major), bound by symbol name
    # (matrices by address, a uintp; alpha and beta by pointer)
    _xxgemm = types.ExternalFunction("numba_xxgemm", types.intc(
        types.char, types.char, types.char, types.intp, types.intp, types.intp,
        types.voidptr, types.uintp, types.intp, types.uintp, types.intp,
        types.voidptr, types.uintp, types.intp))

    def prepared_buffer(m, k, n, dtype):
        return None

    def _thread_count_api():
        """OpenBLAS's (get, set) process-wide thread count functions, found in the
        library that SciPy loaded (SciPy's wheels prefix its symbols), or None."""
        with open("/proc/self/maps") as maps:     # the libraries loaded (Linux)
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
        # NumPy's own OpenBLAS (an ILP64 build, symbols ending in 64_) is never the one
        # Numba calls: SciPy's comes first
        paths = sorted(paths, key=lambda path: ("64" in os.path.basename(path), path))
        for path in paths:
            if ".so" not in os.path.basename(path):
                continue
            lib = ctypes.CDLL(path)
            for prefix in ("scipy_openblas", "openblas"):
                get = getattr(lib, f"{prefix}_get_num_threads", None)
                put = getattr(lib, f"{prefix}_set_num_threads", None)
                if get is not None and put is not None:
                    get.restype, get.argtypes, put.argtypes = ctypes.c_int, [], [ctypes.c_int]
                    return get, put
        return None

    try:
        _api = _thread_count_api()
    except OSError:
        _api = None
    _THREADS = max(1, _api[0]()) if _api else 1

    PER_THREAD = False  # set_thread_local sets the whole process's count

    def threads():
        """Threads a product may use: OPENBLAS_NUM_THREADS, or OpenBLAS's count of cores
        (1 if its thread count cannot be found and set)."""
        return _THREADS

    def set_thread_local(n):
        """Products use n threads (0: back to `threads()`). OpenBLAS keeps one count for
        the whole process, and data-parallel steps set 1 in all their threads at once,
        so this serves them as MKL's per-thread count does. (SciPy's OpenBLAS 0.3.30,
        pthreads, also exports openblas_set_num_threads_local, but only OpenMP builds
        read it: set to 1, a 1024^3 product still ran on both cores.)"""
        if _api:
            _api[1](n or _THREADS)

    @intrinsic
    def _pointer_to(typingctx, value):
        """A pointer to a stack slot holding `value` (?gemm takes alpha and beta by
        pointer): no heap allocation per product, as in Numba's own linalg."""
        def codegen(context, builder, sig, args):
            return builder.bitcast(cgutils.alloca_once_value(builder, args[0]), cgutils.voidptr_t)
        return types.voidptr(value), codegen

    _xxgemv = types.ExternalFunction("numba_xxgemv", types.intc(
        types.char, types.char, types.intp, types.intp, types.voidptr, types.uintp, types.intp,
        types.uintp, types.voidptr, types.uintp))

    @njit(**JIT)
    def _gemm(ta, tb, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, ldc, itemsize):
        if itemsize == 4:           # alpha and beta in the matrices' dtype
            _gemm_as(np.float32(alpha), np.float32(beta), ord("s"), ta, tb, M, N, K, pa, lda, pb, ldb, pc, ldc)
        else:
            _gemm_as(np.float64(alpha), np.float64(beta), ord("d"), ta, tb, M, N, K, pa, lda, pb, ldb, pc, ldc)

    @njit(**JIT)
    def _gemm_as(alpha, beta, kind, ta, tb, M, N, K, pa, lda, pb, ldb, pc, ldc):
        if M == 1 and not ta and K > 0:
            # one row: OpenBLAS's ?gemv, several times faster than its one-row ?gemm
            # (benchmark config (a), B=1: 51k -> see docs/performance.md). Column-major,
            # a row-major b (K, N) is an (N, K) matrix, a transposed one a (K, N) matrix.
            if tb:
                _xxgemv(kind, ord("t"), K, N, _pointer_to(alpha), pb, ldb, pa, _pointer_to(beta), pc)
            else:
                _xxgemv(kind, ord("n"), N, K, _pointer_to(alpha), pb, ldb, pa, _pointer_to(beta), pc)
            return
        # row-major C = A B is column-major C^T = B^T A^T: b goes first
        _xxgemm(kind, ord("t") if tb else ord("n"), ord("t") if ta else ord("n"), N, M, K,
                _pointer_to(alpha), pb, ldb, pa, lda, _pointer_to(beta), pc, ldc)

    @njit(**JIT)
    def prepare(w, m, buf):
        return w

    @njit(**JIT)
    def gemm_prepared(a, wp, c, beta):
        gemm(a, wp, c, 1.0, beta)

    @njit(**JIT)
    def gemv(x, w, out):
        """out (N,) = x (K,) @ w (K, N) with w row-major: one sequence at a time."""
        np.dot(x, w, out)     # ?gemv; a 1-row ?gemm ran 4x slower (2x512 LSTM sampling)


@contextmanager
def one_thread_products(on=True):
    """Within: products use one thread (with OpenBLAS, in every thread of the process;
    so a data-parallel step enters this before starting its shards and leaves it only
    after the last has finished). on=False: no change."""
    if not on:
        yield
        return
    set_thread_local(1)
    try:
        yield
    finally:
        set_thread_local(0)


@njit(**JIT)
def gemm(a, b, c, alpha, beta):
    """c = alpha a @ b + beta c; a (M, K), b (K, N), c (M, N) of one float dtype.
    With beta = 0, c's old contents are ignored (may be NaN).
    The work is done by `_product` on the operands as plain numbers, a type that is the
    same for every layout and dtype: it compiles once, and this, compiled for each
    combination of layouts a caller uses, stays small (0.45 s a combination before)."""
    _product((a.shape, a.strides, a.itemsize, a.ctypes.data), (b.shape, b.strides, b.itemsize, b.ctypes.data),
             (c.shape, c.strides, c.itemsize, c.ctypes.data), alpha, beta)
