"""Versions and machine facts for ``ionscale info`` and the results provenance."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

__version__ = "0.1.0"


def git_commit() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def versions(with_torch: bool = True) -> dict:
    v = {"ionscale": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    try:
        import petsc4py
        from petsc4py import PETSc
        v["petsc4py"] = petsc4py.__version__
        v["petsc"] = ".".join(map(str, PETSc.Sys.getVersion()))
    except ImportError:
        v["petsc"] = "missing"
    try:
        import mpi4py
        from mpi4py import MPI
        v["mpi4py"] = mpi4py.__version__
        v["mpi"] = MPI.Get_library_version().splitlines()[0].strip()
    except ImportError:
        v["mpi"] = "missing"
    for mod in ("numpy", "numba", "h5py") + (("torch",) if with_torch else ()):
        try:
            v[mod] = __import__(mod).__version__
        except ImportError:
            v[mod] = "missing"
    return v


def gpu_description() -> str:
    try:
        import torch
        if torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except ImportError:
        return "torch missing"
    return "none (CPU only)"
