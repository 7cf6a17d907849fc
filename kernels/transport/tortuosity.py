"""Steady diffusion through a voxel image -> tortuosity factor.

Cell-centred finite volumes on a PETSc DMDA (distributed over the ranks of
``comm``). Concentration 1 and 0 are imposed *at the faces* of the first and last
voxel layer normal to the solve direction (half-cell conductance 2 D/h), all
other faces are no-flux, so a straight channel gives tau = 1 exactly. Face
conductances between voxels are harmonic means of the voxel diffusivities.

The matrix is assembled row-block by row-block with numpy (no per-voxel Python
loops) directly in CSR form; voxels outside the percolating cluster keep an
identity row, so they neither make the operator singular nor carry flux.

tau follows TauFactor's definition D_eff = mean(D) / tau, i.e. for one phase of
diffusivity 1, D_eff = eps / tau with eps the phase volume fraction.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ionscale.errors import SolverDivergedError
from ionscale.petsc_options import scoped_options

from .percolation import percolating_mask

log = logging.getLogger("ionscale")

AXES = {"x": 0, "y": 1, "z": 2}

#: default solver: CG + algebraic multigrid (overridable through petsc options)
DEFAULT_SOLVER = {"ksp_type": "cg", "pc_type": "gamg"}


@dataclass
class DirectionResult:
    direction: str
    tau: float
    deff: float                 # effective diffusivity, units of the input diffusivity
    mean_diffusivity: float     # mean of D over all voxels (= porosity for one phase of D = 1)
    percolating_fraction: float  # fraction of all voxels in the spanning cluster
    flux_in: float
    flux_out: float
    flux_mismatch: float        # |J_in - J_out| / mean(J)
    iterations: int
    residual_norm: float
    solve_time_s: float
    converged_reason: str = ""
    field: np.ndarray | None = field(default=None, repr=False)  # concentration (rank 0, full grid)


def _natural_index(shape, starts, box):
    n0, n1, n2 = shape
    i0 = np.arange(starts[0], starts[0] + box[0], dtype=np.int64)[:, None, None]
    i1 = np.arange(starts[1], starts[1] + box[1], dtype=np.int64)[None, :, None]
    i2 = np.arange(starts[2], starts[2] + box[2], dtype=np.int64)[None, None, :]
    return (i0 * n1 + i1) * n2 + i2, (i0, i1, i2)


def _ghosted_block(D, starts, box):
    """D on the local box plus one layer each side (zero outside the domain = no flux)."""
    g = np.zeros(tuple(b + 2 for b in box), dtype=np.float64)
    src, dst = [], []
    for a in range(3):
        lo = max(starts[a] - 1, 0)
        hi = min(starts[a] + box[a] + 1, D.shape[a])
        src.append(slice(lo, hi))
        dst.append(slice(lo - (starts[a] - 1), hi - (starts[a] - 1)))
    g[tuple(dst)] = D[tuple(src)]
    return g


def create_dmda(shape, comm):
    """DMDA whose x is numpy axis 2, so a local box flattened in C order is PETSc's
    local ordering."""
    from petsc4py import PETSc

    n0, n1, n2 = (int(s) for s in shape)
    return PETSc.DMDA().create(dim=3, sizes=(n2, n1, n0), dof=1, stencil_width=1,
                               stencil_type=PETSc.DMDA.StencilType.STAR, comm=comm)


def local_box(da):
    (xs, xe), (ys, ye), (zs, ze) = da.getRanges()
    return (zs, ys, xs), (ze - zs, ye - ys, xe - xs)


def assemble(D: np.ndarray, axis: int, da, spacing=(1.0, 1.0, 1.0), c_in=1.0, c_out=0.0):
    """Operator and right-hand side of the Dirichlet-face diffusion problem along ``axis``.

    ``D`` (full grid, every rank) is the voxel diffusivity with zeros where no
    transport happens. Returns (A, b) on ``da``'s communicator and the per-voxel
    boundary conductance arrays used for the flux balance."""
    from petsc4py import PETSc

    shape = D.shape
    starts, box = local_box(da)
    nloc = int(np.prod(box))
    natural, idx = _natural_index(shape, starts, box)
    g = _ghosted_block(D, starts, box)
    inner = (slice(1, -1),) * 3
    Dp = g[inner]
    h = np.asarray(spacing, dtype=np.float64)
    weight = np.array([h[1] * h[2] / h[0], h[0] * h[2] / h[1], h[0] * h[1] / h[2]])  # area / length
    strides = (shape[1] * shape[2], shape[2], 1)

    cols = np.empty((nloc, 7), dtype=np.int64)
    vals = np.zeros((nloc, 7), dtype=np.float64)
    diag = np.zeros(box, dtype=np.float64)
    slot = 0
    for a in range(3):
        for sign in (-1, 1):
            sl = [slice(1, -1)] * 3
            sl[a] = slice(1 + sign, g.shape[a] - 1 + sign)
            Dq = g[tuple(sl)]
            prod = Dp * Dq
            cond = np.divide(2.0 * prod, Dp + Dq, out=np.zeros_like(prod), where=prod > 0) * weight[a]
            diag += cond
            vals[:, slot] = -cond.ravel()
            cols[:, slot] = (natural + sign * strides[a]).ravel()
            slot += 1
    # Dirichlet conditions at the two faces normal to `axis` (half-cell distance)
    bc_in = np.zeros(box)
    bc_out = np.zeros(box)
    first = idx[axis] == 0
    last = idx[axis] == shape[axis] - 1
    bc_in = np.where(np.broadcast_to(first, box), 2.0 * Dp * weight[axis], 0.0)
    bc_out = np.where(np.broadcast_to(last, box), 2.0 * Dp * weight[axis], 0.0)
    diag += bc_in + bc_out
    inactive = diag == 0.0
    diag[inactive] = 1.0  # decoupled voxel: identity row, zero right-hand side
    vals[:, 6] = diag.ravel()
    cols[:, 6] = natural.ravel()
    rhs = (bc_in * c_in + bc_out * c_out).ravel()

    keep = vals != 0.0
    counts = keep.sum(axis=1)
    indptr = np.zeros(nloc + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    ao = da.getAO()
    petsc_cols = ao.app2petsc(cols[keep].astype(PETSc.IntType))
    N = int(np.prod(shape))
    comm = da.getComm()
    A = PETSc.Mat().createAIJ(size=((nloc, N), (nloc, N)),
                              csr=(indptr.astype(PETSc.IntType), np.asarray(petsc_cols, dtype=PETSc.IntType),
                                   vals[keep]), comm=comm)
    A.assemble()
    A.setOption(PETSc.Mat.Option.SYMMETRIC, True)
    A.setOption(PETSc.Mat.Option.SPD, True)
    b = A.createVecLeft()
    b.setArray(rhs)
    return A, b, bc_in, bc_out


def solve_direction(D: np.ndarray, axis: int, comm, *, spacing=(1.0, 1.0, 1.0), rtol=1e-8,
                    petsc_options: dict | None = None, prefix: str = "tortuosity_",
                    return_field: bool = False, max_it: int = 10000) -> DirectionResult:
    """Solve one direction. ``D``: voxel diffusivity on the full grid (identical on all ranks)."""
    from petsc4py import PETSc

    name = "xyz"[axis]
    D = np.asarray(D, dtype=np.float64)
    mean_d = float(D.mean())
    spanning = percolating_mask(D > 0, axis)
    frac = float(spanning.mean())
    if frac == 0.0:
        log.warning("phase does not percolate in %s: tau_%s = inf", name, name)
        return DirectionResult(name, float("inf"), 0.0, mean_d, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0.0, "not percolating")
    Dspan = np.where(spanning, D, 0.0)
    da = create_dmda(D.shape, comm)
    A, b, bc_in, bc_out = assemble(Dspan, axis, da, spacing)
    x = A.createVecRight()
    ksp = PETSc.KSP().create(comm=A.getComm())
    ksp.setOperators(A)
    ksp.setType(DEFAULT_SOLVER["ksp_type"])
    ksp.getPC().setType(DEFAULT_SOLVER["pc_type"])
    ksp.setTolerances(rtol=rtol, atol=0.0, max_it=max_it)
    ksp.setOptionsPrefix(prefix)
    with scoped_options(prefix, petsc_options):
        ksp.setFromOptions()
    t0 = time.perf_counter()
    ksp.solve(b, x)
    solve_time = time.perf_counter() - t0
    reason = ksp.getConvergedReason()
    its = ksp.getIterationNumber()
    if reason < 0:
        raise SolverDivergedError(f"tortuosity solve along {name} did not converge (PETSc reason {reason}) "
                                  f"after {its} iterations; try petsc: {{ksp_rtol: ...}} or another pc_type",
                                  reason=reason, iterations=its)
    c = x.getArray(readonly=True).reshape(bc_in.shape)
    j_in = comm.allreduce(float(np.sum(bc_in * (1.0 - c))))
    j_out = comm.allreduce(float(np.sum(bc_out * c)))
    h = np.asarray(spacing, dtype=np.float64)
    length = D.shape[axis] * h[axis]
    area = float(np.prod([D.shape[a] * h[a] for a in range(3) if a != axis]))
    j = 0.5 * (j_in + j_out)
    deff = j * length / area
    tau = mean_d / deff if deff > 0 else float("inf")
    mismatch = abs(j_in - j_out) / j if j > 0 else 0.0
    field_full = None
    if return_field:
        field_full = _gather_field(c, da, D.shape, comm)
    resid = ksp.getResidualNorm()
    reason_names = {v: k for k, v in PETSc.KSP.ConvergedReason.__dict__.items() if isinstance(v, int)}
    for obj in (ksp, A, b, x, da):
        obj.destroy()
    return DirectionResult(name, float(tau), float(deff), mean_d, frac, j_in, j_out, float(mismatch), int(its),
                           float(resid), solve_time, reason_names.get(reason, str(reason)), field_full)


def _gather_field(c_local, da, shape, comm):
    starts, box = local_box(da)
    parts = comm.gather((starts, box, np.ascontiguousarray(c_local)), root=0)
    if comm.rank != 0:
        return None
    full = np.empty(shape, dtype=np.float64)
    for (s, bx, arr) in parts:
        full[s[0]:s[0] + bx[0], s[1]:s[1] + bx[1], s[2]:s[2] + bx[2]] = arr
    return full


def tortuosity(D_or_mask: np.ndarray, directions="all", *, comm, spacing=(1.0, 1.0, 1.0), rtol=1e-8,
               petsc_options=None, prefix="tortuosity_", return_field=False, progress=None) -> dict:
    """Tortuosity factor along one or several directions.

    ``D_or_mask``: boolean mask of the conducting phase, or voxel diffusivities.
    Returns ``{direction: DirectionResult}``."""
    D = np.asarray(D_or_mask)
    if D.ndim != 3:
        raise ValueError(f"expected a 3D array, got shape {D.shape}")
    dirs = ["x", "y", "z"] if directions == "all" else list(directions)
    out = {}
    it = progress(dirs) if progress else dirs
    for d in it:
        out[d] = solve_direction(D, AXES[d], comm, spacing=spacing, rtol=rtol, petsc_options=petsc_options,
                                 prefix=f"{prefix}{d}_" if len(dirs) > 1 else prefix, return_field=return_field)
    return out
