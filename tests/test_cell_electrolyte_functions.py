"""Cation transference number t+(c_e, T) and thermodynamic factor TDF(c_e, T) as functions
or tables in the DFN (issue 4): the Landesfeind 2019 fits against PyBaMM's, the conservative
flux form reducing to the constant-t+ form, lithium conservation, the analytic Jacobian
against central differences, the electrolyte heat term, input checks, SPMe, and the 1C
discharge against PyBaMM's DFN with the same functions (skipped without pybamm)."""
from __future__ import annotations

import numpy as np
import pytest

from cell_checks import assert_jacobian_matches_central_differences, perturbed_state
from ionscale.errors import DeckError, InputDataError
from ionscale.kernels.cell.dfn import FARADAY, DFNModel
from ionscale.kernels.cell.functions import (electrolyte_TDF_EC_EMC_3_7_Landesfeind2019,
                                             electrolyte_transference_number_EC_EMC_3_7_Landesfeind2019)
from ionscale.kernels.cell.parameters import electrolyte_number, load_parameter_set
from ionscale.kernels.cell.spm import SPMeModel

LANDESFEIND = {"cation_transference_number": "fn:electrolyte_transference_number_EC_EMC_3_7_Landesfeind2019",
               "thermodynamic_factor": "fn:electrolyte_TDF_EC_EMC_3_7_Landesfeind2019"}
COARSE = dict(points=(8, 6, 8), r_points=(8, 8))


@pytest.fixture(scope="module")
def chen():
    return load_parameter_set("Chen2020")


@pytest.fixture(scope="module")
def functional():
    return load_parameter_set("Chen2020", LANDESFEIND)


def _tables(c_grid=np.linspace(0.0, 3000.0, 61), T=298.15):
    """t+ and TDF of Landesfeind 2019 sampled at temperature T as {x, y} tables."""
    return {"cation_transference_number": {"x": list(c_grid), "y": [
                electrolyte_transference_number_EC_EMC_3_7_Landesfeind2019(c, T) for c in c_grid]},
            "thermodynamic_factor": {"x": list(c_grid), "y": [
                electrolyte_TDF_EC_EMC_3_7_Landesfeind2019(c, T) for c in c_grid]}}


def _rms(ref, r):
    keep = ref.time_s <= min(ref.time_s[-1], r.time_s[-1])
    return float(np.sqrt(np.mean((np.interp(ref.time_s[keep], r.time_s, r.voltage_V) - ref.voltage_V[keep]) ** 2)))


def test_landesfeind2019_functions_match_pybamms():
    orig = pytest.importorskip("pybamm.input.parameters.lithium_ion.ORegan2022")
    c = np.linspace(50.0, 3000.0, 25)
    for T in (263.15, 298.15, 318.15):
        ours_t = [electrolyte_transference_number_EC_EMC_3_7_Landesfeind2019(x, T) for x in c]
        ours_f = [electrolyte_TDF_EC_EMC_3_7_Landesfeind2019(x, T) for x in c]
        np.testing.assert_allclose(ours_t, orig.electrolyte_transference_number_EC_EMC_3_7_Landesfeind2019(c, T),
                                   rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(ours_f, orig.electrolyte_TDF_EC_EMC_3_7_Landesfeind2019(c, T),
                                   rtol=1e-12, atol=1e-13)


def test_constant_values_through_the_variable_path_reproduce_the_constant_model(chen):
    # a constant t+ / TDF given as tables takes the conservative flux form N = -B D dc/dx + t+ i_e/F
    # with source a j / F; mathematically the constant form (1 - t+) a j / F: same curve to solver precision
    flat = {"cation_transference_number": {"x": [0.0, 5000.0], "y": [chen["cation_transference_number"]] * 2},
            "thermodynamic_factor": {"x": [0.0, 5000.0], "y": [chen["thermodynamic_factor"]] * 2}}
    ref = DFNModel(chen, **COARSE).discharge(2.0)
    r = DFNModel(load_parameter_set("Chen2020", flat), **COARSE).discharge(2.0)
    assert _rms(ref, r) < 2e-5
    assert r.capacity_Ah == pytest.approx(ref.capacity_Ah, rel=1e-5)


def test_lithium_conserved_to_1e10_with_functional_transference(functional):
    model = DFNModel(functional, **COARSE)
    r = model.discharge(1.0)
    assert r.reached_cutoff
    s0, e0 = model.lithium_inventory(r.initial_state)
    s1, e1 = model.lithium_inventory(r.final_state)
    assert abs((s1 + e1) - (s0 + e0)) / (s0 + e0) < 1e-10
    assert abs(e1 - e0) / e0 < 1e-10  # the salt alone: the flux form telescopes, sum a j = 0
    # and the concentration profile is really not the constant-t+ one
    rc = DFNModel(load_parameter_set("Chen2020"), **COARSE).discharge(1.0)
    ce = slice(model.o_ce, model.o_pe)
    assert np.max(np.abs(r.final_state[ce] - rc.final_state[ce])) > 0.02


def test_half_cell_foil_lithium_conserved_with_functional_transference(functional):
    half = DFNModel(functional, half_cell=True, **COARSE)
    r = half.discharge(1.0, cutoff_V=3.0)
    s0, e0 = half.lithium_inventory(r.initial_state)
    s1, e1 = half.lithium_inventory(r.final_state)
    dissolved = r.current_A / half.area_m2 * r.time_s[-1] / FARADAY
    assert ((s1 + e1) - (s0 + e0)) == pytest.approx(dissolved, rel=1e-10)
    assert abs(e1 - e0) / e0 < 1e-10


@pytest.mark.parametrize("half_cell, form, temperature", [(False, "function", 298.15), (True, "function", 298.15),
                                                          (False, "table", 298.15), (False, "function", 318.15)])
def test_analytic_jacobian_matches_central_differences(half_cell, form, temperature):
    over = dict(LANDESFEIND) if form == "function" else _tables()
    over["temperature_K"] = temperature
    m = DFNModel(load_parameter_set("Chen2020", over), points=(5, 4, 5), r_points=(5, 6), half_cell=half_cell)
    # strong c_e gradients, so t+ varies along x
    fd = assert_jacobian_matches_central_differences(m, perturbed_state(m, np.random.default_rng(7), ce_spread=0.2))
    # the migration flux t+ i_e / F couples the c_e rows to phi_e
    assert np.abs(fd[m.o_ce:m.o_pe, m.o_pe:m.o_pe + m.Nn + m.Ns + m.Np]).max() > 0


def test_set_parameters_switches_between_constant_and_functional(chen, functional):
    # the sparsity pattern gains the c_e - phi_e entries: swapping in place gives the fresh model's curve
    model = DFNModel(chen, **COARSE)
    model.set_parameters(functional)
    fresh = DFNModel(functional, **COARSE)
    a, b = model.discharge(1.0), fresh.discharge(1.0)
    np.testing.assert_array_equal(a.voltage_V, b.voltage_V)
    model.set_parameters(chen)
    np.testing.assert_array_equal(model.discharge(1.0).voltage_V, DFNModel(chen, **COARSE).discharge(1.0).voltage_V)


def test_electrolyte_ohmic_heat_is_the_current_times_the_potential_drop(functional):
    # q_e = -sum_faces i_e d(phi_e) with i_e from the same chi(c_e) as the residual: at a state
    # where the phi_e rows hold (consistent potentials), d i_e/dx = a j, so summation by parts gives
    # q_e = sum_cells a j phi_e dx (i_e = 0 at both ends); checked on a discharged, non-uniform c_e
    model = DFNModel(functional, thermal="lumped", **COARSE)
    r = model.discharge(1.5)
    i_app = r.current_A / model.area_m2
    T = float(r.temperature_K[-1])
    y = model.consistent_algebraic(r.final_state[:model.n].copy(), i_app, T=T)
    q = np.zeros(5)
    from ionscale.kernels.cell.dfn import heat_sources
    heat_sources(y, i_app, T, q, model.geo, model.dx, model.xc, model.eps, model.brug, model.a_s, model._fids,
                 model._ocp_tab)
    f = model._eval_rhs(y, i_app, T=T)
    alg = model.geo[16]
    pe = y[model.o_pe:model.o_pe + model.Nn + model.Ns + model.Np]
    # rows o_pe, alg_scale ((ie_r - ie_l)/dx - a j), hold
    assert np.max(np.abs(f[model.o_pe:model.o_pe + pe.size] / alg * model.dx)) < 1e-8
    ce = y[model.o_ce:model.o_pe]
    assert ce.max() - ce.min() > 0.3  # a real gradient, so chi(c_e) matters
    # the same sum from i_e recomputed with the Python-side definitions
    from ionscale.kernels.cell.functions import electrolyte_conductivity_Nyman2008
    c = ce * model.geo[13]
    kap = model.brug * np.array([electrolyte_conductivity_Nyman2008(max(v, 10.0), T) for v in c])
    t = np.array([electrolyte_transference_number_EC_EMC_3_7_Landesfeind2019(v, T) for v in c])
    tdf = np.array([electrolyte_TDF_EC_EMC_3_7_Landesfeind2019(v, T) for v in c])
    chi = 2 * (1 - t) * tdf * 8.314462618 * T / FARADAY / c
    w = model.dx[:-1] / (model.dx[:-1] + model.dx[1:])
    kf = 1 / (w / kap[:-1] + (1 - w) / kap[1:])
    chif = 1 / (w / chi[:-1] + (1 - w) / chi[1:])
    h = np.diff(model.xc)
    ie = kf * chif * np.diff(c) / h - kf * np.diff(pe) / h
    assert q[0] == pytest.approx(-np.sum(ie * np.diff(pe)), rel=1e-9)
    assert q[0] > 0


def test_bad_transference_and_tdf_inputs_name_the_parameter():
    with pytest.raises(DeckError, match="cation_transference_number.*not a function of this kind"):
        DFNModel(load_parameter_set("Chen2020", {"cation_transference_number": "fn:electrolyte_diffusivity_Nyman2008"}))
    with pytest.raises(DeckError, match="unknown function"):
        load_parameter_set("Chen2020", {"thermodynamic_factor": "fn:no_such_tdf"})
    with pytest.raises(InputDataError, match="cation_transference_number.*\\(0, 1\\)"):
        DFNModel(load_parameter_set("Chen2020", {"cation_transference_number": {"x": [0, 2000], "y": [0.3, 1.2]}}))
    with pytest.raises(InputDataError, match="thermodynamic_factor.*increasing"):
        DFNModel(load_parameter_set("Chen2020", {"thermodynamic_factor": {"x": [100, 50], "y": [1.0, 1.1]}}))
    with pytest.raises(DeckError, match="take a table"):
        load_parameter_set("Chen2020", {"separator_porosity": {"x": [0, 1], "y": [0.4, 0.4]}})


def test_table_and_function_agree(functional):
    # Landesfeind's T dependence is frozen in the table at 298.15 K, the temperature of the run
    a = DFNModel(functional, **COARSE).discharge(1.0)
    b = DFNModel(load_parameter_set("Chen2020", _tables(np.linspace(0.0, 3000.0, 301))), **COARSE).discharge(1.0)
    assert _rms(a, b) < 0.2e-3


def test_spme_evaluates_the_functions_at_the_initial_concentration(chen, functional):
    c0, T = chen["initial_electrolyte_concentration_mol_m3"], chen["temperature_K"]
    tp = electrolyte_number(functional, "cation_transference_number", c0, T)
    tdf = electrolyte_number(functional, "thermodynamic_factor", c0, T)
    assert tp == electrolyte_transference_number_EC_EMC_3_7_Landesfeind2019(c0, T)
    fixed = load_parameter_set("Chen2020", {"cation_transference_number": tp, "thermodynamic_factor": tdf})
    a = SPMeModel(functional, r_points=(8, 8), points=(8, 6, 8)).discharge(1.0)
    b = SPMeModel(fixed, r_points=(8, 8), points=(8, 6, 8)).discharge(1.0)
    np.testing.assert_array_equal(a.voltage_V, b.voltage_V)


def test_1C_against_pybamm_with_landesfeind_functions(functional):
    pybamm = pytest.importorskip("pybamm")
    from pybamm.input.parameters.lithium_ion.ORegan2022 import (
        electrolyte_TDF_EC_EMC_3_7_Landesfeind2019 as tdf, electrolyte_transference_number_EC_EMC_3_7_Landesfeind2019
        as tplus)
    values = pybamm.ParameterValues("Chen2020")
    values.update({"Cation transference number": tplus, "Thermodynamic factor": tdf})
    sim = pybamm.Simulation(pybamm.lithium_ion.DFN(), parameter_values=values,
                            solver=pybamm.IDAKLUSolver(rtol=1e-6, atol=1e-6))
    sol = sim.solve([0, 1.2 * 3600])
    t_ref, v_ref = sol["Time [s]"].entries, sol["Voltage [V]"].entries
    cap_ref = sol["Discharge capacity [A.h]"].entries[-1]
    r = DFNModel(functional, points=(20, 20, 20), r_points=(20, 20)).discharge(1.0, rtol=1e-6, atol=1e-6)
    assert r.reached_cutoff
    keep = t_ref <= min(t_ref[-1], r.time_s[-1])
    rms = np.sqrt(np.mean((np.interp(t_ref[keep], r.time_s, r.voltage_V) - v_ref[keep]) ** 2))
    assert rms <= 2e-3, rms
    assert r.capacity_Ah == pytest.approx(cap_ref, rel=2e-3)
    # the feature matters: constant t+ = 0.2594, TDF = 1 is farther from this reference than the tolerance
    const = DFNModel(load_parameter_set("Chen2020"), points=(20, 20, 20), r_points=(20, 20)).discharge(1.0)
    keep = t_ref <= min(t_ref[-1], const.time_s[-1])
    rms_const = np.sqrt(np.mean((np.interp(t_ref[keep], const.time_s, const.voltage_V) - v_ref[keep]) ** 2))
    assert rms_const > 3 * rms


def test_bundled_set_equals_the_overrides_and_a_number_overrides_the_function(functional):
    bundled = load_parameter_set("Chen2020_Landesfeind2019")
    assert {k: v for k, v in bundled.items() if k != "_name"} == {k: v for k, v in functional.items() if k != "_name"}
    back = load_parameter_set("Chen2020_Landesfeind2019", {"cation_transference_number": 0.2594,
                                                           "thermodynamic_factor": 1.0})
    np.testing.assert_array_equal(DFNModel(back, **COARSE).discharge(1.0).voltage_V,
                                  DFNModel(load_parameter_set("Chen2020"), **COARSE).discharge(1.0).voltage_V)


@pytest.mark.mpi
def test_dfn_stage_runs_the_functional_set_over_ranks(comm, functional):
    from ionscale.kernels.cell.stages import DFN
    from ionscale.stage import StageInputs
    params = dict(parameter_set="Chen2020_Landesfeind2019", overrides={}, negative_ocp_table=None,
                  positive_ocp_table=None, c_rates=[1.0, 2.0], protocol="constant_current", cutoff_V=None,
                  points=[8, 6, 8], r_points=[8, 8], rtol=1e-6, atol=1e-6, plot=False, petsc={}, half_cell=False,
                  positive_ocp_table_scale=1.0, positive_ocp_table_shift_V=0.0, thermal="isothermal",
                  initial_temperature_K=None, ambient_temperature_K=None)
    out = DFN("dfn").run(comm, StageInputs(), params)
    direct = [DFNModel(functional, **COARSE).discharge(c).capacity_Ah for c in (1.0, 2.0)]
    np.testing.assert_allclose(out["capacity_Ah"], direct, rtol=1e-9)
    assert out["capacity_Ah"][1] < out["capacity_Ah"][0]


def test_adiabatic_discharge_conserves_energy_with_functional_transference(functional):
    # h = 0: rho_cp_eff V (T_end - T0) = integral of the heat, whose electrolyte term carries chi(c_e, T);
    # t+(c_e, T) and TDF(c_e, T) follow the rising temperature
    model = DFNModel(dict(functional, total_heat_transfer_coefficient_W_m2_K=0.0), thermal="lumped", **COARSE)
    r = model.discharge(1.0, rtol=1e-7, atol=1e-7)
    assert r.reached_cutoff
    heat_J = np.trapezoid(r.heat_W, r.time_s)
    stored_J = model.heat_capacity_J_K * (r.temperature_K[-1] - r.temperature_K[0])
    assert abs(heat_J - stored_J) / stored_J < 1e-4
    assert r.temperature_K[-1] - r.temperature_K[0] > 1.0
    s0, e0 = model.lithium_inventory(r.initial_state[:model.n])
    s1, e1 = model.lithium_inventory(r.final_state[:model.n])
    assert abs((s1 + e1) - (s0 + e0)) / (s0 + e0) < 1e-10
