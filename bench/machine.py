"""What machine a benchmark ran on: CPU model (from /proc/cpuinfo), cores, BLAS."""
import os
import platform
import re
import subprocess
import sys


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_name(blas_env: str | None = None) -> str:
    """'mkl' or 'openblas': what charrnn uses in a process with CHARRNN_BLAS=blas_env."""
    env = dict(os.environ, **({"CHARRNN_BLAS": blas_env} if blas_env else {}))
    r = subprocess.run([sys.executable, "-c", "from charrnn.kernels import BLAS; print(BLAS)"],
                       capture_output=True, text=True, env=env,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return r.stdout.strip() or "?"


def describe(blas: str) -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, charrnn on {'MKL' if blas == 'mkl' else 'OpenBLAS'}"


def slug() -> str:
    """A file-name part naming the CPU: 'amd-epyc', 'intel-xeon-platinum-8581c'."""
    name = re.sub(r"\((r|tm)\)|cpu|processor|@.*|\d+-core", "", cpu_model().lower())
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "cpu"
