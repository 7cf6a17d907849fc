"""Parameter sets by name: Marquis2019 next to Chen2020 (same keys, its own functions),
physical ranges (a separator may be pure electrolyte, an electrode may not)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ionscale.errors import DeckError
from ionscale.kernels.cell.dfn import DFNModel
from ionscale.kernels.cell.functions import graphite_mcmb2528_ocp_Dualfoil1998, lico2_ocp_Dualfoil1998
from ionscale.kernels.cell.parameters import PARAMETER_DIR, available_sets, load_parameter_set


def test_sets_share_their_keys():
    assert {"Chen2020", "Marquis2019"} <= set(available_sets())
    files = sorted(PARAMETER_DIR.glob("*.json"))
    keys = [{k for k in json.loads(p.read_text()) if not k.startswith("_")} for p in files]
    assert all(k == keys[0] for k in keys)


def test_marquis2019_open_circuit_and_conservation():
    p = load_parameter_set("Marquis2019")
    model = DFNModel(p, points=(6, 4, 6), r_points=(6, 6))
    y = model.consistent_algebraic(model.initial_state(), 0.0)
    sn = p["initial_negative_concentration_mol_m3"] / p["negative_maximum_concentration_mol_m3"]
    sp_ = p["initial_positive_concentration_mol_m3"] / p["positive_maximum_concentration_mol_m3"]
    assert model.voltage(y) == pytest.approx(lico2_ocp_Dualfoil1998(sp_) - graphite_mcmb2528_ocp_Dualfoil1998(sn),
                                             abs=1e-10)
    r = model.discharge(1.0)
    assert r.reached_cutoff and r.voltage_V[-1] == pytest.approx(3.105, abs=1e-6)
    s0, e0 = model.lithium_inventory(r.initial_state)
    s1, e1 = model.lithium_inventory(r.final_state)
    assert abs((s1 + e1) - (s0 + e0)) / (s0 + e0) < 1e-10
    # the nominal capacity (0.68 A h) is what a 1C discharge roughly delivers
    assert r.capacity_Ah == pytest.approx(0.68, rel=0.05)


def test_porosity_of_one_only_for_the_separator():
    assert load_parameter_set("Chen2020", {"separator_porosity": 1.0})["separator_porosity"] == 1.0
    with pytest.raises(DeckError, match="positive_electrode_porosity' = 1 is outside"):
        load_parameter_set("Chen2020", {"positive_electrode_porosity": 1.0})
    with pytest.raises(DeckError, match="separator_porosity' = 1.1 is outside"):
        load_parameter_set("Chen2020", {"separator_porosity": 1.1})
    assert np.isfinite(DFNModel(load_parameter_set("Marquis2019"), points=(3, 3, 3), r_points=(3, 3)).geo).all()


def test_series_resistance_shifts_the_voltage_by_i_r():
    base = DFNModel(load_parameter_set("Chen2020"), points=(6, 4, 6), r_points=(6, 6))
    res = DFNModel(load_parameter_set("Chen2020", {"contact_resistance_Ohm": 0.01}), points=(6, 4, 6), r_points=(6, 6))
    a, b = base.discharge(1.0), res.discharge(1.0)
    assert b.voltage_V[0] - a.voltage_V[0] == pytest.approx(-5.0 * 0.01, rel=1e-6)  # 5 A x 10 mOhm
    assert b.voltage_V[-1] == pytest.approx(2.5, abs=1e-6) and b.capacity_Ah < a.capacity_Ah
    # a voltage hold holds the terminal voltage; the electrode sits I R above it (discharge current)
    from ionscale.kernels.cell.protocol import parse_protocol
    r = res.run_protocol(parse_protocol([{"cv": "4.0V", "until": "1h"}], res.one_c_A))
    np.testing.assert_allclose(r.voltage_V, 4.0, atol=1e-9)
    y = r.final_state
    electrode = y[res.o_psp + res.Np - 1] * 1.5 - 0.5 * y[res.o_psp + res.Np - 2]
    assert electrode - 4.0 == pytest.approx(r.current_A[-1] * 0.01, rel=1e-6)  # V = phi_s(L) - I R
    with pytest.raises(DeckError, match="contact_resistance_Ohm' = -1 is outside"):
        load_parameter_set("Chen2020", {"contact_resistance_Ohm": -1.0})
