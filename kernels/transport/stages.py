"""Stage adapter: ``tortuosity`` (steady diffusion through selected phases)."""
from __future__ import annotations

import numpy as np

from ionscale.errors import InputDataError
from ionscale.log import progress
from ionscale.params import FilePath, Labels, OneOf, Output, Param, Ref
from ionscale.petsc_options import unique_prefix
from ionscale.stage import Stage, register

from ..imaging.io import read_volume, select_phase
from ..imaging.stages import as_voxel_size, voxel_size_param
from .tortuosity import tortuosity

_DIRS = ("x", "y", "z")


@register("tortuosity")
class Tortuosity(Stage):
    """Tortuosity factor of one phase (or union of phases) of a voxel image by a PETSc diffusion solve."""

    params = {
        "input": Param(OneOf(Ref(), FilePath()), doc="volume output of an earlier stage (image.volume) or an image file"),
        "phase": Param(Labels(), doc="conducting phase name(s) or label value(s)"),
        "direction": Param(str, default="all", choices=("x", "y", "z", "all"), doc="solve direction(s)"),
        "voxel_size_um": voxel_size_param(default=None),
        "rtol": Param(float, default=1e-8, min=0, max=1, min_exclusive=True,
                      doc="relative residual tolerance of the linear solve"),
        "petsc": Param(dict, default={}, doc="PETSc options for this stage's solver, e.g. {ksp_type: cg, pc_type: gamg}"),
    }

    @classmethod
    def declared_outputs(cls, params=None):
        d = (params or {}).get("direction", "all")
        dirs = _DIRS if d in (None, "all") else (d,)
        out = {"porosity": Output("1", "volume fraction of the selected phase(s)")}
        for a in dirs:
            out.update({
                f"tau_{a}": Output("1", f"tortuosity factor along {a} (inf if the phase does not percolate)"),
                f"deff_over_d0_{a}": Output("1", f"relative effective diffusivity along {a} (= porosity / tau)"),
                f"percolating_fraction_{a}": Output("1", f"volume fraction of the phase spanning the {a} faces"),
                f"flux_mismatch_{a}": Output("1", "relative inlet/outlet flux difference (convergence check)"),
                f"iterations_{a}": Output("1", "Krylov iterations"),
                f"solve_time_{a}": Output("s", "linear solve wall time"),
            })
        return out

    outputs = {}  # per direction: see declared_outputs

    def run(self, comm, inputs, params):
        if "input" in inputs:
            labels = np.asarray(inputs["input"])
            meta = inputs.siblings("input")
            phases = meta.get("phases", {})
            spacing = params["voxel_size_um"] or meta.get("voxel_size_um", 1.0)
        else:
            labels = read_volume(params["input"])
            phases, spacing = {}, params["voxel_size_um"] or 1.0
        if labels.ndim != 3:
            raise InputDataError(f"stage {self.name}: input must be a 3D volume, got shape {labels.shape}")
        mask = select_phase(labels, params["phase"], phases)
        dirs = list(_DIRS) if params["direction"] == "all" else [params["direction"]]
        results = tortuosity(mask, dirs, comm=comm, spacing=as_voxel_size(spacing), rtol=params["rtol"],
                             petsc_options=params["petsc"], prefix=unique_prefix(self.name),
                             progress=lambda it: progress(it, desc=f"{self.name}: directions", comm=comm))
        out = {"porosity": float(mask.mean())}
        for d, r in results.items():
            out.update({f"tau_{d}": r.tau, f"deff_over_d0_{d}": r.deff,
                        f"percolating_fraction_{d}": r.percolating_fraction,
                        f"flux_mismatch_{d}": r.flux_mismatch, f"iterations_{d}": r.iterations,
                        f"solve_time_{d}": r.solve_time_s})
        return out
