"""Periodic lattice models of an intercalation sublattice (lattice gas in the occupation basis).

A configuration is an occupation vector ``n`` (``n_i = 1`` Li on site i, ``0`` vacancy) on a
periodic Bravais lattice (``triangular``: the Li layer of a layered oxide LiMO2 / an fcc (111)
plane; ``square`` and ``cubic`` for exact limits). The effective cluster Hamiltonian is

    E(n) = N_sites * e0 + e1 * sum_i n_i + sum_s J_s sum_{<ij> in shell s} n_i n_j
           + sum_t K_t sum_{(ijk) in triplet t} n_i n_j n_k                         [eV]

with ``J_s`` the pair interaction of the s-th neighbour shell (each pair counted once) and
``K_t`` the interaction of triangles whose three edges are all within the first ``t+1`` shells
(``K_0``: nearest-neighbour triangles). Per-site correlation functions

    phi(n) = [1, <n_i>, (1/N) sum_{shell s} n_i n_j, ..., (1/N) sum_{triplet t} n_i n_j n_k, ...]

make the energy per site linear in the effective cluster interactions (ECIs):
``E/N = phi(n) . [e0, e1, J_1.., K_..]`` -- the basis of the fit in :mod:`.lattice_fit`.

The flip of site i changes the energy by ``(1 - 2 n_i) * h_i`` with the local field
``h_i = e1 + sum_s J_s sum_{j in s(i)} n_j + sum_t K_t sum_{(j,k) in t(i)} n_j n_k``; the neighbour
tables used for it are precomputed here (``pair_table``, ``triplet_table``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: primitive vectors (rows) of the supported Bravais lattices, nearest-neighbour distance 1
_BASIS = {
    "square": np.array([[1.0, 0.0], [0.0, 1.0]]),
    "triangular": np.array([[1.0, 0.0], [0.5, np.sqrt(3.0) / 2.0]]),
    "cubic": np.eye(3),
}
LATTICE_KINDS = tuple(_BASIS)


@dataclass
class Lattice:
    """A periodic ``shape`` supercell of a Bravais lattice with neighbour and triplet tables.

    ``pair_table[s]``: (N, z_s) site indices of the s-th neighbour shell of every site;
    ``shell_distances[s]``: its distance (nearest-neighbour distance = 1);
    ``triplet_table[t]``: (N, m_t, 2) the two partner sites of every triplet of kind t containing
    the site; ``triplets[t]``: (M_t, 3) each triplet of kind t once.
    """

    kind: str
    shape: tuple
    n_pair_shells: int = 1
    n_triplet_kinds: int = 0
    pair_table: list = field(default_factory=list, repr=False)
    shell_distances: np.ndarray = field(default=None, repr=False)
    triplet_table: list = field(default_factory=list, repr=False)
    triplets: list = field(default_factory=list, repr=False)

    @property
    def n_sites(self) -> int:
        return int(np.prod(self.shape))

    @property
    def dim(self) -> int:
        return len(self.shape)

    @property
    def n_features(self) -> int:
        return 2 + self.n_pair_shells + self.n_triplet_kinds

    def feature_names(self) -> list[str]:
        return (["e0", "e1"] + [f"J{s + 1}" for s in range(self.n_pair_shells)]
                + [f"K{t + 1}" for t in range(self.n_triplet_kinds)])

    def coordinates(self) -> np.ndarray:
        """Cartesian site positions (N, dim) in units of the nearest-neighbour distance."""
        idx = np.indices(self.shape).reshape(self.dim, -1).T
        return idx @ _BASIS[self.kind]

    def site_index(self, frac_index: np.ndarray) -> np.ndarray:
        """Site numbers of integer cell indices (..., dim), wrapped periodically."""
        frac_index = np.asarray(frac_index) % np.asarray(self.shape)
        return np.ravel_multi_index(tuple(np.moveaxis(frac_index, -1, 0)), self.shape)


def _offset_shells(kind: str, n_shells: int):
    """Integer offsets of the first ``n_shells`` neighbour shells and their distances."""
    basis = _BASIS[kind]
    dim = basis.shape[0]
    r = n_shells + 2  # offsets up to this many cells reach well past shell n_shells
    grid = np.stack(np.meshgrid(*([np.arange(-r, r + 1)] * dim), indexing="ij"), -1).reshape(-1, dim)
    dist = np.linalg.norm(grid @ basis, axis=1)
    keep = dist > 1e-9
    grid, dist = grid[keep], dist[keep]
    levels = np.unique(np.round(dist, 6))[:n_shells]
    shells = [grid[np.isclose(dist, d, atol=1e-6)] for d in levels]
    return shells, levels


def make_lattice(kind: str, shape, n_pair_shells: int = 1, n_triplet_kinds: int = 0) -> Lattice:
    """Build the neighbour tables of a periodic ``kind`` lattice of ``shape`` cells.

    Raises ``ValueError`` for an unknown kind, a shape of the wrong dimension, or a cell too small
    for its neighbour shells to be distinct sites (each side must exceed twice the farthest offset).
    """
    if kind not in _BASIS:
        raise ValueError(f"lattice kind '{kind}' is not one of {', '.join(LATTICE_KINDS)}")
    dim = _BASIS[kind].shape[0]
    shape = tuple(int(s) for s in (shape if np.ndim(shape) else [shape] * dim))
    if len(shape) != dim:
        raise ValueError(f"a {kind} lattice needs {dim} cell counts, got shape {list(shape)}")
    if n_pair_shells < 1:
        raise ValueError("n_pair_shells must be at least 1")
    shells, dists = _offset_shells(kind, max(n_pair_shells, n_triplet_kinds))
    reach = max(int(np.abs(s).max()) for s in shells)
    if min(shape) <= 2 * reach:
        raise ValueError(f"lattice shape {list(shape)} too small for {len(shells)} neighbour shells: "
                         f"each side must be > {2 * reach} cells")
    lat = Lattice(kind, shape, n_pair_shells, n_triplet_kinds, shell_distances=dists[:n_pair_shells])
    cells = np.indices(shape).reshape(dim, -1).T  # (N, dim), row k is site k
    for s in range(n_pair_shells):
        lat.pair_table.append(lat.site_index(cells[:, None, :] + shells[s][None, :, :]).astype(np.int32))
    # triplets of kind t: triangles whose three edges all lie within shells 0..t and that are
    # not of an earlier kind
    within = np.concatenate(shells[:max(n_triplet_kinds, 1)])
    shell_of = {tuple(o): k for k, sh in enumerate(shells) for o in sh}
    for t in range(n_triplet_kinds):
        pairs = []
        for a in within:
            for b in within:
                c = tuple(b - a)
                if c not in shell_of:
                    continue
                edges = (shell_of[tuple(a)], shell_of[tuple(b)], shell_of[c])
                if max(edges) == t:
                    pairs.append((a, b))
        if not pairs:
            lat.triplet_table.append(np.zeros((lat.n_sites, 0, 2), np.int32))
            lat.triplets.append(np.zeros((0, 3), np.int32))
            continue
        off = np.array(pairs)  # (m, 2, dim), unordered pair counted twice (a,b),(b,a): dedupe
        key = np.sort(np.stack([lat.site_index(off[:, 0]), lat.site_index(off[:, 1])], 1), axis=1)
        _, first = np.unique(key, axis=0, return_index=True)
        off = off[np.sort(first)]
        partners = lat.site_index(cells[:, None, None, :] + off[None, :, :, :]).astype(np.int32)
        lat.triplet_table.append(partners)
        tri = np.concatenate([np.arange(lat.n_sites, dtype=np.int32)[:, None, None].repeat(len(off), 1), partners], 2)
        tri = np.unique(np.sort(tri.reshape(-1, 3), axis=1), axis=0)
        lat.triplets.append(tri.astype(np.int32))
    return lat


def correlations(lat: Lattice, occupations) -> np.ndarray:
    """Per-site correlation functions phi (M, n_features) of occupation vectors (M, N) or (N,)."""
    n = np.atleast_2d(np.asarray(occupations, dtype=np.float64))
    if n.shape[1] != lat.n_sites:
        raise ValueError(f"occupations have {n.shape[1]} sites, the lattice has {lat.n_sites}")
    cols = [np.ones(len(n)), n.mean(1)]
    for tab in lat.pair_table:  # each pair appears twice in the per-site table
        cols.append(0.5 * (n[:, :, None] * n[:, tab]).sum((1, 2)) / lat.n_sites)
    for tri in lat.triplets:
        cols.append((n[:, tri[:, 0]] * n[:, tri[:, 1]] * n[:, tri[:, 2]]).sum(1) / lat.n_sites)
    return np.stack(cols, 1)


@dataclass
class ClusterHamiltonian:
    """ECIs [eV] on a lattice: ``e0`` (per site), ``e1`` (point), ``pairs[s]``, ``triplets[t]``."""

    e0: float = 0.0
    e1: float = 0.0
    pairs: tuple = (0.0,)
    triplets: tuple = ()

    @classmethod
    def from_vector(cls, vec, n_pair_shells, n_triplet_kinds):
        vec = np.asarray(vec, float)
        return cls(float(vec[0]), float(vec[1]), tuple(vec[2:2 + n_pair_shells]),
                   tuple(vec[2 + n_pair_shells:2 + n_pair_shells + n_triplet_kinds]))

    @classmethod
    def from_dict(cls, d: dict):
        """From ``{e0, e1, J1, J2, ..., K1, ...}`` (missing keys are zero)."""
        unknown = [k for k in d if k not in ("e0", "e1") and not (k[:1] in "JK" and k[1:].isdigit() and int(k[1:]) >= 1)]
        if unknown:
            raise ValueError(f"unknown ECI name(s) {unknown}: expected e0, e1, J1, J2, ..., K1, ...")
        n_j = max([int(k[1:]) for k in d if k.startswith("J")] or [1])
        n_k = max([int(k[1:]) for k in d if k.startswith("K")] or [0])
        return cls(float(d.get("e0", 0.0)), float(d.get("e1", 0.0)),
                   tuple(float(d.get(f"J{s + 1}", 0.0)) for s in range(n_j)),
                   tuple(float(d.get(f"K{t + 1}", 0.0)) for t in range(n_k)))

    def as_dict(self) -> dict:
        d = {"e0": self.e0, "e1": self.e1}
        d.update({f"J{s + 1}": float(j) for s, j in enumerate(self.pairs)})
        d.update({f"K{t + 1}": float(k) for t, k in enumerate(self.triplets)})
        return d

    def vector(self) -> np.ndarray:
        return np.array([self.e0, self.e1, *self.pairs, *self.triplets], float)

    def lattice(self, kind: str, shape) -> Lattice:
        """The lattice with as many shells/triplet kinds as this Hamiltonian uses."""
        return make_lattice(kind, shape, len(self.pairs), len(self.triplets))

    def energy(self, lat: Lattice, occupations) -> np.ndarray:
        """Total energies [eV] of occupation vectors (M, N) -> (M,) (or (N,) -> scalar)."""
        self._check(lat)
        one = np.ndim(occupations) == 1
        e = correlations(lat, occupations) @ self.vector() * lat.n_sites
        return float(e[0]) if one else e

    def flip_tables(self, lat: Lattice):
        """Flat tables for the Monte Carlo kernel: pair neighbours (N, z) with per-column coupling,
        triplet partners (N, m, 2) with per-column coupling."""
        self._check(lat)
        nbr = np.ascontiguousarray(np.concatenate(lat.pair_table, 1), dtype=np.int32)
        pair_j = np.concatenate([np.full(t.shape[1], j) for t, j in zip(lat.pair_table, self.pairs)])
        if lat.triplet_table:
            tri = np.ascontiguousarray(np.concatenate(lat.triplet_table, 1), dtype=np.int32)
            tri_k = np.concatenate([np.full(t.shape[1], k) for t, k in zip(lat.triplet_table, self.triplets)])
        else:
            tri, tri_k = np.zeros((lat.n_sites, 0, 2), np.int32), np.zeros(0)
        return nbr, pair_j.astype(np.float64), tri, tri_k.astype(np.float64)

    def _check(self, lat: Lattice):
        if lat.n_pair_shells != len(self.pairs) or lat.n_triplet_kinds != len(self.triplets):
            raise ValueError(f"Hamiltonian has {len(self.pairs)} pair shells and {len(self.triplets)} triplet kinds, "
                             f"the lattice {lat.n_pair_shells} and {lat.n_triplet_kinds}")
