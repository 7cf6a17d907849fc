"""ionscale's matrix-free aggregation multigrid (kernels/transport/voxel_mg.py).

The operator and its Galerkin coarse levels are checked against independent numpy
constructions; the solver against hypre on multi-phase media, all directions, anisotropic
voxels. Marked ``mpi`` tests run serially and on 2 ranks (slabs, ghost planes, gathered
coarsest level)."""
import importlib

import numpy as np
import pytest
from mpi4py import MPI

from ionscale.kernels.mesostructure import overlapping_spheres
from ionscale.kernels.transport.percolation import percolating_mask

vmg = importlib.import_module("ionscale.kernels.transport.voxel_mg")
tort = importlib.import_module("ionscale.kernels.transport.tortuosity")


def _labels(shape, seed):
    """Three phases: solid (D = 0), pore (1) and a porous binder (0.2, not exact in float32)."""
    rng = np.random.default_rng(seed)
    solid = overlapping_spheres(shape, radius=2, porosity=0.5, seed=seed)
    labels = np.where(solid, 0, np.where(rng.random(shape) < 0.3, 2, 1)).astype(np.uint8)
    return tort.VoxelDiffusivity(labels, np.array([0.0, 1.0, 0.2]))


def _reference_matvec(D, spacing, axis, x):
    """A x of the finite-volume operator written out with numpy (harmonic faces, Dirichlet
    half cells on the first/last layer along ``axis``)."""
    w = tort.face_weights(spacing)
    y = np.zeros_like(x)
    for a in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[a], hi[a] = slice(0, -1), slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        Dp, Dq = D[lo], D[hi]
        g = np.divide(2 * Dp * Dq, Dp + Dq, out=np.zeros_like(Dp), where=(Dp > 0) & (Dq > 0)) * w[a]
        flux = g * (x[lo] - x[hi])
        y[lo] += flux
        y[hi] -= flux
    first = [slice(None)] * 3
    last = [slice(None)] * 3
    first[axis], last[axis] = 0, -1
    y[tuple(first)] += 2 * D[tuple(first)] * w[axis] * x[tuple(first)]
    y[tuple(last)] += 2 * D[tuple(last)] * w[axis] * x[tuple(last)]
    return y


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_label_operator_equals_finite_volume_operator(axis):
    Dv = _labels((9, 8, 7), seed=1)
    spanning = percolating_mask(Dv.positive(), axis)
    spacing = (1.0, 0.5, 2.0)
    fine, apply, (in_idx, g_in), (out_idx, g_out) = vmg.label_operator(Dv, spanning, axis, spacing,
                                                                       MPI.COMM_SELF, (0, 9))
    D = Dv.lut[Dv.labels] * spanning
    x = np.random.default_rng(2).random(D.shape) * spanning
    xp = fine.zeros()
    xp[1:-1, 1:-1, 1:-1] = x
    y = fine.zeros()
    apply(xp, y)
    np.testing.assert_allclose(y[1:-1, 1:-1, 1:-1], _reference_matvec(D, spacing, axis, x), rtol=1e-13, atol=1e-13)
    # the float32 preconditioner operator differs only by rounding
    fine.apply(xp, y)
    np.testing.assert_allclose(y[1:-1, 1:-1, 1:-1], _reference_matvec(D, spacing, axis, x), rtol=1e-6, atol=1e-6)
    w = tort.face_weights(spacing)[axis]
    for idx, g, end in ((in_idx, g_in, 0), (out_idx, g_out, -1)):
        dense = np.zeros(fine.shape)
        dense.ravel()[idx] = g
        expected = np.zeros(D.shape)
        sl = [slice(None)] * 3
        sl[axis] = end
        expected[tuple(sl)] = 2 * D[tuple(sl)] * w
        np.testing.assert_allclose(dense[1:-1, 1:-1, 1:-1], expected, rtol=1e-15)


@pytest.mark.parametrize("shape", [(8, 8, 8), (7, 9, 5)])
def test_coarse_level_is_galerkin_product(shape):
    """P^T A P with piecewise-constant P over 2x2x2 blocks (thinner at odd ends)."""
    Dv = _labels(shape, seed=3)
    spanning = percolating_mask(Dv.positive(), 0)
    fine, _, _, _ = vmg.label_operator(Dv, spanning, 0, (1.0, 1.0, 1.0), MPI.COMM_SELF, (0, shape[0]))
    coarse = fine.coarsen((2, 2, 2))
    inner = (slice(1, -1),) * 3
    A = vmg.dense_operator(*(a[inner] for a in (fine.diag, fine.c0, fine.c1, fine.c2)))
    Ac = vmg.dense_operator(*(a[inner] for a in (coarse.diag, coarse.c0, coarse.c1, coarse.c2)))
    cshape = tuple(-(-n // 2) for n in shape)
    block = np.ravel_multi_index(np.meshgrid(*(np.arange(n) // 2 for n in shape), indexing="ij"), cshape).ravel()
    P = np.zeros((A.shape[0], int(np.prod(cshape))))
    P[np.arange(A.shape[0]), block] = 1.0
    np.testing.assert_allclose(Ac, P.T @ A @ P, rtol=1e-6, atol=1e-6)


def test_flexible_cg_converges_in_few_iterations_at_any_size():
    """The K-cycle keeps the iteration count nearly independent of the grid (unsmoothed
    aggregation with a V-cycle would not)."""
    its = []
    for n in (24, 48):
        mask = ~overlapping_spheres((n, n, n), radius=3, porosity=0.4, seed=5)
        r = tort.solve_direction(mask, 0, MPI.COMM_SELF, rtol=1e-8, solver="voxel_mg", prefix=f"it{n}_")
        its.append(r.iterations)
        assert r.relative_residual <= 1e-8
    assert max(its) <= 25
    assert its[1] <= its[0] + 6


@pytest.mark.mpi
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_voxel_mg_equals_hypre(comm, axis):
    """Multi-phase labels (float64 table operator), anisotropic voxels, an odd number of planes."""
    Dv = _labels((21, 18, 16), seed=7)
    spacing = (1.0, 0.7, 1.3)
    mg = tort.solve_direction(Dv, axis, comm, rtol=1e-11, spacing=spacing, solver="voxel_mg", prefix="vmg_")
    hy = tort.solve_direction(Dv, axis, comm, rtol=1e-11, spacing=spacing, solver="hypre", prefix="hy_")
    assert mg.converged_reason.startswith("converged")
    assert mg.tau == pytest.approx(hy.tau, rel=1e-8)
    assert mg.flux_mismatch < 1e-8
    assert comm.allreduce(mg.tau, op=MPI.MAX) == comm.allreduce(mg.tau, op=MPI.MIN)


@pytest.mark.mpi
def test_flux_agreement_stops_the_iteration(comm):
    """With flux_tol the solve stops at the first iterate meeting both rtol and the flux balance."""
    mask = ~overlapping_spheres((40, 32, 32), radius=3, porosity=0.45, seed=8)
    r = tort.solve_direction(mask, 0, comm, rtol=1e-4, flux_tol=1e-6, solver="voxel_mg", prefix="flux_")
    assert r.flux_mismatch <= 1e-6
    assert r.relative_residual <= 1e-4
    ref = tort.solve_direction(mask, 0, comm, rtol=1e-11, solver="hypre", prefix="fluxref_")
    assert r.tau == pytest.approx(ref.tau, rel=1e-5)


@pytest.mark.mpi
def test_profile_and_field_match_hypre(comm):
    mask = ~overlapping_spheres((24, 20, 20), radius=3, porosity=0.5, seed=9)
    mg = tort.solve_direction(mask, 1, comm, rtol=1e-11, solver="voxel_mg", prefix="pf_", profile=True,
                              return_field=True)
    hy = tort.solve_direction(mask, 1, comm, rtol=1e-11, solver="hypre", prefix="pfh_", profile=True,
                              return_field=True)
    np.testing.assert_allclose(mg.profile, hy.profile, rtol=1e-7)
    if comm.rank == 0:
        np.testing.assert_allclose(mg.field, hy.field, atol=1e-9)


@pytest.mark.mpi
def test_fewer_planes_than_ranks_falls_back_to_hypre(comm):
    mask = np.ones((1, 6, 5), dtype=bool)
    r = tort.solve_direction(mask, 1, comm, rtol=1e-10, solver="voxel_mg", prefix="thin_")
    assert r.tau == pytest.approx(1.0, rel=1e-9)


def test_threads_follow_affinity_and_ranks():
    import os
    t = vmg.solver_threads(MPI.COMM_SELF)
    assert 1 <= t.n <= len(os.sched_getaffinity(0))
    with t:
        import numba
        assert numba.get_num_threads() == t.n


def test_many_distinct_diffusivities_fall_back_to_hypre():
    """A continuous diffusivity map cannot be label-encoded: solved by hypre, same definition of tau."""
    rng = np.random.default_rng(11)
    D = rng.uniform(0.5, 1.5, size=(10, 9, 8))  # 720 distinct values > MAX_LABELS
    r = tort.solve_direction(D, 0, MPI.COMM_SELF, rtol=1e-11, solver="voxel_mg", prefix="cont_")
    ref = tort.solve_direction(D, 0, MPI.COMM_SELF, rtol=1e-11, solver="hypre", prefix="contref_")
    assert r.converged_reason.startswith("converged (hypre")
    assert r.tau == pytest.approx(ref.tau, rel=1e-10)
    # a few distinct float values are label-encoded and agree with hypre
    Dq = np.round(D, 1)
    a = tort.solve_direction(Dq, 2, MPI.COMM_SELF, rtol=1e-11, solver="voxel_mg", prefix="q_")
    b = tort.solve_direction(Dq, 2, MPI.COMM_SELF, rtol=1e-11, solver="hypre", prefix="qref_")
    assert a.converged_reason == "converged (relative residual)"
    assert a.tau == pytest.approx(b.tau, rel=1e-8)


def test_large_label_values_are_renumbered():
    """Label values up to 1000 (table of 1001 entries, 3 distinct diffusivities) still run on voxel_mg."""
    Dv = _labels((12, 10, 9), seed=12)
    big = tort.VoxelDiffusivity(Dv.labels.astype(np.int32) * 500, np.zeros(1001))
    big.lut[[0, 500, 1000]] = Dv.lut
    a = tort.solve_direction(big, 0, MPI.COMM_SELF, rtol=1e-11, solver="voxel_mg", prefix="big_")
    b = tort.solve_direction(Dv, 0, MPI.COMM_SELF, rtol=1e-11, solver="voxel_mg", prefix="small_")
    assert a.converged_reason == "converged (relative residual)"
    assert a.tau == pytest.approx(b.tau, rel=1e-12)
