"""SGC Monte Carlo against exact results: non-interacting lattice gas (Langmuir) voltage, Onsager's
critical temperature and spontaneous magnetisation of the 2D square nearest-neighbour lattice gas,
particle-hole symmetry, and independence of the result from the number of ranks.

Lattice-gas convention: E = J sum_<ij> n_i n_j with J < 0 (attractive). With n = (1 + s)/2 this is
an Ising model of coupling J_I = -J/4 in a field that vanishes at mu_c = z J / 2 (= 2J on the square
lattice), so k_B T_c = 2 J_I / ln(1 + sqrt 2) = |J| / (2 ln(1 + sqrt 2)), and below T_c the
coexisting fillings are x = (1 -+ m0)/2 with m0 = (1 - sinh(2 J_I/kT)^-4)^(1/8).

Marked ``mpi``: the chemical-potential / temperature points are spread over the ranks."""
import numpy as np
import pytest
from mpi4py import MPI

from ionscale.kernels.atomistic.lattice import ClusterHamiltonian, make_lattice
from ionscale.kernels.atomistic.montecarlo import K_B_EV, sgc_scan
from ionscale.kernels.atomistic.ocv import ideal_lattice_gas_voltage, ocv_from_scan

pytestmark = pytest.mark.mpi

J = -0.1  # eV
TC = abs(J) / (2.0 * np.log(1.0 + np.sqrt(2.0))) / K_B_EV  # 658.3 K
MU_C = 2.0 * J


def test_non_interacting_gas_voltage_within_1mV(comm):
    v0, temp = 3.9, 300.0
    lat = make_lattice("square", (32, 32), 1)
    ham = ClusterHamiltonian(0.0, -v0, (0.0,))  # site energy -V0 vs the metal: V = V0 + kT ln((1-x)/x)
    mu = np.linspace(-v0 - 0.08, -v0 + 0.08, 9)
    scan = sgc_scan(lat, ham, mu, temp, n_equil=100, n_measure=1500, seed=5, comm=comm)
    table = ocv_from_scan(scan, lat, ham, mu_metal_eV=0.0)
    exact = ideal_lattice_gas_voltage(table.x_equilibrium, temp, v0)
    assert np.max(np.abs(table.voltage_V - exact)) < 1e-3
    assert not table.regions  # no spurious two-phase region
    # the OCV table itself follows the same law
    inner = (table.x > 0.03) & (table.x < 0.97)
    assert np.max(np.abs(table.ocv_V[inner] - ideal_lattice_gas_voltage(table.x[inner], temp, v0))) < 1e-3
    # fluctuation-response: d<x>/dmu = beta var(N)/N = x(1-x)/kT within sampling error
    chi_exact = table.x_equilibrium * (1 - table.x_equilibrium) / (K_B_EV * temp)
    assert np.allclose(scan.chi.mean(1), chi_exact, rtol=0.1)


def test_onsager_critical_temperature_from_binder_crossing(comm):
    ham = ClusterHamiltonian(0.0, 0.0, (J,))
    temps = TC * np.linspace(0.95, 1.05, 9)
    binder = {}
    for size, n_equil, n_measure in ((8, 2000, 30000), (16, 3000, 60000)):
        lat = make_lattice("square", (size, size), 1)
        scan = sgc_scan(lat, ham, np.full(len(temps), MU_C), temps, n_equil=n_equil, n_measure=n_measure,
                        seed=1, branches=(0,), comm=comm)
        binder[size] = scan.binder[:, 0]
    # above T_c the larger system has the smaller cumulant, below the larger: one crossing
    assert binder[16][-1] < binder[8][-1] and binder[16][0] > binder[8][0]
    coef = np.polyfit(temps / TC - 1.0, binder[8] - binder[16], 2)
    roots = np.roots(coef).real
    t_cross = 1.0 + roots[np.argmin(np.abs(roots))]
    assert abs(t_cross - 1.0) < 0.02, f"Binder crossing at T/T_c = {t_cross:.4f}"
    # universal value of the cumulant at the crossing (2D Ising: U* = 0.611)
    u_star = np.interp(t_cross, temps / TC, binder[16])
    assert u_star == pytest.approx(0.611, abs=0.03)


def test_coexistence_below_tc_matches_onsager(comm):
    temp = 0.7 * TC
    lat = make_lattice("square", (16, 16), 1)
    ham = ClusterHamiltonian(0.0, 0.0, (J,))
    mu = np.linspace(-0.6, 0.2, 33)
    scan = sgc_scan(lat, ham, mu, temp, n_equil=500, n_measure=1000, seed=3, comm=comm)
    table = ocv_from_scan(scan, lat, ham)
    assert table.anchors_ok
    assert len(table.regions) == 1
    region = table.regions[0]
    assert region.method == "integration"
    assert region.mu_coexistence_eV == pytest.approx(MU_C, abs=2e-3)  # grid step 25 meV
    kji = abs(J) / 4 / (K_B_EV * temp)
    m0 = (1 - np.sinh(2 * kji) ** -4) ** 0.125
    assert region.x_low == pytest.approx((1 - m0) / 2, abs=3e-3)
    assert region.x_high == pytest.approx((1 + m0) / 2, abs=3e-3)
    # the OCV table is monotone with one plateau at V = -mu_c
    assert np.all(np.diff(table.x) > 0) and np.all(np.diff(table.ocv_V) <= 0)
    plateau = np.isclose(table.ocv_V, -region.mu_coexistence_eV)
    assert plateau.sum() >= 2


def test_particle_hole_symmetry_above_tc(comm):
    lat = make_lattice("square", (16, 16), 1)
    ham = ClusterHamiltonian(0.0, 0.0, (J,))
    d = np.array([0.02, 0.05, 0.1])
    mu = np.concatenate([MU_C - d, MU_C + d])
    scan = sgc_scan(lat, ham, mu, 1.5 * TC, n_equil=200, n_measure=4000, seed=9, comm=comm)
    x = scan.x.mean(1)
    assert np.allclose(x[:3] + x[3:], 1.0, atol=5 * np.sqrt(2) * scan.x_err.max() + 1e-3)
    assert np.all(np.diff(x[:3][::-1]) > 0)


def test_result_independent_of_rank_count(comm):
    lat = make_lattice("triangular", (9, 9), 2, 1)
    ham = ClusterHamiltonian(0.0, 0.0, (0.05, -0.01), (0.005,))
    mu = np.linspace(-0.1, 0.5, 5)
    dist = sgc_scan(lat, ham, mu, 400.0, n_equil=20, n_measure=50, seed=42, comm=comm)
    alone = sgc_scan(lat, ham, mu, 400.0, n_equil=20, n_measure=50, seed=42, comm=MPI.COMM_SELF)
    assert np.array_equal(dist.x, alone.x) and np.array_equal(dist.binder, alone.binder)
    # every rank holds the same result
    assert comm.allgather(dist.x.tobytes()) == [dist.x.tobytes()] * comm.size
