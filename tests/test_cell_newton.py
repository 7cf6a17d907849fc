"""The DFN's nonlinear solver (dfn._ModifiedNewton, IDA's strategy with Jacobian reuse) against
PETSc's newtonls with a fresh Jacobian every step: the same discharge to within the
time-integration tolerance with a fraction of the Jacobians, and the DAE's linear invariants
(charge passed = Li moved out of the negative electrode) exact to round-off, also when a
factorisation is kept across shift changes (corrections scaled by s0 / shift)."""
from __future__ import annotations

import numpy as np
import pytest

from ionscale.kernels.cell.dfn import FARADAY, DFNModel
from ionscale.kernels.cell.parameters import load_parameter_set

COARSE = dict(points=(8, 6, 8), r_points=(8, 8))


@pytest.fixture(scope="module")
def chen():
    return load_parameter_set("Chen2020")


def _charge_balance_error(model, r, p):
    """(Li moved out of the negative particles as charge) / (I t) - 1."""
    k = np.arange(model.Nrn)
    w = ((k + 1) ** 3 - k ** 3) / model.Nrn ** 3
    sto = lambda y: y[:model.o_sp].reshape(model.Nn, model.Nrn) @ w  # noqa: E731
    moved = (np.sum(model.dx[:model.Nn] * (sto(r.initial_state) - sto(r.final_state)))
             * p["negative_electrode_active_material_volume_fraction"] * p["negative_maximum_concentration_mol_m3"]
             * FARADAY * model.area_m2 / 3600.0)
    return moved / r.capacity_Ah - 1.0


def test_modified_newton_is_as_accurate_as_petsc_newton_with_few_jacobians(chen):
    new, old, ref = DFNModel(chen, **COARSE), DFNModel(chen, **COARSE), DFNModel(chen, **COARSE)
    old.newton = ref.newton = "petsc"
    for c in (0.5, 2.0):
        exact = ref.discharge(c, rtol=1e-9, atol=1e-9)  # the time-discretisation reference
        body = exact.time_s <= 0.98 * exact.time_s[-1]  # the cut-off knee is steep: compare before it
        errors = {}
        for name, model in (("new", new), ("old", old)):
            r = model.discharge(c)
            assert r.reached_cutoff
            assert r.capacity_Ah == pytest.approx(exact.capacity_Ah, rel=2e-6)  # measured <= 7.6e-7
            dv = np.interp(exact.time_s[body], r.time_s, r.voltage_V) - exact.voltage_V[body]
            errors[name] = float(np.sqrt(np.mean(dv ** 2)))
            assert abs(_charge_balance_error(model, r, chen)) < 1e-11
        # the same voltage error at rtol = atol = 1e-6 (measured RMS 0.33 / 0.30 mV at C/2, 0.044 / 0.047 at 2C)
        assert errors["new"] < 1.3 * errors["old"] + 2e-5
        # PETSc's newtonls evaluates a Jacobian per step; the modified Newton one per ~20 steps
        assert old.last_stats["jacobian_evals"] >= old.last_stats["steps"]
        assert new.last_stats["jacobian_evals"] * 5 < new.last_stats["steps"]


def test_kept_factorisation_with_scaled_corrections_keeps_the_charge_balance_exact(chen):
    model = DFNModel(chen, **COARSE)
    model.jacobian_shift_ratio = 5.0 / 3.0  # IDA's window: factorisations kept across shift changes
    r = model.discharge(1.0)
    st = model.last_stats
    assert st["factorisations"] * 2 < st["steps"]  # the stale-shift path was taken
    assert abs(_charge_balance_error(model, r, chen)) < 1e-11


def test_solver_options_select_petscs_newton(chen):
    # a user's snes_* option must reach PETSc's SNES: here it forbids convergence
    model = DFNModel(chen, **COARSE)
    with pytest.raises(Exception, match="failed"):
        model.discharge(1.0, petsc_options={"snes_max_it": 1, "snes_rtol": 1e-15, "snes_atol": 1e-30,
                                            "snes_stol": 1e-30, "ts_max_reject": 3})
    assert model.last_stats["jacobian_evals"] >= 1
