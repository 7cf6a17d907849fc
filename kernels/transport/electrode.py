"""Electrode tortuosity factor tau_e (blocking electrolyte, transmission-line limit).

In a blocking-electrolyte impedance experiment the pores are charged through the
double layer on the active-material surface. At low frequency the charging current
of every surface element is proportional to its capacitance, i.e. to its area, and
the real part of the impedance tends to R_ion / 3 for a uniform transmission line
(R_ion = L / (kappa_eff A)) (Nguyen et al., npj Comput. Mater. 6, 123 (2020)).
We compute that limit directly as a steady problem: conduction kappa (the voxel
"diffusivity" map) in the conducting phases, potential phi = 0 at the separator
face, no flux elsewhere, and a sink on every face between a conducting voxel and
an active-material voxel, proportional to the face area, total current I = 1:

    A phi = s,   R = s . phi / I^2  (the Joule dissipation / I^2).

kappa_e = L / (3 R A) * (1 + 1 / (2 n^2)) — the bracket is the exact correction of
this cell-centred discretisation for n voxel layers, so that a straight channel with
a uniform surface gives tau_e = 1 exactly — and tau_e = mean(kappa) / kappa_e, the
same normalisation as the through-plane tau. Surface on clusters without a path to
the separator cannot be charged and is excluded (reported as a fraction).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ionscale.errors import SolverDivergedError

from .percolation import FACE_CONNECTIVITY
from .tortuosity import _reason_name, as_diffusivity, assemble, create_dmda, local_box, make_solver


@dataclass
class ElectrodeTortuosityResult:
    tau_e: float
    kappa_e: float               # effective conductivity seen by the charging current
    resistance: float            # R = R_ion / 3 (units: length / (kappa * area))
    surface_area: float          # active surface in contact with the connected electrolyte (length^2)
    accessible_surface_fraction: float
    iterations: int
    solve_time_s: float


def active_surface_faces(conducting: np.ndarray, active: np.ndarray, spacing) -> np.ndarray:
    """Per voxel: area of its faces shared with an active-material voxel (0 outside ``conducting``)."""
    h = np.asarray(spacing, dtype=np.float64)
    area = np.array([h[1] * h[2], h[0] * h[2], h[0] * h[1]])
    s = np.zeros(conducting.shape)
    for a in range(3):
        n = conducting.shape[a]
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[a], hi[a] = slice(0, n - 1), slice(1, n)
        lo, hi = tuple(lo), tuple(hi)
        s[lo] += area[a] * (conducting[lo] & active[hi])
        s[hi] += area[a] * (conducting[hi] & active[lo])
    return s


def electrode_tortuosity(D, active: np.ndarray, axis: int, comm, *, separator: str = "low",
                         spacing=(1.0, 1.0, 1.0), rtol=1e-10, petsc_options=None, prefix="tau_e_",
                         solver=None) -> ElectrodeTortuosityResult:
    """tau_e along ``axis`` with the separator at the ``low`` (index 0) or ``high`` face."""
    Dv = as_diffusivity(D)
    shape = Dv.shape
    conducting = Dv.positive()
    if separator not in ("low", "high"):
        raise ValueError(f"separator must be 'low' or 'high', got {separator!r}")
    flip = separator == "high"
    labels, n = ndimage.label(conducting, structure=FACE_CONNECTIVITY)
    face = np.take(labels, -1 if flip else 0, axis=axis)
    lut = np.zeros(n + 1, dtype=bool)
    ids = np.unique(face)
    lut[ids[ids > 0]] = True
    connected = lut[labels]
    del labels
    sink_all = active_surface_faces(conducting, np.asarray(active, dtype=bool), spacing)
    total_surface = float(sink_all.sum())
    sink = np.where(connected, sink_all, 0.0)
    surface = float(sink.sum())
    if surface == 0.0:
        return ElectrodeTortuosityResult(float("inf"), 0.0, float("inf"), 0.0, 0.0, 0, 0.0)
    sink /= surface  # total current I = 1
    da = create_dmda(shape, comm)
    faces = (False, True) if flip else (True, False)
    A, _, _, _ = assemble(Dv, axis, da, spacing, spanning=connected, faces=faces)
    starts, box = local_box(da)
    b = A.createVecLeft()
    sl = tuple(slice(starts[a], starts[a] + box[a]) for a in range(3))
    b.setArray(sink[sl].ravel())
    x = A.createVecRight()
    ksp = make_solver(A, da, rtol, petsc_options, prefix, 10000, solver)
    t0 = time.perf_counter()
    ksp.solve(b, x)
    reason = ksp.getConvergedReason()
    if reason < 0:
        raise SolverDivergedError(f"electrode tortuosity solve did not converge ({_reason_name(reason)})",
                                  reason=reason, iterations=ksp.getIterationNumber())
    its = int(ksp.getIterationNumber())
    R = comm.allreduce(float(np.dot(b.getArray(readonly=True), x.getArray(readonly=True))))
    elapsed = time.perf_counter() - t0
    for obj in (ksp, A, b, x, da):
        obj.destroy()
    h = np.asarray(spacing, dtype=np.float64)
    nlay = shape[axis]
    length = nlay * h[axis]
    area = float(np.prod([shape[a] * h[a] for a in range(3) if a != axis]))
    kappa_e = length / (3.0 * R * area) * (1.0 + 1.0 / (2.0 * nlay ** 2))
    tau_e = Dv.mean() / kappa_e if kappa_e > 0 else float("inf")
    return ElectrodeTortuosityResult(float(tau_e), float(kappa_e), float(R), surface,
                                     surface / total_surface if total_surface else 0.0, its, elapsed)
