"""The ``dfn`` stage: C-rates shared over ranks with identical outputs, PNG written,
deck-time rejection of unknown / unphysical overrides, and the deck end to end."""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from ionscale.deck import load_deck_text
from ionscale.errors import DeckError
from ionscale.kernels.cell.stages import DFN
from ionscale.stage import StageInputs

pytestmark = pytest.mark.mpi

PARAMS = dict(parameter_set="Chen2020", overrides={"positive_electrode_tortuosity_factor": 2.0},
              negative_ocp_table=None, positive_ocp_table=None,
              c_rates=[0.5, 1.0, 2.0], protocol="constant_current", cutoff_V=None, points=[8, 6, 8],
              r_points=[8, 8], rtol=1e-6, atol=1e-6, plot=True, petsc={}, half_cell=False,
              positive_ocp_table_scale=1.0, positive_ocp_table_shift_V=0.0)


def test_rates_distributed_over_ranks_give_identical_physical_outputs(comm):
    out_dir = comm.bcast(tempfile.mkdtemp(prefix="ionscale_dfn_") if comm.rank == 0 else None)
    stage = DFN("cell")
    stage.output_dir = out_dir
    out = stage.run(comm, StageInputs(), dict(PARAMS))
    assert set(out) == set(DFN.outputs)
    everyone = comm.allgather(np.concatenate([out["capacity_Ah"], out["energy_Wh"]]))
    for other in everyone[1:]:
        np.testing.assert_array_equal(other, everyone[0])
    caps = out["capacity_Ah"]
    assert np.all(np.diff(caps) < 0)  # rate capability: capacity falls with C-rate
    assert np.all(out["reached_cutoff"] == 1)
    for c, cap in zip(PARAMS["c_rates"], caps):
        curve = out["curves"][f"{c:g}C"]
        assert curve["capacity_Ah"][-1] == pytest.approx(cap, rel=1e-12)
        assert curve["voltage_V"][-1] == pytest.approx(2.5, abs=1e-6)
    assert out["transport_efficiency"]["positive_electrode"] == pytest.approx(0.335 / 2.0)
    if comm.rank == 0:
        with open(out["plot_path"], "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


DECK = """
run: {{name: t, output: out}}
stages:
  cell:
    type: dfn
    overrides: {{{override}}}
    c_rates: [1]
"""


@pytest.mark.parametrize("override, message", [
    ("positive_electrode_tortuosity: 2.0", "did you mean 'positive_electrode_tortuosity_factor'"),
    ("positive_electrode_porosity: 1.5", "positive_electrode_porosity' = 1.5 is outside its physical range"),
    ("separator_tortuosity_factor: 0.5", "separator_tortuosity_factor' = 0.5 is outside"),
    ("thermodynamic_factor: fn:electrolyte_TDF_Landesfeind", "did you mean 'electrolyte_TDF_EC_EMC_3_7_Landesfeind2019'"),
    ("thermodynamic_factor: fn:graphite_LGM50_ocp_Chen2020", "is not a function of this kind"),
    ("separator_porosity: fn:electrolyte_TDF_EC_EMC_3_7_Landesfeind2019",
     "'separator_porosity' is a number parameter and cannot be set to a function"),
])
def test_overrides_checked_when_the_deck_is_read(override, message):
    with pytest.raises(DeckError, match=message):
        load_deck_text(DECK.format(override=override))


def test_spm_stage_shares_parameters_and_matches_the_spm_kernel(comm):
    from ionscale.kernels.cell.parameters import load_parameter_set
    from ionscale.kernels.cell.spm import SPMModel
    from ionscale.kernels.cell.stages import SPM

    out_dir = comm.bcast(tempfile.mkdtemp(prefix="ionscale_spm_") if comm.rank == 0 else None)
    stage = SPM("spm")
    stage.output_dir = out_dir
    params = {k: v for k, v in PARAMS.items() if k not in ("points", "half_cell")}
    params.update(c_rates=[1.0, 2.0], overrides={})
    out = stage.run(comm, StageInputs(), params)
    direct = SPMModel(load_parameter_set("Chen2020"), r_points=(8, 8)).discharge(2.0)
    assert out["capacity_Ah"][1] == pytest.approx(direct.capacity_Ah, rel=1e-9)
    assert out["capacity_Ah"][0] > out["capacity_Ah"][1]


def test_ocp_table_inputs_replace_the_ocp_function(comm):
    from ionscale.kernels.cell.functions import nmc_LGM50_ocp_Chen2020

    x = np.linspace(0.2, 1.0, 401)
    shifted = np.array([nmc_LGM50_ocp_Chen2020(s) for s in x]) + 0.05  # a cathode 50 mV higher
    params = dict(PARAMS, c_rates=[1.0], plot=False)
    base = DFN("cell").run(comm, StageInputs(), dict(params))
    params["positive_ocp_table"] = [x, shifted]
    out = DFN("cell").run(comm, StageInputs(), params)
    v0, v1 = base["curves"]["1C"]["voltage_V"], out["curves"]["1C"]["voltage_V"]
    assert v1[0] - v0[0] == pytest.approx(0.05, abs=2e-4)
    assert out["energy_Wh"][0] > base["energy_Wh"][0]


def test_function_overrides_equal_the_parameter_set_that_names_them(comm):
    """overrides: {cation_transference_number: fn:..., thermodynamic_factor: fn:...} on Chen2020 is the
    bundled Chen2020_Landesfeind2019 set: identical discharge."""
    fn = {"cation_transference_number": "fn:electrolyte_transference_number_EC_EMC_3_7_Landesfeind2019",
          "thermodynamic_factor": "fn:electrolyte_TDF_EC_EMC_3_7_Landesfeind2019"}
    base = dict(PARAMS, c_rates=[1.0], plot=False)
    outs = []
    for params in (dict(base, overrides=fn), dict(base, parameter_set="Chen2020_Landesfeind2019", overrides={}),
                   dict(base, overrides={})):
        assert not DFN.check(params)
        outs.append(DFN("cell").run(comm, StageInputs(), params))
    assert outs[0]["capacity_Ah"][0] == pytest.approx(outs[1]["capacity_Ah"][0], rel=1e-12)
    assert abs(outs[0]["capacity_Ah"][0] - outs[2]["capacity_Ah"][0]) > 1e-4  # the functions change the result
