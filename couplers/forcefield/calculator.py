"""ASE ``Calculator`` for :class:`ionscale.kernels.atomistic.model.BPPotential`.

Any ASE driver (MD, optimisers, NEB) can use the model. ``evaluate_batch`` runs many
configurations (MC trial states, NEB images, sweep cases) in a single forward pass;
with an MPI communicator the list is split over ranks and the results gathered.
The device is chosen once (GPU when present, else CPU).
"""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ionscale.kernels.atomistic.model import BPPotential, default_device


class IonscaleCalculator(Calculator):
    """``IonscaleCalculator(model=BPPotential | path, dtype='float64')``."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model, device=None, dtype=None, **kwargs):
        super().__init__(**kwargs)
        import torch

        device = device or default_device()
        if isinstance(model, str):
            model = BPPotential.load(model, device=device, dtype=getattr(torch, dtype) if dtype else None)
        elif dtype is not None or device is not None:
            model = model.to(device=device, dtype=getattr(torch, dtype) if dtype else model.dtype)
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        want_stress = "stress" in properties and self.atoms.cell.rank == 3 and any(self.atoms.pbc)
        r = self.model.evaluate([self.atoms], forces=True, stress=want_stress)
        e = float(r["energy"][0])
        self.results = {"energy": e, "free_energy": e, "forces": r["forces"][0]}
        if want_stress:
            self.results["stress"] = full_3x3_to_voigt_6_stress(r["stress"][0])


def evaluate_batch(model: BPPotential, atoms_list, batch_size: int = 64, stress=False, comm=None):
    """Energies (B,), forces (list) and optionally stresses (B, 6) of many structures,
    ``batch_size`` structures per forward pass; split over the ranks of ``comm``."""
    n = len(atoms_list)
    rank, size = (comm.rank, comm.size) if comm is not None else (0, 1)
    mine = list(range(rank, n, size))
    energies, forces, stresses = {}, {}, {}
    for k in range(0, len(mine), batch_size):
        idx = mine[k:k + batch_size]
        r = model.evaluate([atoms_list[i] for i in idx], forces=True, stress=stress)
        for q, i in enumerate(idx):
            energies[i] = float(r["energy"][q])
            forces[i] = r["forces"][q]
            if stress:
                stresses[i] = full_3x3_to_voigt_6_stress(r["stress"][q])
    if comm is not None and size > 1:
        parts = comm.allgather((energies, forces, stresses))
        for e, f, s in parts:
            energies.update(e)
            forces.update(f)
            stresses.update(s)
    out = {"energy": np.array([energies[i] for i in range(n)]), "forces": [forces[i] for i in range(n)]}
    if stress:
        out["stress"] = np.array([stresses[i] for i in range(n)])
    return out
