"""Behler-Parrinello neural-network potential.

    E = sum_i [ e0(Z_i) + s * NN_{Z_i}( (G_i - mu_{Z_i}) / sigma_{Z_i} ) ]

one multilayer perceptron per element ``NN_Z`` acting on the standardised symmetry
functions ``G_i`` (:mod:`.features`), per-element reference energies ``e0`` (fitted by
linear regression) and an energy scale ``s``. Forces ``F = -dE/dx`` and the stress
``sigma = (1/V) dE/d(epsilon)`` (ASE sign convention, epsilon the symmetric strain
applied to positions and cell) come from automatic differentiation.

Saved as a plain tensor ``state_dict`` (``torch.load(weights_only=True)``: no pickled
objects) next to a JSON file with the metadata (species, feature parameters, network
sizes, training-data hash, metrics).
"""
from __future__ import annotations

import json
import os
import numpy as np
import torch
from torch import nn

from .features import FeatureParams, Graph, build_graph, compute_features

FORMAT_VERSION = 1


def default_device() -> torch.device:
    """The device is chosen once: the GPU when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class BPPotential(nn.Module):
    """Per-element MLPs on ANI-style features; energies in eV, lengths in Angstrom."""

    def __init__(self, params: FeatureParams, hidden=(32, 32)):
        super().__init__()
        self.params = params
        self.hidden = [int(h) for h in hidden]
        F = params.n_features

        def mlp():
            layers, width = [], F
            for h in self.hidden:
                layers += [nn.Linear(width, h), nn.SiLU()]
                width = h
            layers.append(nn.Linear(width, 1))
            return nn.Sequential(*layers)

        self.nets = nn.ModuleList([mlp() for _ in params.species])
        S = params.n_species
        self.register_buffer("feature_mean", torch.zeros(S, F))
        self.register_buffer("feature_std", torch.ones(S, F))
        self.register_buffer("energy_shift", torch.zeros(S))
        self.register_buffer("energy_scale", torch.ones(()))

    @property
    def dtype(self):
        return self.energy_shift.dtype

    @property
    def device(self):
        return self.energy_shift.device

    def atomic_energies(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        x = (features - self.feature_mean[species]) / self.feature_std[species]
        e = self.energy_shift[species].clone()
        for s, net in enumerate(self.nets):
            idx = torch.nonzero(species == s).squeeze(1)
            if idx.numel():
                e = e.index_add(0, idx, self.energy_scale * net(x[idx]).squeeze(1))
        return e

    def forward(self, graph: Graph, positions: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """Total energy of each structure of the batch (B,)."""
        g = compute_features(self.params, graph, positions, cells)
        e_atom = self.atomic_energies(g, graph.species)
        return torch.zeros(graph.n_structures, dtype=e_atom.dtype, device=e_atom.device).index_add(
            0, graph.structure, e_atom)

    # ---- evaluation ----------------------------------------------------------------
    def evaluate_graph(self, graph: Graph, positions, cells, forces=True, stress=False, create_graph=False):
        """Energies (B,), forces (N, 3) and stresses (B, 3, 3) for tensors already on the device."""
        pos = positions.detach().requires_grad_(forces or stress)
        cells = cells.detach()
        if stress:
            strain = torch.zeros_like(cells, requires_grad=True)
            deform = torch.eye(3, dtype=cells.dtype, device=cells.device) + strain
            pos_eff = torch.bmm(pos.unsqueeze(1), deform[graph.structure]).squeeze(1)
            cells_eff = torch.bmm(cells, deform)
        else:
            pos_eff, cells_eff = pos, cells
        energy = self(graph, pos_eff, cells_eff)
        out = {"energy": energy}
        if forces or stress:
            wrt = [pos] + ([strain] if stress else [])
            grads = torch.autograd.grad(energy.sum(), wrt, create_graph=create_graph)
            if forces:
                out["forces"] = -grads[0]
            if stress:
                vol = torch.abs(torch.linalg.det(cells))
                g = grads[1]
                out["stress"] = 0.5 * (g + g.transpose(1, 2)) / vol[:, None, None]
        return out

    def evaluate(self, structures, forces=True, stress=False):
        """Batched inference: ``structures`` is a list of ``(positions, numbers, cell, pbc)``
        or ase.Atoms; one forward pass for all. Returns numpy arrays: energy (B,),
        forces list of (n_i, 3), stress (B, 3, 3)."""
        structures = [as_tuple(s) for s in structures]
        graph = build_graph(structures, self.params, device=self.device, dtype=self.dtype)
        pos = torch.as_tensor(np.concatenate([s[0] for s in structures]), dtype=self.dtype, device=self.device)
        cells = torch.as_tensor(np.stack([_cell_or_box(s) for s in structures]), dtype=self.dtype, device=self.device)
        r = self.evaluate_graph(graph, pos, cells, forces=forces, stress=stress)
        res = {"energy": r["energy"].detach().cpu().numpy()}
        if forces:
            f = r["forces"].detach().cpu().numpy()
            res["forces"] = np.split(f, np.cumsum([len(s[0]) for s in structures])[:-1])
        if stress:
            res["stress"] = r["stress"].detach().cpu().numpy()
        return res

    # ---- persistence -----------------------------------------------------------------
    def save(self, path: str, metadata: dict | None = None):
        """Write ``path`` (tensor state_dict) and ``path + '.json'`` (metadata)."""
        meta = {"format_version": FORMAT_VERSION, "kind": "ionscale.bp_potential",
                "feature_params": self.params.to_dict(), "hidden": self.hidden,
                "dtype": str(self.dtype).replace("torch.", "")}
        meta.update(metadata or {})
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        torch.save(state, path)
        with open(path + ".json", "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)

    @classmethod
    def load(cls, path: str, device=None, dtype=None) -> "BPPotential":
        """Load a model written by :meth:`save` (no unpickling of arbitrary objects)."""
        meta_path = path + ".json"
        if not os.path.exists(path) or not os.path.exists(meta_path):
            raise FileNotFoundError(f"model file {path} or its metadata {meta_path} not found")
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("kind") != "ionscale.bp_potential":
            raise ValueError(f"{meta_path} is not an ionscale potential (kind={meta.get('kind')!r})")
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(FeatureParams(**meta["feature_params"]), hidden=meta["hidden"])
        model.to(dtype=getattr(torch, meta.get("dtype", "float64")))  # load weights without rounding
        model.load_state_dict(state)
        model.metadata = meta
        model.to(device=device or default_device(), dtype=dtype or getattr(torch, meta.get("dtype", "float64")))
        return model


def as_tuple(s):
    if hasattr(s, "get_positions"):
        return (s.get_positions(), s.get_atomic_numbers(), np.asarray(s.cell[:]), np.asarray(s.pbc))
    return s


def _cell_or_box(s):
    cell = np.asarray(s[2], float).reshape(3, 3)
    if abs(np.linalg.det(cell)) < 1e-12:
        return np.eye(3)  # molecule: cell unused (no periodic shifts), keep bmm shapes valid
    return cell
