"""Lumped thermal DFN (``thermal="lumped"``): the isothermal default is untouched, the heat
sources obey the discrete energy identity, the temperature ODE conserves energy and cools
exponentially, the temperature column of the Jacobian matches differences of the residual,
and the model agrees with PyBaMM's DFN ``{"thermal": "lumped"}`` (skipped without pybamm)."""
from __future__ import annotations

import math
import tempfile

import numpy as np
import pytest

from ionscale.errors import DeckError
from ionscale.kernels.cell.dfn import DFNModel, residual_thermal
from ionscale.kernels.cell.functions import (graphite_entropic_change_Moura2016, graphite_mcmb2528_ocp_Dualfoil1998,
                                             lico2_entropic_change_Moura2016, lico2_ocp_Dualfoil1998)
from ionscale.kernels.cell.parameters import load_parameter_set

COARSE = dict(points=(8, 6, 8), r_points=(8, 8))


@pytest.fixture(scope="module")
def chen():
    return load_parameter_set("Chen2020")


@pytest.fixture(scope="module")
def marquis():
    return load_parameter_set("Marquis2019")


def _uniform_sto(p):
    return (p["initial_negative_concentration_mol_m3"] / p["negative_maximum_concentration_mol_m3"],
            p["initial_positive_concentration_mol_m3"] / p["positive_maximum_concentration_mol_m3"])


def test_isothermal_at_reference_temperature_ignores_the_thermal_terms_bitwise(marquis):
    # Marquis2019 has entropic coefficients and Arrhenius particle diffusivities: at T = T_ref
    # the isothermal model must give exactly the curve of the same set without them (the
    # model before the thermal terms existed; also checked against that code itself, see
    # docs/bench_cell.md)
    plain = dict(marquis)
    plain.update({"negative_electrode_ocp_entropic_change_V_K": 0.0, "positive_electrode_ocp_entropic_change_V_K": 0.0,
                  "negative_particle_diffusivity_activation_energy_J_mol": 0.0,
                  "positive_particle_diffusivity_activation_energy_J_mol": 0.0})
    a = DFNModel(marquis, **COARSE).discharge(1.0)
    b = DFNModel(plain, **COARSE).discharge(1.0)
    np.testing.assert_array_equal(a.time_s, b.time_s)
    np.testing.assert_array_equal(a.voltage_V, b.voltage_V)
    assert np.all(a.temperature_K == marquis["temperature_K"]) and a.heat_W is None


def test_entropic_shift_of_the_open_circuit_voltage(marquis):
    # U(sto, T) = U(sto) + (T - T_ref) dU/dT: at zero current the cell voltage is the OCV at T
    T = 318.15
    sn, sp_ = _uniform_sto(marquis)
    model = DFNModel(dict(marquis, temperature_K=T), **COARSE)
    v = model.voltage(model.consistent_algebraic(model.initial_state(), 0.0))
    expected = (lico2_ocp_Dualfoil1998(sp_) - graphite_mcmb2528_ocp_Dualfoil1998(sn)
                + (T - 298.15) * (lico2_entropic_change_Moura2016(sp_) - graphite_entropic_change_Moura2016(sn)))
    assert v == pytest.approx(expected, abs=1e-10)
    assert abs(v - model.voltage(DFNModel(marquis, **COARSE).consistent_algebraic(
        model.initial_state(), 0.0))) > 1e-4  # the shift (0.37 mV at +20 K) is resolved


@pytest.mark.parametrize("name", ["Chen2020", "Marquis2019"])
def test_heat_sources_obey_the_discrete_energy_identity(name):
    # with each electrode's OCP uniform (initial state), summation by parts gives
    # Ohmic + irreversible = i (U_p - U_n - V) and reversible = i T (dU_n/dT - dU_p/dT)
    p = load_parameter_set(name)
    T = 305.0
    model = DFNModel(p, thermal="lumped", **COARSE)
    sn, sp_ = _uniform_sto(p)
    i_app = 2.0 * model.one_c_A / model.area_m2
    y = model.consistent_algebraic(model.initial_state(), i_app, T=T)
    q = model.heat_sources(y, i_app, T)
    scale = model.area_m2
    Un = model._ocp_n(sn) + (T - 298.15) * _entropic(p, "negative", sn)
    Up = model._ocp_p(sp_) + (T - 298.15) * _entropic(p, "positive", sp_)
    irreversible = q["ohmic_electrolyte_W"] + q["ohmic_solid_W"] + q["ohmic_series_W"] + q["irreversible_W"]
    assert irreversible == pytest.approx(i_app * (Up - Un - model.voltage(y, i_app)) * scale, rel=1e-8)
    rev = i_app * T * (_entropic(p, "negative", sn) - _entropic(p, "positive", sp_)) * scale
    assert q["reversible_W"] == pytest.approx(rev, rel=1e-8, abs=1e-14)
    assert min(q["ohmic_electrolyte_W"], q["ohmic_solid_W"], q["irreversible_W"]) > 0


def _entropic(p, side, sto):
    v = p[f"{side}_electrode_ocp_entropic_change_V_K"]
    if isinstance(v, str):
        return (graphite_entropic_change_Moura2016 if side == "negative" else lico2_entropic_change_Moura2016)(sto)
    return float(v)


def test_heat_capacity_is_the_thickness_weighted_stack_average(chen):
    model = DFNModel(chen, thermal="lumped", **COARSE)
    layers = ["negative_current_collector", "negative_electrode", "separator", "positive_electrode",
              "positive_current_collector"]
    L = [chen["negative_current_collector_thickness_m"], chen["negative_electrode_thickness_m"],
         chen["separator_thickness_m"], chen["positive_electrode_thickness_m"],
         chen["positive_current_collector_thickness_m"]]
    rho_cp = [chen[f"{k}_density_kg_m3"] * chen[f"{k}_specific_heat_J_kg_K"] for k in layers]
    assert model.rho_cp_eff == pytest.approx(np.dot(L, rho_cp) / sum(L), rel=1e-14)
    assert model.heat_capacity_J_K == pytest.approx(model.rho_cp_eff * chen["cell_volume_m3"], rel=1e-14)


def test_adiabatic_discharge_conserves_energy(chen):
    # h = 0: rho_cp_eff V (T_end - T0) = integral of the generated heat; the quadrature of the
    # sampled heat converges with the time-stepping tolerance
    p = dict(chen, total_heat_transfer_coefficient_W_m2_K=0.0)
    model = DFNModel(p, thermal="lumped", **COARSE)
    errors = []
    for tol in (1e-6, 1e-8):
        r = model.discharge(1.0, rtol=tol, atol=tol)
        assert r.reached_cutoff
        heat_J = np.trapezoid(r.heat_W, r.time_s)
        stored_J = model.heat_capacity_J_K * (r.temperature_K[-1] - r.temperature_K[0])
        errors.append(abs(heat_J - stored_J) / stored_J)
        assert np.all(np.diff(r.temperature_K) >= 0)  # adiabatic: heat only accumulates
        assert np.all(r.heat_W > 0)
    assert errors[0] < 1e-4
    assert errors[1] < errors[0] / 3
    # and the isothermal voltage curve is recovered when the heat capacity is enormous
    huge = DFNModel(dict(p, cell_volume_m3=1e6), thermal="lumped", **COARSE).discharge(1.0)
    iso = DFNModel(chen, **COARSE).discharge(1.0)
    assert huge.temperature_K[-1] - huge.temperature_K[0] < 1e-6
    assert huge.capacity_Ah == pytest.approx(iso.capacity_Ah, rel=1e-6)


def test_newton_cooling_at_rest_is_exponential(chen):
    # no current: Q = 0, T(t) = T_amb + (T0 - T_amb) exp(-h A t / (rho c_p V))
    model = DFNModel(chen, thermal="lumped", **COARSE)
    T0 = 318.15
    tau = model.heat_capacity_J_K / (chen["total_heat_transfer_coefficient_W_m2_K"]
                                     * chen["cell_cooling_surface_area_m2"])
    errors = []
    for tol in (1e-6, 1e-8):
        res = model.run_protocol([{"kind": "rest", "value": 0.0, "t_max_s": 3000.0}], T0=T0, rtol=tol, atol=tol)
        assert np.max(np.abs(res.heat_W)) < 1e-9
        exact = chen["ambient_temperature_K"] + (T0 - chen["ambient_temperature_K"]) * np.exp(-res.time_s / tau)
        assert res.time_s[-1] == pytest.approx(3000.0)
        errors.append(np.max(np.abs(res.temperature_K - exact)))
        # Chen2020 has no entropic term: at rest the voltage stays the OCV while T falls
        assert np.ptp(res.voltage_V) < 1e-9
    # TS error control is a RMS over ~200 unknowns, so the single T may err by ~sqrt(200) x rtol x T
    assert errors[0] < 1e-2  # of a 20 K decay
    assert errors[1] < errors[0] / 10


def test_temperature_column_matches_central_differences(marquis):
    model = DFNModel(marquis, thermal="lumped", **COARSE)
    n = model.n
    i1c = model.one_c_A / model.area_m2
    r = model.discharge(1.0, t_max_s=600.0)
    yx = np.concatenate([r.final_state, [1.0, r.temperature_K[-1]]])
    yx[:n] = model.consistent_algebraic(yx[:n], i1c, T=yx[n + 1])

    def resid(x):
        f = np.empty(n + 2)
        residual_thermal(x, np.zeros(n + 2), i1c, 0, 1.0, f, np.empty(n), model.mass, model.geo, model.dx, model.xc,
                         model.eps, model.brug, model.a_s, model._fids, model._ocp_tab, model.therm, np.zeros(5))
        return f

    h = 1e-3
    xp, xm = yx.copy(), yx.copy()
    xp[n + 1] += h
    xm[n + 1] -= h
    column = (resid(xp) - resid(xm)) / (2 * h)
    shift = 0.0
    from ionscale.kernels.cell.dfn import thermal_jacobian_entries
    data = np.zeros(model._jdata.size)
    thermal_jacobian_entries(yx, i1c, shift, data, model._tcol_pos, model._tdiag_pos, np.empty(n), np.empty(n),
                             np.zeros(5), model.geo, model.dx, model.xc, model.eps, model.brug, model.a_s, model._fids,
                             model._ocp_tab, model.therm, np.zeros(0, dtype=np.int64), np.zeros(0),
                             np.zeros(0, dtype=np.int64), False)
    ours = np.append(data[model._tcol_pos], data[model._tdiag_pos])
    ref = np.append(column[:n], column[n + 1])
    assert np.max(np.abs(ref[:n])) > 0  # the electrochemistry does depend on T
    scale = np.maximum(np.abs(ref), 1e-6 * np.max(np.abs(ref)))
    assert np.max(np.abs(ours - ref) / scale) < 1e-4


def test_lumped_needs_its_parameters_and_a_full_cell(chen):
    p = {k: v for k, v in chen.items() if k != "cell_volume_m3"}
    with pytest.raises(DeckError, match="cell_volume_m3"):
        DFNModel(p, thermal="lumped", **COARSE)
    with pytest.raises(ValueError, match="half-cell"):
        DFNModel(chen, thermal="lumped", half_cell=True, **COARSE)
    with pytest.raises(ValueError, match="thermal must be one of"):
        DFNModel(chen, thermal="lumpd", **COARSE)


@pytest.mark.mpi
def test_dfn_stage_reports_temperature_curves(comm):
    from ionscale.kernels.cell.stages import DFN
    from ionscale.stage import StageInputs
    params = dict(parameter_set="Chen2020", overrides={}, negative_ocp_table=None, positive_ocp_table=None,
                  c_rates=[1.0, 2.0], protocol="constant_current", cutoff_V=None, points=[8, 6, 8], r_points=[8, 8],
                  rtol=1e-6, atol=1e-6, plot=False, petsc={}, half_cell=False, positive_ocp_table_scale=1.0,
                  positive_ocp_table_shift_V=0.0, thermal="lumped", initial_temperature_K=300.0,
                  ambient_temperature_K=295.0)
    stage = DFN("cell")
    stage.output_dir = comm.bcast(tempfile.mkdtemp(prefix="ionscale_thermal_") if comm.rank == 0 else None)
    out = stage.run(comm, StageInputs(), params)
    assert set(out) == set(DFN.outputs)
    for tag in ("1C", "2C"):
        curve = out["curves"][tag]
        assert curve["temperature_K"][0] == pytest.approx(300.0)
        assert curve["temperature_K"].size == curve["time_s"].size == curve["heat_W"].size
    # more current, more heat (Q ~ I^2 R + I eta): 2C ends hotter
    assert out["max_temperature_K"][1] > out["max_temperature_K"][0] > 300.0
    everyone = comm.allgather(out["max_temperature_K"])
    for other in everyone[1:]:
        np.testing.assert_array_equal(other, everyone[0])
    problems = DFN.check(dict(params, half_cell=True))
    assert any(key == "thermal" and "half_cell" in msg for key, msg in problems)


# ---- against PyBaMM's lumped DFN (same mesh and tolerances as tests/test_cell_pybamm.py) ----

def _pybamm_lumped(name, c_rate, capacity_A):
    pybamm = pytest.importorskip("pybamm")
    sim = pybamm.Simulation(pybamm.lithium_ion.DFN(options={"thermal": "lumped"}),
                            parameter_values=pybamm.ParameterValues(name),
                            solver=pybamm.IDAKLUSolver(rtol=1e-6, atol=1e-6))
    values = sim.parameter_values
    values["Current function [A]"] = capacity_A * c_rate
    sol = sim.solve([0, 1.5 * 3600 / c_rate])
    return (sol["Time [s]"].entries, sol["Voltage [V]"].entries,
            sol["Volume-averaged cell temperature [K]"].entries, sol["Discharge capacity [A.h]"].entries[-1])


@pytest.mark.parametrize("name,average,t_tol", [("Chen2020", "arithmetic", 0.02), ("Chen2020", "harmonic", 0.1),
                                                ("Marquis2019", "arithmetic", 0.01)])
def test_lumped_1C_against_pybamm(name, average, t_tol):
    p = load_parameter_set(name)
    t_ref, v_ref, T_ref, cap_ref = _pybamm_lumped(name, 1.0, p["nominal_cell_capacity_Ah"])
    r = DFNModel(p, points=(20, 20, 20), r_points=(20, 20), conductivity_average=average,
                 thermal="lumped").discharge(1.0)
    assert r.reached_cutoff
    keep = t_ref <= min(t_ref[-1], r.time_s[-1])
    rms = math.sqrt(np.mean((np.interp(t_ref[keep], r.time_s, r.voltage_V) - v_ref[keep]) ** 2))
    dT = np.max(np.abs(np.interp(t_ref[keep], r.time_s, r.temperature_K) - T_ref[keep]))
    assert rms <= 2e-3, rms
    assert dT <= t_tol, dT
    assert r.capacity_Ah == pytest.approx(cap_ref, rel=2e-3)
    assert T_ref[-1] - T_ref[0] > 10 * dT  # the cell does heat up measurably


def test_entropic_change_from_a_table_matches_the_function(marquis):
    # a BPX-style {x, y} table of dU/dT (packed by parameters.pack_properties) drives the same
    # lumped model as the compiled Moura2016 functions, to the interpolation error
    x = np.linspace(0.0, 1.0, 2001)
    tabled = dict(marquis)
    tabled["negative_electrode_ocp_entropic_change_V_K"] = {
        "x": x, "y": np.array([graphite_entropic_change_Moura2016(s) for s in x])}
    tabled["positive_electrode_ocp_entropic_change_V_K"] = {
        "x": x, "y": np.array([lico2_entropic_change_Moura2016(s) for s in x])}
    a = DFNModel(marquis, thermal="lumped", **COARSE).discharge(1.0, T0=310.0)
    b = DFNModel(tabled, thermal="lumped", **COARSE).discharge(1.0, T0=310.0)
    assert np.max(np.abs(np.interp(a.time_s, b.time_s, b.voltage_V) - a.voltage_V)) < 1e-6
    assert b.temperature_K[-1] == pytest.approx(a.temperature_K[-1], abs=1e-4)
    # and the entropic term matters at 310 K: without it the curve moves by more than that
    plain = DFNModel(dict(marquis, negative_electrode_ocp_entropic_change_V_K=0.0,
                          positive_electrode_ocp_entropic_change_V_K=0.0), thermal="lumped",
                     **COARSE).discharge(1.0, T0=310.0)
    assert np.max(np.abs(np.interp(a.time_s, plain.time_s, plain.voltage_V) - a.voltage_V)) > 1e-4
