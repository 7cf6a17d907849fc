"""Microcanonical (NVE) molecular dynamics with any ASE calculator and its energy drift.

Velocity Verlet (ASE): x(t+dt) = x + v dt + F/(2m) dt^2, v(t+dt) = v + (F(t) + F(t+dt))/(2m) dt.
The drift is the least-squares slope of the total energy per atom against time,
``d(E_tot/N)/dt`` in eV/atom/ps; for a conservative, smooth potential it vanishes as
dt -> 0 (the shadow Hamiltonian is conserved up to O(dt^2) fluctuations).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class NVEResult:
    time_ps: np.ndarray
    potential_energy: np.ndarray  # eV
    kinetic_energy: np.ndarray  # eV
    temperature: np.ndarray  # K
    drift_ev_per_atom_per_ps: float
    fluctuation_ev_per_atom: float  # std of E_tot/N
    final_positions: np.ndarray

    @property
    def total_energy(self):
        return self.potential_energy + self.kinetic_energy


def run_nve(atoms, calculator, steps: int, timestep_fs: float = 1.0, temperature_K: float = 300.0,
            seed: int = 0, record_every: int = 1) -> NVEResult:
    """Run ``steps`` velocity-Verlet steps from Maxwell-Boltzmann velocities (zero momentum)."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.parallel import DummyMPI
    from ase.md.verlet import VelocityVerlet

    if steps < 1 or timestep_fs <= 0:
        raise ValueError("steps must be >= 1 and timestep_fs > 0")
    atoms = atoms.copy()
    atoms.calc = calculator
    # DummyMPI: ASE's default communicator is MPI_COMM_WORLD once mpi4py is loaded; this is rank-local work
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed), comm=DummyMPI())
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    n_rec = steps // record_every + 1
    t, epot, ekin, temp = (np.empty(n_rec) for _ in range(4))

    def record(k):
        t[k] = k * record_every * timestep_fs * 1e-3
        epot[k] = atoms.get_potential_energy()
        ekin[k] = atoms.get_kinetic_energy()
        temp[k] = atoms.get_temperature()

    record(0)
    for k in range(1, n_rec):
        dyn.run(record_every)
        record(k)
    etot = (epot + ekin) / len(atoms)
    slope = float(np.polyfit(t, etot, 1)[0]) if n_rec > 2 else float("nan")
    return NVEResult(t, epot, ekin, temp, slope, float(np.std(etot)), atoms.get_positions())
