"""Parameter sets for the cell models: JSON files in ``parameters/`` with units in
the key names (``_m``, ``_m2_s``, ``_S_m``, ``_mol_m3``, ``_Ah``, ``_K``, ``_V``);
property functions are strings ``"fn:NAME"`` naming a function of
:mod:`ionscale.kernels.cell.functions`; an OCP may instead be a table
``{"x": [...], "ocv_V": [...]}`` (see :func:`ocp_table`).

Effective electrolyte transport in region k uses the transport efficiency
``B_k = eps_k / tau_k`` with ``tau_k`` the region's tortuosity factor when given,
else Bruggeman ``B_k = eps_k ** b_k`` (i.e. ``tau_k = eps_k ** (1 - b_k)``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ionscale.errors import DeckError, InputDataError
from ionscale.params import suggest

from .functions import FUNCTIONS

PARAMETER_DIR = Path(__file__).resolve().parent / "parameters"

#: physical ranges checked before solving: name pattern -> (low, high, low_open, high_open)
_RANGES = (
    ("separator_porosity", 0.0, 1.0, True, False),  # 1 = no solid (Marquis2019's separator)
    ("porosity", 0.0, 1.0, True, True),
    ("active_material_volume_fraction", 0.0, 1.0, True, True),
    ("tortuosity_factor", 1.0, math.inf, False, True),
    ("transference_number", 0.0, 1.0, True, True),
    ("bruggeman_coefficient", 0.0, math.inf, False, True),
    ("_K", 0.0, math.inf, True, True),
    ("_Ohm", 0.0, math.inf, False, True),
    ("_m", 0.0, math.inf, True, True),
    ("_m2_s", 0.0, math.inf, True, True),
    ("_S_m", 0.0, math.inf, True, True),
    ("_mol_m3", 0.0, math.inf, True, True),
    ("_Ah", 0.0, math.inf, True, True),
    ("thermodynamic_factor", 0.0, math.inf, True, True),
)


def suggest_name(word: str, names) -> str:
    """' (did you mean ...?)' preferring a name that extends the word (a dropped suffix
    such as '_factor' or a unit), else the closest by difflib."""
    names = [n for n in names if not n.startswith("_")]
    longer = sorted((n for n in names if n.startswith(word)), key=len)
    if longer:
        return f" (did you mean '{longer[0]}'?)"
    return suggest(word, names)


def available_sets() -> list[str]:
    return sorted(p.stem for p in PARAMETER_DIR.glob("*.json"))


def _range_of(name):
    for pattern, lo, hi, lo_open, hi_open in _RANGES:
        if pattern.startswith("_") and name.endswith(pattern) or not pattern.startswith("_") and pattern in name:
            return lo, hi, lo_open, hi_open
    return None


def check_value(name: str, value) -> str | None:
    """Return a message if ``value`` is outside the physical range of parameter ``name``."""
    if value is None or isinstance(value, (str, dict)):
        return None
    v = float(value)
    if not math.isfinite(v):
        return f"parameter '{name}' = {value!r} must be finite"
    rng = _range_of(name)
    if rng is None:
        return None
    lo, hi, lo_open, hi_open = rng
    if v < lo or (lo_open and v == lo) or v > hi or (hi_open and v == hi):
        text = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        return f"parameter '{name}' = {v:g} is outside its physical range {text}"
    return None


def load_parameter_set(name: str, overrides: dict | None = None) -> dict:
    """Load set ``name`` (a file stem of ``parameters/`` or a path to a JSON file)
    and apply ``overrides`` (numbers; for ``*_ocp_V`` also an :func:`ocp_table`). Raises DeckError for unknown names or
    out-of-range values (all problems listed), InputDataError for a broken file."""
    path = Path(name)
    if path.suffix != ".json":
        path = PARAMETER_DIR / f"{name}.json"
        if not path.exists():
            raise DeckError(f"unknown parameter set '{name}' (available: {', '.join(available_sets())})"
                            f"{suggest(name, available_sets())}")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputDataError(f"cannot read parameter file {path}: {e}") from None
    values = {k: v for k, v in raw.items() if not k.startswith("_")}
    problems = []
    for k, v in (overrides or {}).items():
        if k not in values:
            problems.append(f"overrides: unknown parameter '{k}'{suggest_name(k, values)}")
        elif isinstance(v, dict) and not k.endswith("_ocp_V"):
            problems.append(f"overrides: only OCP parameters (*_ocp_V) take a table, not '{k}'")
        elif isinstance(values[k], str) and not isinstance(v, (str, dict)):
            problems.append(f"overrides: '{k}' is a function ({values[k]}) and cannot be set to a number")
        else:
            values[k] = v
    for k, v in values.items():
        if isinstance(v, str):
            if not v.startswith("fn:") or v[3:] not in FUNCTIONS:
                problems.append(f"parameter '{k}' in {path.name}: unknown function {v!r} "
                                f"(expected 'fn:NAME' with NAME one of {', '.join(sorted(FUNCTIONS))})"
                                f"{suggest(v[3:], FUNCTIONS)}")
            continue
        msg = check_value(k, v)
        if msg:
            problems.append(msg)
    if problems:
        raise DeckError(problems)
    values["_name"] = path.stem
    return values


def function(values: dict, key: str):
    """The compiled function a ``"fn:NAME"`` parameter refers to (None for an OCP table)."""
    v = values[key]
    return None if isinstance(v, dict) else FUNCTIONS[v[3:]]


def ocp_table(x, ocv, name: str) -> dict:
    """Validated OCP table ``{"x": stoichiometry, "ocv_V": volts}`` for parameter
    ``name`` (linear interpolation, constant beyond the ends). Raises
    InputDataError naming the parameter when the arrays cannot be used."""
    x = np.asarray(x, dtype=float).ravel()
    v = np.asarray(ocv, dtype=float).ravel()
    problem = None
    if x.size != v.size:
        problem = f"stoichiometry and OCV arrays differ in length ({x.size} vs {v.size})"
    elif x.size < 2:
        problem = "needs at least 2 points"
    elif not (np.all(np.isfinite(x)) and np.all(np.isfinite(v))):
        problem = "contains NaN or inf"
    elif np.any(np.diff(x) <= 0):
        problem = "stoichiometry must be strictly increasing"
    elif x[0] < 0 or x[-1] > 1:
        problem = f"stoichiometry must lie in [0, 1], got [{x[0]:g}, {x[-1]:g}]"
    if problem:
        raise InputDataError(f"OCP table for '{name}': {problem}")
    return {"x": x, "ocv_V": v}


def ocp_callable(values: dict, key: str):
    """Python-callable OCP (compiled function or table interpolation)."""
    v = values[key]
    if isinstance(v, dict):
        x, u = v["x"], v["ocv_V"]
        return lambda sto: float(np.interp(sto, x, u))
    return FUNCTIONS[v[3:]]


def transport_efficiency(values: dict, region: str) -> float:
    """``eps / tau`` for region 'negative_electrode' | 'separator' | 'positive_electrode'."""
    eps = values[f"{region}_porosity"]
    tau = values.get(f"{region}_tortuosity_factor")
    if tau is None:
        return eps ** values[f"{region}_bruggeman_coefficient"]
    return eps / tau
