"""Parameter sets for the cell models: JSON files in ``parameters/`` with units in
the key names (``_m``, ``_m2_s``, ``_S_m``, ``_mol_m3``, ``_Ah``, ``_K``, ``_V``);
property functions are strings ``"fn:NAME"`` naming a function of
:mod:`ionscale.kernels.cell.functions`; an OCP may instead be a table
``{"x": [...], "ocv_V": [...]}`` (see :func:`ocp_table`). The electrolyte's
``cation_transference_number`` and ``thermodynamic_factor`` are a number, ``"fn:NAME"``
(a function of (c_e, T)) or a table ``{"x": c_e [mol/m3], "y": value}`` (see
:func:`electrolyte_number_ids`).

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

from .bpx import bpx_to_values, is_bpx
from .tables import table_problem
from .functions import (ELECTROLYTE_CONDUCTIVITY, ELECTROLYTE_DIFFUSIVITY, EXCHANGE_CURRENT, FARADAY, FUNCTIONS, OCP,
                        R_GAS, S_EA_CONDUCTIVITY, S_EA_DIFFUSIVITY, S_EA_RATE_N, S_LEN_CONDUCTIVITY, S_LEN_DIFFUSIVITY,
                        S_LEN_ENTROPIC_N, S_LEN_TDF, S_LEN_TRANSFERENCE, S_RATE_N, S_T_REF, TAB_CONDUCTIVITY,
                        TAB_DIFFUSIVITY, TAB_ENTROPIC_N, TAB_MIN_COLUMNS, TAB_OCP_N, TAB_ROWS, TAB_SCALARS, TAB_TDF,
                        TAB_TRANSFERENCE, THERMODYNAMIC_FACTOR, TRANSFERENCE_NUMBER, function_id,
                        thermodynamic_factor_of, transference_number_of)

PARAMETER_DIR = Path(__file__).resolve().parent / "parameters"

#: physical ranges checked before solving: name pattern -> (low, high, low_open, high_open)
_RANGES = (
    ("entropic_change", -math.inf, math.inf, True, True),  # dU/dT [V/K] of either sign (before "_K")
    ("heat_transfer_coefficient", 0.0, math.inf, False, True),  # 0 = adiabatic (before "_K")
    ("number_of_electrodes_in_parallel", 1.0, math.inf, False, True),
    ("_kg_m3", 0.0, math.inf, True, True),
    ("_m3", 0.0, math.inf, True, True),
    ("_m2", 0.0, math.inf, True, True),
    ("activation_energy", 0.0, math.inf, False, True),  # Arrhenius Ea [J/mol], 0 = no T dependence
    ("current_collector_thickness", 0.0, math.inf, False, True),  # 0 = no collector (before "_m")
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
    """Names of the bundled sets: JSON stems of ``parameters/`` and ``bpx/<stem>`` of ``parameters/bpx/``."""
    return (sorted(p.stem for p in PARAMETER_DIR.glob("*.json"))
            + sorted(f"bpx/{p.stem}" for p in (PARAMETER_DIR / "bpx").glob("*.json")))


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
    """Load set ``name`` (a file stem of ``parameters/``, ``bpx/<stem>`` for a BPX file of
    ``parameters/bpx/``, or a path to a JSON file: this package's format or a BPX file,
    told apart by BPX's top-level ``Header`` / ``Parameterisation`` blocks, see
    :mod:`ionscale.kernels.cell.bpx`) and apply ``overrides`` (numbers; for ``*_ocp_V``
    also an :func:`ocp_table`). Raises DeckError for unknown names or out-of-range values
    (all problems listed), InputDataError for a broken or unsupported file."""
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
    if is_bpx(raw):
        raw = bpx_to_values(raw, path)
    values = {k: v for k, v in raw.items() if not k.startswith("_")}
    meta = {k: v for k, v in raw.items() if k.startswith("_bpx")}
    problems = []
    for k, v in (overrides or {}).items():
        if k not in values and k in OPTIONAL_KEYS:
            values[k] = v  # a set may lack these (BPX: no collectors); an override adds them
        elif k not in values:
            problems.append(f"overrides: unknown parameter '{k}'{suggest_name(k, values)}")
        elif isinstance(v, dict) and not k.endswith("_ocp_V") and k not in ELECTROLYTE_NUMBER_KEYS:
            problems.append(f"overrides: only OCP parameters (*_ocp_V), {' and '.join(ELECTROLYTE_NUMBER_KEYS)} "
                            f"take a table, not '{k}'")
        elif isinstance(v, str) and not isinstance(values[k], (str, dict)) and k not in ELECTROLYTE_NUMBER_KEYS:
            problems.append(f"overrides: '{k}' is a number parameter and cannot be set to a function ({v!r})")
        elif isinstance(values[k], (str, dict)) and not isinstance(v, (str, dict)) and k not in _CONSTANT_ALLOWED:
            shown = values[k] if isinstance(values[k], str) else "a table"
            problems.append(f"overrides: '{k}' is a function ({shown}) and cannot be set to a number")
        else:
            values[k] = v
    for k, v in values.items():
        if isinstance(v, str):
            if k.endswith("_exchange_current_density_A_m2") and v == RATE_CONSTANT:
                continue
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
    values.update(meta)
    values["_name"] = path.name[:-5] if path.name.endswith(".json") else path.stem
    return values


def function(values: dict, key: str):
    """The compiled function a ``"fn:NAME"`` parameter refers to (None for a table,
    a number or the rate-constant kinetics: see :func:`pack_properties`)."""
    v = values[key]
    return FUNCTIONS[v[3:]] if isinstance(v, str) and v.startswith("fn:") else None


def ocp_table(x, ocv, name: str) -> dict:
    """Validated OCP table ``{"x": stoichiometry, "ocv_V": volts}`` for parameter
    ``name`` (linear interpolation, constant beyond the ends). Raises
    InputDataError naming the parameter when the arrays cannot be used."""
    x = np.asarray(x, dtype=float).ravel()
    v = np.asarray(ocv, dtype=float).ravel()
    problem = table_problem(x, v)
    if problem is None and np.any(np.diff(x) <= 0):
        problem = "stoichiometry must be strictly increasing"
    if problem is None and (x[0] < 0 or x[-1] > 1):
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


#: parameters a set may lack (their absence has a documented meaning) and an override may add:
#: current collectors (no thickness = no collector layer: no series resistance, no heat capacity;
#: density / specific heat needed by the lumped thermal model only for a collector of thickness > 0)
OPTIONAL_KEYS = tuple(f"{s}_current_collector_{prop}" for s in ("negative", "positive")
                      for prop in ("thickness_m", "conductivity_S_m", "density_kg_m3", "specific_heat_J_kg_K")) + (
    "contact_resistance_Ohm",)
#: value of ``*_exchange_current_density_A_m2`` selecting j0 from ``*_reaction_rate_constant_mol_m2_s``
RATE_CONSTANT = "rate_constant"
#: function-valued parameters that an override may also set to a constant number
_CONSTANT_ALLOWED = ("electrolyte_diffusivity_m2_s", "electrolyte_conductivity_S_m", "cation_transference_number",
                     "thermodynamic_factor")
#: electrolyte properties that are a number, "fn:NAME" of (c_e, T) or an {x: c_e, y} table
ELECTROLYTE_NUMBER_KEYS = ("cation_transference_number", "thermodynamic_factor")
_ELECTROLYTE_NUMBER_SLOTS = ((TRANSFERENCE_NUMBER, TAB_TRANSFERENCE, S_LEN_TRANSFERENCE, (0.0, 1.0)),
                             (THERMODYNAMIC_FACTOR, TAB_TDF, S_LEN_TDF, (0.0, math.inf)))
PROPERTY_KEYS = ("negative_electrode_ocp_V", "positive_electrode_ocp_V", "negative_exchange_current_density_A_m2",
                 "positive_exchange_current_density_A_m2", "electrolyte_diffusivity_m2_s",
                 "electrolyte_conductivity_S_m")
_CATEGORIES = (OCP, OCP, EXCHANGE_CURRENT, EXCHANGE_CURRENT, ELECTROLYTE_DIFFUSIVITY, ELECTROLYTE_CONDUCTIVITY)


def pack_properties(values: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(fids, tab)`` handed to the compiled kernels (layout in functions.py, TAB_*):
    function ids of PROPERTY_KEYS (-1: table / generic form) plus the OCP table lengths,
    and the packed tables and scalars. Property values may be

    * ``"fn:NAME"``: a compiled function (its own temperature dependence);
    * OCP: ``{"x": sto, "ocv_V": volts}``;
    * electrolyte D_e / kappa: ``{"x": c_e [mol/m3], "y": value}`` or a number (constant),
      times the Arrhenius factor of ``electrolyte_{diffusivity,conductivity}_activation_energy_J_mol``
      (default 0) about ``reference_temperature_K`` (default 298.15 K);
    * exchange current: ``"rate_constant"``: BPX's j0 = F k sqrt(c_e/c_e0 sto (1 - sto)) A(Ea),
      k = ``{side}_reaction_rate_constant_mol_m2_s``, Ea = ``{side}_reaction_rate_activation_energy_J_mol``,
      c_e0 = ``initial_electrolyte_concentration_mol_m3``.

    An OCP entropic change given as a table ``{side}_electrode_ocp_entropic_change_V_K =
    {"x": sto, "y": dU/dT [V/K]}`` (a BPX function) fills slots TAB_ENTROPIC_N/P (for the
    thermal model; see functions.entropic_change_table)."""
    fids = np.full(8, -1, dtype=np.int64)
    fids[6:8] = 2
    tables = {}
    scalars = np.zeros(TAB_MIN_COLUMNS)
    scalars[S_T_REF] = float(values.get("reference_temperature_K", 298.15))
    c_e0 = float(values["initial_electrolyte_concentration_mol_m3"])
    for i, (key, category) in enumerate(zip(PROPERTY_KEYS, _CATEGORIES)):
        v = values[key]
        if isinstance(v, str) and v.startswith("fn:"):
            try:
                fids[i] = function_id(FUNCTIONS[v[3:]], category)
            except (KeyError, ValueError):
                raise DeckError(f"parameter '{key}': {v!r} is not a function of this kind") from None
        elif i < 2:  # OCP table
            if not isinstance(v, dict):
                raise DeckError(f"parameter '{key}': expected 'fn:NAME' or an OCP table, got {v!r}")
            tables[TAB_OCP_N + i] = (np.asarray(v["x"], float), np.asarray(v["ocv_V"], float))
            fids[6 + i] = tables[TAB_OCP_N + i][0].size
        elif i < 4:  # generic kinetics from a rate constant
            side = "negative" if i == 2 else "positive"
            if v != RATE_CONSTANT:
                raise DeckError(f"parameter '{key}': expected 'fn:NAME' or '{RATE_CONSTANT}', got {v!r}")
            c_max = float(values[f"{side}_maximum_concentration_mol_m3"])
            # BPX: j0 = F k sqrt(c_e/c_e0 * c/c_max * (1 - c/c_max)) = k' sqrt(c_e c (c_max - c))
            scalars[S_RATE_N + 2 * (i - 2)] = (FARADAY * float(values[f"{side}_reaction_rate_constant_mol_m2_s"])
                                               / (c_max * math.sqrt(c_e0)))
            scalars[S_EA_RATE_N + 2 * (i - 2)] = float(values.get(f"{side}_reaction_rate_activation_energy_J_mol",
                                                                  0.0))
        else:  # electrolyte transport: table or constant, Arrhenius in T
            slot, s_len, s_ea = ((TAB_DIFFUSIVITY, S_LEN_DIFFUSIVITY, S_EA_DIFFUSIVITY) if i == 4
                                 else (TAB_CONDUCTIVITY, S_LEN_CONDUCTIVITY, S_EA_CONDUCTIVITY))
            if isinstance(v, dict):
                x, y = np.asarray(v["x"], float), np.asarray(v["y"], float)
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                x, y = np.array([0.0, 1.0]), np.full(2, float(v))
            else:
                raise DeckError(f"parameter '{key}': expected 'fn:NAME', a number or a {{x, y}} table, got {v!r}")
            tables[slot] = (x, y)
            scalars[s_len] = x.size
            scalars[s_ea] = float(values.get(key.rsplit("_", 2)[0] + "_activation_energy_J_mol", 0.0))
    for key, (_, slot, s_len, _) in zip(ELECTROLYTE_NUMBER_KEYS, _ELECTROLYTE_NUMBER_SLOTS):
        v = values.get(key)
        if isinstance(v, dict):
            tables[slot] = _electrolyte_number_table(key, v)
            scalars[s_len] = tables[slot][0].size
    for e, side in enumerate(("negative", "positive")):
        v = values.get(f"{side}_electrode_ocp_entropic_change_V_K")
        if isinstance(v, dict):
            tables[TAB_ENTROPIC_N + e] = (np.asarray(v["x"], float), np.asarray(v["y"], float))
            scalars[S_LEN_ENTROPIC_N + e] = tables[TAB_ENTROPIC_N + e][0].size
    m = max([TAB_MIN_COLUMNS] + [x.size for x, _ in tables.values()])
    tab = np.zeros((TAB_ROWS, m))
    for slot, (x, y) in tables.items():
        tab[2 * slot, :x.size] = x
        tab[2 * slot + 1, :x.size] = y
    tab[TAB_SCALARS, :scalars.size] = scalars
    return fids, tab


def particle_diffusivity(values: dict, side: str, T: float | None = None) -> float:
    """D_s of electrode ``side`` at temperature T (default ``temperature_K``):
    ``{side}_particle_diffusivity_m2_s`` times the Arrhenius factor of
    ``{side}_particle_diffusivity_activation_energy_J_mol`` (default 0) about
    ``reference_temperature_K``."""
    T = float(values["temperature_K"]) if T is None else T
    ea = float(values.get(f"{side}_particle_diffusivity_activation_energy_J_mol", 0.0))
    d = float(values[f"{side}_particle_diffusivity_m2_s"])
    if ea == 0.0:
        return d
    T_ref = float(values.get("reference_temperature_K", 298.15))
    return d * math.exp(ea / R_GAS * (1.0 / T_ref - 1.0 / T))


def _electrolyte_number_table(key: str, v: dict) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``{"x": c_e [mol/m3], "y": value}`` table of an ELECTROLYTE_NUMBER_KEYS entry."""
    lo, hi = dict(zip(ELECTROLYTE_NUMBER_KEYS, _ELECTROLYTE_NUMBER_SLOTS))[key][3]
    if set(v) != {"x", "y"}:
        raise DeckError(f"parameter '{key}': a table needs exactly the keys 'x' (c_e [mol/m3]) and 'y', "
                        f"got {sorted(v)}")
    x = np.asarray(v["x"], dtype=float).ravel()
    y = np.asarray(v["y"], dtype=float).ravel()
    problem = table_problem(x, y)
    if problem is None and np.any(np.diff(x) <= 0):
        problem = "c_e (x) must be strictly increasing"
    if problem is None and (np.any(y <= lo) or np.any(y >= hi)):
        problem = f"values must lie in ({lo:g}, {hi:g}), got [{y.min():g}, {y.max():g}]"
    if problem:
        raise InputDataError(f"table for '{key}': {problem}")
    return x, y


def electrolyte_number_ids(values: dict) -> tuple[list[float], list[float]]:
    """How the compiled kernels evaluate t+ and the thermodynamic factor
    (functions.transference_number_of / thermodynamic_factor_of): ids (>= 0 a compiled
    function of (c_e, T), -1 the constant, -2 the packed table) and the constants (nan
    unless constant)."""
    ids, constants = [], []
    for key, (category, _, _, _) in zip(ELECTROLYTE_NUMBER_KEYS, _ELECTROLYTE_NUMBER_SLOTS):
        v = values[key]
        if isinstance(v, str):
            fn = FUNCTIONS.get(v[3:]) if v.startswith("fn:") else None
            if fn is None or fn not in category:
                names = ", ".join(f.py_func.__name__ for f in category)
                raise DeckError(f"parameter '{key}': {v!r} is not a function of this kind (expected 'fn:NAME' "
                                f"with NAME one of {names}, a number or an {{x, y}} table)")
            ids.append(float(function_id(fn, category)))
            constants.append(math.nan)
        elif isinstance(v, dict):
            ids.append(-2.0)
            constants.append(math.nan)
        else:
            ids.append(-1.0)
            constants.append(float(v))
    return ids, constants


def electrolyte_number(values: dict, key: str, c_e: float, T: float) -> float:
    """t+ (``key`` = 'cation_transference_number') or TDF ('thermodynamic_factor') at (c_e, T)."""
    ids, constants = electrolyte_number_ids(values)
    _, tab = pack_properties(values)
    k = ELECTROLYTE_NUMBER_KEYS.index(key)
    of = transference_number_of if k == 0 else thermodynamic_factor_of
    return float(of(int(ids[k]), tab, constants[k], float(c_e), float(T)))
