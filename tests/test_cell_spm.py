"""SPM vs DFN sharing Chen2020: they agree at C/20 (electrolyte and ohmic losses
vanish with the current) and part as the rate grows; SPM conserves lithium exactly."""
from __future__ import annotations

import numpy as np
import pytest

from ionscale.kernels.cell.dfn import DFNModel
from ionscale.kernels.cell.parameters import load_parameter_set
from ionscale.kernels.cell.spm import SPMModel


@pytest.fixture(scope="module")
def models():
    p = load_parameter_set("Chen2020")
    return SPMModel(p), DFNModel(p, points=(10, 6, 10))


def _difference(a, b):
    t = b.time_s[b.time_s <= min(a.time_s[-1], b.time_s[-1])]
    return np.interp(t, a.time_s, a.voltage_V) - np.interp(t, b.time_s, b.voltage_V)


def test_spm_and_dfn_agree_at_c_over_20_and_part_at_1c(models):
    spm, dfn = models
    slow = [spm.discharge(0.05), dfn.discharge(0.05)]
    fast = [spm.discharge(1.0), dfn.discharge(1.0)]
    dv_slow, dv_fast = _difference(*slow), _difference(*fast)
    assert np.max(np.abs(dv_slow)) < 5e-3
    assert slow[0].capacity_Ah == pytest.approx(slow[1].capacity_Ah, rel=1e-3)
    # the SPM omits losses, so it sits above the DFN, by more at a higher rate
    assert np.mean(dv_slow) > 0 and np.mean(dv_fast) > 0
    assert np.sqrt(np.mean(dv_fast ** 2)) > 10 * np.sqrt(np.mean(dv_slow ** 2))
    assert fast[0].capacity_Ah > fast[1].capacity_Ah


def test_spm_particle_lithium_follows_the_charge_passed(models):
    spm, _ = models
    r = spm.discharge(1.0)
    p = spm.params
    k = np.arange(spm.Nrn)
    wn = ((k + 1) ** 3 - k ** 3) / spm.Nrn ** 3
    moles_n = lambda y: (p["negative_electrode_active_material_volume_fraction"] * p["negative_electrode_thickness_m"]
                         * spm.cmax[0] * (y[:spm.Nrn] @ wn))
    moved_Ah = (moles_n(r.initial_state) - moles_n(r.final_state)) * 96485.33212 * spm.area_m2 / 3600.0
    assert moved_Ah == pytest.approx(r.capacity_Ah, rel=1e-9)
