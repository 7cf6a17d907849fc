"""BPX (Battery Parameter eXchange, https://bpxstandard.com) import for the cell models.

:func:`load_bpx` validates a BPX JSON file with the ``bpx`` package (the schema: unknown
or missing fields are errors) and converts it into this package's parameter dict (see
:mod:`ionscale.kernels.cell.parameters`); :func:`load_parameter_set` calls it for any
JSON file with top-level ``Header`` and ``Parameterisation`` blocks, and the examples in
``parameters/bpx/`` are available by name as ``bpx/<file stem>``. The mapping follows
PyBaMM's ``ParameterValues.create_from_bpx``::

    eps_s,k = a_k R_k / 3                       (a_k: surface area per unit volume)
    tau_k   = eps_k / B_k                       (B_k: BPX transport efficiency)
    j0_k    = F k_k sqrt(c_e/c_e0 sto (1 - sto)) A(Ea_k)
            = k'_k sqrt(c_e c_s (c_max - c_s)) A(Ea_k),  k'_k = F k_k / (c_max sqrt(c_e0))
    D_s,k(T) = D_s,k,ref A(Ea_Ds,k),  D_e = D_e,ref(c_e) A(Ea_De),  kappa = kappa_ref(c_e) A(Ea_kappa)
    A(Ea)   = exp(Ea / R (1/T_ref - 1/T))
    sto_n,0 = x_min + SOC (x_max - x_min),  sto_p,0 = y_max - SOC (y_max - y_min)
              (BPX's definition; SOC = 1 when the State block gives none, as in PyBaMM)
    electrode area = A_pair N_pairs (height sqrt(A_pair), width N_pairs sqrt(A_pair), so the
              electrode count in parallel is folded into the area and set to 1)

The electrode conductivity is BPX's effective value (no Bruggeman correction), the
thermodynamic factor is 1, the temperature ``temperature_K`` is the State's initial
temperature (else ambient, else reference). Differences from PyBaMM: an initial SOC
given in the file sets the stoichiometries by BPX's linear window above (PyBaMM
re-solves them from the cut-off voltages), and the property functions are tables.

BPX functions (expression strings in x, or ``{"x": [...], "y": [...]}`` tables) become
linear-interpolation tables the numba kernels evaluate: OCP and entropic change over
sto in [0, 1], electrolyte D_e and kappa over c_e in [0, 6 c_e0] (constant beyond).
Expressions are parsed with :mod:`ast` into a vectorised numpy evaluator (never
``eval``): numbers, ``x``, ``+ - * / **``, unary minus and exp, tanh, cosh, sinh, log,
sqrt; anything else is an InputDataError naming the parameter. An expression is
sampled adaptively: intervals are bisected until the linear interpolant at each
midpoint is within ``rtol (|f| + median |f|)`` of the expression (rtol = 1e-7).

Not supported (InputDataError naming the field): blended electrodes, OCP hysteresis
branches, a stoichiometry-dependent particle diffusivity (the DFN's particle operator is
linear with a constant D_s), SPM-only or partial parameterisations, a non-zero
degradation state (LLI / LAM).
"""
from __future__ import annotations

import ast
import json
import math
import warnings
from pathlib import Path

import numpy as np

from ionscale.errors import InputDataError

from .tables import table_problem

#: relative accuracy of the expression tables (see module docstring)
TABLE_RTOL = 1e-7
#: electrolyte property tables span c_e in [0, ELECTROLYTE_RANGE * c_e0]
ELECTROLYTE_RANGE = 6.0
_MAX_TABLE_POINTS = 200_000
_SECTIONS = ("Cell", "Electrolyte", "Negative electrode", "Positive electrode", "Separator", "User-defined")

_FUNCTIONS = {"exp": np.exp, "tanh": np.tanh, "cosh": np.cosh, "sinh": np.sinh, "log": np.log, "sqrt": np.sqrt}
_BINARY = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide, ast.Pow: np.power}


# ---- expressions --------------------------------------------------------------------------

def compile_expression(text: str, name: str):
    """Vectorised callable ``f(x: ndarray) -> ndarray`` of a BPX expression string.
    Raises InputDataError naming parameter ``name`` for anything outside the grammar
    (attribute access, subscripts, unknown names or functions, keywords, ...)."""
    if not isinstance(text, str):
        raise InputDataError(f"BPX parameter '{name}': expected an expression string, got {type(text).__name__}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise InputDataError(f"BPX parameter '{name}': cannot parse expression {text!r} ({e.msg})") from None

    def bad(node, what):
        return InputDataError(f"BPX parameter '{name}': {what} is not allowed in a BPX expression {text!r} "
                              f"(allowed: numbers, x, + - * / **, {', '.join(sorted(_FUNCTIONS))})")

    def build(node):
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise bad(node, f"the constant {node.value!r}")
            value = float(node.value)
            return lambda x: np.full_like(x, value)
        if isinstance(node, ast.Name):
            if node.id != "x":
                raise bad(node, f"the name '{node.id}'")
            return lambda x: x
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            op, left, right = _BINARY[type(node.op)], build(node.left), build(node.right)
            return lambda x: op(left(x), right(x))
        if isinstance(node, (ast.BinOp, ast.UnaryOp)) and not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise bad(node, f"the operator {type(node.op).__name__} in '{ast.unparse(node)}'")
        if isinstance(node, ast.UnaryOp):
            inner = build(node.operand)
            return (lambda x: -inner(x)) if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise bad(node, "a call of something other than a plain function name")
            fn = _FUNCTIONS.get(node.func.id)
            if fn is None:
                raise bad(node, f"the function '{node.func.id}'")
            if node.keywords or len(node.args) != 1:
                raise bad(node, f"'{node.func.id}' with other than one positional argument")
            arg = build(node.args[0])
            return lambda x: fn(arg(x))
        raise bad(node, f"'{ast.unparse(node)}' ({type(node).__name__})")

    evaluate = build(tree.body)

    def f(x):
        with np.errstate(all="ignore"):
            return evaluate(np.asarray(x, dtype=float))

    f.expression = text
    return f


def tabulate(fn, lo: float, hi: float, name: str, rtol: float = TABLE_RTOL, n0: int = 257):
    """Points ``(x, y)`` on [lo, hi] whose linear interpolant matches the vectorised
    ``fn`` to ``rtol (|f| + median |f|)`` at every interval midpoint (bisection from a
    uniform grid of n0 points). Raises InputDataError if ``fn`` is not finite there."""
    x = np.linspace(lo, hi, n0)
    y = fn(x)
    if not np.all(np.isfinite(y)):
        xb = x[~np.isfinite(y)][0]
        raise InputDataError(f"BPX parameter '{name}' is not finite at x = {xb:g} (evaluated on [{lo:g}, {hi:g}])")
    scale = float(np.median(np.abs(y)))
    while True:
        xm = 0.5 * (x[1:] + x[:-1])
        ym = fn(xm)
        if not np.all(np.isfinite(ym)):
            xb = xm[~np.isfinite(ym)][0]
            raise InputDataError(f"BPX parameter '{name}' is not finite at x = {xb:g}")
        err = np.abs(0.5 * (y[1:] + y[:-1]) - ym)
        refine = (err > rtol * (np.abs(ym) + scale)) & (np.diff(x) > 1e-12 * (hi - lo))
        if not refine.any():
            return x, y
        if x.size + np.count_nonzero(refine) > _MAX_TABLE_POINTS:
            raise InputDataError(f"BPX parameter '{name}': more than {_MAX_TABLE_POINTS} points needed to tabulate "
                                 f"it to relative accuracy {rtol:g} on [{lo:g}, {hi:g}] (a singular expression?)")
        x_new = np.concatenate([x, xm[refine]])
        y_new = np.concatenate([y, ym[refine]])
        order = np.argsort(x_new, kind="stable")
        x, y = x_new[order], y_new[order]


def function_table(value, name: str, lo: float, hi: float):
    """Table ``(x, y)`` of a BPX FloatFunctionTable: a number (2-point constant), an
    expression string (sampled on [lo, hi]) or a ``{"x", "y"}`` table (sorted, checked)."""
    if isinstance(value, bool):
        raise InputDataError(f"BPX parameter '{name}': expected a number, expression or table, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InputDataError(f"BPX parameter '{name}' = {value!r} must be finite")
        return np.array([lo, hi], dtype=float), np.full(2, float(value))
    if isinstance(value, str):
        return tabulate(compile_expression(value, name), lo, hi, name)
    x, y = getattr(value, "x", None), getattr(value, "y", None)
    if x is None and isinstance(value, dict):
        x, y = value.get("x"), value.get("y")
    if x is None or y is None:
        raise InputDataError(f"BPX parameter '{name}': expected a number, expression or {{x, y}} table")
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    problem = table_problem(x, y)
    if problem is None:
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        if np.any(np.diff(x) <= 0):
            problem = "repeated x values"
    if problem:
        raise InputDataError(f"BPX table '{name}': {problem}")
    return x, y


# ---- file -> parameter dict -----------------------------------------------------------------

def is_bpx(raw) -> bool:
    return isinstance(raw, dict) and "Header" in raw and "Parameterisation" in raw


def _validation_message(err, path) -> str:
    lines = []
    for e in err.errors():
        parts = [str(p) for p in e["loc"] if not str(p).startswith(("function-", "union[", "json-or-python"))]
        if parts and parts[0] in _SECTIONS:  # bpx validates Parameterisation on its own: restore the path
            parts.insert(0, "Parameterisation")
        loc = " / ".join(parts)
        kind = e.get("type", "")
        if kind == "extra_forbidden":
            lines.append(f"unknown field '{loc}'")
        elif kind == "missing":
            lines.append(f"missing field '{loc}'")
        else:
            lines.append(f"field '{loc}': {e['msg']}")
    # pydantic reports each failed union member; keep the distinct messages in order
    seen = list(dict.fromkeys(lines))
    return f"BPX file {path}: " + "; ".join(seen[:12]) + (f" (+{len(seen) - 12} more)" if len(seen) > 12 else "")


def parse_bpx(raw: dict, path):
    """The validated ``bpx.BPX`` object of a raw BPX dict (InputDataError on schema errors)."""
    try:
        import bpx
        from pydantic import ValidationError
    except ImportError:
        raise InputDataError(f"BPX file {path}: reading BPX needs the optional package 'bpx' "
                             f"(pip install bpx==1.1.1)") from None
    # the bpx package turns expression strings into Python modules and runs them while
    # validating (its grammar admits any function name, e.g. exit(1)): vet them first
    try:
        _check_expressions(raw.get("Parameterisation"), "Parameterisation")
    except InputDataError as e:
        raise InputDataError(f"BPX file {path}: {e}") from None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = bpx.parse_bpx_obj(raw)
    except ValidationError as e:
        raise InputDataError(_validation_message(e, path)) from None
    except Exception as e:  # noqa: BLE001 - the validators evaluate the file's functions
        raise InputDataError(f"BPX file {path}: {type(e).__name__}: {e}") from None
    return model, [str(w.message) for w in caught]


def _check_expressions(block, where):
    """InputDataError naming the field for any expression string outside the grammar."""
    if isinstance(block, dict):
        for k, v in block.items():
            if isinstance(v, str) and k != "description":
                compile_expression(v, f"{where} / {k}")
            else:
                _check_expressions(v, f"{where} / {k}")


def load_bpx(path) -> dict:
    """Parameter dict (this package's keys, see parameters.py) of BPX file ``path``."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputDataError(f"cannot read BPX file {path}: {e}") from None
    if not is_bpx(raw):
        raise InputDataError(f"{path} is not a BPX file (no top-level 'Header' and 'Parameterisation' blocks)")
    values = bpx_to_values(raw, path)
    values["_name"] = path.name[:-len(".json")] if path.name.endswith(".json") else path.stem
    return values


def bpx_to_values(raw: dict, path="<BPX object>") -> dict:
    """Parameter dict of a raw BPX dict (InputDataError naming the field and ``path``)."""
    model, notes = parse_bpx(raw, path)  # InputDataError without the bpx package
    try:
        return _convert(model, notes, path)
    except InputDataError as e:
        if str(path) in str(e):
            raise
        raise InputDataError(f"BPX file {path}: {e}") from None


def _convert(model, notes, path) -> dict:
    from bpx.schema import ElectrodeBlended, ElectrodeBlendedSPM, Parameterisation

    par = model.parameterisation

    def fail(field, what):
        return InputDataError(f"BPX file {path}: '{field}': {what}")

    if not isinstance(par, Parameterisation):
        raise fail("Header / Model", f"a {model.header.model} parameterisation lacks the electrolyte and porous-"
                                     f"electrode data the DFN/SPMe need (BPX Model 'DFN' or 'SPMe' required)")
    neg, pos, cell, elyte, sep = (par.negative_electrode, par.positive_electrode, par.cell, par.electrolyte,
                                  par.separator)
    for label, el in (("Negative electrode", neg), ("Positive electrode", pos)):
        if isinstance(el, (ElectrodeBlended, ElectrodeBlendedSPM)):
            raise fail(f"Parameterisation / {label} / Particle", "blended electrodes (several active materials) "
                                                                 "are not supported")
        for attr, alias in (("ocp_delith", "OCP (delithiation) [V]"), ("ocp_lith", "OCP (lithiation) [V]"),
                            ("gamma_hys", "OCP hysteresis decay constant")):
            if getattr(el, attr) is not None:
                raise fail(f"Parameterisation / {label} / {alias}", "OCP hysteresis is not supported")
        if not isinstance(el.diffusivity, (int, float)):
            raise fail(f"Parameterisation / {label} / Diffusivity [m2.s-1]",
                       "a stoichiometry-dependent particle diffusivity is not supported (the particle operator "
                       "assumes a constant D_s); give a number")
    state = model.state
    ic = state.initial_conditions if state is not None else None
    te = state.thermal_environment if state is not None else None
    deg = state.degradation if state is not None else None
    if deg is not None and any(v != 0 for v in (deg.lli, deg.lam_positive, deg.lam_negative)):
        raise fail("State / Degradation", "a non-zero degradation state (LLI / LAM) is not supported")
    T_ref = float(cell.reference_temperature) if cell.reference_temperature is not None else 298.15
    T_amb = float(te.ambient_temperature) if te is not None and te.ambient_temperature is not None else T_ref
    T0 = float(ic.initial_temperature) if ic is not None and ic.initial_temperature is not None else T_amb
    c_e0 = (float(ic.initial_electrolyte_concentration)
            if ic is not None and ic.initial_electrolyte_concentration is not None else 1000.0)
    soc = float(ic.initial_soc) if ic is not None and ic.initial_soc is not None else 1.0
    if not 0.0 <= soc <= 1.0:
        raise fail("State / Initial conditions / Initial state-of-charge", f"{soc:g} is outside [0, 1]")

    v = {}
    side = {"negative": neg, "positive": pos}
    v["negative_electrode_thickness_m"] = neg.thickness
    v["separator_thickness_m"] = sep.thickness
    v["positive_electrode_thickness_m"] = pos.thickness
    n_pairs = float(cell.number_of_electrodes)
    root = math.sqrt(cell.electrode_area)
    v["electrode_height_m"] = root
    v["electrode_width_m"] = n_pairs * root
    v["nominal_cell_capacity_Ah"] = cell.nominal_cell_capacity
    for s, el in side.items():
        label = f"Parameterisation / {s.capitalize()} electrode"
        v[f"{s}_electrode_conductivity_S_m"] = el.conductivity
        v[f"{s}_maximum_concentration_mol_m3"] = el.maximum_concentration
        v[f"{s}_particle_diffusivity_m2_s"] = float(el.diffusivity)
        v[f"{s}_particle_diffusivity_activation_energy_J_mol"] = float(el.diffusivity_activation_energy or 0.0)
        v[f"{s}_particle_radius_m"] = el.particle_radius
        v[f"{s}_electrode_porosity"] = el.porosity
        v[f"{s}_electrode_active_material_volume_fraction"] = el.surface_area_per_unit_volume * el.particle_radius / 3
        x, y = function_table(el.ocp, f"{label} / OCP [V]", 0.0, 1.0)
        if x[0] < 0 or x[-1] > 1:
            raise fail(f"{label} / OCP [V]", f"stoichiometry must lie in [0, 1], got [{x[0]:g}, {x[-1]:g}]")
        v[f"{s}_electrode_ocp_V"] = {"x": x, "ocv_V": y}
        v[f"{s}_exchange_current_density_A_m2"] = "rate_constant"
        v[f"{s}_reaction_rate_constant_mol_m2_s"] = el.reaction_rate_constant
        v[f"{s}_reaction_rate_activation_energy_J_mol"] = float(el.reaction_rate_constant_activation_energy or 0.0)
        if el.dudt is not None:
            x, y = function_table(el.dudt, f"{label} / Entropic change coefficient [V.K-1]", 0.0, 1.0)
            # a number, or a function of sto packed as a table (functions.entropic_change_table)
            v[f"{s}_electrode_ocp_entropic_change_V_K"] = (float(el.dudt) if isinstance(el.dudt, (int, float))
                                                          else {"x": x, "y": y})
    for region, contact in (("negative_electrode", neg), ("separator", sep), ("positive_electrode", pos)):
        if region == "separator":
            v["separator_porosity"] = contact.porosity
        B = contact.transport_efficiency
        if not 0 < B <= contact.porosity:
            raise fail(f"Parameterisation / {region.replace('_', ' ').capitalize()} / Transport efficiency",
                       f"{B:g} must lie in (0, porosity = {contact.porosity:g}] (tortuosity factor eps/B >= 1)")
        v[f"{region}_bruggeman_coefficient"] = math.log(B) / math.log(contact.porosity)
        v[f"{region}_tortuosity_factor"] = contact.porosity / B
    c_hi = ELECTROLYTE_RANGE * c_e0
    for key, field, alias, ea in (
            ("electrolyte_diffusivity_m2_s", elyte.diffusivity, "Diffusivity [m2.s-1]",
             elyte.diffusivity_activation_energy),
            ("electrolyte_conductivity_S_m", elyte.conductivity, "Conductivity [S.m-1]",
             elyte.conductivity_activation_energy)):
        x, y = function_table(field, f"Parameterisation / Electrolyte / {alias}", 0.0, c_hi)
        v[key] = {"x": x, "y": y}
        v[key.rsplit("_", 2)[0] + "_activation_energy_J_mol"] = float(ea or 0.0)
    v["cation_transference_number"] = elyte.cation_transference_number
    v["thermodynamic_factor"] = 1.0
    v["initial_electrolyte_concentration_mol_m3"] = c_e0
    sto_n = neg.minimum_stoichiometry + soc * (neg.maximum_stoichiometry - neg.minimum_stoichiometry)
    sto_p = pos.maximum_stoichiometry - soc * (pos.maximum_stoichiometry - pos.minimum_stoichiometry)
    v["initial_negative_concentration_mol_m3"] = sto_n * neg.maximum_concentration
    v["initial_positive_concentration_mol_m3"] = sto_p * pos.maximum_concentration
    v["temperature_K"] = T0
    v["reference_temperature_K"] = T_ref
    v["ambient_temperature_K"] = T_amb
    v["lower_voltage_cutoff_V"] = cell.lower_voltage_cutoff
    v["upper_voltage_cutoff_V"] = cell.upper_voltage_cutoff
    v["contact_resistance_Ohm"] = 0.0
    # lumped thermal data (for a thermal model; the isothermal DFN does not use them)
    v["number_of_electrodes_in_parallel"] = 1.0  # folded into the electrode width above
    if cell.external_surface_area is not None:
        v["cell_cooling_surface_area_m2"] = cell.external_surface_area
    if cell.volume is not None:
        v["cell_volume_m3"] = cell.volume
    # absent: adiabatic, as PyBaMM
    v["total_heat_transfer_coefficient_W_m2_K"] = (te.heat_transfer_coefficient if te is not None
                                                   and te.heat_transfer_coefficient is not None else 0.0)
    layers = ("negative_current_collector", "negative_electrode", "separator", "positive_electrode",
              "positive_current_collector")
    if cell.density is not None:  # BPX gives the cell's lumped values: every layer gets them (as PyBaMM)
        v.update({f"{layer}_density_kg_m3": cell.density for layer in layers})
    if cell.specific_heat_capacity is not None:
        v.update({f"{layer}_specific_heat_J_kg_K": cell.specific_heat_capacity for layer in layers})
    ignored = []
    if par.user_defined is not None:
        ignored += [f"User-defined / {k}" for k in par.user_defined.model_dump() if k != "description"]
    if model.validation:
        ignored += [f"Validation / {k}" for k in model.validation]
    v["_bpx_ignored"] = ignored
    v["_bpx_notes"] = list(dict.fromkeys(notes))
    for k, val in v.items():
        if isinstance(val, (int, float)) and not isinstance(val, bool):
            v[k] = float(val)
    from .parameters import check_value
    problems = [m for k, val in v.items() if not k.startswith("_") for m in [check_value(k, val)] if m]
    if problems:
        raise InputDataError(f"BPX file {path}: " + "; ".join(problems))
    return v
