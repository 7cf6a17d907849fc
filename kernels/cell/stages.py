"""Stage adapters: ``dfn`` (Doyle-Fuller-Newman) and ``spm``.

``protocol: constant_current`` (default): one discharge per C-rate of ``c_rates``,
distributed over the ranks of the stage communicator. ``protocol: [steps]``: one
cc / cv / rest sequence (see protocol.py) solved on rank 0 and broadcast (c_rates
is then unused). ``half_cell: true``: cathode vs Li metal. Overrides map parameter
names of the set to numbers or to earlier outputs, e.g.
``positive_electrode_tortuosity_factor: tau.tau_x``; names and physical ranges are
checked when the deck is read (literal numbers) and again before solving. An OCP
table from an earlier stage (``positive_ocp_table: [mc.x, mc.ocv_V]``) may be mapped
affinely (``positive_ocp_table_scale``, ``positive_ocp_table_shift_V``).
``thermal: lumped`` (dfn only) adds the cell temperature as an unknown (lumped energy
balance with Newton cooling, see dfn.py); every curve then carries ``temperature_K`` and
``heat_W``.
"""
from __future__ import annotations

import os

import numpy as np

from ionscale.errors import DeckError, SolverDivergedError
from ionscale.params import ListOf, Mapping, OneOf, Output, Param, Ref, Reference, Scalar
from ionscale.petsc_options import unique_prefix
from ionscale.stage import Stage, register

from .protocol import ProtocolKind, parse_protocol
from .parameters import (available_sets, check_value, electrolyte_number_ids, load_parameter_set, ocp_table,
                         pack_properties, suggest_name, transport_efficiency)


def _rate_tag(c):
    return f"{c:g}C"


#: dfn-only parameters (the SPM / SPMe are isothermal)
_THERMAL_PARAMS = ("thermal", "initial_temperature_K", "ambient_temperature_K")


def _temperatures(result, values):
    """Temperature per sample [K] of a result (an isothermal SPM result has none: constant)."""
    temp = getattr(result, "temperature_K", None)
    return np.full(np.asarray(result.time_s).size, float(values["temperature_K"])) if temp is None else temp


@register("dfn")
class DFN(Stage):
    """Doyle-Fuller-Newman (P2D) cell model: discharge curves at several C-rates, or a cc/cv/rest protocol."""

    params = {
        "parameter_set": Param(str, default="Chen2020", doc="parameter set name (kernels/cell/parameters/*.json), "
                               "bpx/<name> for the BPX examples (kernels/cell/parameters/bpx/), or a path to a "
                               "parameter or BPX (Battery Parameter eXchange) JSON file"),
        "overrides": Param(Mapping(OneOf(Scalar(float), Ref(), Scalar(str))), default={},
                           doc="parameter name -> number, earlier output (stage.output) or, for a property "
                               "function, 'fn:NAME' (see ionscale.kernels.cell.functions), e.g. "
                               "positive_electrode_tortuosity_factor: tau.tau_x, "
                               "cation_transference_number: fn:transference_number_Landesfeind2019"),
        "negative_ocp_table": Param(ListOf(Ref(), min_len=2, max_len=2), default=None,
                                    doc="[stoichiometry, OCV] outputs of an earlier stage (e.g. [mc.x, mc.ocv_V]) "
                                        "replacing the negative electrode OCP function"),
        "positive_ocp_table": Param(ListOf(Ref(), min_len=2, max_len=2), default=None,
                                    doc="[stoichiometry, OCV] outputs of an earlier stage (e.g. [mc.x, mc.ocv_V]) "
                                        "replacing the positive electrode OCP function"),
        "positive_ocp_table_scale": Param(float, default=1.0, min=0, min_exclusive=True,
                                          doc="factor applied to the positive OCP table's voltages (a stand-in "
                                              "chemistry's voltage range mapped onto a cathode's)"),
        "positive_ocp_table_shift_V": Param(float, default=0.0, units="V",
                                            doc="added to the positive OCP table's voltages after the scale "
                                                "(table reference electrode -> Li/Li+)"),
        "half_cell": Param(bool, default=False,
                           doc="cathode vs Li metal: a Li foil (Butler-Volmer, j0 from "
                               "lithium_foil_exchange_current_density_A_m2 or PyBaMM's Xu2019 value) replaces the "
                               "negative electrode; voltages are vs Li/Li+"),
        "c_rates": Param(ListOf(Scalar(float), min_len=1), default=[1.0], min=0, min_exclusive=True, max=20,
                         units="1/h", doc="discharge C-rates (1C = nominal capacity in one hour)"),
        "protocol": Param(ProtocolKind(), default="constant_current",
                          doc="'constant_current' (a discharge per C-rate of c_rates) or a list of steps run in "
                              "sequence from the initial state, e.g. [{cc: 1C, until: 2.5V}, {rest: 600s}, "
                              "{cc: -0.5C, until: 4.2V}, {cv: 4.2V, until: C/50}] (currents > 0 discharge; "
                              "see ionscale.kernels.cell.protocol)"),
        "cutoff_V": Param(float, default=None, min=0, min_exclusive=True, units="V",
                          doc="lower cut-off voltage (default: the parameter set's)"),
        "points": Param(ListOf(Scalar(int), min_len=3, max_len=3), default=[20, 20, 20], min=2, max=2000,
                        doc="finite-volume cells in (negative electrode, separator, positive electrode)"),
        "r_points": Param(ListOf(Scalar(int), min_len=2, max_len=2), default=[20, 20], min=3, max=2000,
                          doc="shells in the (negative, positive) particles"),
        "rtol": Param(float, default=1e-6, min=0, max=1, min_exclusive=True, doc="TS relative tolerance"),
        "atol": Param(float, default=1e-6, min=0, max=1, min_exclusive=True, doc="TS absolute tolerance"),
        "plot": Param(bool, default=True, doc="write a PNG of voltage vs capacity per C-rate to the output folder"),
        "petsc": Param(dict, default={}, doc="PETSc options of the time stepper, e.g. {ts_bdf_order: 3}; any "
                       "snes_*, ksp_* or pc_* key switches from the built-in modified Newton to PETSc's SNES so that "
                       "those options take effect"),
        "thermal": Param(str, default="isothermal", choices=("isothermal", "lumped"),
                         doc="'isothermal' (T = temperature_K throughout) or 'lumped': one cell temperature T(t), "
                             "rho_cp_eff V dT/dt = Q - h A_cool (T - T_amb), with Ohmic, irreversible and reversible "
                             "heat (PyBaMM's lumped model; parameters *_density_kg_m3, *_specific_heat_J_kg_K, "
                             "total_heat_transfer_coefficient_W_m2_K, cell_cooling_surface_area_m2, cell_volume_m3)"),
        "initial_temperature_K": Param(float, default=None, min=0, min_exclusive=True, units="K",
                                       doc="initial cell temperature (the temperature when isothermal); default: "
                                           "the set's temperature_K"),
        "ambient_temperature_K": Param(float, default=None, min=0, min_exclusive=True, units="K",
                                       doc="ambient temperature of the lumped model's cooling; default: the set's "
                                           "ambient_temperature_K"),
    }

    outputs = {
        "c_rates": Output("1/h", "C-rates solved, in the order given"),
        "capacity_Ah": Output("A h", "discharge capacity at the cut-off, per C-rate (protocol: net discharged "
                                     "capacity at its end)"),
        "energy_Wh": Output("W h", "discharge energy at the cut-off, per C-rate (protocol: net, integral of V I dt)"),
        "reached_cutoff": Output("1", "1 if the cut-off voltage ended the discharge, 0 for the time limit or "
                                        "electrolyte/particle exhaustion (see curves.*.stop_reason), per C-rate"),
        "stop_reasons": Output("", "why each discharge ended, per C-rate ('1C: cut-off voltage, 2C: ...'; "
                                   "protocol: per step)"),
        "curves": Output("mixed", "per C-rate ('1C', ...): time_s [s], voltage_V [V], capacity_Ah [A h], "
                                  "stop_reason ('cut-off voltage', 'time limit', 'particle surface emptied', "
                                  "'particle surface saturated', 'electrolyte depleted'); for a step protocol one entry 'protocol': time_s, voltage_V, "
                                  "current_A [A, > 0 discharge], capacity_Ah (net discharged), step_index, "
                                  "stop_reasons"),
        "transport_efficiency": Output("1", "effective electrolyte transport efficiency eps/tau per region "
                                              "(unused by the SPM)"),
        "plot_path": Output("", "PNG of voltage vs capacity ('' when plot is false)"),
        "max_temperature_K": Output("K", "highest cell temperature per C-rate (protocol: over the protocol); the "
                                         "constant temperature when isothermal. Curves carry temperature_K [K] per "
                                         "sample and, for thermal: lumped, heat_W [W] (total heat generated)"),
    }

    @classmethod
    def check(cls, params):
        problems = []
        name = params["parameter_set"]
        if not name.endswith(".json") and name not in available_sets():
            from ionscale.params import suggest
            problems.append(("parameter_set", f"unknown parameter set '{name}' (available: "
                                              f"{', '.join(available_sets())}){suggest(name, available_sets())}"))
            return problems
        try:
            base = load_parameter_set(name)
        except DeckError as e:
            return [("parameter_set", str(e))]
        if params.get("thermal", "isothermal") == "lumped":
            if params.get("half_cell"):
                problems.append(("thermal", "thermal: lumped is not available with half_cell: true (no Li-foil heat "
                                            "terms); use thermal: isothermal"))
            from .dfn import THERMAL_KEYS
            missing = [k for k in THERMAL_KEYS if k not in base]
            if missing:
                problems.append(("thermal", f"thermal: lumped needs parameter(s) {', '.join(missing)}, missing from "
                                            f"set '{name}'"))
        for k, v in params["overrides"].items():
            if k not in base:
                problems.append(("overrides", f"unknown parameter '{k}'{suggest_name(k, base)}"))
            elif isinstance(v, str):
                try:  # a function name: the loader checks the name, packing checks the function's kind
                    trial = load_parameter_set(name, {k: v})
                    pack_properties(trial)
                    electrolyte_number_ids(trial)
                except DeckError as e:
                    problems.extend(("overrides", p.message.removeprefix("overrides: ")) for p in e.problems)
            elif not isinstance(v, Reference):
                msg = check_value(k, v)
                if msg:
                    problems.append(("overrides", msg))
        return problems

    model_label = "DFN"

    def make_model(self, values, params):
        from .dfn import DFNModel
        return DFNModel(values, points=params["points"], r_points=params["r_points"], half_cell=params["half_cell"],
                        thermal=params.get("thermal", "isothermal"))

    def run(self, comm, inputs, params):
        overrides = {k: v if isinstance(v, str) else float(np.asarray(v)) for k, v in params["overrides"].items()}
        for side in ("negative", "positive"):
            table = params.get(f"{side}_ocp_table")
            if table is not None:
                key = f"{side}_electrode_ocp_V"
                volts = np.asarray(table[1], dtype=float)
                if side == "positive":
                    volts = params["positive_ocp_table_shift_V"] + params["positive_ocp_table_scale"] * volts
                overrides[key] = ocp_table(table[0], volts, key)
        for key, param in (("temperature_K", "initial_temperature_K"),
                           ("ambient_temperature_K", "ambient_temperature_K")):
            if params.get(param) is not None:
                overrides[key] = float(params[param])
        values = load_parameter_set(params["parameter_set"], overrides)  # range checks before solving
        model = self.make_model(values, params)
        if params["protocol"] != "constant_current":
            return self._run_protocol(comm, model, values, params)
        rates = list(params["c_rates"])
        mine = list(range(comm.rank, len(rates), comm.size))
        local, failures = {}, {}
        prefix = unique_prefix(self.name)
        for i in mine:
            try:
                res = model.discharge(rates[i], cutoff_V=params["cutoff_V"], rtol=params["rtol"], atol=params["atol"],
                                      petsc_options=params["petsc"], prefix=prefix)
            except SolverDivergedError as e:
                failures[i] = str(e)
                res = e.partial
            local[i] = res
        gathered = comm.allgather(({i: (r.time_s, r.voltage_V, r.capacity_Ah, r.energy_Wh, r.reached_cutoff,
                                        r.stop_reason, _temperatures(r, values), r.heat_W)
                                    for i, r in local.items()}, failures))
        curves_by_index, all_failures = {}, {}
        for part, fails in gathered:
            curves_by_index.update(part)
            all_failures.update(fails)
        out_dir = getattr(self, "output_dir", None) or "."
        if all_failures:
            path = os.path.join(out_dir, f"{self.name}_partial_curves.csv")
            if comm.rank == 0:
                os.makedirs(out_dir, exist_ok=True)
                with open(path, "w") as fh:
                    fh.write("c_rate,time_s,voltage_V\n")
                    for i in sorted(curves_by_index):
                        t, v = curves_by_index[i][:2]
                        for a, b in zip(t, v):
                            fh.write(f"{rates[i]:g},{a:.9g},{b:.9g}\n")
            first = min(all_failures)
            raise SolverDivergedError(f"stage {self.name}: {all_failures[first]} (partial curves of all C-rates "
                                      f"kept in {path})")
        curves = {}
        for i, c in enumerate(rates):
            t, v, cap, en, ok, why, temp, heat = curves_by_index[i]
            curves[_rate_tag(c)] = {"time_s": np.asarray(t), "voltage_V": np.asarray(v),
                                    "capacity_Ah": np.asarray(t) * c * model.one_c_A / 3600.0, "stop_reason": why,
                                    "temperature_K": np.asarray(temp)}
            if heat is not None:
                curves[_rate_tag(c)]["heat_W"] = np.asarray(heat)
        plot_path = ""
        if params["plot"]:
            plot_path = os.path.join(out_dir, f"{self.name}_voltage_capacity.png")
            if comm.rank == 0:
                _plot(curves, plot_path, f"{self.name}: {values['_name']} {self.model_label}"
                                         f"{' half-cell (vs Li)' if params.get('half_cell') else ''}")
            comm.Barrier()
        return {
            "c_rates": np.asarray(rates, dtype=float),
            "capacity_Ah": np.array([curves_by_index[i][2] for i in range(len(rates))]),
            "energy_Wh": np.array([curves_by_index[i][3] for i in range(len(rates))]),
            "reached_cutoff": np.array([int(curves_by_index[i][4]) for i in range(len(rates))]),
            "stop_reasons": ", ".join(f"{c:g}C: {curves_by_index[i][5]}" for i, c in enumerate(rates)),
            "curves": curves,
            "transport_efficiency": {r: float(transport_efficiency(values, r))
                                     for r in ("negative_electrode", "separator", "positive_electrode")},
            "plot_path": plot_path,
            "max_temperature_K": np.array([float(np.max(curves_by_index[i][6])) for i in range(len(rates))]),
        }


    def _run_protocol(self, comm, model, values, params):
        """One protocol (list of steps) solved on rank 0, broadcast to all ranks."""
        if not hasattr(model, "run_protocol"):
            raise DeckError(f"stage {self.name}: the {self.model_label} supports only protocol: constant_current")
        steps = parse_protocol(params["protocol"], model.one_c_A)
        out, failure = None, None
        if comm.rank == 0:
            try:
                res = model.run_protocol(steps, rtol=params["rtol"], atol=params["atol"],
                                         petsc_options=params["petsc"], prefix=unique_prefix(self.name))
            except SolverDivergedError as e:
                failure, res = str(e), e.partial
            out = (res.time_s, res.voltage_V, res.current_A, res.capacity_Ah, res.step_index, res.stop_reasons,
                   _temperatures(res, values), res.heat_W)
        out, failure = comm.bcast((out, failure), root=0)
        t, v, i, q, k, reasons, temp, heat = out
        out_dir = getattr(self, "output_dir", None) or "."
        if failure is not None:
            path = os.path.join(out_dir, f"{self.name}_partial_curves.csv")
            if comm.rank == 0:
                os.makedirs(out_dir, exist_ok=True)
                np.savetxt(path, np.column_stack([k, t, v, i]), delimiter=",", header="step,time_s,voltage_V,current_A",
                           comments="")
            raise SolverDivergedError(f"stage {self.name}: {failure} (partial curve kept in {path})")
        curve = {"time_s": t, "voltage_V": v, "current_A": i, "capacity_Ah": q, "step_index": k,
                 "stop_reasons": ", ".join(f"{n}: {r}" for n, r in enumerate(reasons)), "temperature_K": temp}
        if heat is not None:
            curve["heat_W"] = heat
        plot_path = ""
        if params["plot"]:
            plot_path = os.path.join(out_dir, f"{self.name}_protocol.png")
            if comm.rank == 0:
                _plot_protocol(curve, plot_path, f"{self.name}: {values['_name']} {self.model_label}")
            comm.Barrier()
        energy = float(np.sum(0.5 * (v[1:] * i[1:] + v[:-1] * i[:-1]) * np.diff(t)) / 3600.0)
        last = reasons[-1]
        return {
            "c_rates": np.array([s["value"] for s in steps if s["kind"] == "cc"], dtype=float),
            "capacity_Ah": np.array([q[-1]]),
            "energy_Wh": np.array([energy]),
            "reached_cutoff": np.array([int(last in ("voltage limit", "current limit", "voltage limit at start"))]),
            "stop_reasons": curve["stop_reasons"],
            "curves": {"protocol": curve},
            "transport_efficiency": {r: float(transport_efficiency(values, r))
                                     for r in ("negative_electrode", "separator", "positive_electrode")},
            "plot_path": plot_path,
            "max_temperature_K": np.array([float(np.max(temp))]),
        }


@register("spm")
class SPM(DFN):
    """Single particle model (SPM) with the DFN's parameter sets: constant-current discharges at several C-rates."""

    params = {k: v for k, v in DFN.params.items() if k not in ("points", "half_cell") + _THERMAL_PARAMS}
    model_label = "SPM"

    def make_model(self, values, params):
        from .spm import SPMModel
        return SPMModel(values, r_points=params["r_points"])


@register("spme")
class SPMe(DFN):
    """Single particle model with electrolyte (SPMe, linear form), DFN parameter sets: discharges at several C-rates."""

    params = {k: v for k, v in DFN.params.items() if k not in ("half_cell",) + _THERMAL_PARAMS}
    model_label = "SPMe"

    def make_model(self, values, params):
        from .spm import SPMeModel
        return SPMeModel(values, r_points=params["r_points"], points=params["points"])


def _plot_protocol(curve, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    hours = curve["time_s"] / 3600.0
    ax.plot(hours, curve["voltage_V"])
    ax.set_ylabel("terminal voltage [V]")
    ax.set_title(title)
    ax2.plot(hours, curve["current_A"])
    ax2.set_ylabel("current [A] (> 0 discharge)")
    ax2.set_xlabel("time [h]")
    for a in (ax, ax2):
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot(curves, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for tag, c in curves.items():
        ax.plot(c["capacity_Ah"], c["voltage_V"], label=tag)
    ax.set_xlabel("discharge capacity [A h]")
    ax.set_ylabel("terminal voltage [V]")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
