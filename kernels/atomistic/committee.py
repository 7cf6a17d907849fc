"""Query-by-committee active learning.

A committee of K models trained on the same data with different initial weights and
validation splits disagrees where the data do not constrain the fit. The disagreement of a
structure is the committee standard deviation of the forces,

    sigma_F = max_i sqrt( mean_k |F_i^k - <F_i>|^2 )          (eV/A, worst atom)

(and of the energy per atom). One round of active learning evaluates a candidate pool,
labels the ``n_select`` candidates with the largest sigma_F with the reference engine,
adds them to the training set and retrains the committee.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .dataset import Dataset
from .model import as_tuple
from .training import TrainConfig, train


def train_committee(ds: Dataset, cfg: TrainConfig, size: int = 3, device=None):
    """K models differing in seed (weights and validation split)."""
    return [train(ds, replace(cfg, seed=cfg.seed + 1000 * k), device=device).model for k in range(size)]


def committee_disagreement(models, structures, batch_size: int = 32):
    """Per structure: (force sigma of the worst atom [eV/A], energy-per-atom sigma [eV/atom])."""
    structures = list(structures)
    sig_f, sig_e = [], []
    for k in range(0, len(structures), batch_size):
        chunk = structures[k:k + batch_size]
        res = [m.evaluate(chunk, forces=True) for m in models]
        n = np.array([len(as_tuple(s)[0]) for s in chunk])
        e = np.stack([r["energy"] for r in res]) / n  # (K, B)
        sig_e.append(e.std(0))
        for b in range(len(chunk)):
            f = np.stack([r["forces"][b] for r in res])  # (K, n, 3)
            dev = ((f - f.mean(0)) ** 2).sum(-1).mean(0)  # (n,)
            sig_f.append(float(np.sqrt(dev.max())))
    return np.asarray(sig_f), np.concatenate(sig_e)


def active_learning_round(models, train_set: Dataset, pool: Dataset, calculator, n_select: int,
                          cfg: TrainConfig, device=None):
    """Label the ``n_select`` most disputed pool structures, add them, retrain the committee.

    Returns ``(new_models, new_train_set, selected_indices, sigma_F of the pool)``."""
    from .sampling import label

    sig_f, _ = committee_disagreement(models, pool.atoms)
    chosen = np.argsort(sig_f)[::-1][:n_select]
    new = label(pool.subset(chosen), calculator)
    merged = Dataset(train_set.atoms + new.atoms, np.concatenate([train_set.energies, new.energies]),
                     train_set.forces + new.forces)
    return train_committee(merged, cfg, size=len(models), device=device), merged, chosen, sig_f
