"""Full effective diffusivity tensor by periodic homogenisation of a voxel image.

For each unit vector e_j solve the cell problem with periodic chi_j

    div( D (grad chi_j + e_j) ) = 0,

discretised with the same cell-centred finite volumes as the Dirichlet solve
(harmonic-mean face conductances g_pq = D_h A_a / h_a, periodic wrap-around):

    sum_q g_pq (chi_p - chi_q) = h_j (g_{p,p+e_j} - g_{p,p-e_j}),

and average the flux over the cell:

    D_eff_ij = < D (delta_ij + d chi_j / dx_i) >
             = 1/V  sum_{faces normal to i} g_pq (chi_q - chi_p + h_i delta_ij) h_i.

The discrete tensor is symmetric positive (semi-)definite. The operator is the same
for the three right-hand sides, so the preconditioner is built once. Each periodic
6-connected cluster of conducting voxels has a constant null vector; one voxel per
cluster is pinned (chi = 0), which leaves every other equation and hence the
fluxes unchanged (the right-hand side of each cluster sums to zero).
tau_ij = mean(D) * inv(D_eff)_ij in TauFactor's normalisation (diagonal: mean(D)/D_eff_ii
for a diagonal tensor).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ionscale.errors import SolverDivergedError

from .percolation import FACE_CONNECTIVITY
from .tortuosity import (_reason_name, as_diffusivity, create_dmda, face_weights, ghosted_block, local_box,
                         assemble, make_solver)


@dataclass
class TensorResult:
    deff: np.ndarray          # 3x3 effective diffusivity tensor (units of D)
    mean_diffusivity: float
    eigenvalues: np.ndarray   # of deff, ascending
    iterations: list
    solve_time_s: float
    relative_residual: float  # worst of the three solves

    @property
    def tau_diagonal(self):
        d = np.diag(self.deff)
        return np.where(d > 0, self.mean_diffusivity / np.where(d > 0, d, 1.0), np.inf)


def periodic_clusters(active: np.ndarray):
    """Labels (1..n, 0 = background) of 6-connected clusters with periodic wrap-around."""
    labels, n = ndimage.label(active, structure=FACE_CONNECTIVITY)
    if n == 0:
        return labels, 0
    a_list, b_list = [], []
    for ax in range(3):
        lo = np.take(labels, 0, axis=ax).ravel()
        hi = np.take(labels, -1, axis=ax).ravel()
        m = (lo > 0) & (hi > 0)
        a_list.append(lo[m])
        b_list.append(hi[m])
    a = np.concatenate(a_list)
    b = np.concatenate(b_list)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n + 1, n + 1))
    _, comp = connected_components(graph, directed=False)
    # renumber so that background stays 0 and the merged clusters are 1..k
    uniq, new = np.unique(comp[1:], return_inverse=True)
    lut = np.zeros(n + 1, dtype=np.int64)
    lut[1:] = new + 1
    return lut[labels], len(uniq)


def effective_tensor(D, comm, *, spacing=(1.0, 1.0, 1.0), rtol=1e-8, petsc_options=None,
                     prefix="tensor_", solver=None, max_it=10000) -> TensorResult:
    """Full 3x3 effective diffusivity tensor of ``D`` (array, mask or VoxelDiffusivity) with periodic BCs."""
    from petsc4py import PETSc

    Dv = as_diffusivity(D)
    shape = Dv.shape
    mean_d = Dv.mean()
    clusters, ncl = periodic_clusters(Dv.positive())
    if ncl == 0:
        z = np.zeros((3, 3))
        return TensorResult(z, mean_d, np.zeros(3), [0, 0, 0], 0.0, 0.0)
    flat = clusters.ravel()
    _, first = np.unique(flat, return_index=True)
    pinned_natural = first[flat[first] > 0]  # one voxel per cluster
    del flat
    da = create_dmda(shape, comm, periodic=True)
    A, _, _, _ = assemble(Dv, None, da, spacing, periodic=True)
    starts, box = local_box(da)
    ends = [s + b for s, b in zip(starts, box)]
    pin_idx = np.unravel_index(pinned_natural, shape)
    mine = np.all([(pin_idx[a] >= starts[a]) & (pin_idx[a] < ends[a]) for a in range(3)], axis=0)
    ao = da.getAO()
    pin_rows = np.asarray(ao.app2petsc(pinned_natural[mine].astype(PETSc.IntType)), dtype=PETSc.IntType)
    A.zeroRowsColumns(pin_rows, diag=1.0)
    A.setOption(PETSc.Mat.Option.SPD, True)
    ksp = make_solver(A, da, rtol, petsc_options, prefix, max_it, solver)
    h = np.asarray(spacing, dtype=np.float64)
    weight = face_weights(spacing)
    g = ghosted_block(Dv, None, starts, box, periodic=True)
    Dp = g[1:-1, 1:-1, 1:-1]
    # conductance of the + face of every local voxel along each axis
    gplus = []
    for a in range(3):
        sl = [slice(1, -1)] * 3
        sl[a] = slice(2, g.shape[a])
        q = g[tuple(sl)]
        prod = Dp * q
        gplus.append(np.divide(2 * prod, Dp + q, out=np.zeros_like(prod), where=prod > 0) * weight[a])
    gminus = []
    for a in range(3):
        sl = [slice(1, -1)] * 3
        sl[a] = slice(0, g.shape[a] - 2)
        q = g[tuple(sl)]
        prod = Dp * q
        gminus.append(np.divide(2 * prod, Dp + q, out=np.zeros_like(prod), where=prod > 0) * weight[a])
    del g
    pinned_local = np.zeros(box, dtype=bool)
    pinned_local[tuple(pin_idx[a][mine] - starts[a] for a in range(3))] = True
    x = A.createVecRight()
    b = A.createVecLeft()
    r = A.createVecLeft()
    xl = da.createLocalVec()
    deff = np.zeros((3, 3))
    its, worst = [], 0.0
    volume = float(np.prod(shape) * np.prod(h))
    t0 = time.perf_counter()
    for j in range(3):
        rhs = h[j] * (gplus[j] - gminus[j])
        rhs[pinned_local] = 0.0
        b.setArray(rhs.ravel())
        x.set(0.0)
        ksp.solve(b, x)
        reason = ksp.getConvergedReason()
        if reason < 0:
            raise SolverDivergedError(f"periodic cell problem {j} did not converge ({_reason_name(reason)}) after "
                                      f"{ksp.getIterationNumber()} iterations", reason=reason,
                                      iterations=ksp.getIterationNumber())
        its.append(int(ksp.getIterationNumber()))
        A.mult(x, r)
        r.aypx(-1.0, b)
        bn = b.norm()
        worst = max(worst, r.norm() / bn if bn > 0 else 0.0)
        da.globalToLocal(x, xl)
        chi = xl.getArray(readonly=True).reshape(tuple(n + 2 for n in box))
        centre = chi[1:-1, 1:-1, 1:-1]
        for i in range(3):
            sl = [slice(1, -1)] * 3
            sl[i] = slice(2, chi.shape[i])
            flux = gplus[i] * (chi[tuple(sl)] - centre + (h[i] if i == j else 0.0))
            deff[i, j] = float(np.sum(flux)) * h[i]
    deff = comm.allreduce(deff) / volume
    solve_time = time.perf_counter() - t0
    for obj in (ksp, A, x, b, r, xl, da):
        obj.destroy()
    sym = 0.5 * (deff + deff.T)
    return TensorResult(deff, mean_d, np.linalg.eigvalsh(sym), its, solve_time, float(worst))
