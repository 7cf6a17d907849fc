"""Stage adapter: ``dfn`` (Doyle-Fuller-Newman constant-current discharges at a list of C-rates).

Overrides map parameter names of the set to numbers or to earlier outputs, e.g.
``positive_electrode_tortuosity_factor: tau.tau_x``; names and physical ranges are
checked when the deck is read (literal numbers) and again before solving.
C-rates are distributed over the ranks of the stage communicator.
"""
from __future__ import annotations

import os

import numpy as np

from ionscale.errors import DeckError, SolverDivergedError
from ionscale.params import ListOf, Mapping, OneOf, Output, Param, Ref, Reference, Scalar
from ionscale.petsc_options import unique_prefix
from ionscale.stage import Stage, register

from .parameters import (available_sets, check_value, load_parameter_set, ocp_table, suggest_name,
                         transport_efficiency)


def _rate_tag(c):
    return f"{c:g}C"


@register("dfn")
class DFN(Stage):
    """Doyle-Fuller-Newman (P2D) cell model: constant-current discharge curves at several C-rates."""

    params = {
        "parameter_set": Param(str, default="Chen2020", doc="parameter set name (kernels/cell/parameters/*.json) "
                               "or path to such a JSON file"),
        "overrides": Param(Mapping(OneOf(Scalar(float), Ref())), default={},
                           doc="parameter name -> number or earlier output (stage.output), "
                               "e.g. positive_electrode_tortuosity_factor: tau.tau_x"),
        "negative_ocp_table": Param(ListOf(Ref(), min_len=2, max_len=2), default=None,
                                    doc="[stoichiometry, OCV] outputs of an earlier stage (e.g. [mc.x, mc.ocv_V]) "
                                        "replacing the negative electrode OCP function"),
        "positive_ocp_table": Param(ListOf(Ref(), min_len=2, max_len=2), default=None,
                                    doc="[stoichiometry, OCV] outputs of an earlier stage (e.g. [mc.x, mc.ocv_V]) "
                                        "replacing the positive electrode OCP function"),
        "c_rates": Param(ListOf(Scalar(float), min_len=1), default=[1.0], min=0, min_exclusive=True, max=20,
                         units="1/h", doc="discharge C-rates (1C = nominal capacity in one hour)"),
        "protocol": Param(str, default="constant_current", choices=("constant_current",),
                          doc="cycling protocol"),
        "cutoff_V": Param(float, default=None, min=0, min_exclusive=True, units="V",
                          doc="lower cut-off voltage (default: the parameter set's)"),
        "points": Param(ListOf(Scalar(int), min_len=3, max_len=3), default=[20, 20, 20], min=2, max=2000,
                        doc="finite-volume cells in (negative electrode, separator, positive electrode)"),
        "r_points": Param(ListOf(Scalar(int), min_len=2, max_len=2), default=[20, 20], min=3, max=2000,
                          doc="shells in the (negative, positive) particles"),
        "rtol": Param(float, default=1e-6, min=0, max=1, min_exclusive=True, doc="TS relative tolerance"),
        "atol": Param(float, default=1e-6, min=0, max=1, min_exclusive=True, doc="TS absolute tolerance"),
        "plot": Param(bool, default=True, doc="write a PNG of voltage vs capacity per C-rate to the output folder"),
        "petsc": Param(dict, default={}, doc="PETSc options of the time stepper, e.g. {ts_bdf_order: 3}"),
    }

    outputs = {
        "c_rates": Output("1/h", "C-rates solved, in the order given"),
        "capacity_Ah": Output("A h", "discharge capacity at the cut-off, per C-rate"),
        "energy_Wh": Output("W h", "discharge energy at the cut-off, per C-rate"),
        "reached_cutoff": Output("1", "1 if the cut-off voltage ended the discharge, 0 for the time limit or "
                                        "electrolyte/particle exhaustion (see curves.*.stop_reason), per C-rate"),
        "curves": Output("mixed", "per C-rate ('1C', ...): time_s [s], voltage_V [V], capacity_Ah [A h], "
                                  "stop_reason ('cut-off voltage', 'time limit', 'electrolyte or particle "
                                  "surface exhausted')"),
        "transport_efficiency": Output("1", "effective electrolyte transport efficiency eps/tau per region "
                                              "(unused by the SPM)"),
        "plot_path": Output("", "PNG of voltage vs capacity ('' when plot is false)"),
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
        for k, v in params["overrides"].items():
            if k not in base:
                problems.append(("overrides", f"unknown parameter '{k}'{suggest_name(k, base)}"))
            elif not isinstance(v, Reference):
                msg = check_value(k, v)
                if msg:
                    problems.append(("overrides", msg))
        return problems

    model_label = "DFN"

    def make_model(self, values, params):
        from .dfn import DFNModel
        return DFNModel(values, points=params["points"], r_points=params["r_points"])

    def run(self, comm, inputs, params):
        overrides = {k: float(np.asarray(v)) for k, v in params["overrides"].items()}
        for side in ("negative", "positive"):
            table = params.get(f"{side}_ocp_table")
            if table is not None:
                key = f"{side}_electrode_ocp_V"
                overrides[key] = ocp_table(table[0], table[1], key)
        values = load_parameter_set(params["parameter_set"], overrides)  # range checks before solving
        model = self.make_model(values, params)
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
                                        r.stop_reason)
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
            t, v, cap, en, ok, why = curves_by_index[i]
            curves[_rate_tag(c)] = {"time_s": np.asarray(t), "voltage_V": np.asarray(v),
                                    "capacity_Ah": np.asarray(t) * c * model.one_c_A / 3600.0, "stop_reason": why}
        plot_path = ""
        if params["plot"]:
            plot_path = os.path.join(out_dir, f"{self.name}_voltage_capacity.png")
            if comm.rank == 0:
                _plot(curves, plot_path, f"{self.name}: {values['_name']} {self.model_label}")
            comm.Barrier()
        return {
            "c_rates": np.asarray(rates, dtype=float),
            "capacity_Ah": np.array([curves_by_index[i][2] for i in range(len(rates))]),
            "energy_Wh": np.array([curves_by_index[i][3] for i in range(len(rates))]),
            "reached_cutoff": np.array([int(curves_by_index[i][4]) for i in range(len(rates))]),
            "curves": curves,
            "transport_efficiency": {r: float(transport_efficiency(values, r))
                                     for r in ("negative_electrode", "separator", "positive_electrode")},
            "plot_path": plot_path,
        }


@register("spm")
class SPM(DFN):
    """Single particle model (SPM) with the DFN's parameter sets: constant-current discharges at several C-rates."""

    params = {k: v for k, v in DFN.params.items() if k != "points"}
    model_label = "SPM"

    def make_model(self, values, params):
        from .spm import SPMModel
        return SPMModel(values, r_points=params["r_points"])


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
