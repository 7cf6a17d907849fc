"""LAMMPS-integrated MD with the ionscale potential (fix external pf/callback) reproduces
ASE velocity-Verlet MD with the same model, serially and domain-decomposed on 2 ranks.

Both integrators are velocity Verlet from the same positions, velocities, masses and
timestep, so the trajectories agree up to round-off and LAMMPS' metal-unit constant
(ftm2v = 1/1.0364269e-4 vs ASE's CODATA value, relative 6e-8); measured: |dx| ~ 6e-9 A
after 100 steps. The model is randomly initialised (fixed seed): trajectory agreement,
energy conservation and the virial do not need a trained model.
"""
import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from ionscale.couplers.forcefield import IonscaleCalculator
from ionscale.couplers.lammps import LammpsUnavailableError, import_lammps, run_lammps_nve
from ionscale.couplers.lammps.driver import EV_PER_A3_TO_BAR, LammpsCouplingError
from ionscale.kernels.atomistic.features import FeatureParams
from ionscale.kernels.atomistic.model import BPPotential

pytestmark = pytest.mark.mpi

try:
    import_lammps()
except LammpsUnavailableError as exc:  # optional peer: Debian python3-lammps
    pytest.skip(f"Debian LAMMPS Python module unavailable ({exc})", allow_module_level=True)

STEPS, RECORD_EVERY, DT_FS = 100, 10, 1.0


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return BPPotential(FeatureParams([29, 79]), hidden=(8,)).double()


def cu_au(cell_kind):
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 2, 2)
    atoms.numbers[np.random.default_rng(1).random(len(atoms)) < 0.3] = 79
    if cell_kind == "triclinic":  # LAMMPS prism: a along x, b in the xy plane
        atoms.set_cell([[7.4, 0, 0], [1.0, 7.4, 0], [0.5, -0.8, 7.4]], scale_atoms=True)
    atoms.rattle(0.05, seed=2)  # some atoms start just outside the cell
    thermalize_momenta(atoms, 600.0, rng=np.random.default_rng(3))
    Stationary(atoms)
    return atoms


def ase_trajectory(atoms, model):
    atoms = atoms.copy()
    atoms.calc = IonscaleCalculator(model)
    dyn = VelocityVerlet(atoms, timestep=DT_FS * units.fs)
    pos, vel, epot = [atoms.get_positions()], [atoms.get_velocities()], [atoms.get_potential_energy()]
    for _ in range(STEPS // RECORD_EVERY):
        dyn.run(RECORD_EVERY)
        pos.append(atoms.get_positions())
        vel.append(atoms.get_velocities())
        epot.append(atoms.get_potential_energy())
    return np.array(pos), np.array(vel), np.array(epot), atoms


@pytest.mark.parametrize("cell_kind", ["cubic", "triclinic"])
def test_lammps_trajectory_matches_ase_verlet(comm, model, cell_kind):
    atoms = cu_au(cell_kind)
    pos, vel, epot, final = ase_trajectory(atoms, model)
    r = run_lammps_nve(atoms, model, STEPS, DT_FS, record_every=RECORD_EVERY, comm=comm)

    assert r.steps.tolist() == list(range(0, STEPS + 1, RECORD_EVERY))
    assert r.model_evaluations == STEPS + 1  # one per step: re-setups between chunks hit the cache
    # domain decomposition: every rank owned atoms in the force callback
    assert len(r.atoms_per_rank) == comm.size and min(r.atoms_per_rank) > 0
    assert sum(r.atoms_per_rank) == len(atoms)
    assert np.abs(pos[-1] - pos[0]).max() > 0.3  # the atoms really moved (non-trivial check)
    np.testing.assert_allclose(r.positions, pos, rtol=0, atol=1e-6)
    np.testing.assert_allclose(r.velocities, vel, rtol=0, atol=1e-6)
    np.testing.assert_allclose(r.potential_energy, epot, rtol=0, atol=1e-7)
    # NVE: total energy conserved to O(dt^2) fluctuations
    etot = r.total_energy / len(atoms)
    assert np.abs(etot - etot[0]).max() < 1e-5
    assert np.abs(etot - etot[0]).max() < 1e-2 * np.ptp(r.potential_energy / len(atoms))
    # virial pressure -tr(sigma)/3 from the model's stress, passed through fix external
    sigma = IonscaleCalculator(model).get_stress(final)
    assert r.virial_pressure_bar[-1] == pytest.approx(-sigma[:3].mean() * EV_PER_A3_TO_BAR, rel=1e-6)
    # every rank returns the same trajectory
    assert comm.allreduce(float(np.abs(r.positions - comm.bcast(r.positions)).max()), op=max) == 0.0


def test_lammps_on_split_communicators(comm, model):
    """One independent single-rank LAMMPS per rank (e.g. an ensemble of MD runs)."""
    solo = comm.Split(color=comm.rank, key=0)
    try:
        atoms = cu_au("cubic")
        atoms.rattle(0.02, seed=10 + comm.rank)  # a different system on each rank
        r = run_lammps_nve(atoms, model, 20, DT_FS, record_every=20, comm=solo)
    finally:
        solo.Free()
    ref = atoms.copy()
    ref.calc = IonscaleCalculator(model)
    VelocityVerlet(ref, timestep=DT_FS * units.fs).run(20)
    assert r.atoms_per_rank == [len(atoms)]
    np.testing.assert_allclose(r.positions[-1], ref.get_positions(), rtol=0, atol=1e-6)


def test_lammps_model_failure_is_raised_on_all_ranks(comm, model):
    broken = BPPotential(model.params, hidden=(8,)).double()
    broken.load_state_dict(model.state_dict())
    broken.energy_scale.fill_(float("nan"))
    with pytest.raises(LammpsCouplingError, match="non-finite"):
        run_lammps_nve(cu_au("cubic"), broken, 5, DT_FS, record_every=5, comm=comm)


def test_lammps_rejects_unsupported_input(model):
    atoms = cu_au("cubic")
    with pytest.raises(ValueError, match="pbc"):
        run_lammps_nve(_nonperiodic(atoms), model, 5)
    bad_species = atoms.copy()
    bad_species.numbers[0] = 3
    with pytest.raises(ValueError, match=r"atomic numbers \[3\]"):
        run_lammps_nve(bad_species, model, 5)
    skewed = atoms.copy()
    skewed.set_cell([[7.4, 0.3, 0], [0, 7.4, 0], [0, 0, 7.4]])
    with pytest.raises(ValueError, match="lower-triangular"):
        run_lammps_nve(skewed, model, 5)


def _nonperiodic(atoms):
    atoms = atoms.copy()
    atoms.pbc = (True, True, False)
    return atoms
