"""Reference datasets: structures with energies and forces (extended XYZ or HDF5).

HDF5 layout (one group per dataset, all arrays concatenated over structures):
``n_atoms`` (B,), ``numbers`` (sum n,), ``positions`` (sum n, 3) [Angstrom],
``cells`` (B, 3, 3) [Angstrom], ``pbc`` (B, 3), ``energy`` (B,) [eV], ``forces`` (sum n, 3)
[eV/Angstrom]. Extended XYZ is read and written through ``ase.io`` (energy and forces
in the per-frame calculator results).
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from ionscale.errors import InputDataError


class Dataset:
    """A list of ase.Atoms with ``energy`` (eV) and ``forces`` (eV/A) arrays (None if unlabelled)."""

    def __init__(self, atoms_list, energies=None, forces=None):
        self.atoms = list(atoms_list)
        self.energies = None if energies is None else np.asarray(energies, float)
        self.forces = None if forces is None else [np.asarray(f, float) for f in forces]

    def __len__(self):
        return len(self.atoms)

    @property
    def labelled(self):
        return self.energies is not None and self.forces is not None

    def subset(self, idx):
        idx = list(np.asarray(idx, int))
        return Dataset([self.atoms[i] for i in idx],
                       None if self.energies is None else self.energies[idx],
                       None if self.forces is None else [self.forces[i] for i in idx])

    def structures(self):
        return [(a.get_positions(), a.get_atomic_numbers(), np.asarray(a.cell[:]), np.asarray(a.pbc)) for a in self.atoms]

    def content_hash(self) -> str:
        """sha256 of the arrays (structure order matters): identifies the training data."""
        h = hashlib.sha256()
        for i, a in enumerate(self.atoms):
            for arr in (a.get_atomic_numbers().astype(np.int64), a.get_positions(), np.asarray(a.cell[:]), np.asarray(a.pbc)):
                h.update(np.ascontiguousarray(arr).tobytes())
            if self.labelled:
                h.update(np.float64(self.energies[i]).tobytes())
                h.update(np.ascontiguousarray(self.forces[i]).tobytes())
        return h.hexdigest()

    # ---- I/O ---------------------------------------------------------------------------
    def write(self, path: str):
        if path.endswith((".h5", ".hdf5")):
            _write_h5(self, path)
        else:
            _write_xyz(self, path)

    @classmethod
    def read(cls, path: str) -> "Dataset":
        if not os.path.exists(path.split("::")[0]):
            raise InputDataError(f"dataset file not found: {path}")
        try:
            if path.split("::")[0].endswith((".h5", ".hdf5")):
                return _read_h5(path)
            return _read_xyz(path)
        except InputDataError:
            raise
        except Exception as e:  # parse errors of ase.io / h5py
            raise InputDataError(f"cannot read dataset {path}: {e}") from e


def _write_xyz(ds: Dataset, path: str):
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for i, a in enumerate(ds.atoms):
        b = a.copy()
        if ds.labelled:
            b.calc = SinglePointCalculator(b, energy=float(ds.energies[i]), forces=ds.forces[i])
        frames.append(b)
    # parallel=False: ASE would otherwise broadcast over MPI_COMM_WORLD, and this is rank-local I/O
    ase.io.write(path, frames, format="extxyz", parallel=False)


def _read_xyz(path: str) -> Dataset:
    import ase.io

    frames = ase.io.read(path, index=":", format="extxyz", parallel=False)  # rank-local, see _write_xyz
    if not frames:
        raise InputDataError(f"dataset {path} holds no structures")
    labelled = all(f.calc is not None and "energy" in f.calc.results and "forces" in f.calc.results for f in frames)
    if not labelled:
        return Dataset([_strip(f) for f in frames])
    return Dataset([_strip(f) for f in frames], [f.calc.results["energy"] for f in frames],
                   [f.calc.results["forces"] for f in frames])


def _strip(a):
    b = a.copy()
    b.calc = None
    return b


def _write_h5(ds: Dataset, path: str):
    import h5py

    file, _, group = path.partition("::")
    with h5py.File(file, "a") as f:
        g = f.require_group(group or "/")
        for k in list(g.keys()):
            del g[k]
        g["n_atoms"] = np.array([len(a) for a in ds.atoms])
        g["numbers"] = np.concatenate([a.get_atomic_numbers() for a in ds.atoms])
        g["positions"] = np.concatenate([a.get_positions() for a in ds.atoms])
        g["cells"] = np.stack([np.asarray(a.cell[:]) for a in ds.atoms])
        g["pbc"] = np.stack([np.asarray(a.pbc) for a in ds.atoms])
        if ds.labelled:
            g["energy"] = ds.energies
            g["forces"] = np.concatenate(ds.forces)
            g["energy"].attrs["units"] = "eV"
            g["forces"].attrs["units"] = "eV/Angstrom"


def _read_h5(path: str) -> Dataset:
    import h5py
    from ase import Atoms

    file, _, group = path.partition("::")
    with h5py.File(file, "r") as f:
        g = f[group or "/"]
        missing = [k for k in ("n_atoms", "numbers", "positions", "cells", "pbc") if k not in g]
        if missing:
            raise InputDataError(f"dataset {path} lacks the arrays {missing} (see ionscale.kernels.atomistic.dataset)")
        n = g["n_atoms"][:]
        split = np.cumsum(n)[:-1]
        nums = np.split(g["numbers"][:], split)
        pos = np.split(g["positions"][:], split)
        atoms = [Atoms(numbers=z, positions=p, cell=c, pbc=b) for z, p, c, b in zip(nums, pos, g["cells"][:], g["pbc"][:])]
        if "energy" in g and "forces" in g:
            return Dataset(atoms, g["energy"][:], np.split(g["forces"][:], split))
        return Dataset(atoms)
