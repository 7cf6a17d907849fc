"""Configuration sampling and reference labelling.

Sampling: random substitutional decorations of an fcc (or any ``ase.build.bulk``)
supercell over the whole composition range, lattice constant by Vegard's law,
isotropic strains plus a small random shear, then short velocity-Verlet MD started
from Maxwell-Boltzmann velocities at several temperatures driven by the reference
engine; snapshots are taken every ``stride`` steps.

Reference engines (``reference:``): ``emt`` (ASE's effective-medium theory, offline,
for Al/Cu/Ag/Au/Ni/Pd/Pt alloys), ``chgnet`` (pretrained universal potential for
Li transition-metal oxides, used when the package is installed), ``ipi`` (an external
code connected over the i-PI socket protocol, see ionscale.couplers.ipi).
"""
from __future__ import annotations

import numpy as np

from ionscale.errors import InputDataError

from .dataset import Dataset

def lattice_constant(symbol: str) -> float:
    """Lattice constant of the element's reference state (Angstrom, ase.data)."""
    from ase.data import atomic_numbers, reference_states

    ref = reference_states[atomic_numbers[symbol]]
    if not ref or "a" not in ref:
        raise InputDataError(f"no reference lattice constant for element {symbol}")
    return float(ref["a"])


def make_calculator(reference: dict):
    """ASE calculator for a ``reference:`` block ``{engine: emt|chgnet|ipi, ...}``."""
    engine = reference.get("engine", "emt")
    if engine == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    if engine == "chgnet":
        try:
            from chgnet.model.dynamics import CHGNetCalculator
        except ImportError as e:
            raise InputDataError("reference engine 'chgnet' needs `pip install chgnet` (not installed)") from e
        return CHGNetCalculator()
    if engine == "ipi":
        from ionscale.couplers.ipi import IPIServerCalculator

        return IPIServerCalculator(address=reference.get("address", "ionscale_ref"),
                                   mode=reference.get("mode", "unix"), port=int(reference.get("port", 0)),
                                   timeout=float(reference.get("timeout", 60)),
                                   accept_timeout=float(reference.get("timeout", 60)))
    raise InputDataError(f"unknown reference engine {engine!r} (expected emt, chgnet or ipi)")


def sample_alloy_configurations(elements, n_configs: int, *, supercell=(2, 2, 2), structure="fcc",
                                temperatures=(300.0, 900.0, 1500.0), strains=(-0.03, 0.0, 0.03),
                                shear=0.01, md_steps=30, stride=10, timestep_fs=2.0,
                                calculator=None, seed=0) -> Dataset:
    """Decorated, strained supercells snapshotted from short MD (unlabelled Dataset)."""
    from ase import units
    from ase.build import bulk
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.parallel import DummyMPI
    from ase.md.verlet import VelocityVerlet

    if n_configs < 1:
        raise InputDataError("n_configs must be >= 1")
    rng = np.random.default_rng(seed)
    a_pure = np.array([lattice_constant(e) for e in elements])
    if calculator is None:
        from ase.calculators.emt import EMT
        calculator = EMT()
    out = []
    per_traj = max(1, md_steps // max(stride, 1))
    while len(out) < n_configs:
        frac = rng.dirichlet(np.ones(len(elements)))
        base = bulk(elements[0], structure, a=1.0, cubic=True) * tuple(supercell)
        choice = rng.choice(len(elements), size=len(base), p=frac)
        base.set_chemical_symbols([elements[c] for c in choice])
        x = np.bincount(choice, minlength=len(elements)) / len(base)
        a0 = float(x @ a_pure)  # Vegard
        eps = rng.choice(strains) + shear * rng.uniform(-1, 1, (3, 3))
        deform = a0 * (np.eye(3) + 0.5 * (eps + eps.T))
        base.set_cell(base.cell[:] @ deform, scale_atoms=True)
        base.rattle(0.02, seed=int(rng.integers(1 << 31)))
        base.calc = calculator
        temp = float(rng.choice(temperatures))
        MaxwellBoltzmannDistribution(base, temperature_K=temp, rng=rng, comm=DummyMPI())  # rank-local, not COMM_WORLD
        dyn = VelocityVerlet(base, timestep=timestep_fs * units.fs)
        for _ in range(per_traj):
            dyn.run(stride)
            snap = base.copy()
            snap.calc = None
            out.append(snap)
            if len(out) >= n_configs:
                break
    return Dataset(out[:n_configs])


def label(dataset: Dataset, calculator, stress=False) -> Dataset:
    """Energies and forces of every structure from the reference calculator."""
    energies, forces = [], []
    for a in dataset.atoms:
        b = a.copy()
        b.calc = calculator
        energies.append(b.get_potential_energy())
        forces.append(b.get_forces())
    return Dataset(dataset.atoms, energies, forces)


def layered_oxide(supercell=(2, 2, 1), a=2.87, c=14.2, oxygen_z=0.2412):
    """Li M O2 in the alpha-NaFeO2 (R-3m) structure, hexagonal setting: Li 3a, M 3b, O 6c."""
    from ase.spacegroup import crystal

    prim = crystal(["Li", "Ni", "O"], [(0, 0, 0), (0, 0, 0.5), (0, 0, oxygen_z)], spacegroup=166,
                   cellpar=[a, a, c, 90, 90, 120])
    return prim * tuple(supercell)


def sample_layered_oxide_configurations(n_configs: int, *, transition_metals=("Ni", "Mn", "Co"),
                                        tm_fractions=None, li_fraction_range=(0.25, 1.0),
                                        supercell=(2, 2, 1), strains=(-0.02, 0.0, 0.02), shear=0.01,
                                        rattle=0.06, seed=0) -> Dataset:
    """Li_x(Ni,Mn,Co)O2 decorations: random Li/vacancy (x uniform in ``li_fraction_range``) and
    random transition-metal occupation, strained and rattled (Gaussian, ``rattle`` A)
    to sample near-equilibrium thermal displacements without running MD."""
    rng = np.random.default_rng(seed)
    tms = list(transition_metals)
    p = np.asarray(tm_fractions if tm_fractions is not None else [1.0 / len(tms)] * len(tms), float)
    p = p / p.sum()
    out = []
    for _ in range(n_configs):
        at = layered_oxide(supercell)
        sym = np.array(at.get_chemical_symbols(), dtype=object)
        tm_sites = np.flatnonzero(sym == "Ni")
        sym[tm_sites] = rng.choice(tms, size=len(tm_sites), p=p)
        at.set_chemical_symbols(list(sym))
        li_sites = np.flatnonzero(sym == "Li")
        x = rng.uniform(*li_fraction_range)
        n_remove = int(round((1 - x) * len(li_sites)))
        del at[sorted(rng.choice(li_sites, size=n_remove, replace=False).tolist())]
        eps = rng.choice(strains) * np.eye(3) + shear * rng.uniform(-1, 1, (3, 3))
        at.set_cell(at.cell[:] @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        at.positions += rng.normal(0, rattle, at.positions.shape)
        out.append(at)
    return Dataset(out)
