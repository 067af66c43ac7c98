"""Flush denormal floats to zero (x86 MXCSR FTZ and DAZ bits), process-wide.

Why: in a saturated LSTM the cell gradient dc = dc f (f near 1) decays through
the denormal range, and arithmetic on denormals takes a micro-code slow path: a
2x256 LSTM's training step went from 70 ms to 350 ms once its gates saturated
(measured). Flushing changes only values below 1.2e-38 (float32) / 2.2e-308
(float64) to zero, which no loss can notice.

MXCSR is per thread and new threads inherit it, so this must run before the BLAS
library starts its thread pool, i.e. before Numba compiles or loads anything (its
first compilation loads SciPy's BLAS). It therefore uses llvmlite alone: a
five-instruction function JIT-compiled and called through ctypes.
"""
import ctypes
import platform

FTZ_DAZ = 0x8040     # MXCSR bit 15 (flush to zero) | bit 6 (denormals are zero)

_IR = f"""
declare void @llvm.x86.sse.stmxcsr(ptr)
declare void @llvm.x86.sse.ldmxcsr(ptr)
define void @charrnn_ftz_daz() {{
  %slot = alloca i32
  call void @llvm.x86.sse.stmxcsr(ptr %slot)
  %old = load i32, ptr %slot
  %new = or i32 %old, {FTZ_DAZ}
  store i32 %new, ptr %slot
  call void @llvm.x86.sse.ldmxcsr(ptr %slot)
  ret void
}}
"""


def flush_denormals() -> bool:
    """Set FTZ and DAZ in the calling thread; False if not done (not x86-64, or
    llvmlite could not build the function): then charrnn is only slower."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        import llvmlite.binding as llvm
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        module = llvm.parse_assembly(_IR)
        machine = llvm.Target.from_default_triple().create_target_machine()
        with llvm.create_mcjit_compiler(module, machine) as engine:
            engine.finalize_object()
            ctypes.CFUNCTYPE(None)(engine.get_function_address("charrnn_ftz_daz"))()
        return True
    except Exception:  # noqa: BLE001 - speed only; never fail a run over it
        return False
