"""The ``md`` stage with ``transport: lammps`` (LAMMPS integrates, the model gives forces
through fix external on every MPI rank) reproduces ``transport: direct`` (ASE velocity
Verlet) from the same seeded initial state: same energies, temperature and drift."""
import numpy as np
import pytest
import torch

from ionscale.couplers.lammps import LammpsUnavailableError, import_lammps
from ionscale.kernels.atomistic.features import FeatureParams
from ionscale.kernels.atomistic.model import BPPotential
from ionscale.kernels.atomistic.stages import MolecularDynamics
from ionscale.stage import StageInputs

pytestmark = pytest.mark.mpi

try:
    import_lammps()
except LammpsUnavailableError as exc:  # optional peer: Debian python3-lammps
    pytest.skip(f"Debian LAMMPS Python module unavailable ({exc})", allow_module_level=True)


def md_stage(out_dir, seed=5):
    stage = MolecularDynamics("md")
    stage.output_dir, stage.run_name, stage.seed = out_dir, "t", seed
    return stage


def md_params(model_path, transport):
    params = {k: p.default for k, p in MolecularDynamics.params.items()}
    params.update(model=model_path, elements=["Cu", "Au"], composition=[0.5, 0.5], supercell=[2, 2, 2],
                  steps=60, timestep_fs=1.0, temperature_K=500.0, record_every=5, transport=transport)
    return params


def test_md_stage_lammps_transport_equals_direct(comm, tmp_path):
    d = comm.bcast(str(tmp_path) if comm.rank == 0 else None)
    model_path = f"{d}/random.model"
    if comm.rank == 0:
        torch.manual_seed(0)
        BPPotential(FeatureParams([29, 79]), hidden=(8,)).double().save(model_path)
    comm.Barrier()
    params = md_params(model_path, "lammps")
    assert MolecularDynamics.check(params) == []
    lmp = md_stage(d).run(comm, StageInputs(), params)
    ref = md_stage(d).run(comm, StageInputs(), md_params(model_path, "direct"))

    assert lmp["n_atoms"] == ref["n_atoms"] == 32
    np.testing.assert_allclose(lmp["time"], ref["time"], rtol=1e-12)
    np.testing.assert_allclose(lmp["potential_energy"], ref["potential_energy"], rtol=0, atol=1e-7)
    # kinetic energies differ by LAMMPS' metal mvv2e constant (relative 6e-8 of ~2 eV)
    np.testing.assert_allclose(lmp["total_energy"], ref["total_energy"], rtol=0, atol=1e-6)
    assert lmp["mean_temperature"] == pytest.approx(ref["mean_temperature"], rel=1e-7)
    assert abs(lmp["energy_drift"] - ref["energy_drift"]) < 1e-5  # eV/atom/ps
    assert np.ptp(ref["potential_energy"]) > 1e3 * np.abs(lmp["potential_energy"] - ref["potential_energy"]).max()


def test_foreign_lammps_module_is_refused():
    with pytest.raises(LammpsUnavailableError, match="already imported"):
        import_lammps("/nonexistent/lammps")
