"""Step protocols (cc / cv / rest) of the DFN: grammar and validation, events located
on the limits, the voltage held exactly, charge counted consistently, and the stage."""
from __future__ import annotations

import tempfile

import numpy as np
import pytest

from ionscale.deck import load_deck_text
from ionscale.errors import DeckError
from ionscale.kernels.cell.dfn import FARADAY, DFNModel
from ionscale.kernels.cell.parameters import load_parameter_set
from ionscale.kernels.cell.protocol import parse_protocol, quantity
from ionscale.kernels.cell.stages import DFN
from ionscale.stage import StageInputs

CYCLE = [{"cc": "1C", "until": "3.0V"}, {"rest": "10min"}, {"cc": "-0.5C", "until": "4.2V"},
         {"cv": "4.2V", "until": "C/50"}]


@pytest.fixture(scope="module")
def model():
    return DFNModel(load_parameter_set("Chen2020"), points=(8, 6, 8), r_points=(8, 8))


@pytest.fixture(scope="module")
def cycle(model):
    return model.run_protocol(parse_protocol(CYCLE, model.one_c_A))


def test_quantities_and_grammar():
    assert quantity("C/50") == ("current_C", pytest.approx(0.02))
    assert quantity("-C/2") == ("current_C", -0.5)
    assert quantity("-500mA") == ("current_A", -0.5)
    assert quantity("10min") == ("time", 600.0)
    assert quantity("3600mV") == ("voltage", pytest.approx(3.6))
    steps = parse_protocol([{"cc": "2A", "until": ["3.0V", "30min"]}, {"cv": "4.1V", "until": "0.1A"}], one_c_A=5.0)
    assert steps[0] == {"kind": "cc", "value": 0.4, "v_stop": 3.0, "i_stop": None, "t_max_s": 1800.0}
    assert steps[1]["i_stop"] == pytest.approx(0.02)


@pytest.mark.parametrize("steps, message", [
    ([{"cc": 1.0}], "expected a number with a unit"),
    ([{"cc": "1C", "untill": "3V"}], "unknown key 'untill' \\(did you mean 'until'"),
    ([{"cc": "1C", "cv": "4V"}], "exactly one of cc, cv, rest"),
    ([{"cc": "1C", "until": "C/50"}], "cannot end a cc step"),
    ([{"cv": "4.2V", "until": "4.1V"}], "cannot end a cv step"),
    ([{"rest": "600s", "until": "3V"}], "a rest takes only its duration"),
    ([{"rest": "1C"}], "rest: expected a positive duration"),
    ([], "non-empty list"),
])
def test_bad_protocols_are_rejected_with_the_step_named(steps, message):
    with pytest.raises(ValueError, match=message):
        parse_protocol(steps, one_c_A=5.0)


def test_limits_located_voltage_held_and_current_cut(cycle):
    r = cycle
    assert r.stop_reasons == ["voltage limit", "time limit", "voltage limit", "current limit"]
    ends = [np.flatnonzero(r.step_index == k)[-1] for k in range(4)]
    assert r.voltage_V[ends[0]] == pytest.approx(3.0, abs=1e-6)
    assert r.voltage_V[ends[2]] == pytest.approx(4.2, abs=1e-6)
    hold = r.step_index == 3
    np.testing.assert_allclose(r.voltage_V[hold], 4.2, atol=1e-9)  # the constraint is exact
    i_hold = r.current_A[hold]
    assert i_hold[0] == pytest.approx(-2.5, rel=1e-9)  # continuous with the cc charge
    assert np.all(np.diff(np.abs(i_hold)) <= 0) and abs(i_hold[-1]) < 0.1 * abs(i_hold[0])  # taper
    assert abs(i_hold[-1]) == pytest.approx(5.0 / 50, rel=1e-6)
    rest = r.step_index == 1
    assert np.all(r.current_A[rest] == 0)
    assert r.time_s[ends[1]] - r.time_s[ends[0]] == pytest.approx(600.0, rel=1e-9)
    assert np.all(np.diff(r.voltage_V[rest]) > 0)  # relaxation after a discharge


def test_charge_counted_equals_lithium_moved(model, cycle):
    # net discharged charge (trapezoidal I dt over all steps) = Li that left the negative particles
    def neg_mol(y):
        p = model.params
        k = np.arange(model.Nrn)
        wv = ((k + 1) ** 3 - k ** 3) / model.Nrn ** 3
        sto = y[:model.Nn * model.Nrn].reshape(model.Nn, model.Nrn)
        return np.sum(model.dx[:model.Nn] * 0.75 * p["negative_maximum_concentration_mol_m3"] * (sto @ wv))

    moved = (neg_mol(cycle.initial_state) - neg_mol(cycle.final_state)) * FARADAY * model.area_m2 / 3600.0
    # BDF states vs trapezoidal current: agreement to the time-integration tolerance
    assert moved == pytest.approx(cycle.capacity_Ah[-1], abs=2e-4 * 5.0)
    s0, e0 = model.lithium_inventory(cycle.initial_state)
    s1, e1 = model.lithium_inventory(cycle.final_state)
    assert abs((s1 + e1) - (s0 + e0)) / (s0 + e0) < 1e-10


def test_a_single_cc_step_is_the_constant_current_discharge(model):
    r = model.run_protocol(parse_protocol([{"cc": "1C", "until": "2.5V"}], model.one_c_A))
    d = model.discharge(1.0)
    assert r.capacity_Ah[-1] == pytest.approx(d.capacity_Ah, rel=1e-6)


def test_cv_hold_below_the_rest_voltage_discharges(model):
    # the charged cell rests at ~4.17 V; holding 4.0 V draws a decaying discharge current
    r = model.run_protocol(parse_protocol([{"cv": "4.0V", "until": ["C/20", "2h"]}], model.one_c_A))
    assert r.current_A[0] > 1.0 and abs(r.current_A[-1]) == pytest.approx(0.25, rel=1e-6)


DECK = """
run: {{name: t, output: out}}
stages:
  cell:
    type: dfn
    protocol: {protocol}
"""


def test_protocol_validated_when_the_deck_is_read():
    with pytest.raises(DeckError, match="protocol step 1, until"):
        load_deck_text(DECK.format(protocol="[{cc: 1C, until: 3V}, {cv: 4.2V, until: 3V}]"))
    with pytest.raises(DeckError, match="did you mean 'constant_current'"):
        load_deck_text(DECK.format(protocol="constant_curent"))
    deck = load_deck_text(DECK.format(protocol="[{cc: 1C, until: 3V}, {rest: 60s}]"))
    assert deck is not None



@pytest.mark.mpi
def test_protocol_stage_outputs_identical_on_all_ranks(comm):
    out_dir = comm.bcast(tempfile.mkdtemp(prefix="ionscale_proto_") if comm.rank == 0 else None)
    stage = DFN("cell")
    stage.output_dir = out_dir
    params = dict(parameter_set="Chen2020", overrides={}, negative_ocp_table=None, positive_ocp_table=None,
                  c_rates=[1.0], protocol=CYCLE[:2], cutoff_V=None, points=[8, 6, 8], r_points=[8, 8], rtol=1e-6,
                  atol=1e-6, plot=True, petsc={}, half_cell=False, positive_ocp_table_scale=1.0,
                  positive_ocp_table_shift_V=0.0)
    out = stage.run(comm, StageInputs(), params)
    assert set(out) == set(DFN.outputs)
    curve = out["curves"]["protocol"]
    assert curve["stop_reasons"] == "0: voltage limit, 1: time limit"
    everyone = comm.allgather(curve["voltage_V"])
    for other in everyone[1:]:
        np.testing.assert_array_equal(other, everyone[0])
    assert out["capacity_Ah"][0] == pytest.approx(curve["capacity_Ah"][-1])
    if comm.rank == 0:
        with open(out["plot_path"], "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
