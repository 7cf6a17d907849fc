"""Effective cluster interactions by cross-validated ridge regression (cluster-expansion style).

Energies per site of M configurations are modelled as ``E_m / N = phi(n_m) . w`` with the
correlation functions ``phi`` of :func:`.lattice.correlations` and ECIs ``w = [e0, e1, J.., K..]``.
The ridge estimate for a regularisation ``alpha`` (the constant ``e0`` is not penalised) is

    w = (Phi^T Phi + alpha D)^-1 Phi^T e,     D = diag(0, 1, 1, ...),

its leave-one-out residuals follow without refitting from the hat matrix
``H = Phi (Phi^T Phi + alpha D)^-1 Phi^T``: ``r_i^LOO = r_i / (1 - H_ii)``; k-fold CV refits.
``alpha`` is chosen on a grid by the lowest CV RMSE; that CV RMSE is reported.

Energy sources: any callable ``energy(occupations (M, N)) -> energies (M,) [eV]``, or arrays of
(occupations, energies). :class:`LayerEnergy` labels decorations of an fcc (111) layer (a
triangular lattice) in a rigid periodic fcc crystal with any ASE calculator: EMT (an offline
stand-in for ab-initio data) or the learned potential (``IonscaleCalculator``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lattice import ClusterHamiltonian, Lattice, correlations


@dataclass
class ECIFit:
    hamiltonian: ClusterHamiltonian
    alpha: float
    cv_rmse_eV_per_site: float
    fit_rmse_eV_per_site: float
    cv: str
    n_configs: int
    alphas: np.ndarray
    cv_curve: np.ndarray


def random_occupations(lat: Lattice, n_configs: int, rng: np.random.Generator) -> np.ndarray:
    """``n_configs`` occupation vectors (int8) with fillings uniform in [0, 1], end members included."""
    if n_configs < 2:
        raise ValueError("need at least 2 configurations (the empty and the full lattice)")
    occ = np.zeros((n_configs, lat.n_sites), np.int8)
    occ[1] = 1
    fill = rng.uniform(0, 1, n_configs - 2)
    occ[2:] = rng.random((n_configs - 2, lat.n_sites)) < fill[:, None]
    return occ


def _ridge(phi, y, alpha):
    d = np.ones(phi.shape[1])
    d[0] = 0.0
    a = phi.T @ phi + alpha * np.diag(d)
    return np.linalg.lstsq(a, phi.T @ y, rcond=None)[0], a


def _cv_rmse(phi, y, alpha, cv, rng):
    if cv == "loo":
        w, a = _ridge(phi, y, alpha)
        hat = np.einsum("ij,ji->i", phi, np.linalg.pinv(a) @ phi.T)
        r = (y - phi @ w) / np.clip(1.0 - hat, 1e-12, None)
        return float(np.sqrt(np.mean(r ** 2)))
    folds = np.array_split(rng.permutation(len(y)), int(cv))
    err = []
    for f in folds:
        train = np.setdiff1d(np.arange(len(y)), f)
        w, _ = _ridge(phi[train], y[train], alpha)
        err.append((y[f] - phi[f] @ w) ** 2)
    return float(np.sqrt(np.mean(np.concatenate(err))))


def fit_ecis(lat: Lattice, occupations, energies, *, alphas=None, cv="loo", seed: int = 0) -> ECIFit:
    """Fit ECIs on ``lat`` to total ``energies`` [eV] of ``occupations`` (M, N).

    ``cv``: ``"loo"`` or an integer number of folds (>= 2). ``alphas``: regularisation grid
    (default 0 and 1e-10 .. 1e-1). Raises ``ValueError`` for mismatched shapes, non-finite
    energies, fewer configurations than ECIs, or a bad ``cv``.
    """
    occ = np.asarray(occupations)
    e = np.asarray(energies, float)
    if occ.ndim != 2 or occ.shape[1] != lat.n_sites or len(e) != len(occ):
        raise ValueError(f"need occupations (M, {lat.n_sites}) and M energies, got {occ.shape} and {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError("energies contain NaN or inf")
    if len(e) <= lat.n_features:
        raise ValueError(f"{len(e)} configurations cannot determine {lat.n_features} ECIs: give more")
    if not (cv == "loo" or (isinstance(cv, (int, np.integer)) and 2 <= cv <= len(e))):
        raise ValueError(f"cv must be 'loo' or a number of folds in [2, {len(e)}], got {cv!r}")
    phi = correlations(lat, occ)
    y = e / lat.n_sites
    alphas = np.asarray([0.0, *np.logspace(-10, -1, 10)] if alphas is None else alphas, float)
    curve = np.array([_cv_rmse(phi, y, a, cv, np.random.default_rng(seed)) for a in alphas])
    best = int(np.nanargmin(curve))
    w, _ = _ridge(phi, y, alphas[best])
    ham = ClusterHamiltonian.from_vector(w, lat.n_pair_shells, lat.n_triplet_kinds)
    return ECIFit(ham, float(alphas[best]), float(curve[best]), float(np.sqrt(np.mean((phi @ w - y) ** 2))),
                  "loo" if cv == "loo" else f"{int(cv)}-fold", len(e), alphas, curve)


def fit_from_source(lat: Lattice, energy, n_configs: int, seed: int = 0, comm=None,
                    **kw) -> tuple[ECIFit, np.ndarray, np.ndarray]:
    """Sample random configurations, label them with ``energy(occupations) -> (M,)`` and fit.

    With ``comm`` every rank draws the same configurations, labels a round-robin share of them
    (the energy source is the costly part) and the energies are allgathered.
    """
    occ = random_occupations(lat, n_configs, np.random.default_rng(seed))
    rank, size = (comm.rank, comm.size) if comm is not None else (0, 1)
    mine = np.arange(rank, n_configs, size)
    e_mine = np.asarray(energy(occ[mine]), float) if len(mine) else np.zeros(0)
    if e_mine.shape != mine.shape:
        raise ValueError(f"the energy source returned shape {e_mine.shape}, expected ({len(mine)},)")
    e = np.empty(n_configs)
    if size > 1:
        for r, part in enumerate(comm.allgather(e_mine)):
            e[r::size] = part
    else:
        e[:] = e_mine
    return fit_ecis(lat, occ, e, seed=seed, **kw), occ, e


class LayerEnergy:
    """Energies of decorations of one fcc (111) layer (a triangular lattice) in a rigid periodic fcc
    crystal of ``host`` atoms, from an ASE calculator (unrelaxed).

    Occupied sites (``n = 1``, the "Li" of this stand-in chemistry) hold a ``guest`` atom, empty
    sites a ``host`` atom; with ``guest=None`` occupied sites hold a host atom and empty sites are
    vacancies. ``layers`` further host layers complete the crystal. ``calculator`` is a zero-argument
    factory of ASE calculators (default: EMT; e.g. ``lambda: IonscaleCalculator(model_path)`` for the
    learned potential). ``reference_energy_eV`` is the energy of moving one guest from its bulk metal
    into the reservoir convention of mu: ``E_bulk(guest) - E_bulk(host)`` per atom (``E_bulk(host)``
    for vacancies) -- the "anode". ``batch_energy(list of Atoms) -> (M,)``, when given, labels all
    configurations of a call at once (batched inference of the learned potential).
    """

    def __init__(self, lat: Lattice, host: str = "Cu", guest: str | None = "Au", layers: int = 3,
                 calculator=None, batch_energy=None):
        from ase.build import bulk, fcc111

        if calculator is None:
            from ase.calculators.emt import EMT as calculator
        if lat.kind != "triangular" or lat.shape[0] != lat.shape[1]:
            raise ValueError("the (111)-layer source needs a square-shaped triangular lattice (L, L)")
        if layers < 2:
            raise ValueError("need at least 2 host layers")
        n = lat.shape[0]
        self.host, self.guest, self._calculator, self._batch = host, guest, calculator, batch_energy
        slab = fcc111(host, size=(n, n, layers + 1), periodic=True)
        top = np.flatnonzero(slab.get_tags() == 1)
        frac = slab.get_scaled_positions()[top, :2] * n
        if np.abs(frac - np.rint(frac)).max() > 1e-6:
            raise ValueError("fcc111 layer does not map onto the lattice sites")
        site = lat.site_index(np.rint(frac).astype(int) % n)
        if len(np.unique(site)) != lat.n_sites:
            raise ValueError("fcc111 layer does not map one-to-one onto the lattice sites")
        self._slab, self._layer_atoms = slab, top[np.argsort(site)]  # atom of site k

        def bulk_energy(el):
            b = bulk(el, "fcc", cubic=True).repeat(2)
            b.calc = calculator()
            return float(b.get_potential_energy() / len(b))

        self.reference_energy_eV = (bulk_energy(guest) - bulk_energy(host)) if guest else bulk_energy(host)

    def structures(self, occupations) -> list:
        """ASE Atoms of each occupation vector."""
        out = []
        for o in np.atleast_2d(np.asarray(occupations)):
            atoms = self._slab.copy()
            if self.guest:
                symbols = np.array(atoms.get_chemical_symbols(), dtype=object)
                symbols[self._layer_atoms[o == 1]] = self.guest
                atoms.set_chemical_symbols(list(symbols))
            else:
                del atoms[self._layer_atoms[o == 0]]
            out.append(atoms)
        return out

    def __call__(self, occupations) -> np.ndarray:
        structures = self.structures(occupations)
        if self._batch is not None:
            return np.asarray(self._batch(structures), float)
        out = np.empty(len(structures))
        for m, atoms in enumerate(structures):  # one calculator call per configuration
            atoms.calc = self._calculator()
            out[m] = atoms.get_potential_energy()
        return out
