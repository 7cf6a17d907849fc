"""Lumped thermal DFN on a BPX set, which has no current collectors: a missing collector
thickness means no collector layer (no heat capacity, no series resistance), as in PyBaMM's
BPX import. Checks: the stack heat capacity and series resistance follow analytically from
the layers present, an override can add a collector (and must give its conductivity), the
adiabatic BPX discharge conserves energy, and the model agrees with PyBaMM's lumped DFN on
the same file (skipped without pybamm / bpx, which are validation peers)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from ionscale.errors import DeckError
from ionscale.kernels.cell.dfn import DFNModel
from ionscale.kernels.cell.parameters import PARAMETER_DIR, load_parameter_set

try:
    import bpx  # noqa: F401  (the BPX schema validator, an optional extra)
    HAVE_BPX = True
except ImportError:
    HAVE_BPX = False
needs_bpx = pytest.mark.skipif(not HAVE_BPX, reason="optional package bpx not installed")

COARSE = dict(points=(8, 6, 8), r_points=(8, 8))
BPX_SET = "bpx/nmc_pouch_cell_BPX"


@pytest.fixture(scope="module")
def bpx_values():
    if not HAVE_BPX:
        pytest.skip("optional package bpx not installed")
    return load_parameter_set(BPX_SET)


def test_collector_of_thickness_zero_is_absent_from_stack_and_series_resistance():
    chen = load_parameter_set("Chen2020")
    no_cc = load_parameter_set("Chen2020", {"negative_current_collector_thickness_m": 0.0,
                                            "positive_current_collector_thickness_m": 0.0})
    with_cc = DFNModel(chen, thermal="lumped", **COARSE)
    without = DFNModel(no_cc, thermal="lumped", **COARSE)
    # rho_cp_eff = thickness-weighted mean over the three remaining layers
    layers = ("negative_electrode", "separator", "positive_electrode")
    L = np.array([chen[f"{k}_thickness_m"] for k in layers])
    rc = np.array([chen[f"{k}_density_kg_m3"] * chen[f"{k}_specific_heat_J_kg_K"] for k in layers])
    assert without.rho_cp_eff == pytest.approx(float(np.sum(L * rc) / np.sum(L)), rel=1e-14)
    assert without.rho_cp_eff != pytest.approx(with_cc.rho_cp_eff, rel=1e-3)  # the collectors did count
    # series resistance: contact only (Chen2020 has none) instead of contact + L_cc / sigma_cc / A
    assert without.series_resistance_ohm == chen.get("contact_resistance_Ohm", 0.0)
    r_cc = sum(chen[f"{s}_current_collector_thickness_m"] / chen[f"{s}_current_collector_conductivity_S_m"]
               for s in ("negative", "positive")) / with_cc.area_m2
    assert with_cc.series_resistance_ohm == pytest.approx(chen.get("contact_resistance_Ohm", 0.0) + r_cc, rel=1e-14)


def test_negative_collector_thickness_is_rejected_by_the_range_check():
    with pytest.raises(DeckError, match=r"negative_current_collector_thickness_m.*physical range \[0"):
        load_parameter_set("Chen2020", {"negative_current_collector_thickness_m": -1e-6})


@needs_bpx
def test_bpx_set_runs_lumped_thermal_with_the_cells_lumped_heat_capacity(bpx_values):
    p = bpx_values
    assert "negative_current_collector_thickness_m" not in p
    model = DFNModel(p, thermal="lumped", **COARSE)
    # BPX gives one density and specific heat for the whole cell: every layer has them
    rho_cp = p["negative_electrode_density_kg_m3"] * p["negative_electrode_specific_heat_J_kg_K"]
    assert model.rho_cp_eff == pytest.approx(rho_cp, rel=1e-14)
    assert model.heat_capacity_J_K == pytest.approx(rho_cp * p["cell_volume_m3"], rel=1e-14)
    assert model.series_resistance_ohm == 0.0
    # the BPX example has h = 0 (adiabatic): all generated heat is stored,
    # C (T_end - T0) = integral of Q dt (trapezoidal quadrature of the sampled heat)
    assert p["total_heat_transfer_coefficient_W_m2_K"] == 0.0
    r = model.discharge(1.0)
    assert r.reached_cutoff and np.all(np.diff(r.temperature_K) >= 0)
    heat_J = np.trapezoid(r.heat_W, r.time_s)
    stored_J = model.heat_capacity_J_K * (r.temperature_K[-1] - r.temperature_K[0])
    assert abs(heat_J - stored_J) / stored_J < 1e-4
    # isothermal limit: an enormous heat capacity gives the isothermal capacity
    huge = DFNModel(dict(p, cell_volume_m3=1e6), thermal="lumped", **COARSE).discharge(1.0)
    iso = DFNModel(p, **COARSE).discharge(1.0)
    assert huge.capacity_Ah == pytest.approx(iso.capacity_Ah, rel=1e-6)


@needs_bpx
def test_override_adds_a_collector_to_a_bpx_set(bpx_values):
    with pytest.raises(DeckError, match="positive_current_collector_conductivity_S_m"):
        DFNModel(load_parameter_set(BPX_SET, {"positive_current_collector_thickness_m": 1.6e-5}), **COARSE)
    p_cc = load_parameter_set(BPX_SET, {"positive_current_collector_thickness_m": 1.6e-5,
                                        "positive_current_collector_conductivity_S_m": 3.5e7})
    bare, with_cc = DFNModel(bpx_values, **COARSE), DFNModel(p_cc, **COARSE)
    r_cc = 1.6e-5 / 3.5e7 / with_cc.area_m2
    assert with_cc.series_resistance_ohm == pytest.approx(r_cc, rel=1e-14)
    # the terminal voltage of the same state drops by exactly I R_cc
    i_app = 2.0 * bare.one_c_A / bare.area_m2
    y = bare.consistent_algebraic(bare.initial_state(), i_app)
    dv = bare.voltage(y, i_app) - with_cc.voltage(y, i_app)
    assert dv == pytest.approx(2.0 * bare.one_c_A * r_cc, rel=1e-9)
    # and the collector's layer enters the heat capacity once it has a thickness
    thick = DFNModel(p_cc, thermal="lumped", **COARSE)
    assert thick.heat_capacity_J_K == pytest.approx(DFNModel(bpx_values, thermal="lumped", **COARSE).heat_capacity_J_K,
                                                    rel=1e-12)  # BPX: the same rho c_p in every layer


@needs_bpx
def test_bpx_lumped_thermal_agrees_with_pybamm(bpx_values):
    pybamm = pytest.importorskip("pybamm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pv = pybamm.ParameterValues.create_from_bpx(str(PARAMETER_DIR / f"{BPX_SET}.json"))
    pv["Current function [A]"] = "[input]"
    sim = pybamm.Simulation(pybamm.lithium_ion.DFN(options={"thermal": "lumped"}), parameter_values=pv,
                            solver=pybamm.IDAKLUSolver(rtol=1e-6, atol=1e-6))
    model = DFNModel(bpx_values, thermal="lumped", conductivity_average="arithmetic")  # PyBaMM's mesh and average
    r = model.discharge(1.0)
    sol = sim.solve([0, 1.5 * 3600], inputs={"Current function [A]": bpx_values["nominal_cell_capacity_Ah"]})
    t, v, T = (sol[k].entries for k in ("Time [s]", "Voltage [V]", "Volume-averaged cell temperature [K]"))
    keep = t <= min(t[-1], r.time_s[-1])
    assert T[-1] - T[0] > 20.0  # a real (adiabatic) temperature rise to compare
    assert np.max(np.abs(np.interp(t[keep], r.time_s, r.temperature_K) - T[keep])) < 0.05  # measured 0.0085 K
    assert math.sqrt(np.mean((np.interp(t[keep], r.time_s, r.voltage_V) - v[keep]) ** 2)) < 1e-3  # 0.23 mV
    cap = sol["Discharge capacity [A.h]"].entries[-1]
    assert r.capacity_Ah == pytest.approx(cap, rel=1e-4)  # 6e-6
