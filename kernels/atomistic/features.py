"""ANI-style atom-centred symmetry functions ("atomic environment vectors"), in torch.

With the smooth cutoff ``f_c(r) = 0.5 cos(pi r / R_c) + 0.5`` (r < R_c, else 0):

radial (Behler G2), one block per neighbour species Z and shift R_s,k:

    G^R_i[Z, k] = sum_{j in Z, r_ij < R_cr} 0.25 exp(-eta_R (r_ij - R_s,k)^2) f_c(r_ij; R_cr)

angular (ANI modified G4), one block per unordered neighbour-species pair (Z1, Z2),
angle shift theta_s,m and radial shift R_s,l, summed over unordered neighbour pairs j < k:

    G^A_i[Z1Z2, m, l] = 2^(1-zeta) sum (1 + cos(theta_ijk - theta_s,m))^zeta
                        exp(-eta_A ((r_ij + r_ik)/2 - R_s,l)^2) f_c(r_ij; R_ca) f_c(r_ik; R_ca)

with ``theta_ijk = arccos(0.95 cos)`` (ANI's factor keeps the derivative finite for
collinear triplets; evaluated as cos(theta - theta_s) = c cos theta_s + sqrt(1 - c^2) sin theta_s
with c = 0.95 cos, which never reaches |c| = 1). Index arrays (pairs, triplets) come from the cell list in numpy;
all distances are recomputed in torch from positions and cell so energies are
differentiable with respect to both (forces and stress by autograd).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .neighbors import neighbor_list_unwrapped


@dataclass
class FeatureParams:
    """Symmetry-function hyper-parameters (lengths in Angstrom)."""

    species: list  # atomic numbers, fixes the order of the per-species blocks
    radial_cutoff: float = 5.0
    angular_cutoff: float = 3.5
    radial_eta: float = 16.0
    radial_shifts: list = field(default_factory=lambda: np.linspace(1.2, 4.9, 16).round(4).tolist())
    angular_eta: float = 8.0
    angular_zeta: float = 16.0
    angle_shifts: list = field(default_factory=lambda: (np.pi * (np.arange(4) + 0.5) / 4).round(6).tolist())
    angular_shifts: list = field(default_factory=lambda: np.linspace(2.2, 3.4, 4).round(4).tolist())

    def __post_init__(self):
        self.species = [int(z) for z in self.species]
        if len(set(self.species)) != len(self.species) or not self.species:
            raise ValueError(f"species must be distinct atomic numbers, got {self.species}")
        if self.angular_cutoff > self.radial_cutoff:
            raise ValueError("angular_cutoff must not exceed radial_cutoff")

    @property
    def n_species(self):
        return len(self.species)

    @property
    def n_radial(self):
        return self.n_species * len(self.radial_shifts)

    @property
    def n_angular(self):
        s = self.n_species
        return s * (s + 1) // 2 * len(self.angle_shifts) * len(self.angular_shifts)

    @property
    def n_features(self):
        return self.n_radial + self.n_angular

    def to_dict(self):
        return asdict(self)


@dataclass
class Graph:
    """Index arrays of a batch of structures (all torch tensors on one device).

    ``species`` (N,) species index; ``structure`` (N,) structure of each atom;
    ``pair_i, pair_j`` (P,) with ``pair_shift`` (P, 3) integer image shifts (as float) and
    ``pair_structure`` (P,); ``angular`` (P_a,) indices into the pair arrays of pairs
    shorter than the angular cutoff; ``trip_a, trip_b`` (T,) indices into ``angular``.
    """

    species: torch.Tensor
    structure: torch.Tensor
    n_structures: int
    n_atoms: torch.Tensor
    pair_i: torch.Tensor
    pair_j: torch.Tensor
    pair_shift: torch.Tensor
    pair_structure: torch.Tensor
    angular: torch.Tensor
    trip_a: torch.Tensor
    trip_b: torch.Tensor


def species_index(numbers, species) -> np.ndarray:
    lookup = np.full(max(max(species), int(np.max(numbers))) + 1, -1, np.int64)
    lookup[np.asarray(species)] = np.arange(len(species))
    idx = lookup[np.asarray(numbers, np.int64)]
    if (idx < 0).any():
        bad = sorted(set(np.asarray(numbers)[idx < 0].tolist()))
        raise ValueError(f"atomic numbers {bad} are not among the model's species {list(species)}")
    return idx


def _triplets(center: np.ndarray):
    """All unordered pairs (a < b) of entries sharing the same centre; ``center`` sorted."""
    n = len(center)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, center[1:] != center[:-1]])
    counts = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, counts)
    after = np.repeat(counts, counts) - rank - 1
    first = np.repeat(np.arange(n), after)
    offs = np.arange(len(first)) - np.repeat(np.cumsum(after) - after, after)
    return first, first + offs + 1


def build_graph(structures, params: FeatureParams, device="cpu", dtype=torch.float64) -> Graph:
    """Neighbour and triplet indices for a list of ``(positions, numbers, cell, pbc)``."""
    sp, st, pi, pj, ps, pst, ang, nat = [], [], [], [], [], [], [], []
    offset = 0
    poff = 0
    for s, (pos, num, cell, pbc) in enumerate(structures):
        pos = np.asarray(pos, float)
        cell = np.asarray(cell, float).reshape(3, 3)
        i, j, sh = neighbor_list_unwrapped(pos, cell, pbc, params.radial_cutoff)
        sh = sh.astype(np.float64)
        # explicit rows: numpy's (P, 3) @ (3, 3) matmul is several times slower
        v = pos[j] - pos[i] + sh[:, :1] * cell[0] + sh[:, 1:2] * cell[1] + sh[:, 2:] * cell[2]
        d = np.sqrt(np.einsum("ij,ij->i", v, v))
        if len(i) > 1 and (np.diff(i) < 0).any():  # triplet enumeration needs centre-sorted pairs
            order = np.argsort(i, kind="stable")
            i, j, sh, d = i[order], j[order], sh[order], d[order]
        sp.append(species_index(num, params.species))
        st.append(np.full(len(pos), s))
        nat.append(len(pos))
        pi.append(i + offset)
        pj.append(j + offset)
        ps.append(sh)
        pst.append(np.full(len(i), s))
        ang.append(np.flatnonzero(d < params.angular_cutoff) + poff)
        offset += len(pos)
        poff += len(i)
    cat = np.concatenate
    pair_i = cat(pi)
    angular = cat(ang)
    ta, tb = _triplets(pair_i[angular])
    T = lambda a, dt=torch.long: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
    return Graph(species=T(cat(sp)), structure=T(cat(st)), n_structures=len(structures),
                 n_atoms=T(np.asarray(nat)), pair_i=T(pair_i), pair_j=T(cat(pj)),
                 pair_shift=T(cat(ps), dtype), pair_structure=T(cat(pst)),
                 angular=T(angular), trip_a=T(ta), trip_b=T(tb))


def _cutoff_fn(d, rc):
    return 0.5 * torch.cos(d * (math.pi / rc)) + 0.5


def compute_features(params: FeatureParams, graph: Graph, positions: torch.Tensor, cells: torch.Tensor):
    """Symmetry functions (N, n_features) from positions (N, 3) and cells (B, 3, 3)."""
    n = positions.shape[0]
    S = params.n_species
    dt, dev = positions.dtype, positions.device
    shift_vec = torch.bmm(graph.pair_shift.unsqueeze(1), cells[graph.pair_structure]).squeeze(1)
    vec = positions[graph.pair_j] - positions[graph.pair_i] + shift_vec
    d = torch.linalg.vector_norm(vec, dim=1)

    rs = torch.as_tensor(params.radial_shifts, dtype=dt, device=dev)
    x = d[:, None] - rs
    # constants folded into the per-pair factor: fewer full-size (P, K) multiplications
    rad = torch.exp(-params.radial_eta * (x * x)) * (0.25 * _cutoff_fn(d, params.radial_cutoff))[:, None]
    k_r = len(params.radial_shifts)
    g_rad = torch.zeros(n * S, k_r, dtype=dt, device=dev)
    g_rad = g_rad.index_add(0, graph.pair_i * S + graph.species[graph.pair_j], rad).reshape(n, S * k_r)

    va = vec[graph.angular]
    da = d[graph.angular]
    a, b = graph.trip_a, graph.trip_b
    cos = 0.95 * (va[a] * va[b]).sum(1) / (da[a] * da[b])
    # cos(theta - theta_s) with theta = arccos(0.95 cos): no arccos/cos on (T, n_theta) arrays
    sin = torch.sqrt(1 - cos * cos)
    ts = torch.as_tensor(params.angle_shifts, dtype=dt, device=dev)
    ras = torch.as_tensor(params.angular_shifts, dtype=dt, device=dev)
    zeta = params.angular_zeta
    ang_part = (1 + cos[:, None] * torch.cos(ts) + sin[:, None] * torch.sin(ts)) ** zeta
    fca = _cutoff_fn(da, params.angular_cutoff)
    y = (da[a] + da[b])[:, None] / 2 - ras
    rad_part = torch.exp(-params.angular_eta * (y * y)) * (2.0 ** (1 - zeta) * fca[a] * fca[b])[:, None]
    terms = (ang_part[:, :, None] * rad_part[:, None, :]).reshape(len(a), ts.numel() * ras.numel())
    sj = graph.species[graph.pair_j[graph.angular[a]]]
    sk = graph.species[graph.pair_j[graph.angular[b]]]
    lo, hi = torch.minimum(sj, sk), torch.maximum(sj, sk)
    pair_code = lo * S - lo * (lo - 1) // 2 + (hi - lo)  # index of (lo, hi) in the upper triangle
    n_pairs = S * (S + 1) // 2
    centre = graph.pair_i[graph.angular[a]]
    g_ang = torch.zeros(n * n_pairs, terms.shape[1], dtype=dt, device=dev)
    g_ang = g_ang.index_add(0, centre * n_pairs + pair_code, terms).reshape(n, -1)
    return torch.cat([g_rad, g_ang], dim=1)
