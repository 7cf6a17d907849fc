"""Stage adapter: ``spheres`` generates an overlapping-sphere structure."""
from __future__ import annotations

import numpy as np

from ionscale.params import ListOf, Output, Param, Scalar
from ionscale.stage import Stage, register

from ..imaging.stages import as_voxel_size, voxel_size_param
from .generate import overlapping_spheres


@register("spheres")
class Spheres(Stage):
    """Generate a porous solid of overlapping spheres (labels: pore 0, solid 1) with a fixed seed."""

    params = {
        "shape": Param(ListOf(Scalar(int), 3, 3, scalar_ok=False), min=1, doc="voxels [nx, ny, nz]"),
        "porosity": Param(float, min=0, max=1, min_exclusive=True, max_exclusive=True, doc="pore volume fraction"),
        "radius_vox": Param(float, default=5.0, min=0.5, doc="sphere radius in voxels"),
        "seed": Param(int, default=None, min=0, doc="random seed (default: derived from run.seed and the stage name)"),
        "voxel_size_um": voxel_size_param(),
    }
    outputs = {
        "volume": Output("label", "3D label array: 0 pore, 1 solid"),
        "phases": Output("label", "phase name -> label value"),
        "voxel_size_um": Output("um", "voxel size [x, y, z]"),
        "porosity": Output("1", "pore volume fraction of the generated image"),
    }

    def run(self, comm, inputs, params):
        seed = params["seed"] if params["seed"] is not None else self.seed
        # every rank generates the same image from the same seed (no broadcast needed)
        solid = overlapping_spheres(params["shape"], params["radius_vox"], params["porosity"], seed)
        labels = solid.astype(np.uint8)
        return {"volume": labels, "phases": {"pore": 0, "solid": 1},
                "voxel_size_um": np.array(as_voxel_size(params["voxel_size_um"])),
                "porosity": float(1.0 - labels.mean())}
