"""SPMe (linear, Marquis 2019 form): salt conservation, the C/20 limit, and the
hierarchy SPM -> SPMe -> DFN at 1C (the electrolyte correction removes most of
the SPM's error); the ``spme`` stage."""
from __future__ import annotations

import numpy as np
import pytest

from ionscale.kernels.cell.dfn import DFNModel
from ionscale.kernels.cell.parameters import load_parameter_set
from ionscale.kernels.cell.spm import SPMeModel, SPMModel
from ionscale.kernels.cell.stages import SPMe
from ionscale.stage import StageInputs

pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def chen():
    return load_parameter_set("Chen2020")


def _rms(ref, r):
    keep = ref.time_s <= min(ref.time_s[-1], r.time_s[-1])
    dv = np.interp(ref.time_s[keep], r.time_s, r.voltage_V) - ref.voltage_V[keep]
    return float(np.sqrt(np.mean(dv ** 2)))


def test_spme_between_spm_and_dfn(chen):
    dfn = DFNModel(chen, points=(10, 8, 10), r_points=(10, 10))
    spme = SPMeModel(chen, r_points=(10, 10), points=(10, 8, 10))
    spm = SPMModel(chen, r_points=(10, 10))
    slow = dfn.discharge(0.05)
    r = spme.discharge(0.05)
    assert _rms(slow, r) < 1e-3 and r.capacity_Ah == pytest.approx(slow.capacity_Ah, rel=1e-3)
    ref = dfn.discharge(1.0)
    r_e, r_0 = spme.discharge(1.0), spm.discharge(1.0)
    assert r_e.reached_cutoff
    assert _rms(ref, r_e) < 0.2 * _rms(ref, r_0)  # measured 5.6 vs 53.7 mV
    assert _rms(ref, r_e) < 10e-3
    assert abs(r_e.capacity_Ah - ref.capacity_Ah) < 0.2 * abs(r_0.capacity_Ah - ref.capacity_Ah)
    # salt is conserved by the zero-flux electrolyte (the two electrode sources cancel)
    s0, s1 = spme.salt_inventory(r_e.initial_state), spme.salt_inventory(r_e.final_state)
    assert abs(s1 - s0) / s0 < 1e-10


def test_spme_stage(comm):
    params = dict(parameter_set="Chen2020", overrides={}, negative_ocp_table=None, positive_ocp_table=None,
                  c_rates=[0.5, 1.0], protocol="constant_current", cutoff_V=None, points=[8, 6, 8], r_points=[8, 8],
                  rtol=1e-6, atol=1e-6, plot=False, petsc={}, positive_ocp_table_scale=1.0,
                  positive_ocp_table_shift_V=0.0)
    out = SPMe("spme").run(comm, StageInputs(), params)
    direct = SPMeModel(load_parameter_set("Chen2020"), r_points=(8, 8), points=(8, 6, 8)).discharge(1.0)
    assert out["capacity_Ah"][1] == pytest.approx(direct.capacity_Ah, rel=1e-9)
    assert out["capacity_Ah"][0] > out["capacity_Ah"][1]
