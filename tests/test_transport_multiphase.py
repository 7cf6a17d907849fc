"""Multi-phase Dirichlet transport: layered media, Hashin-Shtrikman bounds, derived metrics,
percolation report, solver choice and the flux stopping rule. Marked ``mpi``."""
import math

import numpy as np
import pytest
from mpi4py import MPI

from ionscale.errors import InputDataError
from ionscale.kernels.mesostructure import overlapping_spheres
from ionscale.kernels.transport.multiphase import derived_metrics, phase_diffusivity
from ionscale.kernels.transport.percolation import percolation_report
from ionscale.kernels.transport.tortuosity import solve_direction

pytestmark = pytest.mark.mpi

PHASES = {"pore": 0, "nmc": 85, "cbd": 170}


def test_three_phase_series_layers_match_reuss_with_tauFactor_tau(comm):
    """Slabs pore | cbd | nmc-with-a-pore-channel normal to x; pore 1, cbd 0.2, nmc 0."""
    labels = np.zeros((12, 8, 8), np.uint8)
    labels[4:8] = 170
    Dv = phase_diffusivity(labels, PHASES, {"pore": 1.0, "cbd": 0.2, "nmc": 0.0})
    r = solve_direction(Dv, 0, comm, rtol=1e-12)
    d_layer = np.array([1.0] * 4 + [0.2] * 4 + [1.0] * 4)
    deff = len(d_layer) / np.sum(1.0 / d_layer)
    assert r.deff == pytest.approx(deff, rel=1e-9)
    # TauFactor's multi-phase definition: D_eff = sum_p D_p eps_p / tau
    assert r.tau == pytest.approx((8 * 1.0 + 4 * 0.2) / 12 / deff, rel=1e-9)


def test_parallel_phases_are_voigt(comm):
    labels = np.zeros((10, 6, 9), np.uint8)
    labels[:, :, 3:5] = 170
    labels[:, :, 7:] = 85
    Dv = phase_diffusivity(labels, PHASES, {"pore": 1.0, "cbd": 0.2, "nmc": 0.05})
    r = solve_direction(Dv, 0, comm, rtol=1e-12)
    assert r.deff == pytest.approx((5 * 1.0 + 2 * 0.2 + 2 * 0.05) / 9, rel=1e-9)
    assert r.tau == pytest.approx(1.0, rel=1e-9)


def test_random_two_phase_medium_within_hashin_shtrikman_bounds(comm):
    rng = np.random.default_rng(7)
    labels = np.where(rng.random((24, 24, 24)) < 0.5, 0, 170).astype(np.uint8)
    d1, d2 = 1.0, 0.1
    Dv = phase_diffusivity(labels, PHASES, {"pore": d1, "cbd": d2})
    e1 = float((labels == 0).mean())
    e2 = 1 - e1
    upper = d1 + e2 / (1 / (d2 - d1) + e1 / (3 * d1))
    lower = d2 + e1 / (1 / (d1 - d2) + e2 / (3 * d2))
    for axis in range(3):
        r = solve_direction(Dv, axis, comm, rtol=1e-10)
        assert lower < r.deff < upper, (lower, r.deff, upper)


def test_single_phase_metrics_are_consistent():
    eps, deff = 0.4, 0.1
    m = derived_metrics(deff, mean_d=eps, d_ref=1.0, eps=eps)
    assert m["tau"] == pytest.approx(4.0)
    assert m["macmullin"] == pytest.approx(m["tau"] / eps)          # N_M = tau / eps
    assert eps ** (1 - m["bruggeman"]) == pytest.approx(m["tau"])    # tau = eps^(1 - b)
    assert derived_metrics(0.0, eps, 1.0, eps)["tau"] == math.inf


def test_unknown_phase_and_negative_diffusivity_are_clear_errors():
    labels = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(InputDataError, match="unknown phase 'poer'"):
        phase_diffusivity(labels, PHASES, {"poer": 1.0})
    with pytest.raises(InputDataError, match=">= 0"):
        phase_diffusivity(labels, PHASES, {"pore": -1.0})
    with pytest.raises(InputDataError, match="no phase present"):
        phase_diffusivity(labels, PHASES, {"nmc": 1.0})


def test_percolation_report_fractions():
    m = np.zeros((10, 8, 8), bool)
    m[:, 1, 1] = True          # spanning: 10 voxels
    m[:4, 4, 4] = True         # dead end from the inlet: 4
    m[7:, 6, 6] = True         # dead end from the outlet: 3
    m[4:6, 6, 2] = True        # isolated: 2
    rep = percolation_report(m, 0)
    n = m.size
    assert rep["percolating"] == pytest.approx(10 / n)
    assert rep["dead_end"] == pytest.approx(7 / n)
    assert rep["isolated"] == pytest.approx(2 / n)
    assert rep["percolating"] + rep["dead_end"] + rep["isolated"] == pytest.approx(m.mean())
    # along y nothing spans: the x-line touches no y face, the others neither
    rep_y = percolation_report(m, 1)
    assert rep_y["percolating"] == 0.0 and rep_y["dead_end"] == 0.0


@pytest.mark.parametrize("solver", ["hypre", "gamg", "mg"])
def test_solvers_agree_and_flux_stopping_rule_holds(comm, solver):
    pore = ~overlapping_spheres((32, 30, 28), radius=3, porosity=0.4, seed=21)
    ref = solve_direction(pore, 0, MPI.COMM_SELF, rtol=1e-12, prefix="ref_")
    r = solve_direction(pore, 0, comm, rtol=1e-3, flux_tol=1e-5, solver=solver, prefix=f"t_{solver}_")
    assert r.flux_mismatch <= 1e-5
    assert r.relative_residual < 1e-3
    assert r.tau == pytest.approx(ref.tau, rel=1e-4)


def test_compact_unknowns_equal_full_grid_system(comm):
    """AMG solves use unknowns on the percolating voxels only; geometric MG keeps the full DMDA
    grid with identity rows. Both are the same discrete problem."""
    rng = np.random.default_rng(1)
    labels = rng.choice(np.array([0, 85, 170], np.uint8), size=(18, 16, 14), p=[0.55, 0.3, 0.15])
    Dv = phase_diffusivity(labels, PHASES, {"pore": 1.0, "cbd": 0.3})
    compact = solve_direction(Dv, 1, comm, rtol=1e-12, solver="hypre", prefix="c_", profile=True)
    full = solve_direction(Dv, 1, comm, rtol=1e-12, solver="mg", prefix="f_", profile=True)
    assert compact.tau == pytest.approx(full.tau, rel=1e-9)
    assert np.allclose(compact.profile, full.profile, rtol=1e-8)
