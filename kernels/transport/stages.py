"""Stage adapters: ``tortuosity`` (one phase), ``effective_transport`` (multi-phase, tensor, tau_e,
fields) and ``geometry`` (surface areas, TPB, correlation functions, chord lengths)."""
from __future__ import annotations

import numpy as np

from ionscale.errors import InputDataError
from ionscale.log import progress
from ionscale.params import FilePath, Labels, Mapping, OneOf, Output, Param, Ref, Scalar
from ionscale.petsc_options import unique_prefix
from ionscale.stage import Stage, register

from ..imaging.io import read_volume, select_phase
from ..imaging.stages import as_voxel_size, voxel_size_param
from .tortuosity import tortuosity

_DIRS = ("x", "y", "z")


@register("tortuosity")
class Tortuosity(Stage):
    """Tortuosity factor of one phase (or union of phases) of a voxel image by a steady diffusion solve
    (ionscale's voxel multigrid; PETSc's KSP when PETSc options are given)."""

    params = {
        "input": Param(OneOf(Ref(), FilePath()), doc="volume output of an earlier stage (image.volume) or an image file"),
        "phase": Param(Labels(), doc="conducting phase name(s) or label value(s)"),
        "direction": Param(str, default="all", choices=("x", "y", "z", "all"), doc="solve direction(s)"),
        "voxel_size_um": voxel_size_param(default=None),
        "rtol": Param(float, default=1e-8, min=0, max=1, min_exclusive=True,
                      doc="relative residual tolerance of the linear solve"),
        "petsc": Param(dict, default={}, doc="PETSc options for this stage's solver, e.g. {ksp_type: cg, pc_type: gamg} "
                       "(any option, here or on the command line, runs the solve through PETSc's KSP)"),
    }

    @classmethod
    def declared_outputs(cls, params=None):
        d = (params or {}).get("direction", "all")
        dirs = _DIRS if d in (None, "all") else (d,)
        out = {"porosity": Output("1", "volume fraction of the selected phase(s)")}
        for a in dirs:
            out.update({
                f"tau_{a}": Output("1", f"tortuosity factor along {a} (inf if the phase does not percolate)"),
                f"deff_over_d0_{a}": Output("1", f"relative effective diffusivity along {a} (= porosity / tau)"),
                f"percolating_fraction_{a}": Output("1", f"volume fraction of the phase spanning the {a} faces"),
                f"flux_mismatch_{a}": Output("1", "relative inlet/outlet flux difference (convergence check)"),
                f"iterations_{a}": Output("1", "Krylov iterations"),
                f"solve_time_{a}": Output("s", "linear solve wall time"),
            })
        return out

    outputs = {}  # per direction: see declared_outputs

    def run(self, comm, inputs, params):
        if "input" in inputs:
            labels = np.asarray(inputs["input"])
            meta = inputs.siblings("input")
            phases = meta.get("phases", {})
            spacing = params["voxel_size_um"] or meta.get("voxel_size_um", 1.0)
        else:
            labels = read_volume(params["input"])
            phases, spacing = {}, params["voxel_size_um"] or 1.0
        if labels.ndim != 3:
            raise InputDataError(f"stage {self.name}: input must be a 3D volume, got shape {labels.shape}")
        mask = select_phase(labels, params["phase"], phases)
        dirs = list(_DIRS) if params["direction"] == "all" else [params["direction"]]
        results = tortuosity(mask, dirs, comm=comm, spacing=as_voxel_size(spacing), rtol=params["rtol"],
                             petsc_options=params["petsc"], prefix=unique_prefix(self.name),
                             progress=lambda it: progress(it, desc=f"{self.name}: directions", comm=comm))
        out = {"porosity": float(mask.mean())}
        for d, r in results.items():
            out.update({f"tau_{d}": r.tau, f"deff_over_d0_{d}": r.deff,
                        f"percolating_fraction_{d}": r.percolating_fraction,
                        f"flux_mismatch_{d}": r.flux_mismatch, f"iterations_{d}": r.iterations,
                        f"solve_time_{d}": r.solve_time_s})
        return out


# ---------------------------------------------------------------------------------------------
# effective_transport: multi-phase, percolation report, tensor, electrode tortuosity, fields

def _labels_input(stage, inputs, params):
    """(labels, phases, spacing) from a Ref to an image/structure stage or from a file."""
    if "input" in inputs:
        labels = np.asarray(inputs["input"])
        meta = inputs.siblings("input")
        phases = dict(meta.get("phases", {}) or {})
        spacing = params["voxel_size_um"] or meta.get("voxel_size_um", 1.0)
    else:
        labels = read_volume(params["input"])
        phases, spacing = {}, params["voxel_size_um"] or 1.0
    if labels.ndim != 3:
        raise InputDataError(f"stage {stage.name}: input must be a 3D volume, got shape {labels.shape}")
    return labels, phases, as_voxel_size(spacing)


def _modes(params):
    t = (params or {}).get("transport") or {}
    return list(t) if isinstance(t, dict) else []


@register("effective_transport")
class EffectiveTransport(Stage):
    """Multi-phase effective diffusivity/conductivity: tau, MacMullin, Bruggeman, percolation, tensor, tau_e, fields."""

    params = {
        "input": Param(OneOf(Ref(), FilePath()), doc="labelled volume (image.volume) or an image file"),
        "transport": Param(Mapping(Mapping(Scalar(float))),
                           doc="mode name -> {phase: diffusivity}, e.g. {ionic: {pore: 1, cbd: 0.2}, "
                               "electronic: {nmc: 1, cbd: 0.1}}; unlisted phases do not conduct"),
        "direction": Param(str, default="all", choices=("x", "y", "z", "all"), doc="Dirichlet solve direction(s)"),
        "tensor": Param(bool, default=False, doc="also compute the full 3x3 tensor by periodic homogenisation"),
        "electrode": Param(Mapping(), default=None,
                           doc="electrode tortuosity tau_e: {active: phase(s), mode: ionic, axis: x, "
                               "separator: low|high}"),
        "fields": Param(bool, default=False,
                        doc="store concentration and flux fields in the results file, with a <run>_<stage>.xdmf "
                            "sidecar for ParaView"),
        "voxel_size_um": voxel_size_param(default=None),
        "solver": Param(str, default="voxel_mg", choices=("voxel_mg", "hypre", "gamg", "mg"),
                        doc="Dirichlet solves: voxel_mg = ionscale's matrix-free aggregation multigrid with "
                            "flexible CG (fastest, least memory); hypre = CG + BoomerAMG on one stored operator; "
                            "gamg / mg = PETSc GAMG / geometric multigrid on the DMDA. PETSc options select "
                            "PETSc's KSP. Tensor and tau_e solves use hypre unless gamg/mg is chosen"),
        "rtol": Param(float, default=1e-6, min=0, max=1, min_exclusive=True,
                      doc="relative residual tolerance (tightened until the flux agreement holds)"),
        "flux_tol": Param(float, default=1e-4, min=0, max=1, min_exclusive=True,
                          doc="required relative inlet/outlet flux agreement"),
        "petsc": Param(dict, default={}, doc="PETSc options for this stage's solvers (override 'solver')"),
    }
    outputs = {}

    @classmethod
    def declared_outputs(cls, params=None):
        params = params or {}
        d = params.get("direction", "all")
        dirs = _DIRS if d in (None, "all") else (d,)
        out = {}
        for m in _modes(params) or ["<mode>"]:
            out[f"{m}_volume_fraction"] = Output("1", f"volume fraction of the phases conducting in mode {m}")
            out[f"{m}_mean_diffusivity"] = Output("D", "sum_p D_p eps_p (units of the given diffusivities)")
            for a in dirs:
                out.update({
                    f"{m}_tau_{a}": Output("1", f"tortuosity factor along {a}, D_eff = sum_p D_p eps_p / tau"),
                    f"{m}_deff_{a}": Output("D", f"effective diffusivity along {a}"),
                    f"{m}_macmullin_{a}": Output("1", "MacMullin number D_ref / D_eff (D_ref = max phase D)"),
                    f"{m}_bruggeman_{a}": Output("1", "Bruggeman exponent b: D_eff / D_ref = eps^b"),
                    f"{m}_percolating_fraction_{a}": Output("1", f"volume fraction spanning both {a} faces"),
                    f"{m}_dead_end_fraction_{a}": Output("1", f"volume fraction touching one {a} face only"),
                    f"{m}_isolated_fraction_{a}": Output("1", f"volume fraction touching no {a} face"),
                    f"{m}_flux_mismatch_{a}": Output("1", "relative inlet/outlet flux difference"),
                    f"{m}_relative_residual_{a}": Output("1", "final ||b - Ax|| / ||b||"),
                    f"{m}_iterations_{a}": Output("1", "Krylov iterations"),
                    f"{m}_solve_time_{a}": Output("s", "linear solve wall time"),
                    f"{m}_tau_profile_{a}": Output("1", f"tau(x) profile between neighbouring slices along {a}"),
                })
            if params.get("tensor"):
                out[f"{m}_deff_tensor"] = Output("D", "3x3 effective tensor (periodic homogenisation)")
                out[f"{m}_tensor_eigenvalues"] = Output("D", "eigenvalues of the effective tensor")
                out[f"{m}_tau_tensor_diagonal"] = Output("1", "mean(D) / D_eff_ii from the periodic tensor")
        if params.get("electrode"):
            out.update({
                "tau_e": Output("1", "electrode tortuosity factor (blocking electrolyte, low-frequency TLM limit)"),
                "tau_e_through_plane": Output("1", "through-plane tau of the same mode and axis, for comparison"),
                "tau_e_accessible_surface_fraction": Output("1", "active surface reachable from the separator"),
                "tau_e_specific_surface_um": Output("1/um", "active surface in contact with the electrolyte per volume"),
            })
        if params.get("fields"):
            out["fields"] = Output("1", "per mode and direction: concentration (1) and flux_x/y/z (D/um) voxel fields")
            out["fields_xdmf"] = Output("", "XDMF sidecar (ParaView) describing the fields in the results file")
        return out

    @classmethod
    def check(cls, params):
        problems = []
        e = params.get("electrode")
        modes = _modes(params)
        if not modes:
            problems.append(("transport", "give at least one mode, e.g. {ionic: {pore: 1.0}}"))
        if e:
            unknown = set(e) - {"active", "mode", "axis", "separator"}
            if unknown:
                problems.append(("electrode", f"unknown key(s) {sorted(unknown)}; expected active, mode, axis, separator"))
            if "active" not in e:
                problems.append(("electrode", "missing 'active' (active-material phase name(s) or label(s))"))
            if e.get("mode", modes[0] if modes else None) not in modes:
                problems.append(("electrode.mode", f"'{e.get('mode')}' is not one of the transport modes {modes}"))
            if e.get("axis", "x") not in _DIRS:
                problems.append(("electrode.axis", f"expected one of x, y, z, got {e.get('axis')!r}"))
            if e.get("separator", "low") not in ("low", "high"):
                problems.append(("electrode.separator", f"expected low or high, got {e.get('separator')!r}"))
        return problems

    def run(self, comm, inputs, params):
        import os

        from .electrode import electrode_tortuosity
        from .fields import centre_flux, write_xdmf
        from .homogenisation import effective_tensor
        from .multiphase import derived_metrics, phase_diffusivity
        from .percolation import percolation_report
        from .tortuosity import AXES, solve_direction

        labels, phases, spacing = _labels_input(self, inputs, params)
        dirs = list(_DIRS) if params["direction"] == "all" else [params["direction"]]
        out, fields = {}, {}
        through = {}
        for mode, dmap in params["transport"].items():
            Dv = phase_diffusivity(labels, phases, dmap, where=f"stage {self.name}: transport.{mode}")
            conducting = Dv.positive()
            eps = float(conducting.mean())
            mean_d = Dv.mean()
            d_ref = float(Dv.lut.max())
            out[f"{mode}_volume_fraction"] = eps
            out[f"{mode}_mean_diffusivity"] = mean_d
            for d in progress(dirs, desc=f"{self.name}: {mode}", comm=comm):
                axis = AXES[d]
                rep = percolation_report(conducting, axis)
                r = solve_direction(Dv, axis, comm, spacing=spacing, rtol=params["rtol"], flux_tol=params["flux_tol"],
                                    petsc_options=params["petsc"], solver=params["solver"],
                                    prefix=unique_prefix(f"{self.name}_{mode}_{d}"), profile=True,
                                    return_field=params["fields"])
                met = derived_metrics(r.deff, mean_d, d_ref, eps)
                through[(mode, d)] = met["tau"]
                prof = r.profile if r.profile is not None else np.full(labels.shape[axis] - 1, np.inf)
                out.update({f"{mode}_tau_{d}": met["tau"], f"{mode}_deff_{d}": r.deff,
                            f"{mode}_macmullin_{d}": met["macmullin"], f"{mode}_bruggeman_{d}": met["bruggeman"],
                            f"{mode}_percolating_fraction_{d}": rep["percolating"],
                            f"{mode}_dead_end_fraction_{d}": rep["dead_end"],
                            f"{mode}_isolated_fraction_{d}": rep["isolated"],
                            f"{mode}_flux_mismatch_{d}": r.flux_mismatch,
                            f"{mode}_relative_residual_{d}": r.relative_residual,
                            f"{mode}_iterations_{d}": r.iterations, f"{mode}_solve_time_{d}": r.solve_time_s,
                            f"{mode}_tau_profile_{d}": np.asarray(prof, dtype=np.float64)})
                if params["fields"] and comm.rank == 0 and r.field is not None:
                    q = centre_flux(r.field, Dv, spacing, axis_bc=axis)
                    fields[f"{mode}_{d}"] = {"concentration": r.field.astype(np.float32),
                                             **{f"flux_{c}": qq.astype(np.float32) for c, qq in zip("xyz", q)}}
            if params["tensor"]:
                t = effective_tensor(Dv, comm, spacing=spacing, rtol=min(params["rtol"], 1e-8),
                                     petsc_options=params["petsc"], solver=params["solver"],
                                     prefix=unique_prefix(f"{self.name}_{mode}_tensor"))
                out[f"{mode}_deff_tensor"] = t.deff
                out[f"{mode}_tensor_eigenvalues"] = t.eigenvalues
                out[f"{mode}_tau_tensor_diagonal"] = t.tau_diagonal
        e = params["electrode"]
        if e:
            mode = e.get("mode", next(iter(params["transport"])))
            axis_name = e.get("axis", "x")
            Dv = phase_diffusivity(labels, phases, params["transport"][mode], where=f"stage {self.name}: transport.{mode}")
            active = select_phase(labels, e["active"], phases)
            res = electrode_tortuosity(Dv, active, AXES[axis_name], comm, separator=e.get("separator", "low"),
                                       spacing=spacing, rtol=min(params["rtol"], 1e-8), petsc_options=params["petsc"],
                                       solver=params["solver"], prefix=unique_prefix(f"{self.name}_tau_e"))
            tp = through.get((mode, axis_name))
            if tp is None:
                tp = solve_direction(Dv, AXES[axis_name], comm, spacing=spacing, rtol=params["rtol"],
                                     flux_tol=params["flux_tol"], petsc_options=params["petsc"],
                                     solver=params["solver"], prefix=unique_prefix(f"{self.name}_tau_e_tp"))
                tp = Dv.mean() / tp.deff if tp.deff > 0 else float("inf")
            out.update({"tau_e": res.tau_e, "tau_e_through_plane": float(tp),
                        "tau_e_accessible_surface_fraction": res.accessible_surface_fraction,
                        "tau_e_specific_surface_um": res.surface_area / (labels.size * float(np.prod(spacing)))})
        if params["fields"]:
            # the arrays go into this run's results file (<output>/<run>.h5, or a sweep case's file),
            # group /<stage>/fields; the XDMF sidecar next to that file points there, so ParaView
            # opens them directly
            results = getattr(self, "results_path", None) or os.path.join(self.output_dir, f"{self.run_name}.h5")
            xdmf = f"{os.path.splitext(results)[0]}_{self.name}.xdmf"
            if comm.rank == 0:
                write_xdmf(xdmf, os.path.basename(results), fields, spacing, root=f"/{self.name}/fields")
            out["fields"] = fields if comm.rank == 0 else {}
            out["fields_xdmf"] = xdmf
        return out


# ---------------------------------------------------------------------------------------------
@register("geometry")
class Geometry(Stage):
    """Geometry metrics of a labelled image: volume fractions, surface areas, TPB, S2(r), chord lengths."""

    params = {
        "input": Param(OneOf(Ref(), FilePath()), doc="labelled volume (image.volume) or an image file"),
        "voxel_size_um": voxel_size_param(default=None),
        "triple_phases": Param(Labels(), default=None,
                               doc="three phases for the triple-phase-boundary density (default: the three phases "
                                   "of a 3-phase image)"),
        "max_lag_vox": Param(int, default=32, min=1, doc="largest lag of the two-point correlation (voxels)"),
        "chord_bins": Param(int, default=32, min=1, doc="bins of the chord-length histograms"),
        "marching_cubes": Param(bool, default=True, doc="also compute surface areas by marching cubes"),
    }
    outputs = {
        "volume_fractions": Output("1", "volume fraction of each phase"),
        "specific_surface_area": Output("1/um", "per phase pair: face_count and marching_cubes areas per volume"),
        "tpb_density": Output("1/um^2", "triple-phase-boundary length per volume (nan unless 3 phases)"),
        "s2_r": Output("um", "lags of the two-point correlation"),
        "s2": Output("1", "per phase: two-point probability S2(r)"),
        "chord_edges": Output("um", "per phase: chord-length histogram bin edges"),
        "chord_pdf": Output("1/um", "per phase: chord-length probability density (x, y, z pooled)"),
        "mean_chord_length": Output("um", "per phase: mean chord length along x, y, z"),
    }

    def run(self, comm, inputs, params):
        from . import geometry as geo

        labels, phases, spacing = _labels_input(self, inputs, params)
        if not phases:
            phases = {f"label_{v}": int(v) for v in np.unique(labels)}
        # cheap metrics everywhere would duplicate work: rank 0 computes, then broadcasts
        present = {k: v for k, v in phases.items() if np.any(labels == v)}
        tp = params["triple_phases"]
        if tp is None and len(present) == 3:
            tp = list(present)
        tpb_labels = None
        if tp is not None:  # validated on every rank so an error is raised identically
            if len(tp) != 3:
                raise InputDataError(f"stage {self.name}: triple_phases needs exactly 3 phases, got {tp}")
            vals = [phases[p] if isinstance(p, str) and p in phases else p for p in tp]
            if any(isinstance(v, str) for v in vals):
                raise InputDataError(f"stage {self.name}: unknown phase in triple_phases {tp}; "
                                     f"the image defines {phases}")
            tpb_labels = [int(v) for v in vals]
        # rank 0 computes (serial numpy/scikit-image work), then broadcasts
        result = None
        if comm.rank == 0:
            tpb = float("nan")
            if tpb_labels is not None:
                tpb = geo.triple_phase_boundary_density(labels, *tpb_labels, spacing=spacing)
            s2, edges, pdf, means = {}, {}, {}, {}
            r = None
            for name, v in present.items():
                mask = labels == v
                r, s2[name] = geo.two_point_correlation(mask, spacing, max_lag=params["max_lag_vox"])
                edges[name], pdf[name], means[name] = geo.chord_length_distribution(mask, spacing,
                                                                                     bins=params["chord_bins"])
            result = {"volume_fractions": geo.volume_fractions(labels, phases),
                      "specific_surface_area": geo.specific_surface_areas(labels, present, spacing,
                                                                          params["marching_cubes"]),
                      "tpb_density": tpb, "s2_r": r if r is not None else np.zeros(0), "s2": s2,
                      "chord_edges": edges, "chord_pdf": pdf, "mean_chord_length": means}
        return comm.bcast(result, root=0)
