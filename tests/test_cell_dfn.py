"""Physics of the DFN cell model (no peer needed): conservation, open-circuit limit,
cut-off location, second-order mesh convergence in x, parameter validation."""
from __future__ import annotations

import numpy as np
import pytest

from ionscale.errors import DeckError, SolverDivergedError
from ionscale.kernels.cell.dfn import DFNModel
from ionscale.kernels.cell.functions import nmc_LGM50_ocp_Chen2020, graphite_LGM50_ocp_Chen2020
from ionscale.kernels.cell.parameters import load_parameter_set, transport_efficiency


@pytest.fixture(scope="module")
def chen():
    return load_parameter_set("Chen2020")


@pytest.fixture(scope="module")
def coarse(chen):
    return DFNModel(chen, points=(8, 6, 8), r_points=(8, 8))


def test_lithium_conserved_to_1e10_over_a_full_discharge(coarse):
    r = coarse.discharge(1.0)
    assert r.reached_cutoff
    s0, e0 = coarse.lithium_inventory(r.initial_state)
    s1, e1 = coarse.lithium_inventory(r.final_state)
    assert abs((s1 + e1) - (s0 + e0)) / (s0 + e0) < 1e-10
    # electrolyte salt alone is conserved too (sum of a*j over the cell is zero)
    assert abs(e1 - e0) / e0 < 1e-10
    # and the charge passed equals the Li moved between the electrodes
    n = coarse
    neg0 = np.sum(n.dx[:n.Nn] * chen_solid(n, r.initial_state, "negative"))
    neg1 = np.sum(n.dx[:n.Nn] * chen_solid(n, r.final_state, "negative"))
    moved = (neg0 - neg1) * 96485.33212 * n.area_m2 / 3600.0  # A h
    assert moved == pytest.approx(r.capacity_Ah, rel=1e-9)


def chen_solid(model, y, key):
    p = model.params
    nr, off, nc = (model.Nrn, 0, model.Nn) if key == "negative" else (model.Nrp, model.o_sp, model.Np)
    k = np.arange(nr)
    wv = ((k + 1) ** 3 - k ** 3) / nr ** 3
    sto = y[off: off + nc * nr].reshape(nc, nr)
    return (p[f"{key}_electrode_active_material_volume_fraction"] * p[f"{key}_maximum_concentration_mol_m3"]
            * (sto @ wv))


def test_zero_current_gives_open_circuit_voltage(coarse, chen):
    y = coarse.consistent_algebraic(coarse.initial_state(), 0.0)
    sto_n = chen["initial_negative_concentration_mol_m3"] / chen["negative_maximum_concentration_mol_m3"]
    sto_p = chen["initial_positive_concentration_mol_m3"] / chen["positive_maximum_concentration_mol_m3"]
    ocv = nmc_LGM50_ocp_Chen2020(sto_p) - graphite_LGM50_ocp_Chen2020(sto_n)
    assert coarse.voltage(y) == pytest.approx(ocv, abs=1e-10)
    # a rest keeps everything at equilibrium
    r = coarse.discharge(1e-9, t_max_s=100.0)
    assert r.voltage_V[-1] == pytest.approx(ocv, abs=1e-7)


def test_initial_ohmic_drop_scales_linearly_with_small_currents(coarse):
    ocv = coarse.voltage(coarse.consistent_algebraic(coarse.initial_state(), 0.0))
    drops = [ocv - coarse.voltage(coarse.consistent_algebraic(coarse.initial_state(), i)) for i in (0.01, 0.02)]
    assert drops[0] > 0
    assert drops[1] / drops[0] == pytest.approx(2.0, rel=1e-3)  # linear-response regime


def test_cutoff_voltage_is_located_by_the_event(coarse, chen):
    r = coarse.discharge(2.0)
    assert r.reached_cutoff
    assert r.voltage_V[-1] == pytest.approx(chen["lower_voltage_cutoff_V"], abs=1e-6)
    assert np.all(r.voltage_V[:-1] > chen["lower_voltage_cutoff_V"])
    # higher rate -> less capacity, less energy
    r1 = coarse.discharge(0.5)
    assert r1.capacity_Ah > r.capacity_Ah and r1.energy_Wh > r.energy_Wh


def test_second_order_mesh_convergence_in_x(chen):
    volts = []
    for n in (6, 12, 24):
        m = DFNModel(chen, points=(n, n, n), r_points=(6, 6))
        volts.append(m.discharge(1.0, rtol=1e-9, atol=1e-9, t_max_s=300.0).voltage_V[-1])
    e1, e2 = abs(volts[0] - volts[1]), abs(volts[1] - volts[2])
    order = np.log2(e1 / e2)
    assert 1.7 < order < 2.5, (volts, order)


def test_tortuosity_factor_lowers_rate_capability(chen):
    tau_brug = chen["positive_electrode_porosity"] ** -0.5
    assert transport_efficiency(chen, "positive_electrode") == pytest.approx(
        chen["positive_electrode_porosity"] / tau_brug)
    caps = []
    for tau in (tau_brug, 3 * tau_brug):
        p = load_parameter_set("Chen2020", {"positive_electrode_tortuosity_factor": tau})
        caps.append(DFNModel(p, points=(8, 6, 8), r_points=(8, 8)).discharge(2.0).capacity_Ah)
    assert caps[1] < caps[0]


def test_unknown_and_unphysical_parameters_are_rejected_with_their_names():
    with pytest.raises(DeckError, match="positive_electrode_porosity'"):
        load_parameter_set("Chen2020", {"positive_electrode_porosty": 0.3})
    with pytest.raises(DeckError, match=r"positive_electrode_porosity.*outside its physical range"):
        load_parameter_set("Chen2020", {"positive_electrode_porosity": 1.2})
    with pytest.raises(DeckError, match=r"negative_particle_diffusivity_m2_s.*physical range"):
        load_parameter_set("Chen2020", {"negative_particle_diffusivity_m2_s": -1e-14})
    with pytest.raises(DeckError, match="did you mean 'Chen2020'"):
        load_parameter_set("Chen2021")


def test_solver_failure_names_time_and_variable_and_keeps_partial_curve(coarse):
    # a Newton solver allowed one iteration cannot reach an unattainable residual tolerance
    with pytest.raises(SolverDivergedError, match=r"failed at t = .* s.*suspect variable: ") as err:
        coarse.discharge(1.0, petsc_options={"snes_max_it": 1, "snes_rtol": 1e-15, "snes_atol": 1e-30,
                                             "snes_stol": 1e-30, "ts_max_reject": 3})
    partial = err.value.partial
    assert partial is not None and partial.time_s.size == partial.voltage_V.size
    assert not partial.reached_cutoff


def test_ocp_table_reproduces_the_ocp_function_it_samples(chen):
    from ionscale.errors import InputDataError
    from ionscale.kernels.cell.parameters import ocp_table

    x = np.linspace(0.2, 1.0, 801)  # NMC range used by a discharge (sto 0.27 -> ~0.9)
    table = ocp_table(x, [nmc_LGM50_ocp_Chen2020(s) for s in x], "positive_electrode_ocp_V")
    tabled = load_parameter_set("Chen2020", {"positive_electrode_ocp_V": table})
    ref = DFNModel(chen, points=(8, 6, 8), r_points=(8, 8)).discharge(1.0)
    model = DFNModel(tabled, points=(8, 6, 8), r_points=(8, 8))
    assert model._fids[1] == -1  # really interpolating
    r = model.discharge(1.0)
    # linear interpolation error of the OCP at spacing 1e-3 is ~ h^2 U''/8 < 1e-4 V, plus the
    # linear interpolation between the two runs' adaptive steps (compared away from the steep
    # end of discharge, where a tiny time shift is a large dV)
    flat = ref.voltage_V > 3.0
    dv = np.interp(ref.time_s[flat], r.time_s, r.voltage_V) - ref.voltage_V[flat]
    assert np.max(np.abs(dv)) < 5e-4
    assert r.capacity_Ah == pytest.approx(ref.capacity_Ah, rel=1e-4)
    with pytest.raises(InputDataError, match="positive_electrode_ocp_V.*strictly increasing"):
        ocp_table(x[::-1], x, "positive_electrode_ocp_V")
    with pytest.raises(DeckError, match="only OCP parameters"):
        load_parameter_set("Chen2020", {"separator_porosity": table})
