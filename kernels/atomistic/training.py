"""Training of a :class:`BPPotential` on a labelled :class:`Dataset`.

Loss over a minibatch of structures s with n_s atoms:

    L = w_E mean_s ((E_s^NN - E_s^ref) / n_s)^2 + w_F mean_{i,a} (F_ia^NN - F_ia^ref)^2

Before training: per-element reference energies e0 by least squares on the
composition matrix (E_s ~ sum_Z n_sZ e0_Z), per-element feature mean/std from the
training split, energy scale = RMS of the per-atom residual energy. Adam with
learning-rate reduction on plateau; early stopping when the validation loss has not
improved for ``patience`` epochs; the best-validation weights are kept.
Neighbour/triplet indices are built once per minibatch (positions are fixed). Optionally
(``jacobian_max_atoms``), for small structures the feature Jacobian dG_i/dx_a is precomputed once per minibatch
(forward-mode AD, one tangent per local atom coordinate shared by all structures of
the batch); forces are then F_a = -sum_i (dE/dG_i) . dG_i/dx_a, so an epoch only
differentiates the networks, not the symmetry functions (2x faster epochs on CPU but
a precomputation worth ~100 epochs, so off by default).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .dataset import Dataset
from .features import FeatureParams, build_graph, compute_features, species_index
from .model import BPPotential, default_device


@dataclass
class TrainConfig:
    hidden: tuple = (32, 32)
    energy_weight: float = 1.0
    force_weight: float = 0.1
    learning_rate: float = 3e-3
    batch_size: int = 16
    max_epochs: int = 300
    patience: int = 40
    validation_fraction: float = 0.15
    dtype: str = "float64"
    seed: int = 0
    max_seconds: float = 1e9
    jacobian_max_atoms: int = 0  # precompute feature Jacobians for structures up to this size (0: off)
    feature_params: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    model: BPPotential
    metrics: dict
    history: np.ndarray  # (epochs, 3): train loss, validation loss, learning rate


def _feature_jacobian(params, g, pos, cells):
    """Features G (N, F) and J (3 n_max, N, F): J[3a+c, i] = dG_i / dx_{a-th atom of i's structure, c}."""
    from torch.func import jvp, vmap

    nat = g.n_atoms.cpu().numpy()
    local = torch.as_tensor(np.concatenate([np.arange(n) for n in nat]), device=pos.device)
    n_max = int(nat.max())
    tangents = torch.zeros(n_max, 3, len(pos), 3, dtype=pos.dtype, device=pos.device)
    atom = torch.arange(len(pos), device=pos.device)
    for c in range(3):
        tangents[local, c, atom, c] = 1.0
    def feats(x):
        return compute_features(params, g, x, cells)
    with torch.no_grad():
        G = feats(pos)
        J = vmap(lambda v: jvp(feats, (pos,), (v,))[1], chunk_size=24)(tangents.reshape(3 * n_max, len(pos), 3))
    return G, J, local, n_max


def _batches(ds: Dataset, idx, size, params, device, dtype, jacobian_max_atoms=0):
    out = []
    for k in range(0, len(idx), size):
        sub = ds.subset(idx[k:k + size])
        st = sub.structures()
        g = build_graph(st, params, device=device, dtype=dtype)
        T = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=device)  # noqa: E731
        b = dict(graph=g, pos=T(np.concatenate([s[0] for s in st])), cells=T(np.stack([s[2] for s in st])),
                 energy=T(sub.energies), forces=T(np.concatenate(sub.forces)), n_atoms=g.n_atoms.to(dtype))
        if max(len(s[0]) for s in st) <= jacobian_max_atoms:
            b["G"], b["J"], b["local"], b["n_max"] = _feature_jacobian(params, g, b["pos"], b["cells"])
        out.append(b)
    return out


def _evaluate_with_jacobian(model, b, create_graph):
    g = b["graph"]
    G = b["G"].detach().requires_grad_(True)
    e_atom = model.atomic_energies(G, g.species)
    energy = torch.zeros(g.n_structures, dtype=e_atom.dtype, device=e_atom.device).index_add(0, g.structure, e_atom)
    dE_dG = torch.autograd.grad(e_atom.sum(), G, create_graph=create_graph)[0]
    per_tangent = torch.einsum("kif,if->ki", b["J"], dE_dG)
    per_structure = torch.zeros(per_tangent.shape[0], g.n_structures, dtype=G.dtype, device=G.device).index_add(
        1, g.structure, per_tangent)
    forces = -per_structure.reshape(b["n_max"], 3, -1)[b["local"], :, g.structure]
    return {"energy": energy, "forces": forces}


def _loss(model, b, cfg, create_graph=True):
    if "J" in b:
        r = _evaluate_with_jacobian(model, b, create_graph)
    else:
        r = model.evaluate_graph(b["graph"], b["pos"], b["cells"], forces=True, create_graph=create_graph)
    de = (r["energy"] - b["energy"]) / b["n_atoms"]
    df = r["forces"] - b["forces"]
    return cfg.energy_weight * (de ** 2).mean() + cfg.force_weight * (df ** 2).mean(), de, df


def error_metrics(model: BPPotential, ds: Dataset, batch_size=32) -> dict:
    """Energy RMSE/MAE per atom (eV/atom) and force-component RMSE/MAE (eV/A)."""
    de, df = [], []
    for k in range(0, len(ds), batch_size):
        sub = ds.subset(range(k, min(k + batch_size, len(ds))))
        r = model.evaluate(sub.structures(), forces=True)
        n = np.array([len(a) for a in sub.atoms])
        de.append((r["energy"] - sub.energies) / n)
        df.append(np.concatenate(r["forces"]) - np.concatenate(sub.forces))
    de, df = np.concatenate(de), np.concatenate(df).ravel()
    return {"energy_rmse_ev_per_atom": float(np.sqrt((de ** 2).mean())), "energy_mae_ev_per_atom": float(np.abs(de).mean()),
            "force_rmse_ev_per_a": float(np.sqrt((df ** 2).mean())), "force_mae_ev_per_a": float(np.abs(df).mean()),
            "n_structures": len(ds)}


def train(ds: Dataset, cfg: TrainConfig, device=None, log=None) -> TrainResult:
    if not ds.labelled:
        raise ValueError("training needs a labelled dataset (energy and forces)")
    if len(ds) < 4:
        raise ValueError(f"training needs at least 4 structures, got {len(ds)}")
    device = device or default_device()
    dtype = getattr(torch, cfg.dtype)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    species = sorted({int(z) for a in ds.atoms for z in a.get_atomic_numbers()})
    params = FeatureParams(species=species, **cfg.feature_params)
    model = BPPotential(params, hidden=cfg.hidden).to(device=device, dtype=dtype)

    perm = rng.permutation(len(ds))
    n_val = max(1, int(round(cfg.validation_fraction * len(ds))))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    train_ds = ds.subset(train_idx)

    # per-element reference energies by least squares on composition counts
    counts = np.stack([np.bincount(species_index(a.get_atomic_numbers(), species), minlength=len(species))
                       for a in train_ds.atoms]).astype(float)
    e0, *_ = np.linalg.lstsq(counts, train_ds.energies, rcond=None)
    resid = (train_ds.energies - counts @ e0) / counts.sum(1)
    # feature statistics per element on the training split
    with torch.no_grad():
        feats, spec = [], []
        for k in range(0, len(train_ds), 64):
            st = train_ds.subset(range(k, min(k + 64, len(train_ds)))).structures()
            g = build_graph(st, params, device=device, dtype=dtype)
            pos = torch.as_tensor(np.concatenate([s[0] for s in st]), dtype=dtype, device=device)
            cells = torch.as_tensor(np.stack([s[2] for s in st]), dtype=dtype, device=device)
            feats.append(compute_features(params, g, pos, cells))
            spec.append(g.species)
        feats, spec = torch.cat(feats), torch.cat(spec)
        for s in range(len(species)):
            x = feats[spec == s]
            if len(x):
                model.feature_mean[s] = x.mean(0)
                model.feature_std[s] = x.std(0).clamp_min(1e-4) if len(x) > 1 else 1.0
        model.energy_shift.copy_(torch.as_tensor(e0, dtype=dtype))
        model.energy_scale.fill_(max(float(np.sqrt((resid ** 2).mean())), 1e-2))

    train_b = _batches(ds, train_idx, cfg.batch_size, params, device, dtype, cfg.jacobian_max_atoms)
    val_b = _batches(ds, val_idx, cfg.batch_size, params, device, dtype, cfg.jacobian_max_atoms)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(2, cfg.patience // 4))
    best, best_state, since_best, history = math.inf, None, 0, []
    t0 = time.perf_counter()
    for epoch in range(cfg.max_epochs):
        model.train()
        tl = 0.0
        for k in rng.permutation(len(train_b)):
            opt.zero_grad()
            loss, _, _ = _loss(model, train_b[k], cfg)
            loss.backward()
            opt.step()
            tl += float(loss.detach()) / len(train_b)
        vl = sum(float(_loss(model, b, cfg, create_graph=False)[0].detach()) for b in val_b) / len(val_b)
        sched.step(vl)
        history.append((tl, vl, opt.param_groups[0]["lr"]))
        if vl < best * (1 - 1e-4):
            best, since_best = vl, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since_best += 1
        if log and (epoch % 10 == 0):
            log(f"epoch {epoch}: train {tl:.3e} validation {vl:.3e}")
        if since_best >= cfg.patience or time.perf_counter() - t0 > cfg.max_seconds:
            break
    model.load_state_dict(best_state)
    model.eval()
    metrics = {"train": error_metrics(model, train_ds), "validation": error_metrics(model, ds.subset(val_idx)),
               "epochs": len(history), "best_validation_loss": best, "train_seconds": time.perf_counter() - t0,
               "training_data_hash": ds.content_hash()}
    return TrainResult(model, metrics, np.asarray(history))
