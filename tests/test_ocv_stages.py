"""Stages ``lattice_fit`` and ``sgc_montecarlo`` through a deck: recovery of a known Hamiltonian,
Langmuir OCV of the non-interacting gas, the sqrt3 x sqrt3 ordered phases of the triangular lattice
gas with nearest-neighbour repulsion (x = 1/3 for 0 < mu - e1 < 3 J1 and 2/3 for 3 J1 < mu - e1 < 6 J1
at low T), the EMT energy source, and clear errors for bad decks.

Marked ``mpi``: the Monte Carlo points are spread over the ranks of ``comm``."""
import numpy as np
import pytest

import ionscale.kernels.atomistic.stages_mc  # noqa: F401  (registers the stage types)
from ionscale.deck import load_deck_text
from ionscale.errors import DeckError
from ionscale.kernels.atomistic.ocv import ideal_lattice_gas_voltage
from ionscale.results import load
from ionscale.runner import run_plan

pytestmark = pytest.mark.mpi

DECK = """
run: {{name: ocv, output: {out}, seed: 3}}
stages:
  fit:
    type: lattice_fit
    lattice: triangular
    size: 6
    pair_shells: {shells}
    triplets: 0
    source: model
    model_ecis: {ecis}
    n_configs: 30
  mc:
    type: sgc_montecarlo
    ecis: fit.ecis
    size: 12
    temperature_K: {temp}
    mu_min_eV: {lo}
    mu_max_eV: {hi}
    n_mu: {n}
    equilibration_sweeps: 300
    measurement_sweeps: {meas}
    mu_reference_eV: 0.0
    v0_V: {v0}
"""


def _run(comm, tmp_path, **kw):
    out = comm.bcast(str(tmp_path), root=0)
    plan = load_deck_text(DECK.format(out=out, **kw), filename="ocv.yaml")
    runner = run_plan(plan, comm)
    return runner.outputs, out


def test_ideal_gas_deck_gives_langmuir_ocv(comm, tmp_path):
    outputs, out = _run(comm, tmp_path, shells=1, ecis="{e0: -1.0, e1: -0.2, J1: 0.0}", temp=300.0,
                        lo=-0.3, hi=-0.1, n=9, meas=3000, v0=3.5)
    fit, mc = outputs["fit"], outputs["mc"]
    assert fit["ecis"]["e1"] == pytest.approx(-0.2, abs=1e-9) and abs(fit["ecis"]["J1"]) < 1e-9
    assert fit["cv_rmse_meV_per_site"] < 1e-6
    # V = v0 - (mu - 0): the non-interacting gas with e1 = -0.2 eV is Langmuir around V0 = 3.7 V
    x, v = np.asarray(mc["x"]), np.asarray(mc["ocv_V"])
    inner = (x > 0.03) & (x < 0.97)
    assert inner.sum() >= 5
    assert np.max(np.abs(v[inner] - ideal_lattice_gas_voltage(x[inner], 300.0, 3.7))) < 1e-3
    assert len(mc["two_phase_V"]) == 0
    assert mc["anchors_ok"] == bool(mc["x_up"][0] < 0.02 and mc["x_down"][-1] > 0.98)
    if comm.rank == 0:  # the HDF5 table the cell model reads, with units
        stored = load(f"{out}/ocv.h5")["mc"]
        assert np.array_equal(stored["x"], x) and np.array_equal(stored["ocv_V"], v)
        import h5py
        with h5py.File(f"{out}/ocv.h5") as f:
            assert f["mc/ocv_V"].attrs["units"] == "V"


def test_triangular_repulsion_orders_at_one_third_and_two_thirds(comm, tmp_path):
    j1 = 0.1
    outputs, _ = _run(comm, tmp_path, shells=1, ecis=f"{{e1: 0.0, J1: {j1}}}", temp=150.0,
                      lo=-0.3, hi=0.9, n=9, meas=500, v0=0.0)
    mc = outputs["mc"]
    mu, x = np.asarray(mc["mu_eV"]), np.asarray(mc["x_equilibrium"])
    assert x[mu == pytest.approx(1.5 * j1)] == pytest.approx(1 / 3, abs=0.01)
    assert x[mu == pytest.approx(4.5 * j1)] == pytest.approx(2 / 3, abs=0.01)
    # the OCV falls monotonically across two steps (mu jumps by 3 J1 at x = 1/3 and 2/3)
    xt, vt = np.asarray(mc["x"]), np.asarray(mc["ocv_V"])
    assert np.all(np.diff(xt) > 0) and np.all(np.diff(vt) <= 0)
    assert mc["moves_per_s_per_rank"] > 1e5


def test_emt_source_fit_is_cross_validated(comm):
    from ionscale.kernels.atomistic.lattice import make_lattice
    from ionscale.kernels.atomistic.lattice_fit import LayerEnergy, fit_from_source

    lat = make_lattice("triangular", (6, 6), 2, 1)
    src = LayerEnergy(lat, "Cu", "Au", layers=2)
    fit, occ, e = fit_from_source(lat, src, 24, seed=1)
    # the pure layers are exact end members of any fit: E(full) - E(empty) per site is e1 + 3 J1 + 3 J2 + 2 K1
    ham = fit.hamiltonian
    assert (e[1] - e[0]) / lat.n_sites == pytest.approx(ham.e1 + 3 * ham.pairs[0] + 3 * ham.pairs[1] + 2 * ham.triplets[0],
                                                        abs=5 * fit.cv_rmse_eV_per_site)
    assert fit.cv_rmse_eV_per_site < 2e-3 and fit.fit_rmse_eV_per_site <= fit.cv_rmse_eV_per_site
    assert ham.pairs[0] > 0.05  # Au-Au repulsion in the Cu layer (size mismatch), the ordering driver


@pytest.mark.parametrize("edit,message", [
    ("model_ecis: {e1: 0.0, J1: 0.1}", None),
    ("model_ecis: {e1: 0.0, X1: 0.1}", "unknown ECI"),
    ("mu_max_eV: -0.5", "must exceed mu_min_eV"),
    ("lattice: hexagonal", "not one of"),
])
def test_bad_decks_name_the_key(edit, message):
    text = DECK.format(out="/tmp/unused", shells=1, ecis="{e1: 0.0, J1: 0.1}", temp=300.0, lo=-0.3, hi=0.3,
                       n=5, meas=100, v0=0.0)
    key = edit.split(":")[0]
    lines = [l for l in text.splitlines() if not (l.strip().startswith(key + ":") and key != "model_ecis")]
    text = "\n".join(lines).replace("    model_ecis: {e1: 0.0, J1: 0.1}", "    " + edit) if key == "model_ecis" \
        else "\n".join(lines) + "\n    " + edit + "\n"
    if message is None:
        load_deck_text(text, filename="ocv.yaml")
        return
    with pytest.raises(DeckError, match=message):
        load_deck_text(text, filename="ocv.yaml")


def test_noisy_model_fit_is_rank_independent(comm, tmp_path):
    """The labels of the model source do not depend on the rank count (noise keyed by configuration)."""
    from mpi4py import MPI

    from ionscale.kernels.atomistic.lattice import ClusterHamiltonian, make_lattice
    from ionscale.kernels.atomistic.lattice_fit import fit_from_source

    lat = make_lattice("triangular", (6, 6), 1)
    true = ClusterHamiltonian(0.0, -0.1, (0.05,))

    def energy(occ):
        return true.energy(lat, occ) + np.array([np.random.default_rng(list(np.packbits(o.astype(bool)))).normal(0, 0.02)
                                                 for o in occ])
    fit_d, _, e_d = fit_from_source(lat, energy, 20, seed=2, comm=comm)
    fit_s, _, e_s = fit_from_source(lat, energy, 20, seed=2, comm=MPI.COMM_SELF)
    assert np.array_equal(e_d, e_s)
    assert np.allclose(fit_d.hamiltonian.vector(), fit_s.hamiltonian.vector(), rtol=0, atol=1e-12)


def _synthetic_scan(mu, x_up, x_down, chi):
    from ionscale.kernels.atomistic.montecarlo import ScanResult
    n = len(mu)
    x = np.stack([x_up, x_down], 1)
    return ScanResult(np.asarray(mu, float), np.full(n, 300.0), x, np.zeros_like(x), np.stack([chi, chi], 1),
                      np.zeros_like(x), np.zeros_like(x), 0, 1.0, 1.0)


def test_jump_without_hysteresis_is_a_two_phase_region_but_a_steep_smooth_rise_is_not():
    from ionscale.kernels.atomistic.lattice import ClusterHamiltonian, make_lattice
    from ionscale.kernels.atomistic.ocv import ocv_from_scan

    lat = make_lattice("square", (8, 8), 1)
    ham = ClusterHamiltonian(0.0, 0.0, (-0.1,))
    mu = np.linspace(-0.6, 0.2, 9)
    x = np.array([0.0, 0.0, 0.01, 0.02, 0.97, 0.98, 0.99, 1.0, 1.0])
    # small susceptibility: the 0.02 -> 0.97 rise is a discontinuity
    t = ocv_from_scan(_synthetic_scan(mu, x, x, np.full(9, 0.2)), lat, ham)
    assert [r.method for r in t.regions] == ["jump"]
    assert t.regions[0].x_low == pytest.approx(0.02) and t.regions[0].x_high == pytest.approx(0.97)
    assert t.regions[0].mu_coexistence_eV == pytest.approx(-0.25)
    # the same rise with the susceptibility of a continuous branch (chi dmu ~ the rise) is not
    t2 = ocv_from_scan(_synthetic_scan(mu, x, x, np.full(9, 20.0)), lat, ham)
    assert not t2.regions


def test_ocp_function_interpolates_the_table():
    from ionscale.kernels.atomistic.ocv import ocp_function

    x = np.array([0.1, 0.3, 0.3001, 0.9])
    v = np.array([4.2, 3.9, 3.9, 3.5])
    ocp = ocp_function(x, v)
    assert ocp(0.2) == pytest.approx(4.05) and ocp(0.6) == pytest.approx(3.9 - 0.4 * 0.2999 / 0.5999)
    assert ocp(0.0) == pytest.approx(4.2) and ocp(1.0) == pytest.approx(3.5)  # clamped
    with pytest.raises(ValueError, match="increase strictly"):
        ocp_function([0.1, 0.1, 0.5], [1.0, 1.0, 0.5])


def test_lattice_mismatch_with_the_fit_is_a_deck_error(comm, tmp_path):
    out = comm.bcast(str(tmp_path), root=0)
    text = DECK.format(out=out, shells=1, ecis="{e1: 0.0, J1: 0.1}", temp=300.0, lo=-0.3, hi=0.3, n=5,
                       meas=100, v0=0.0) + "    lattice: square\n"
    plan = load_deck_text(text, filename="ocv.yaml")
    with pytest.raises(DeckError, match="differs from the fitted lattice 'triangular'"):
        run_plan(plan, comm)
