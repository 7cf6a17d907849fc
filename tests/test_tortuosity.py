"""Tortuosity kernel: analytic limits, conservation, symmetry, rank invariance.

Marked ``mpi``: the same bodies run serially and on 2 ranks."""
import numpy as np
import pytest
from mpi4py import MPI

from ionscale.kernels.mesostructure import overlapping_spheres
from ionscale.kernels.transport import percolating_mask, tortuosity

pytestmark = pytest.mark.mpi


def _disc_channel(n=(12, 16, 16), radius=5.0):
    """A straight cylindrical channel along x with a non-square cross-section."""
    _, y, z = np.indices(n)
    return ((y - 7.3) ** 2 + (z - 8.1) ** 2) <= radius ** 2


def test_straight_channel_is_exactly_one(comm):
    mask = _disc_channel()
    r = tortuosity(mask, ["x", "y"], comm=comm, rtol=1e-12)
    assert r["x"].tau == pytest.approx(1.0, abs=1e-9)
    assert r["x"].deff == pytest.approx(mask.mean(), rel=1e-9)
    assert r["x"].flux_mismatch < 1e-9
    # the channel does not touch the y faces: no path, tau = inf, no solve
    assert r["y"].tau == np.inf and r["y"].iterations == 0


def test_square_channel_any_voxel_size(comm):
    mask = np.zeros((10, 9, 8), bool)
    mask[:, 2:5, 3:7] = True
    r = tortuosity(mask, ["x"], comm=comm, spacing=(0.3, 1.0, 2.5), rtol=1e-12)
    assert r["x"].tau == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_series_layers_match_reuss(comm, axis):
    """Layers normal to the flow: D_eff = N / sum(1/D_i) exactly for this discretisation."""
    n = 12
    d_layer = np.array([1.0, 0.2, 0.2, 1.0, 0.5, 0.05, 1.0, 1.0, 0.3, 0.7, 1.0, 0.1])
    shape = [6, 6, 6]
    shape[axis] = n
    view = [1, 1, 1]
    view[axis] = n
    D = np.broadcast_to(d_layer.reshape(view), shape).copy()
    r = tortuosity(D, ["xyz"[axis]], comm=comm, rtol=1e-12)["xyz"[axis]]
    deff = n / np.sum(1.0 / d_layer)
    assert r.deff == pytest.approx(deff, rel=1e-9)
    assert r.tau == pytest.approx(d_layer.mean() / deff, rel=1e-9)


def test_parallel_layers_match_voigt(comm):
    d_layer = np.array([1.0, 0.1, 0.4, 2.0, 0.05, 1.0, 0.3])
    D = np.broadcast_to(d_layer[None, :, None], (10, 7, 5)).copy()
    r = tortuosity(D, ["x"], comm=comm, rtol=1e-12)["x"]
    assert r.deff == pytest.approx(d_layer.mean(), rel=1e-9)
    assert r.tau == pytest.approx(1.0, rel=1e-9)


def test_dead_end_pore_gives_inf_and_dead_ends_carry_no_flux(comm):
    mask = np.zeros((16, 8, 8), bool)
    mask[:10, 3:5, 3:5] = True  # open at the inlet, closed before the outlet
    r = tortuosity(mask, ["x"], comm=comm)["x"]
    assert r.tau == np.inf and r.deff == 0.0 and r.percolating_fraction == 0.0
    # a through channel with a dead-end side branch: the branch changes eps, not the flux
    mask2 = np.zeros((16, 12, 8), bool)
    mask2[:, 2:4, 3:5] = True
    mask2[6:7, 4:11, 3:5] = True  # one layer thick: no parallel path along x
    r2 = tortuosity(mask2, ["x"], comm=comm, rtol=1e-12)["x"]
    through = np.zeros_like(mask2)
    through[:, 2:4, 3:5] = True
    assert r2.deff == pytest.approx(through.mean(), rel=1e-8)
    assert r2.tau == pytest.approx(mask2.mean() / through.mean(), rel=1e-8)


def test_isolated_clusters_are_excluded_not_singular(comm):
    mask = _disc_channel()
    mask[5, 0, 0] = mask[6, 15, 15] = True  # isolated voxels with no boundary condition
    assert not percolating_mask(mask, 0)[5, 0, 0]
    r = tortuosity(mask, ["x"], comm=comm, rtol=1e-12)["x"]
    assert np.isfinite(r.tau) and r.flux_mismatch < 1e-8


def test_isotropic_structure(comm):
    solid = overlapping_spheres((48, 48, 48), radius=4, porosity=0.45, seed=3)
    r = tortuosity(~solid, "all", comm=comm, rtol=1e-8)
    taus = np.array([r[d].tau for d in "xyz"])
    assert np.all(taus > 1.0)
    assert taus.std() / taus.mean() < 0.06, taus
    # Bruggeman-like range for overlapping spheres at 45 % porosity
    assert 1.2 < taus.mean() < 2.5
    for d in "xyz":
        assert r[d].flux_mismatch < 1e-4


def test_same_answer_on_one_and_all_ranks(comm):
    solid = overlapping_spheres((32, 28, 30), radius=3, porosity=0.5, seed=11)
    opts = {"ksp_rtol": 1e-12}
    on_all = tortuosity(~solid, ["x", "z"], comm=comm, rtol=1e-12, petsc_options=opts)
    on_one = tortuosity(~solid, ["x", "z"], comm=MPI.COMM_SELF, rtol=1e-12, petsc_options=opts)
    for d in ("x", "z"):
        assert on_all[d].tau == pytest.approx(on_one[d].tau, rel=1e-8)
    # every rank holds the same numbers
    gathered = comm.allgather(on_all["x"].tau)
    assert max(gathered) == min(gathered)


def test_field_satisfies_maximum_principle(comm):
    solid = overlapping_spheres((20, 20, 20), radius=3, porosity=0.5, seed=5)
    r = tortuosity(~solid, ["y"], comm=comm, return_field=True)["y"]
    if comm.rank == 0:
        c = r.field
        assert c.shape == solid.shape
        assert c.min() >= -1e-9 and c.max() <= 1 + 1e-9


def test_direct_hypre_path_equals_petsc_ksp_path(comm):
    """Without PETSc options the hypre solver drives hypre directly (one stored operator);
    any PETSc option for the solver's prefix selects PETSc's KSP + PCHYPRE. Same tau."""
    from ionscale.kernels.transport.tortuosity import solve_direction

    mask = ~overlapping_spheres((20, 18, 16), radius=3, porosity=0.45, seed=4)
    direct = solve_direction(mask, 0, comm, rtol=1e-11, prefix="direct_", solver="hypre")
    petsc = solve_direction(mask, 0, comm, rtol=1e-11, prefix="petsc_", petsc_options={"ksp_type": "cg"})
    assert direct.converged_reason.startswith("converged (hypre")
    assert petsc.converged_reason.startswith("CONVERGED")
    assert direct.tau == pytest.approx(petsc.tau, rel=1e-8)
    assert direct.relative_residual < 1e-10 and direct.flux_mismatch < 1e-8
