"""Cycling protocols for the cell models: a list of steps, each a mapping with one
action and optional stop conditions::

    protocol:
      - {cc: 1C, until: 2.5V}          # constant current (> 0 discharge, < 0 charge)
      - {rest: 600s}                   # zero current for a duration
      - {cc: -0.5C, until: 4.2V}       # charge to 4.2 V
      - {cv: 4.2V, until: C/50}        # hold the voltage until |I| falls to C/50
      - {cc: 2A, until: [3.0V, 30min]} # several conditions: the first one met ends the step

Quantities are numbers with a unit suffix: currents ``1C``, ``-0.5C``, ``C/2``,
``-C/20``, ``2A``, ``-500mA``; voltages ``4.2V``, ``3600mV``; durations ``600s``,
``10min``, ``1.5h``. ``until`` takes a voltage (cc), a current magnitude (cv) or a
duration (any step); a rest takes only its duration. A step without a stop
condition ends after 1.5 h at its current (cc, cv: 1.5 h). Parsing returns plain
dicts ``{kind, value, v_stop, i_stop, t_max_s}`` with currents in C-rate units
(1C = the parameter set's nominal capacity in one hour).
"""
from __future__ import annotations

import re

from ionscale.params import Kind, suggest

_ACTIONS = ("cc", "cv", "rest")
_KEYS = _ACTIONS + ("until",)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_C_OVER = re.compile(rf"^([-+]?)C/({_NUMBER})$")
_WITH_UNIT = re.compile(rf"^({_NUMBER})\s*(C|A|mA|V|mV|s|min|h)$")
_SCALE = {"C": ("current_C", 1.0), "A": ("current_A", 1.0), "mA": ("current_A", 1e-3), "V": ("voltage", 1.0),
          "mV": ("voltage", 1e-3), "s": ("time", 1.0), "min": ("time", 60.0), "h": ("time", 3600.0)}


def quantity(text) -> tuple[str, float]:
    """``'1C'`` -> ('current_C', 1.0); ``'C/50'`` -> ('current_C', 0.02); ``'4.2V'`` ->
    ('voltage', 4.2); ``'10min'`` -> ('time', 600.0); ``'2A'`` -> ('current_A', 2.0).
    Raises ValueError for anything else (a bare number has no unit and is refused)."""
    s = str(text).strip().replace(" ", "")
    m = _C_OVER.match(s)
    if m:
        value = 1.0 / float(m.group(2))
        return "current_C", -value if m.group(1) == "-" else value
    m = _WITH_UNIT.match(s)
    if not m:
        raise ValueError(f"cannot read {text!r}: expected a number with a unit, e.g. 1C, C/20, 2A, 4.2V, 600s, "
                         f"10min, 1h")
    kind, scale = _SCALE[m.group(2)]
    return kind, float(m.group(1)) * scale


def parse_protocol(steps, one_c_A: float | None = None) -> list[dict]:
    """Validate and normalise a protocol (list of step mappings). Amperes are turned into
    C-rates with ``one_c_A`` (left as None only for validation). Raises ValueError naming
    the step and key."""
    if not isinstance(steps, (list, tuple)) or not steps:
        raise ValueError("a protocol is a non-empty list of steps such as {cc: 1C, until: 2.5V}")
    out = []
    for k, step in enumerate(steps):
        where = f"protocol step {k}"
        if not isinstance(step, dict):
            raise ValueError(f"{where}: expected a mapping like {{cc: 1C, until: 2.5V}}, got {step!r}")
        for key in step:
            if key not in _KEYS:
                raise ValueError(f"{where}: unknown key '{key}'{suggest(key, _KEYS)} (expected one of cc, cv, rest, "
                                 f"and optionally until)")
        actions = [a for a in _ACTIONS if a in step]
        if len(actions) != 1:
            raise ValueError(f"{where}: needs exactly one of cc, cv, rest (got {', '.join(actions) or 'none'})")
        kind = actions[0]
        try:
            unit, value = quantity(step[kind])
        except ValueError as e:
            raise ValueError(f"{where}, {kind}: {e}") from None

        def current_C(unit_, v, what):
            if unit_ == "current_C":
                return v
            if unit_ == "current_A":
                return None if one_c_A is None else v / one_c_A
            raise ValueError(f"{where}, {what}: expected a current (e.g. 1C, C/20, 2A), got {step[what]!r}")

        parsed = {"kind": kind, "v_stop": None, "i_stop": None, "t_max_s": None}
        if kind == "cc":
            parsed["value"] = current_C(unit, value, "cc")
            if parsed["value"] == 0:
                raise ValueError(f"{where}: cc 0 is a rest; write {{rest: DURATION}}")
        elif kind == "cv":
            if unit != "voltage" or value <= 0:
                raise ValueError(f"{where}, cv: expected a positive voltage (e.g. 4.2V), got {step['cv']!r}")
            parsed["value"] = value
        else:
            if unit != "time" or value <= 0:
                raise ValueError(f"{where}, rest: expected a positive duration (e.g. 600s, 10min), "
                                 f"got {step['rest']!r}")
            parsed["value"], parsed["t_max_s"] = 0.0, value
            if "until" in step:
                raise ValueError(f"{where}: a rest takes only its duration, not 'until'")
        limits = step.get("until", [])
        for lim in (limits if isinstance(limits, (list, tuple)) else [limits]):
            try:
                lunit, lval = quantity(lim)
            except ValueError as e:
                raise ValueError(f"{where}, until: {e}") from None
            if lunit == "time":
                if lval <= 0:
                    raise ValueError(f"{where}, until: a duration must be positive, got {lim!r}")
                parsed["t_max_s"] = lval
            elif lunit == "voltage" and kind == "cc":
                parsed["v_stop"] = lval
            elif lunit in ("current_C", "current_A") and kind == "cv":
                i = current_C(lunit, lval, "until")
                if i is not None and i <= 0:
                    raise ValueError(f"{where}, until: the stop current of a cv step is a positive magnitude, "
                                     f"got {lim!r}")
                parsed["i_stop"] = i
            else:
                raise ValueError(f"{where}, until: {lim!r} cannot end a {kind} step (cc: a voltage or a duration; "
                                 f"cv: a current or a duration)")
        out.append(parsed)
    return out


class ProtocolKind(Kind):
    """Deck kind: 'constant_current' (discharges at the listed c_rates) or a list of steps."""

    name = "'constant_current' or a list of steps ({cc: 1C, until: 2.5V}, {rest: 600s}, {cv: 4.2V, until: C/50})"

    def coerce(self, value, ctx):
        if value == "constant_current":
            return value
        if isinstance(value, str):
            raise ValueError(f"expected 'constant_current' or a list of steps, got {value!r}"
                             f"{suggest(value, ['constant_current'])}")
        parse_protocol(value)
        return list(value)
