"""Semi-grand-canonical (SGC) Metropolis Monte Carlo of a lattice gas, numba kernel + MPI scan.

At temperature T and Li chemical potential mu the chain samples exp(-beta (E(n) - mu N(n))),
``beta = 1/(k_B T)``, ``N = sum_i n_i``. A move picks a site uniformly at random and flips its
occupation; with the local field ``h_i`` (see :mod:`.lattice`) the change of the grand energy is

    dOmega = (1 - 2 n_i) (h_i - mu),   accepted with probability min(1, exp(-beta dOmega)),

updated in place (sequential, random-site Metropolis: detailed balance holds for each move).
One sweep = N attempted moves. After ``n_equil`` sweeps, N and E are recorded once per sweep for
``n_measure`` sweeps; from these the scan reports

    <x> = <N>/N_sites,   chi = d<x>/dmu = beta var(N) / N_sites   [1/eV],
    Binder cumulant of m = 2x - 1:  U = 1 - <m^4> / (3 <m^2>^2).

A scan runs two chains per (mu, T) point: one started from the empty lattice (the lithiation /
"up" branch) and one from the full lattice ("down"); their difference is the hysteresis of a
first-order (two-phase) region. Points x branches are independent tasks dealt round-robin over the
ranks of ``comm`` and allgathered; each task's seed is derived from (seed, point, branch) only, so
the result does not depend on the number of ranks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np

from .lattice import ClusterHamiltonian, Lattice

K_B_EV = 8.617333262e-5  # Boltzmann constant [eV/K]


@numba.njit(cache=True, nogil=True)
def _sgc_chain(occ, nbr, pair_j, tri, tri_k, e1, mu, beta, n_equil, n_measure, seed):
    """Run one chain in place on ``occ`` (int8, N); return per-sweep N and E-shift arrays."""
    np.random.seed(seed)
    n_sites = occ.shape[0]
    z = nbr.shape[1]
    m = tri.shape[1]
    count = 0
    for i in range(n_sites):
        count += occ[i]
    energy = 0.0  # tracked relative to the starting configuration
    n_rec = np.empty(n_measure, np.int64)
    e_rec = np.empty(n_measure, np.float64)
    for sweep in range(n_equil + n_measure):
        for _ in range(n_sites):
            i = np.random.randint(0, n_sites)
            h = e1
            for c in range(z):
                h += pair_j[c] * occ[nbr[i, c]]
            for c in range(m):
                h += tri_k[c] * (occ[tri[i, c, 0]] * occ[tri[i, c, 1]])
            dn = 1 - 2 * occ[i]
            d_omega = dn * (h - mu)
            if d_omega <= 0.0 or np.random.random() < np.exp(-beta * d_omega):
                occ[i] = 1 - occ[i]
                count += dn
                energy += dn * h
        if sweep >= n_equil:
            n_rec[sweep - n_equil] = count
            e_rec[sweep - n_equil] = energy
    return n_rec, e_rec


def task_seed(seed: int, point: int, branch: int) -> int:
    """Seed of one chain, independent of how tasks are spread over ranks."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, point, branch]).generate_state(1)[0] & 0x7FFFFFFF)


def run_chain(lat: Lattice, ham: ClusterHamiltonian, mu: float, temperature_K: float, n_equil: int,
              n_measure: int, seed: int, start=0):
    """One SGC chain; ``start`` is 0 (empty), 1 (full) or an occupation vector.
    Returns (N per sweep, total energy per sweep [eV], final occupations)."""
    nbr, pair_j, tri, tri_k = ham.flip_tables(lat)
    occ = (np.full(lat.n_sites, start, np.int8) if np.ndim(start) == 0 else np.array(start, np.int8))
    e_start = ham.energy(lat, occ)
    n_rec, e_rec = _sgc_chain(occ, nbr, pair_j, tri, tri_k, ham.e1, float(mu), 1.0 / (K_B_EV * temperature_K),
                              int(n_equil), int(n_measure), int(seed))
    return n_rec, e_rec + e_start, occ


@dataclass
class ScanResult:
    """Per point (rows) and branch (columns: 0 = from empty/up, 1 = from full/down)."""

    mu_eV: np.ndarray
    T_K: np.ndarray
    x: np.ndarray            # (P, 2) mean filling
    x_err: np.ndarray        # (P, 2) standard error (blocking)
    chi: np.ndarray          # (P, 2) d<x>/dmu = beta var(N)/N_sites [1/eV]
    binder: np.ndarray       # (P, 2) Binder cumulant of m = 2x-1
    energy_per_site: np.ndarray  # (P, 2) <E>/N_sites [eV]
    moves: int               # attempted moves over all ranks
    wall_s: float            # wall time of the slowest rank
    cpu_moves_per_s: float   # attempted moves per second per rank (mean over ranks)


def _blocked_error(series: np.ndarray, n_blocks: int = 16) -> float:
    """Standard error of the mean of a correlated series by averaging blocks."""
    nb = min(n_blocks, len(series))
    if nb < 2:
        return float("nan")
    blocks = series[: len(series) // nb * nb].reshape(nb, -1).mean(1)
    return float(blocks.std(ddof=1) / np.sqrt(nb))


def sgc_scan(lat: Lattice, ham: ClusterHamiltonian, mu_eV, temperature_K, *, n_equil: int = 1000,
             n_measure: int = 2000, seed: int = 0, branches=(0, 1), comm=None) -> ScanResult:
    """SGC Monte Carlo at each (mu, T) point (``temperature_K`` scalar or per point) for each
    branch start (0 empty, 1 full); tasks are spread over ``comm`` and allgathered.

    Raises ``ValueError`` for a non-positive temperature or sweep count.
    """
    mu = np.atleast_1d(np.asarray(mu_eV, float))
    temps = np.broadcast_to(np.asarray(temperature_K, float), mu.shape).copy()
    if np.any(temps <= 0):
        raise ValueError("temperature_K must be positive")
    if n_measure < 1 or n_equil < 0:
        raise ValueError("n_measure must be >= 1 and n_equil >= 0")
    rank, size = (comm.rank, comm.size) if comm is not None else (0, 1)
    tasks = [(p, b) for p in range(len(mu)) for b in branches]
    mine = {}
    t0 = time.perf_counter()
    for k, (p, b) in enumerate(tasks):
        if k % size != rank:
            continue
        n_rec, e_rec, _ = run_chain(lat, ham, mu[p], temps[p], n_equil, n_measure, task_seed(seed, p, b), start=b)
        x = n_rec / lat.n_sites
        mag = 2.0 * x - 1.0
        beta = 1.0 / (K_B_EV * temps[p])
        m2, m4 = np.mean(mag ** 2), np.mean(mag ** 4)
        mine[(p, b)] = (x.mean(), _blocked_error(x), beta * n_rec.var() / lat.n_sites,
                        1.0 - m4 / (3.0 * m2 ** 2) if m2 > 0 else 0.0, e_rec.mean() / lat.n_sites)
    wall = time.perf_counter() - t0
    n_mine = len(mine) * (n_equil + n_measure) * lat.n_sites
    if comm is not None and size > 1:
        gathered = comm.allgather((mine, wall, n_mine))
    else:
        gathered = [(mine, wall, n_mine)]
    allres = {}
    for d, _, _ in gathered:
        allres.update(d)

    arr = np.full((len(mu), 2, 5), np.nan)
    for (p, b), vals in allres.items():
        arr[p, b] = vals
    walls = [w for _, w, _ in gathered]
    moves = sum(n for _, _, n in gathered)
    rates = [n / w for _, w, n in gathered if w > 0 and n > 0]
    return ScanResult(mu, temps, arr[..., 0], arr[..., 1], arr[..., 2], arr[..., 3], arr[..., 4],
                      int(moves), float(max(walls)), float(np.mean(rates)) if rates else float("nan"))


def throughput(lat: Lattice, ham: ClusterHamiltonian, mu: float, temperature_K: float, n_sweeps: int,
               seed: int = 0, repeats: int = 3) -> float:
    """Best-of-``repeats`` attempted moves per second of one chain on this core (compiled first)."""
    run_chain(lat, ham, mu, temperature_K, 0, 1, seed)  # JIT warm-up
    best = np.inf
    for r in range(repeats):
        t0 = time.perf_counter()
        run_chain(lat, ham, mu, temperature_K, 0, n_sweeps, seed + r, start=0)
        best = min(best, time.perf_counter() - t0)
    return n_sweeps * lat.n_sites / best
