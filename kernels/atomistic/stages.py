"""Stage adapters of the learned-potential workflow:

``sample_configurations`` -> ``label_configurations`` -> (``active_learning``) ->
``train_forcefield`` -> ``validate_forcefield``, and ``md`` (NVE molecular dynamics with the model called
directly or served over the i-PI socket protocol in-process).
Serial work (sampling, training, MD) runs on rank 0 and its result (or error) is
broadcast; reference labelling is split over the ranks.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from ionscale.comm import collective_call
from ionscale.errors import InputDataError
from ionscale.params import FilePath, ListOf, OneOf, Output, Param, Ref, Scalar
from ionscale.stage import Stage, register

_DATASET = OneOf(Ref(), FilePath())
_REFERENCE_DOC = ("reference engine that labels configurations: {engine: emt} (ASE EMT, offline), "
                  "{engine: chgnet} (needs pip install chgnet) or {engine: ipi, address: NAME, mode: unix|inet}")


def _out_path(stage, suffix):
    """Stage files go to ``<output>/<run name>_files/`` (the results file stays alone in ``<output>``)."""
    folder = os.path.join(stage.output_dir, f"{stage.run_name}_files")
    os.makedirs(folder, exist_ok=True)
    return os.path.abspath(os.path.join(folder, f"{stage.name}{suffix}"))


def _dataset_arg(inputs, params, key):
    from .dataset import Dataset

    path = inputs[key] if key in inputs else params[key]
    return path, Dataset.read(path)


_THREADS = Param(int, default=0, min=0, doc="torch intra-op threads on this rank (0: torch's default); "
                 "1 avoids contention on shared or MPI-packed cores")


class _torch_threads:
    """Set torch's intra-op thread count for the duration of a stage."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        import torch

        self.old = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.old)


def _check_reference(stage, ref):
    if not isinstance(ref, dict) or ref.get("engine", "emt") not in ("emt", "chgnet", "ipi"):
        raise InputDataError(f"stage {stage.name}: reference must be a mapping with engine emt, chgnet or ipi, got {ref!r}")


@register("sample_configurations")
class SampleConfigurations(Stage):
    """Random alloy decorations x strains x short MD snapshots at several temperatures (unlabelled)."""

    params = {
        "elements": Param(ListOf(Scalar(str), min_len=1),
                          doc="chemical symbols of the alloy, e.g. [Cu, Au]; for layered_oxide the transition "
                              "metals, e.g. [Ni, Mn, Co]"),
        "structure": Param(str, default="fcc", choices=("fcc", "bcc", "sc", "layered_oxide"),
                           doc="parent lattice; layered_oxide: Li_x M O2 (R-3m) with Li/vacancy and M decorations, "
                               "strained and rattled (no MD)"),
        "supercell": Param(ListOf(Scalar(int), min_len=3, max_len=3), default=[2, 2, 2], min=1,
                           doc="repetitions of the cubic (alloy) or hexagonal (oxide) cell"),
        "li_fraction_range": Param(ListOf(Scalar(float), min_len=2, max_len=2), default=[0.25, 1.0], min=0, max=1,
                                   doc="layered_oxide: range of the Li site fraction x"),
        "rattle_A": Param(float, default=0.06, min=0, units="A", doc="layered_oxide: Gaussian displacement amplitude"),
        "n_configs": Param(int, default=100, min=1, doc="number of configurations"),
        "temperatures_K": Param(ListOf(Scalar(float), min_len=1), default=[300.0, 900.0, 1500.0], min=0, units="K",
                                doc="initial MD temperatures (one drawn per trajectory)"),
        "strains": Param(ListOf(Scalar(float), min_len=1), default=[-0.03, 0.0, 0.03], min=-0.2, max=0.2,
                         doc="isotropic strains (one drawn per trajectory)"),
        "shear": Param(float, default=0.01, min=0, max=0.1, doc="amplitude of the random shear strain"),
        "md_steps": Param(int, default=30, min=1, doc="MD steps per trajectory"),
        "stride": Param(int, default=10, min=1, doc="steps between snapshots"),
        "timestep_fs": Param(float, default=2.0, min=0, min_exclusive=True, units="fs", doc="MD time step"),
        "reference": Param(dict, default={"engine": "emt"}, doc="engine driving the sampling MD; " + _REFERENCE_DOC),
    }
    outputs = {"dataset": Output("", "extended-XYZ file of the unlabelled configurations"),
               "n_structures": Output("1", "number of configurations"),
               "n_atoms_total": Output("1", "atoms summed over configurations")}

    def run(self, comm, inputs, params):
        from .sampling import make_calculator, sample_alloy_configurations, sample_layered_oxide_configurations

        _check_reference(self, params["reference"])

        def work():
            if params["structure"] == "layered_oxide":
                ds = sample_layered_oxide_configurations(
                    params["n_configs"], transition_metals=params["elements"], supercell=params["supercell"],
                    li_fraction_range=params["li_fraction_range"], strains=params["strains"], shear=params["shear"],
                    rattle=params["rattle_A"], seed=self.seed)
                path = _out_path(self, ".xyz")
                ds.write(path)
                return {"dataset": path, "n_structures": len(ds), "n_atoms_total": int(sum(len(a) for a in ds.atoms))}
            ds = sample_alloy_configurations(
                params["elements"], params["n_configs"], supercell=params["supercell"], structure=params["structure"],
                temperatures=params["temperatures_K"], strains=params["strains"], shear=params["shear"],
                md_steps=params["md_steps"], stride=params["stride"], timestep_fs=params["timestep_fs"],
                calculator=make_calculator(params["reference"]), seed=self.seed)
            path = _out_path(self, ".xyz")
            ds.write(path)
            return {"dataset": path, "n_structures": len(ds), "n_atoms_total": int(sum(len(a) for a in ds.atoms))}

        return collective_call(work, comm)


@register("label_configurations")
class LabelConfigurations(Stage):
    """Energies and forces of configurations from a reference engine (split over MPI ranks)."""

    params = {"input": Param(_DATASET, doc="dataset to label (sample.dataset or an extxyz/HDF5 file)"),
              "reference": Param(dict, default={"engine": "emt"}, doc=_REFERENCE_DOC)}
    outputs = {"dataset": Output("", "HDF5 file of the labelled configurations"),
               "n_structures": Output("1", "number of configurations"),
               "energy_per_atom_range": Output("eV", "max - min of the reference energy per atom"),
               "force_rms": Output("eV/A", "RMS reference force component")}

    def run(self, comm, inputs, params):
        from .dataset import Dataset
        from .sampling import label, make_calculator

        _check_reference(self, params["reference"])
        path, ds = collective_call(lambda: _dataset_arg(inputs, params, "input"), comm)
        mine = list(range(comm.rank, len(ds), comm.size))
        part = label(ds.subset(mine), make_calculator(params["reference"]))
        pieces = comm.allgather((mine, part.energies.tolist(), part.forces))
        energies, forces = np.zeros(len(ds)), [None] * len(ds)
        for idx, e, f in pieces:
            for q, i in enumerate(idx):
                energies[i], forces[i] = e[q], f[q]
        full = Dataset(ds.atoms, energies, forces)

        def write():
            out = _out_path(self, ".h5")
            if os.path.exists(out):
                os.unlink(out)
            full.write(out)
            return out

        out = collective_call(write, comm)
        epa = energies / np.array([len(a) for a in ds.atoms])
        return {"dataset": out, "n_structures": len(ds), "energy_per_atom_range": float(np.ptp(epa)),
                "force_rms": float(np.sqrt(np.mean(np.concatenate(forces) ** 2)))}


@register("train_forcefield")
class TrainForcefield(Stage):
    """Behler-Parrinello/ANI-style potential fitted to energies and forces (early stopping)."""

    params = {
        "dataset": Param(_DATASET, doc="labelled dataset (label.dataset or an extxyz/HDF5 file)"),
        "hidden": Param(ListOf(Scalar(int), min_len=1), default=[32, 32], min=1, doc="hidden-layer widths"),
        "radial_cutoff": Param(float, default=5.0, min=1.0, units="A", doc="cutoff of the radial symmetry functions"),
        "angular_cutoff": Param(float, default=3.5, min=1.0, units="A", doc="cutoff of the angular symmetry functions"),
        "energy_weight": Param(float, default=1.0, min=0, doc="weight of the (eV/atom)^2 energy loss"),
        "force_weight": Param(float, default=0.1, min=0, doc="weight of the (eV/A)^2 force loss"),
        "learning_rate": Param(float, default=3e-3, min=0, min_exclusive=True, doc="Adam learning rate"),
        "batch_size": Param(int, default=10, min=1, doc="structures per minibatch"),
        "max_epochs": Param(int, default=200, min=1, doc="epoch limit"),
        "patience": Param(int, default=40, min=1, doc="early stopping: epochs without validation improvement"),
        "validation_fraction": Param(float, default=0.15, min=0, max=0.5, min_exclusive=True,
                                     doc="fraction held out for early stopping"),
        "max_seconds": Param(float, default=3600.0, min=0, min_exclusive=True, units="s", doc="wall-time limit"),
        "dtype": Param(str, default="float64", choices=("float32", "float64"), doc="floating-point precision"),
        "torch_threads": _THREADS,
    }
    outputs = {"model": Output("", "model file (tensor state_dict; metadata in model + '.json')"),
               "train_energy_rmse": Output("eV/atom", "energy RMSE on the training split"),
               "train_force_rmse": Output("eV/A", "force-component RMSE on the training split"),
               "validation_energy_rmse": Output("eV/atom", "energy RMSE on the validation split"),
               "validation_force_rmse": Output("eV/A", "force-component RMSE on the validation split"),
               "epochs": Output("1", "epochs run"),
               "training_data_hash": Output("", "sha256 of the training data"),
               "loss_history": Output("1", "per epoch: train loss, validation loss, learning rate")}

    @classmethod
    def check(cls, params):
        if params.get("angular_cutoff", 3.5) > params.get("radial_cutoff", 5.0):
            return [("angular_cutoff", "must not exceed radial_cutoff")]
        return []

    def run(self, comm, inputs, params):
        from .training import TrainConfig, train

        def work():
            path, ds = _dataset_arg(inputs, params, "dataset")
            if not ds.labelled:
                raise InputDataError(f"stage {self.name}: dataset {path} has no energies/forces (run label_configurations)")
            cfg = TrainConfig(hidden=tuple(params["hidden"]), energy_weight=params["energy_weight"],
                              force_weight=params["force_weight"], learning_rate=params["learning_rate"],
                              batch_size=params["batch_size"], max_epochs=params["max_epochs"],
                              patience=params["patience"], validation_fraction=params["validation_fraction"],
                              dtype=params["dtype"], seed=self.seed % (1 << 31), max_seconds=params["max_seconds"],
                              feature_params={"radial_cutoff": params["radial_cutoff"],
                                              "angular_cutoff": params["angular_cutoff"]})
            with _torch_threads(params["torch_threads"]):
                res = train(ds, cfg)
            out = _out_path(self, ".pt")
            res.model.save(out, {"metrics": res.metrics, "training_data": path,
                                 "training_data_hash": res.metrics["training_data_hash"]})
            m = res.metrics
            return {"model": out, "train_energy_rmse": m["train"]["energy_rmse_ev_per_atom"],
                    "train_force_rmse": m["train"]["force_rmse_ev_per_a"],
                    "validation_energy_rmse": m["validation"]["energy_rmse_ev_per_atom"],
                    "validation_force_rmse": m["validation"]["force_rmse_ev_per_a"], "epochs": m["epochs"],
                    "training_data_hash": m["training_data_hash"], "loss_history": res.history}

        return collective_call(work, comm)


@register("active_learning")
class ActiveLearning(Stage):
    """Query by committee: label the pool configurations where a committee of models disagrees most."""

    params = {
        "dataset": Param(_DATASET, doc="labelled training dataset (label.dataset or a file)"),
        "pool": Param(_DATASET, doc="unlabelled candidate configurations (sample.dataset or a file)"),
        "reference": Param(dict, default={"engine": "emt"}, doc=_REFERENCE_DOC),
        "committee_size": Param(int, default=3, min=2, doc="models in the committee"),
        "n_select": Param(int, default=20, min=1, doc="candidates labelled per round"),
        "rounds": Param(int, default=1, min=1, doc="select-label-retrain rounds"),
        "hidden": Param(ListOf(Scalar(int), min_len=1), default=[32, 32], min=1, doc="hidden-layer widths"),
        "max_epochs": Param(int, default=100, min=1, doc="epoch limit of each committee member"),
        "torch_threads": _THREADS,
    }
    outputs = {"dataset": Output("", "HDF5 file: training data plus the selected, labelled candidates"),
               "n_structures": Output("1", "structures in the enlarged dataset"),
               "pool_force_sigma": Output("eV/A", "committee force disagreement (worst atom) of every pool "
                                                  "candidate in the first round"),
               "selected_sigma_median": Output("eV/A", "median disagreement of the selected candidates"),
               "pool_sigma_median": Output("eV/A", "median disagreement over the pool")}

    def run(self, comm, inputs, params):
        from .committee import active_learning_round, train_committee
        from .dataset import Dataset
        from .sampling import make_calculator
        from .training import TrainConfig

        _check_reference(self, params["reference"])

        def work():
            _, train_set = _dataset_arg(inputs, params, "dataset")
            pool_path, pool = _dataset_arg(inputs, params, "pool")
            if not train_set.labelled:
                raise InputDataError(f"stage {self.name}: the training dataset has no energies/forces")
            cfg = TrainConfig(hidden=tuple(params["hidden"]), max_epochs=params["max_epochs"],
                              patience=max(5, params["max_epochs"] // 5), seed=self.seed % (1 << 30))
            calc = make_calculator(params["reference"])
            remaining = Dataset(pool.atoms)
            first_sigma, selected_sigma = None, []
            with _torch_threads(params["torch_threads"]):
                models = train_committee(train_set, cfg, size=params["committee_size"])
                for _ in range(params["rounds"]):
                    if len(remaining) == 0:
                        break
                    n = min(params["n_select"], len(remaining))
                    models, train_set, chosen, sigma = active_learning_round(models, train_set, remaining, calc,
                                                                             n, cfg)
                    first_sigma = sigma if first_sigma is None else first_sigma
                    selected_sigma.extend(sigma[chosen].tolist())
                    keep = np.setdiff1d(np.arange(len(remaining)), chosen)
                    remaining = remaining.subset(keep)
            out = _out_path(self, ".h5")
            if os.path.exists(out):
                os.unlink(out)
            train_set.write(out)
            return {"dataset": out, "n_structures": len(train_set), "pool_force_sigma": first_sigma,
                    "selected_sigma_median": float(np.median(selected_sigma)),
                    "pool_sigma_median": float(np.median(first_sigma))}

        return collective_call(work, comm)


@register("validate_forcefield")
class ValidateForcefield(Stage):
    """Errors of a trained potential on held-out reference configurations (batched inference over ranks)."""

    params = {
        "model": Param(OneOf(Ref(), FilePath()), doc="model file (train.model or a path)"),
        "dataset": Param(_DATASET, doc="held-out labelled dataset"),
        "energy_rmse_max": Param(float, default=0.005, min=0, units="eV/atom", doc="acceptance threshold"),
        "force_rmse_max": Param(float, default=0.1, min=0, units="eV/A", doc="acceptance threshold"),
        "batch_size": Param(int, default=32, min=1, doc="structures per forward pass"),
    }
    outputs = {"energy_rmse": Output("eV/atom", "energy RMSE per atom"),
               "energy_mae": Output("eV/atom", "energy MAE per atom"),
               "force_rmse": Output("eV/A", "force-component RMSE"),
               "force_mae": Output("eV/A", "force-component MAE"),
               "passed": Output("1", "both RMSEs within their thresholds"),
               "energy_reference": Output("eV/atom", "reference energy per atom of each structure"),
               "energy_predicted": Output("eV/atom", "predicted energy per atom of each structure")}

    def run(self, comm, inputs, params):
        from ionscale.couplers.forcefield import evaluate_batch

        model_path = inputs["model"] if "model" in inputs else params["model"]
        path, ds = collective_call(lambda: _dataset_arg(inputs, params, "dataset"), comm)
        if not ds.labelled:
            raise InputDataError(f"stage {self.name}: dataset {path} has no energies/forces")
        model = _load_model(model_path)  # every rank reads the file (same error on all ranks if it fails)
        r = evaluate_batch(model, ds.atoms, batch_size=params["batch_size"], comm=comm)
        n = np.array([len(a) for a in ds.atoms])
        de = (r["energy"] - ds.energies) / n
        df = (np.concatenate(r["forces"]) - np.concatenate(ds.forces)).ravel()
        e_rmse, f_rmse = float(np.sqrt(np.mean(de ** 2))), float(np.sqrt(np.mean(df ** 2)))
        return {"energy_rmse": e_rmse, "energy_mae": float(np.abs(de).mean()), "force_rmse": f_rmse,
                "force_mae": float(np.abs(df).mean()),
                "passed": bool(e_rmse <= params["energy_rmse_max"] and f_rmse <= params["force_rmse_max"]),
                "energy_reference": ds.energies / n, "energy_predicted": r["energy"] / n}


def _load_model(path, dtype=None):
    import torch

    from .model import BPPotential

    try:
        return BPPotential.load(path, dtype=getattr(torch, dtype) if dtype else None)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        raise InputDataError(f"cannot load model {path}: {e}") from e


@register("md")
class MolecularDynamics(Stage):
    """NVE molecular dynamics with a learned potential, called directly or over an in-process i-PI socket."""

    params = {
        "model": Param(OneOf(Ref(), FilePath()), doc="model file (train.model or a path)"),
        "elements": Param(ListOf(Scalar(str), min_len=1), doc="chemical symbols, e.g. [Cu, Au]"),
        "composition": Param(ListOf(Scalar(float)), default=None, min=0, max=1,
                             doc="fractions of the elements (default: equal)"),
        "structure": Param(str, default="fcc", choices=("fcc", "bcc", "sc"), doc="parent lattice"),
        "supercell": Param(ListOf(Scalar(int), min_len=3, max_len=3), default=[3, 3, 3], min=1,
                           doc="repetitions of the cubic cell"),
        "steps": Param(int, default=1000, min=1, doc="MD steps"),
        "timestep_fs": Param(float, default=1.0, min=0, min_exclusive=True, units="fs", doc="time step"),
        "temperature_K": Param(float, default=300.0, min=0, units="K", doc="initial Maxwell-Boltzmann temperature"),
        "dtype": Param(str, default="float64", choices=("float32", "float64"), doc="model precision during MD"),
        "transport": Param(str, default="direct", choices=("direct", "ipi-unix", "ipi-inet", "lammps"),
                           doc="forces from the model directly, or from the model served by an i-PI driver "
                               "thread over a Unix socket or loopback TCP, or MD integrated by LAMMPS "
                               "(fix external on the stage's MPI ranks; needs Debian python3-lammps)"),
        "socket_timeout_s": Param(float, default=120.0, min=0, min_exclusive=True, units="s",
                                  doc="i-PI receive timeout"),
        "record_every": Param(int, default=1, min=1, doc="steps between recorded energies"),
        "torch_threads": _THREADS,
    }
    outputs = {"energy_drift": Output("eV/atom/ps", "slope of the total energy per atom"),
               "energy_fluctuation": Output("eV/atom", "standard deviation of the total energy per atom"),
               "mean_temperature": Output("K", "mean kinetic temperature"),
               "time": Output("ps", "recorded times"),
               "total_energy": Output("eV", "total energy at the recorded times"),
               "potential_energy": Output("eV", "potential energy at the recorded times"),
               "socket_force_mismatch": Output("eV/A", "max |F_socket - F_direct| at the final configuration "
                                                       "(0 for transport: direct and lammps)"),
               "n_atoms": Output("1", "atoms simulated")}

    @classmethod
    def check(cls, params):
        comp, el = params.get("composition"), params.get("elements") or []
        if comp is not None and len(comp) != len(el):
            return [("composition", f"needs one fraction per element ({len(el)}), got {len(comp)}")]
        if params.get("transport") == "lammps":
            from ionscale.couplers.lammps import LammpsUnavailableError, import_lammps
            try:
                import_lammps()
            except LammpsUnavailableError as e:
                return [("transport", str(e))]
        return []

    def run(self, comm, inputs, params):
        model_path = inputs["model"] if "model" in inputs else params["model"]
        if params["transport"] == "lammps":  # collective: LAMMPS runs on every rank
            with _torch_threads(params["torch_threads"]):
                return self._run_lammps(comm, model_path, params)
        def work():
            with _torch_threads(params["torch_threads"]):
                return self._run_root(model_path, params)

        return collective_call(work, comm)

    def _build(self, params):
        from ase.build import bulk

        from .sampling import lattice_constant

        el = params["elements"]
        comp = np.asarray(params["composition"] or [1.0 / len(el)] * len(el), float)
        if comp.sum() <= 0:
            raise InputDataError(f"stage {self.name}: composition must not be all zero")
        comp = comp / comp.sum()
        atoms = bulk(el[0], params["structure"], a=1.0, cubic=True) * tuple(params["supercell"])
        rng = np.random.default_rng(self.seed)
        counts = np.floor(comp * len(atoms)).astype(int)
        counts[0] += len(atoms) - counts.sum()
        symbols = np.repeat(el, counts)
        rng.shuffle(symbols)
        atoms.set_chemical_symbols(list(symbols))
        a0 = float(comp @ np.array([lattice_constant(e) for e in el]))
        atoms.set_cell(atoms.cell[:] * a0, scale_atoms=True)
        return atoms

    def _run_root(self, model_path, params):
        from ionscale.couplers.forcefield import IonscaleCalculator

        from .md import run_nve

        model = _load_model(model_path, params["dtype"])
        atoms = self._build(params)
        direct = IonscaleCalculator(model)
        kw = dict(steps=params["steps"], timestep_fs=params["timestep_fs"], temperature_K=params["temperature_K"],
                  seed=self.seed, record_every=params["record_every"])
        mismatch = 0.0
        if params["transport"] == "direct":
            res = run_nve(atoms, direct, **kw)
        else:
            from ionscale.couplers.ipi import IPIDriver, IPIServer, IPIServerCalculator

            mode = "unix" if params["transport"] == "ipi-unix" else "inet"
            tmp = tempfile.mkdtemp(prefix="ionscale_ipi_")
            address = os.path.join(tmp, "socket")
            timeout = params["socket_timeout_s"]
            server = IPIServer(address, mode=mode, port=0, timeout=timeout, accept_timeout=timeout)
            driver = IPIDriver(atoms, IonscaleCalculator(model), address=address, mode=mode, port=server.port,
                               timeout=timeout)
            thread = driver.start_thread()
            calc = IPIServerCalculator(server)
            try:
                res = run_nve(atoms, calc, **kw)
                final = atoms.copy()
                final.positions = res.final_positions
                final.calc = calc
                f_socket = final.get_forces()
                final.calc = direct
                mismatch = float(np.abs(f_socket - final.get_forces()).max())
            finally:
                server.close()
                thread.join(timeout)
                os.rmdir(tmp) if os.path.isdir(tmp) and not os.listdir(tmp) else None
            if driver.error is not None:
                raise driver.error
        return {"energy_drift": res.drift_ev_per_atom_per_ps, "energy_fluctuation": res.fluctuation_ev_per_atom,
                "mean_temperature": float(res.temperature.mean()), "time": res.time_ps,
                "total_energy": res.total_energy, "potential_energy": res.potential_energy,
                "socket_force_mismatch": mismatch, "n_atoms": len(atoms)}

    def _run_lammps(self, comm, model_path, params):
        """Same initial state as ``run_nve`` (seeded Maxwell-Boltzmann, zero momentum),
        integrated by LAMMPS on the stage's ranks with forces from the model."""
        from ase import units
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
        from ase.parallel import DummyMPI

        from ionscale.couplers.lammps import run_lammps_nve

        model = _load_model(model_path, params["dtype"])
        atoms = self._build(params)
        # DummyMPI: ASE would otherwise broadcast over COMM_WORLD (matching stray root-only calls)
        MaxwellBoltzmannDistribution(atoms, temperature_K=params["temperature_K"],
                                     rng=np.random.default_rng(self.seed), comm=DummyMPI())
        Stationary(atoms)
        try:
            res = run_lammps_nve(atoms, model, params["steps"], params["timestep_fs"], params["record_every"],
                                 comm=comm)
        except ValueError as e:
            raise InputDataError(f"stage {self.name}: {e}") from e
        etot = res.total_energy / len(atoms)
        drift = float(np.polyfit(res.time_ps, etot, 1)[0]) if len(etot) > 2 else float("nan")
        return {"energy_drift": drift, "energy_fluctuation": float(np.std(etot)),
                "mean_temperature": float(np.mean(2 * res.kinetic_energy / (3 * len(atoms) * units.kB))),
                "time": res.time_ps, "total_energy": res.total_energy, "potential_energy": res.potential_energy,
                "socket_force_mismatch": 0.0, "n_atoms": len(atoms)}


try:  # lattice Monte Carlo stages (another module of this package)
    from . import stages_mc  # noqa: F401
except ModuleNotFoundError as _e:
    if _e.name != f"{__name__.rsplit('.', 1)[0]}.stages_mc":
        raise
