"""Half-cell (cathode vs Li foil) DFN and the analytic Jacobian: open-circuit limit,
Li-foil Butler-Volmer boundary, lithium conservation with the foil source, the
C/20 limit, and the analytic Jacobian against central differences of the residual."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cell_checks import assert_jacobian_matches_central_differences, perturbed_state
from ionscale.kernels.cell.dfn import FARADAY, R_GAS, DFNModel
from ionscale.kernels.cell.functions import nmc_LGM50_ocp_Chen2020
from ionscale.kernels.cell.parameters import load_parameter_set, ocp_table


@pytest.fixture(scope="module")
def chen():
    return load_parameter_set("Chen2020")


@pytest.fixture(scope="module")
def half(chen):
    return DFNModel(chen, points=(8, 6, 8), r_points=(8, 8), half_cell=True)


def test_open_circuit_voltage_is_the_cathode_ocp_vs_li(half, chen):
    y = half.consistent_algebraic(half.initial_state(), 0.0)
    sto = chen["initial_positive_concentration_mol_m3"] / chen["positive_maximum_concentration_mol_m3"]
    assert half.voltage(y) == pytest.approx(nmc_LGM50_ocp_Chen2020(sto), abs=1e-10)
    assert half.n == half.Np * half.Nrp + 2 * (half.Ns + half.Np) + half.Np  # no negative electrode unknowns


def test_foil_boundary_obeys_butler_volmer(half, chen):
    i_app = 2.0 * half.one_c_A / half.area_m2
    y = half.consistent_algebraic(half.initial_state(), i_app)
    pe_b = 1.5 * y[half.o_pe] - 0.5 * y[half.o_pe + 1]
    j0 = chen["lithium_foil_exchange_current_density_A_m2"]  # at c_e = c_e0 (uniform at t = 0)
    rt_f = R_GAS * chen["temperature_K"] / FARADAY
    # charge conservation forces the foil current to equal the applied one
    assert pe_b == pytest.approx(-2 * rt_f * math.asinh(i_app / (2 * j0)), rel=1e-8)


def test_lithium_from_the_foil_is_conserved(half):
    r = half.discharge(1.0, cutoff_V=3.0)
    s0, e0 = half.lithium_inventory(r.initial_state)
    s1, e1 = half.lithium_inventory(r.final_state)
    dissolved = r.current_A / half.area_m2 * r.time_s[-1] / FARADAY  # mol/m2 of Li leaving the foil
    assert ((s1 + e1) - (s0 + e0)) == pytest.approx(dissolved, rel=1e-10)
    assert abs(e1 - e0) / e0 < 1e-10  # salt: the foil supplies what the cathode takes


def test_slow_discharge_follows_the_ocp_of_the_mean_stoichiometry(chen):
    model = DFNModel(chen, points=(8, 6, 8), r_points=(8, 8), half_cell=True)
    r = model.discharge(0.05, cutoff_V=3.5)
    p = chen
    sto0 = p["initial_positive_concentration_mol_m3"] / p["positive_maximum_concentration_mol_m3"]
    q_per_sto = (FARADAY * p["positive_electrode_active_material_volume_fraction"]
                 * p["positive_maximum_concentration_mol_m3"] * p["positive_electrode_thickness_m"]
                 * model.area_m2 / 3600.0)  # A h per unit of stoichiometry
    sto = sto0 + r.capacity_curve_Ah / q_per_sto
    ocv = np.array([nmc_LGM50_ocp_Chen2020(s) for s in sto])
    body = (r.voltage_V > 3.6) & (r.time_s > 600)
    # at C/20 the losses (kinetics, electrolyte, solid diffusion) are a few mV
    assert np.max(np.abs(r.voltage_V[body] - ocv[body])) < 0.02
    assert np.all(r.voltage_V[body] < ocv[body])  # a discharge stays below equilibrium


@pytest.mark.parametrize("half_cell, table", [(False, False), (True, False), (True, True)])
def test_analytic_jacobian_matches_central_differences(chen, half_cell, table):
    params = chen
    if table:
        x = np.linspace(0.0, 1.0, 41)
        params = load_parameter_set("Chen2020", {"positive_electrode_ocp_V": ocp_table(
            x, [nmc_LGM50_ocp_Chen2020(max(s, 0.05)) for s in x], "positive_electrode_ocp_V")})
    m = DFNModel(params, points=(5, 4, 5), r_points=(5, 6), half_cell=half_cell)
    assert_jacobian_matches_central_differences(m, perturbed_state(m, np.random.default_rng(3)))
