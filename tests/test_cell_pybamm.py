"""Validation of the DFN model against PyBaMM's DFN (same Chen2020 parameters,
20 cells per domain and 20 shells per particle, rtol = atol = 1e-6).
Skipped when pybamm is not installed (it is a validation peer, not a dependency)."""
from __future__ import annotations

import numpy as np
import pytest

pybamm = pytest.importorskip("pybamm")

from ionscale.kernels.cell.dfn import DFNModel  # noqa: E402
from ionscale.kernels.cell.parameters import load_parameter_set  # noqa: E402

RATES = (0.5, 1.0, 2.0)


@pytest.fixture(scope="module")
def pybamm_curves():
    model = pybamm.lithium_ion.DFN()
    values = pybamm.ParameterValues("Chen2020")
    values["Current function [A]"] = "[input]"
    sim = pybamm.Simulation(model, parameter_values=values, solver=pybamm.IDAKLUSolver(rtol=1e-6, atol=1e-6))
    out = {}
    for c in RATES:
        sol = sim.solve([0, 1.2 * 3600 / c], inputs={"Current function [A]": 5.0 * c})
        out[c] = (sol["Time [s]"].entries, sol["Voltage [V]"].entries,
                  sol["Discharge capacity [A.h]"].entries[-1])
    return out


@pytest.mark.parametrize("average", ["arithmetic", "harmonic"])
def test_voltage_rms_within_2mV_and_capacity_within_0p2_percent(pybamm_curves, average):
    model = DFNModel(load_parameter_set("Chen2020"), points=(20, 20, 20), r_points=(20, 20),
                     conductivity_average=average)
    for c in RATES:
        t_ref, v_ref, cap_ref = pybamm_curves[c]
        r = model.discharge(c, rtol=1e-6, atol=1e-6)
        assert r.reached_cutoff and v_ref[-1] == pytest.approx(2.5, abs=1e-6)
        t_end = min(t_ref[-1], r.time_s[-1])
        keep = t_ref <= t_end
        rms = np.sqrt(np.mean((np.interp(t_ref[keep], r.time_s, r.voltage_V) - v_ref[keep]) ** 2))
        assert rms <= 2e-3, (c, average, rms)
        assert r.capacity_Ah == pytest.approx(cap_ref, rel=2e-3)
        if average == "arithmetic":  # PyBaMM's own face average: the discretisations coincide
            assert rms <= 0.5e-3 and r.capacity_Ah == pytest.approx(cap_ref, rel=1e-4)
