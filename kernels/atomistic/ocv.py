"""Open-circuit voltage from a semi-grand-canonical scan: V(x), two-phase regions, OCV table.

The cell voltage against Li metal at Li chemical potential mu (per Li, eV, same energy scale as
the lattice Hamiltonian) is

    V = V0 - (mu - mu_Li,metal) / e                                                     [V]

with ``mu_Li,metal`` the energy per Li of the metal anode and ``V0`` an optional reference shift
(e.g. a correction of the energy source). For a non-interacting lattice gas (site energy e1)
``x = 1 / (1 + exp((e1 - mu)/kT))`` i.e. ``V = V0 - (e1 - mu_metal)/e + (kT/e) ln((1-x)/x)``.

Two-phase regions: where the chain started from the empty lattice ("up") and the one started from
the full lattice ("down") disagree (hysteresis) or where ``<x>`` jumps between neighbouring mu
points by more than the susceptibility chi = d<x>/dmu explains. The coexistence chemical potential is located by thermodynamic integration of both
branches of the grand potential per site, ``omega(mu) = -kT ln Z / N_sites``, ``d omega/dmu = -x``,

    omega_up(mu)   = omega_dilute(mu_min) - int_{mu_min}^{mu} x_up dmu'
    omega_down(mu) = omega_full(mu_max)  + int_{mu}^{mu_max} x_down dmu'

anchored where the lattice is nearly empty / full by the independent-particle / independent-vacancy
limits ``omega_dilute = e0 - kT ln(1 + exp(-(e1 - mu)/kT))`` and
``omega_full = E_full/N - mu - kT ln(1 + exp(-(mu - h_full)/kT))`` (``h_full``: local field of a
site of the full lattice). The stable branch has the lower omega; coexistence is where they cross,
and the OCV there is a plateau from ``x_low`` to ``x_high``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lattice import ClusterHamiltonian, Lattice
from .montecarlo import K_B_EV, ScanResult


@dataclass
class TwoPhaseRegion:
    mu_coexistence_eV: float
    x_low: float
    x_high: float
    method: str  # "integration" (omega branches crossed), "hysteresis" (middle of the loop: branches did
    #              not cross, e.g. anchors off) or "jump" (midpoint of a jump in <x>)


@dataclass
class OCVTable:
    """Equilibrium OCV: ``x`` strictly increasing, ``ocv_V`` non-increasing, plateaus included."""

    x: np.ndarray
    ocv_V: np.ndarray
    mu_eV: np.ndarray            # the scan's chemical potentials
    x_equilibrium: np.ndarray    # stable-branch <x> at each mu
    voltage_V: np.ndarray        # V at each mu
    omega_up: np.ndarray         # grand potential per site of both branches [eV]
    omega_down: np.ndarray
    regions: list
    anchors_ok: bool             # the scan's ends reach the dilute/full limits the anchors assume


def full_lattice_terms(lat: Lattice, ham: ClusterHamiltonian):
    """Energy per site of the full lattice and the local field of one of its sites [eV]."""
    z = [t.shape[1] for t in lat.pair_table]
    m = [t.shape[1] for t in lat.triplet_table]
    m_unique = [len(t) / lat.n_sites for t in lat.triplets]
    e_full = ham.e0 + ham.e1 + sum(0.5 * zs * j for zs, j in zip(z, ham.pairs)) + sum(
        mt * k for mt, k in zip(m_unique, ham.triplets))
    h_full = ham.e1 + sum(zs * j for zs, j in zip(z, ham.pairs)) + sum(mt * k for mt, k in zip(m, ham.triplets))
    return e_full, h_full


def _cumtrapz(y, x):
    return np.concatenate([[0.0], np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(x))])


def grand_potential_branches(scan: ScanResult, lat: Lattice, ham: ClusterHamiltonian):
    """omega_up, omega_down per site [eV] at each mu of a single-temperature scan (sorted mu)."""
    mu = scan.mu_eV
    kt = K_B_EV * float(scan.T_K[0])
    x_up, x_down = scan.x[:, 0], scan.x[:, 1]
    e_full, h_full = full_lattice_terms(lat, ham)
    om0 = ham.e0 - kt * np.logaddexp(0.0, -(ham.e1 - mu[0]) / kt)
    om1 = e_full - mu[-1] - kt * np.logaddexp(0.0, -(mu[-1] - h_full) / kt)
    omega_up = om0 - _cumtrapz(x_up, mu)
    int_down = _cumtrapz(x_down, mu)
    omega_down = om1 + (int_down[-1] - int_down)
    return omega_up, omega_down


def ocv_from_scan(scan: ScanResult, lat: Lattice, ham: ClusterHamiltonian, *, mu_metal_eV: float = 0.0,
                  v0_V: float = 0.0, hysteresis_tol: float = 0.05, jump_tol: float = 0.15,
                  jump_factor: float = 2.0, dilute_tol: float = 0.02) -> OCVTable:
    """Equilibrium V(x) and two-phase regions of a two-branch scan at one temperature.

    ``hysteresis_tol``: |x_up - x_down| above which a point lies in a hysteresis loop;
    ``jump_tol``: a rise of the stable <x> between neighbouring points above which the interval is
    taken as a two-phase region, provided the rise also exceeds ``jump_factor`` times the rise
    chi dmu that the fluctuations of a continuous branch predict; ``dilute_tol``: how close to 0/1 the scan's ends must get for the
    integration anchors to be trusted (``anchors_ok``).
    Raises ``ValueError`` if the scan has several temperatures, fewer than 3 points, unsorted mu or
    lacks either branch.
    """
    mu = scan.mu_eV
    if len(mu) < 3 or np.any(np.diff(mu) <= 0):
        raise ValueError("the OCV needs at least 3 chemical potentials in increasing order")
    if not np.allclose(scan.T_K, scan.T_K[0]):
        raise ValueError("the OCV needs a scan at a single temperature")
    if np.isnan(scan.x).any():
        raise ValueError("the OCV needs both branches (chains from the empty and the full lattice)")
    x_up, x_down = scan.x[:, 0], scan.x[:, 1]
    omega_up, omega_down = grand_potential_branches(scan, lat, ham)
    anchors_ok = bool(x_up[0] < dilute_tol and x_down[-1] > 1 - dilute_tol)
    hyst = np.abs(x_down - x_up) > hysteresis_tol
    x_eq = np.where(hyst, np.where(omega_up <= omega_down, x_up, x_down), 0.5 * (x_up + x_down))
    regions: list[TwoPhaseRegion] = []
    # hysteresis loops: contiguous runs of hysteretic points; coexistence where the omegas cross
    idx = np.flatnonzero(hyst)
    if idx.size:
        runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
        for run in runs:
            lo, hi = max(run[0] - 1, 0), min(run[-1] + 1, len(mu) - 1)
            d = omega_up[lo:hi + 1] - omega_down[lo:hi + 1]
            sign = np.flatnonzero((d[:-1] < 0) & (d[1:] >= 0))
            if sign.size:
                k = lo + sign[0]
                f = (omega_up[k] - omega_down[k]) / ((omega_up[k] - omega_down[k]) - (omega_up[k + 1] - omega_down[k + 1]))
                mu_c = mu[k] + f * (mu[k + 1] - mu[k])
                xl = x_up[k] + f * (x_up[k + 1] - x_up[k])
                xh = x_down[k] + f * (x_down[k + 1] - x_down[k])
                regions.append(TwoPhaseRegion(float(mu_c), float(min(xl, xh)), float(max(xl, xh)), "integration"))
            else:  # branches never cross inside the loop (anchors off): fall back to the loop's middle
                mu_c = 0.5 * (mu[run[0]] + mu[run[-1]])
                xl, xh = np.interp(mu_c, mu, x_up), np.interp(mu_c, mu, x_down)
                regions.append(TwoPhaseRegion(float(mu_c), float(min(xl, xh)), float(max(xl, xh)), "hysteresis"))
    # jumps of the stable <x> not inside a hysteresis region already found, and steeper than the
    # fluctuations allow (a continuous x(mu) rises by about chi dmu between neighbouring points)
    chi_eq = np.where(hyst, np.where(omega_up <= omega_down, scan.chi[:, 0], scan.chi[:, 1]), scan.chi.mean(1))
    dx = np.diff(x_eq)
    smooth_rise = jump_factor * 0.5 * (chi_eq[1:] + chi_eq[:-1]) * np.diff(mu)
    for k in np.flatnonzero((dx > jump_tol) & (dx > smooth_rise)):
        mu_mid = 0.5 * (mu[k] + mu[k + 1])
        if any(min(x_eq[k], x_eq[k + 1]) < r.x_high and max(x_eq[k], x_eq[k + 1]) > r.x_low for r in regions):
            continue
        regions.append(TwoPhaseRegion(float(mu_mid), float(x_eq[k]), float(x_eq[k + 1]), "jump"))
    regions.sort(key=lambda r: r.mu_coexistence_eV)

    volts = v0_V - (mu - mu_metal_eV)
    xs = list(np.maximum.accumulate(x_eq))  # equilibrium x(mu) is non-decreasing; remove noise dips
    vs = list(volts)
    for r in regions:
        xs += [r.x_low, r.x_high]
        vs += [v0_V - (r.mu_coexistence_eV - mu_metal_eV)] * 2
    xs, vs = np.array(xs), np.array(vs)
    keep = np.ones(len(xs), bool)
    for r in regions:  # points strictly inside a plateau are off-equilibrium (finite-size interface states)
        keep &= ~((xs > r.x_low + 1e-12) & (xs < r.x_high - 1e-12))
    xs, vs = xs[keep], vs[keep]
    order = np.lexsort((-vs, xs))
    xs, vs = xs[order], vs[order]
    uniq = np.concatenate([[True], np.diff(xs) > 1e-9])
    xs, vs = xs[uniq], np.minimum.accumulate(vs[uniq])
    return OCVTable(xs, vs, mu, x_eq, volts, omega_up, omega_down, regions, anchors_ok)


def ideal_lattice_gas_voltage(x, temperature_K, v0_V):
    """Exact V(x) = V0 + (kT/e) ln((1-x)/x) of the non-interacting lattice gas."""
    x = np.asarray(x, float)
    return v0_V + K_B_EV * temperature_K * np.log((1.0 - x) / x)


def ocp_function(x, ocv_V):
    """A numba-compiled ``U(sto)`` [V] interpolating an OCV table linearly (clamped at its ends),
    the signature of the cell model's OCP functions (``kernels/cell/functions.py``).

    Raises ``ValueError`` unless ``x`` is strictly increasing with at least 2 points in [0, 1] and
    ``ocv_V`` finite of the same length.
    """
    import numba

    xs = np.ascontiguousarray(x, dtype=np.float64)
    vs = np.ascontiguousarray(ocv_V, dtype=np.float64)
    if xs.ndim != 1 or xs.shape != vs.shape or len(xs) < 2:
        raise ValueError(f"OCV table needs x and V of equal length >= 2, got {xs.shape} and {vs.shape}")
    if np.any(np.diff(xs) <= 0) or xs[0] < 0 or xs[-1] > 1 or not np.all(np.isfinite(vs)):
        raise ValueError("OCV table: x must increase strictly within [0, 1] and V must be finite")

    @numba.njit(cache=False)
    def ocp(sto):
        return np.interp(sto, xs, vs)

    return ocp
