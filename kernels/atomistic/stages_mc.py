"""Stage adapters: ``lattice_fit`` (cross-validated ECIs) and ``sgc_montecarlo`` (x(mu), OCV table).

Registered when imported (``ionscale.kernels.atomistic.stages`` imports this module).
"""
from __future__ import annotations

import logging

import numpy as np

from ionscale.errors import DeckError, InputDataError
from ionscale.params import FilePath, Mapping, OneOf, Output, Param, Ref, Scalar
from ionscale.stage import Stage, register

from .lattice import LATTICE_KINDS, ClusterHamiltonian, correlations, make_lattice
from .lattice_fit import LayerEnergy, fit_from_source
from .montecarlo import sgc_scan
from .ocv import ocv_from_scan

log = logging.getLogger("ionscale")


def _eci_key_problems(key: str, ecis: dict) -> list[tuple[str, str]]:
    try:
        ClusterHamiltonian.from_dict(ecis)
    except ValueError as e:
        return [(key, str(e))]
    return []


@register("lattice_fit")
class LatticeFit(Stage):
    """Effective cluster interactions of a lattice gas fitted to energies of random decorations (ridge + CV)."""

    params = {
        "lattice": Param(str, default="triangular", choices=LATTICE_KINDS, doc="Bravais lattice of the sublattice"),
        "size": Param(int, default=6, min=3, doc="cells per side of the fitting supercell"),
        "pair_shells": Param(int, default=2, min=1, max=6, doc="neighbour shells with a pair ECI"),
        "triplets": Param(int, default=1, min=0, max=3, doc="triplet kinds with an ECI (1: nearest-neighbour triangles)"),
        "source": Param(str, default="emt", choices=("emt", "forcefield", "model"),
                        doc="energy source: (111)-layer decorations labelled by ASE EMT or by the learned "
                            "potential (model_file), or a known ECI model (+ noise)"),
        "model_file": Param(OneOf(Ref(), FilePath()), default=None,
                            doc="forcefield: trained potential (train.model or a model file)"),
        "host": Param(str, default="Cu", doc="emt/forcefield: host fcc metal"),
        "guest": Param(str, default="Au", doc="emt/forcefield: atom on an occupied site ('' = vacancy on empty sites)"),
        "host_layers": Param(int, default=3, min=2, doc="emt/forcefield: host (111) layers under the decorated one"),
        "model_ecis": Param(Mapping(Scalar(float)), default={}, units="eV",
                            doc="model: true ECIs {e0, e1, J1.., K1..} of the energy source"),
        "noise_meV_per_site": Param(float, default=0.0, min=0, units="meV",
                                    doc="model: Gaussian noise added to the energies per site"),
        "n_configs": Param(int, default=60, min=4, doc="random decorations to label and fit"),
        "cv_folds": Param(int, default=0, min=0, doc="k-fold cross-validation (0: leave-one-out)"),
    }
    outputs = {
        "ecis": Output("eV", "fitted ECIs {e0 (per site), e1 (point), J1.. (pairs), K1.. (triplets)}"),
        "lattice": Output("1", "Bravais lattice"),
        "cv_rmse_meV_per_site": Output("meV", "cross-validation RMSE of the energy per site"),
        "fit_rmse_meV_per_site": Output("meV", "training RMSE of the energy per site"),
        "alpha": Output("1", "ridge regularisation chosen by CV"),
        "reference_energy_eV": Output("eV", "energy per guest of its bulk metal (mu of the 'anode'); 0 for model"),
        "concentration": Output("1", "filling of each training configuration"),
        "energy_per_site_eV": Output("eV", "reference energy per site of each training configuration"),
        "predicted_per_site_eV": Output("eV", "fitted energy per site of each training configuration"),
    }

    @classmethod
    def check(cls, params):
        problems = []
        if params.get("source") == "model":
            if not params.get("model_ecis"):
                problems.append(("model_ecis", "source 'model' needs model_ecis {e0, e1, J1, ...}"))
            problems += _eci_key_problems("model_ecis", params.get("model_ecis") or {})
        if params.get("source") in ("emt", "forcefield") and params.get("lattice") != "triangular":
            problems.append(("lattice", f"source '{params.get('source')}' decorates an fcc (111) layer: "
                                        "lattice must be 'triangular'"))
        if params.get("source") == "forcefield" and not params.get("model_file"):
            problems.append(("model_file", "source 'forcefield' needs model_file (e.g. train.model)"))
        return problems

    def _forcefield(self, path):
        """Calculator factory and batched energies of the learned potential in ``path``."""
        from ionscale.couplers.forcefield.calculator import IonscaleCalculator, evaluate_batch

        from .model import BPPotential

        try:
            model = BPPotential.load(str(path))
        except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
            raise InputDataError(f"stage {self.name}: cannot load model_file {path}: {e}") from None
        # configurations are already split over ranks by fit_from_source: no comm here
        return (lambda: IonscaleCalculator(model)), (lambda structures: evaluate_batch(model, structures)["energy"])

    def run(self, comm, inputs, params):
        lat = make_lattice(params["lattice"], params["size"], params["pair_shells"], params["triplets"])
        if params["source"] in ("emt", "forcefield"):
            calculator = batch = None
            if params["source"] == "forcefield":
                calculator, batch = self._forcefield(inputs["model_file"] if "model_file" in inputs
                                                     else params["model_file"])
            try:
                energy = LayerEnergy(lat, params["host"], params["guest"] or None, params["host_layers"],
                                     calculator, batch)
            except (KeyError, NotImplementedError) as e:  # ASE: element without EMT parameters
                raise DeckError([f"stages.{self.name}: the {params['source']} source cannot treat host "
                                 f"'{params['host']}' / guest '{params['guest']}' ({e})"]) from None
            reference = energy.reference_energy_eV
        else:
            true = ClusterHamiltonian.from_dict(params["model_ecis"])
            true_lat = make_lattice(params["lattice"], params["size"], len(true.pairs), len(true.triplets))
            sigma = params["noise_meV_per_site"] * 1e-3 * lat.n_sites

            def energy(occ):
                # noise keyed to the configuration: independent of how configurations meet ranks
                noise = [np.random.default_rng([self.seed, *np.packbits(o.astype(bool))]).normal(0.0, sigma)
                         for o in occ]
                return true.energy(true_lat, occ) + np.asarray(noise)
            reference = 0.0
        cv = "loo" if params["cv_folds"] == 0 else params["cv_folds"]
        # the ranks label a share of the configurations each; the fit itself is tiny and repeated
        fit, occ, e = fit_from_source(lat, energy, params["n_configs"], seed=self.seed, cv=cv, comm=comm)
        pred = correlations(lat, occ) @ fit.hamiltonian.vector()
        log.info("%s: %d configs, CV (%s) RMSE %.3f meV/site, ECIs %s", self.name, fit.n_configs, fit.cv,
                 1e3 * fit.cv_rmse_eV_per_site, {k: round(v, 5) for k, v in fit.hamiltonian.as_dict().items()})
        return {"ecis": fit.hamiltonian.as_dict(), "lattice": params["lattice"],
                "cv_rmse_meV_per_site": 1e3 * fit.cv_rmse_eV_per_site,
                "fit_rmse_meV_per_site": 1e3 * fit.fit_rmse_eV_per_site, "alpha": fit.alpha,
                "reference_energy_eV": float(reference), "concentration": occ.mean(1),
                "energy_per_site_eV": e / lat.n_sites, "predicted_per_site_eV": pred}


@register("sgc_montecarlo")
class SGCMonteCarlo(Stage):
    """Semi-grand-canonical lattice Monte Carlo over a chemical-potential sweep -> <x>(mu), two-phase regions, OCV table."""

    params = {
        "ecis": Param(OneOf(Ref(), Mapping(Scalar(float))), units="eV",
                      doc="ECIs {e0, e1, J1.., K1..}: a lattice_fit output (fit.ecis) or a mapping"),
        "lattice": Param(str, default=None, choices=LATTICE_KINDS,
                         doc="Bravais lattice (default: the fit's, else triangular)"),
        "size": Param(int, default=24, min=5, doc="cells per side of the Monte Carlo supercell"),
        "temperature_K": Param(float, default=300.0, min=0, min_exclusive=True, units="K", doc="temperature"),
        "mu_min_eV": Param(float, units="eV", doc="lowest Li chemical potential of the sweep"),
        "mu_max_eV": Param(float, units="eV", doc="highest Li chemical potential of the sweep"),
        "n_mu": Param(int, default=41, min=3, doc="chemical potentials in the sweep (evenly spaced)"),
        "equilibration_sweeps": Param(int, default=1000, min=0, doc="sweeps discarded per chain"),
        "measurement_sweeps": Param(int, default=2000, min=10, doc="sweeps averaged per chain"),
        "mu_reference_eV": Param(OneOf(Scalar(float), Ref()), default=0.0, units="eV",
                                 doc="Li chemical potential of the metal anode (or fit.reference_energy_eV)"),
        "v0_V": Param(float, default=0.0, units="V", doc="constant added to the voltage"),
        "hysteresis_tol": Param(float, default=0.05, min=0, max=1, doc="|x_up - x_down| marking a hysteresis loop"),
        "jump_tol": Param(float, default=0.15, min=0, max=1, doc="jump of <x> between neighbouring mu marking a two-phase region"),
    }
    outputs = {
        "mu_eV": Output("eV", "Li chemical potentials of the sweep"),
        "T_K": Output("K", "temperature"),
        "x_up": Output("1", "<x> of the chain started from the empty lattice"),
        "x_down": Output("1", "<x> of the chain started from the full lattice"),
        "x_err": Output("1", "standard error of <x> (blocking), larger of the two chains"),
        "susceptibility_per_eV": Output("1/eV", "d<x>/dmu = var(N)/(kT N_sites), stable branch"),
        "x_equilibrium": Output("1", "<x> of the branch with the lower grand potential"),
        "voltage_at_mu_V": Output("V", "V = v0 - (mu - mu_reference) at each mu"),
        "x": Output("1", "OCV table: Li fraction, strictly increasing"),
        "ocv_V": Output("V", "OCV table: open-circuit voltage vs the anode at each x (plateaus included)"),
        "two_phase_x_low": Output("1", "Li-poor boundary of each two-phase region"),
        "two_phase_x_high": Output("1", "Li-rich boundary of each two-phase region"),
        "two_phase_V": Output("V", "plateau voltage of each two-phase region"),
        "anchors_ok": Output("1", "the sweep's ends reached x < 0.02 / x > 0.98 (integration anchors valid)"),
        "moves_per_s_per_rank": Output("1/s", "attempted Monte Carlo moves per second per rank"),
        "mc_wall_s": Output("s", "Monte Carlo wall time (slowest rank)"),
    }

    @classmethod
    def check(cls, params):
        problems = []
        lo, hi = params.get("mu_min_eV"), params.get("mu_max_eV")
        if isinstance(lo, float) and isinstance(hi, float) and hi <= lo:
            problems.append(("mu_max_eV", f"must exceed mu_min_eV ({lo}), got {hi}"))
        if isinstance(params.get("ecis"), dict):
            problems += _eci_key_problems("ecis", params["ecis"])
        return problems

    def run(self, comm, inputs, params):
        ecis = inputs["ecis"] if "ecis" in inputs else params["ecis"]
        if not isinstance(ecis, dict):
            raise InputDataError(f"stage {self.name}: 'ecis' must be a mapping of ECIs, got {type(ecis).__name__}")
        try:
            ham = ClusterHamiltonian.from_dict(ecis)
        except ValueError as e:
            raise InputDataError(f"stage {self.name}: ecis: {e}") from None
        kind = params["lattice"] or inputs.siblings("ecis").get("lattice", "triangular")
        fit_kind = inputs.siblings("ecis").get("lattice")
        if fit_kind and fit_kind != kind:
            raise DeckError([f"stages.{self.name}.lattice: '{kind}' differs from the fitted lattice '{fit_kind}'"])
        try:
            lat = ham.lattice(kind, params["size"])
        except ValueError as e:
            raise DeckError([f"stages.{self.name}.size: {e}"]) from None
        mu_ref = inputs["mu_reference_eV"] if "mu_reference_eV" in inputs else params["mu_reference_eV"]
        mu = np.linspace(params["mu_min_eV"], params["mu_max_eV"], params["n_mu"])
        scan = sgc_scan(lat, ham, mu, params["temperature_K"], n_equil=params["equilibration_sweeps"],
                        n_measure=params["measurement_sweeps"], seed=self.seed, comm=comm)
        table = ocv_from_scan(scan, lat, ham, mu_metal_eV=float(mu_ref), v0_V=params["v0_V"],
                              hysteresis_tol=params["hysteresis_tol"], jump_tol=params["jump_tol"])
        if not table.anchors_ok:
            log.warning("%s: the sweep does not reach the empty/full limits (x_up[0]=%.3f, x_down[-1]=%.3f): "
                        "widen mu_min_eV/mu_max_eV for reliable coexistence voltages", self.name,
                        scan.x[0, 0], scan.x[-1, 1])
        stable_down = (table.omega_down < table.omega_up)
        chi = np.where(stable_down, scan.chi[:, 1], scan.chi[:, 0])
        log.info("%s: %d chains, %.2e moves/s/rank, %d two-phase region(s)", self.name, 2 * len(mu),
                 scan.cpu_moves_per_s, len(table.regions))
        regions = table.regions
        return {"mu_eV": mu, "T_K": params["temperature_K"], "x_up": scan.x[:, 0], "x_down": scan.x[:, 1],
                "x_err": np.nanmax(scan.x_err, 1), "susceptibility_per_eV": chi,
                "x_equilibrium": table.x_equilibrium, "voltage_at_mu_V": table.voltage_V,
                "x": table.x, "ocv_V": table.ocv_V,
                "two_phase_x_low": np.array([r.x_low for r in regions]),
                "two_phase_x_high": np.array([r.x_high for r in regions]),
                "two_phase_V": np.array([params["v0_V"] - (r.mu_coexistence_eV - float(mu_ref)) for r in regions]),
                "anchors_ok": table.anchors_ok, "moves_per_s_per_rank": scan.cpu_moves_per_s,
                "mc_wall_s": scan.wall_s}
