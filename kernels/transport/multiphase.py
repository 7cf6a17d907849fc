"""Multi-phase transport: voxel diffusivities from a phase map, derived metrics.

Each label is mapped to its phase's diffusivity (or conductivity) D_p; faces between
voxels use harmonic means (see tortuosity.py). With the effective diffusivity D_eff
from the Dirichlet solve:

- tau      = sum_p D_p eps_p / D_eff           (TauFactor's multi-phase definition)
- N_M      = D_ref / D_eff, D_ref = max_p D_p   (MacMullin number; = tau / eps for one phase)
- b        = ln(D_eff / D_ref) / ln(eps)        (Bruggeman exponent: D_eff/D_ref = eps^b,
                                                 i.e. tau = eps^(1 - b) for one phase)

with eps the volume fraction of the conducting phases (D_p > 0).
"""
from __future__ import annotations

import math

import numpy as np

from ionscale.errors import InputDataError

from .tortuosity import VoxelDiffusivity


def phase_diffusivity(labels: np.ndarray, phases: dict, diffusivity: dict, *, where: str = "diffusivity"
                      ) -> VoxelDiffusivity:
    """``diffusivity``: phase name (or label value as str/int) -> D >= 0; unlisted phases get 0."""
    if labels.dtype.kind not in "iub":
        raise InputDataError(f"{where}: expected an integer label image, got dtype {labels.dtype}")
    lo = int(labels.min()) if labels.size else 0
    if lo < 0:
        raise InputDataError(f"{where}: negative labels ({lo}) are not supported")
    top = int(labels.max()) if labels.size else 0
    lut = np.zeros(top + 1)
    for key, value in diffusivity.items():
        if key in phases:
            label = int(phases[key])
        else:
            try:
                label = int(key)
            except (TypeError, ValueError):
                raise InputDataError(f"{where}: unknown phase '{key}'; the image defines "
                                     f"{', '.join(f'{k}={v}' for k, v in phases.items()) or 'no phase names'}"
                                     ) from None
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise InputDataError(f"{where}: diffusivity of '{key}' must be a finite number >= 0, got {value}")
        if label <= top:
            lut[label] = value
    if not np.any(lut > 0):
        raise InputDataError(f"{where}: no phase present in the image has a positive diffusivity ({diffusivity})")
    return VoxelDiffusivity(np.asarray(labels), lut)


def derived_metrics(deff: float, mean_d: float, d_ref: float, eps: float) -> dict:
    """tau, MacMullin number and Bruggeman exponent from D_eff (inf/nan where undefined)."""
    if deff <= 0:
        return {"tau": math.inf, "macmullin": math.inf, "bruggeman": math.nan}
    rel = deff / d_ref
    brugg = math.log(rel) / math.log(eps) if 0 < eps < 1 else math.nan
    return {"tau": mean_d / deff, "macmullin": 1.0 / rel, "bruggeman": brugg}
