"""LAMMPS coupling: MD integrated by LAMMPS with forces, energy and virial from the
ionscale learned potential through ``fix external pf/callback``, under mpirun."""
from .driver import (LammpsMDResult, LammpsUnavailableError, ModelForceCallback, import_lammps,
                     run_lammps_nve)

__all__ = ["LammpsMDResult", "LammpsUnavailableError", "ModelForceCallback", "import_lammps",
           "run_lammps_nve"]
