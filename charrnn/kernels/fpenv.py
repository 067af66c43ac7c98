"""Flush denormal floats to zero (x86 MXCSR FTZ and DAZ bits), scoped to kernel work.

Why: in a saturated LSTM the cell gradient dc = dc f (f near 1) decays through
the denormal range, and arithmetic on denormals takes a micro-code slow path: a
2x256 LSTM's training step went from 70 ms to 350 ms once its gates saturated
(measured). Flushing changes only values below 1.2e-38 (float32) / 2.2e-308
(float64) to zero, which no loss can notice.

MXCSR is per thread, and a thread inherits its creator's when it starts. So:
- `denormals_flushed()` sets FTZ and DAZ in the calling thread for the length of a
  `with` block and then restores the caller's MXCSR (the way `np.errstate` scopes
  NumPy's error handling). The API wraps its kernel work in it.
- `flush_denormals()` sets them for good in the calling thread: the `charrnn`
  command does it (the process is its own), and so do data-parallel worker threads.
- What cannot be scoped: threads started inside the block keep the flags, since
  they copy MXCSR at their start. Those are the BLAS library's pool (OpenBLAS
  starts it when loaded: `charrnn.kernels.setup` loads it inside the block, so its
  threads flush; MKL starts it at its first threaded product) and charrnn's own
  data-parallel workers; neither runs the caller's code.
It uses llvmlite alone (no Numba): three tiny functions JIT-compiled once and
called through ctypes.
"""
import ctypes
import platform
import threading
from contextlib import contextmanager

FTZ_DAZ = 0x8040     # MXCSR bit 15 (flush to zero) | bit 6 (denormals are zero)

_IR = f"""
declare void @llvm.x86.sse.stmxcsr(ptr)
declare void @llvm.x86.sse.ldmxcsr(ptr)
define i32 @charrnn_get_mxcsr() {{
  %slot = alloca i32
  call void @llvm.x86.sse.stmxcsr(ptr %slot)
  %v = load i32, ptr %slot
  ret i32 %v
}}
define void @charrnn_set_mxcsr(i32 %v) {{
  %slot = alloca i32
  store i32 %v, ptr %slot
  call void @llvm.x86.sse.ldmxcsr(ptr %slot)
  ret void
}}
"""

_lock = threading.Lock()
_fns = None          # (get, set) once built; False when this machine cannot


def _functions():
    """(get_mxcsr, set_mxcsr) ctypes functions, or None (not x86-64, or llvmlite failed)."""
    global _fns
    if _fns is None:
        with _lock:
            if _fns is None:
                _fns = _build() or False
    return _fns or None


def _build():
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        import llvmlite.binding as llvm
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        module = llvm.parse_assembly(_IR)
        machine = llvm.Target.from_default_triple().create_target_machine()
        engine = llvm.create_mcjit_compiler(module, machine)
        engine.finalize_object()
        get = ctypes.CFUNCTYPE(ctypes.c_uint32)(engine.get_function_address("charrnn_get_mxcsr"))
        put = ctypes.CFUNCTYPE(None, ctypes.c_uint32)(engine.get_function_address("charrnn_set_mxcsr"))
        get._engine = put._engine = engine     # the code lives as long as the functions
        return get, put
    except Exception:  # noqa: BLE001 - speed only; never fail a run over it
        return None


def get_mxcsr() -> int | None:
    """The calling thread's MXCSR, or None where it cannot be read."""
    fns = _functions()
    return int(fns[0]()) if fns else None


def flush_denormals() -> bool:
    """Set FTZ and DAZ in the calling thread, for good; False if not done (not
    x86-64, or llvmlite could not build the function): then charrnn is only slower."""
    fns = _functions()
    if not fns:
        return False
    fns[1](fns[0]() | FTZ_DAZ)
    return True


@contextmanager
def denormals_flushed():
    """Within: FTZ and DAZ set in the calling thread; on leaving, the thread's MXCSR
    as it was (exceptions, rounding mode and all). Nests; a no-op off x86-64."""
    fns = _functions()
    if not fns:
        yield
        return
    old = fns[0]()
    if old & FTZ_DAZ == FTZ_DAZ:       # already set (the command line, an outer block)
        yield
        return
    fns[1](old | FTZ_DAZ)
    try:
        yield
    finally:
        fns[1](old)
