"""Doyle-Fuller-Newman (P2D) model of a Li-ion cell, finite volumes, PETSc TS.

Unknowns (per unit electrode area, x through the cell, r in the particles)::

    sto_k(x, r) = c_s / c_s,max     particles in electrode k = n, p   (differential)
    ce(x)       = c_e / c_e,0       electrolyte concentration          (differential)
    phi_e(x), phi_s(x)              potentials [V]                     (algebraic)

Equations (j > 0 for Li leaving the particle, I > 0 on discharge)::

    d c_s/dt = 1/r^2 d/dr (r^2 D_s d c_s/dr),   -D_s dc_s/dr |_R = j / F,  a = 3 eps_s / R
    eps dc_e/dt = d/dx (B D_e(c_e) dc_e/dx) + (1 - t+) a j / F
    d/dx i_e = a j,   i_e = B kappa(c_e) [ 2 (1-t+) TDF RT/F d ln c_e/dx - d phi_e/dx ]
    d/dx i_s = -a j,  i_s = -sigma d phi_s/dx,  phi_s(0) = 0,  i_s(L) = I
    j = 2 j0(c_e, c_s,surf) sinh(F (phi_s - phi_e - U(sto_surf)) / (2 R T))
    V = phi_s(L) - phi_s(0)

B = eps / tau is the transport efficiency (tortuosity factor tau or Bruggeman).
The finite-volume scheme follows PyBaMM's (cell-centred uniform sub-meshes, harmonic
face means for B D_e and chi, linear extrapolation for surface and boundary values,
volume-weighted spherical divergence, floors c_e >= 10 mol/m3 in D_e and kappa and
>= 0.01 in chi). B kappa at faces is the harmonic mean by default (second-order
convergence where B jumps between regions); ``conductivity_average="arithmetic"``
is PyBaMM's weighted arithmetic mean. Time: PETSc TS (BDF, adaptive) on the
index-1 DAE ``M y' = f(y)``; the Jacobian ``shift M - df/dy`` is a coloured
finite-difference one evaluated by numba from the structural sparsity, factorised
by LU. TS events stop the discharge at the cut-off voltage, at particle-surface
exhaustion and at electrolyte depletion (c_e < 1e-6 c_e0).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.sparse as sp
from petsc4py import PETSc

from ionscale.errors import SolverDivergedError
from ionscale.petsc_options import scoped_options

from .functions import (ELECTROLYTE_CONDUCTIVITY, ELECTROLYTE_DIFFUSIVITY, EXCHANGE_CURRENT, FARADAY, OCP, R_GAS,
                        electrolyte_conductivity, electrolyte_diffusivity, exchange_current, function_id, ocp)
from .parameters import function, ocp_callable, transport_efficiency

_REGIONS = ("negative_electrode", "separator", "positive_electrode")


@dataclass
class DischargeResult:
    """One constant-current discharge. ``capacity_Ah`` and ``energy_Wh`` at the cut-off."""

    c_rate: float
    current_A: float
    time_s: np.ndarray
    voltage_V: np.ndarray
    capacity_Ah: float
    energy_Wh: float
    reached_cutoff: bool
    steps: int
    solve_time_s: float
    stop_reason: str = ""
    final_state: np.ndarray = field(repr=False, default=None)
    initial_state: np.ndarray = field(repr=False, default=None)

    @property
    def capacity_curve_Ah(self):
        return self.current_A * self.time_s / 3600.0


# ---- compiled kernels (module level so numba caches them; property functions by id) ----

@numba.njit(cache=True)
def rhs(y, i_app, out, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, T):
    # geo: Nn, Ns, Np, Nrn, Nrp, csmax_n, csmax_p, Rn, Rp, Ds_n, Ds_p, sig_n, sig_p,
    #      c0, tplus, tdf, alg_scale
    Nn = int(geo[0]); Ns = int(geo[1]); Np = int(geo[2]); Nrn = int(geo[3]); Nrp = int(geo[4])
    Nx = Nn + Ns + Np
    o_sp = Nn * Nrn
    o_ce = o_sp + Np * Nrp
    o_pe = o_ce + Nx
    o_psn = o_pe + Nx
    o_psp = o_psn + Nn
    c0 = geo[13]; tplus = geo[14]; tdf = geo[15]; alg_scale = geo[16]
    RT_F = R_GAS * T / FARADAY
    j = np.zeros(Nx)
    # --- particles and reaction current
    for e in range(2):
        if e == 0:
            ncell = Nn; nrr = Nrn; off = 0; cmax = geo[5]; Rp_ = geo[7]; Ds = geo[9]; x0 = 0; o_ps = o_psn
        else:
            ncell = Np; nrr = Nrp; off = o_sp; cmax = geo[6]; Rp_ = geo[8]; Ds = geo[10]; x0 = Nn + Ns; o_ps = o_psp
        dr = Rp_ / nrr
        for i in range(ncell):
            base = off + i * nrr
            s_last = y[base + nrr - 1]
            s_prev = y[base + nrr - 2]
            sto_surf = s_last + 0.5 * (s_last - s_prev)
            ix = x0 + i
            ce = y[o_ce + ix] * c0
            if e == 0:
                U = ocp(fids[0], sto_surf) if fids[0] >= 0 else np.interp(sto_surf, ocp_tab[0, :fids[6]],
                                                                          ocp_tab[1, :fids[6]])
                j0 = exchange_current(fids[2], ce, sto_surf * cmax, cmax, T)
            else:
                U = ocp(fids[1], sto_surf) if fids[1] >= 0 else np.interp(sto_surf, ocp_tab[2, :fids[7]],
                                                                          ocp_tab[3, :fids[7]])
                j0 = exchange_current(fids[3], ce, sto_surf * cmax, cmax, T)
            eta = y[o_ps + i] - y[o_pe + ix] - U
            jj = 2.0 * j0 * math.sinh(0.5 * eta / RT_F)
            j[ix] = jj
            # spherical FV: d sto_k/dt = -(r+^2 N+ - r-^2 N-)/V_k, N = -Ds dsto/dr
            flux_in = 0.0  # r^2 N at the inner edge
            for k in range(nrr):
                r_out = (k + 1) * dr
                if k < nrr - 1:
                    flux_out = -Ds * (y[base + k + 1] - y[base + k]) / dr * r_out * r_out
                else:
                    flux_out = jj / (FARADAY * cmax) * r_out * r_out
                vol = ((k + 1) ** 3 - k ** 3) * dr ** 3 / 3.0
                out[base + k] = -(flux_out - flux_in) / vol
                flux_in = flux_out
    # --- electrolyte: faces between cells i and i+1
    ie_left = 0.0
    Ne_left = 0.0
    for i in range(Nx):
        if i < Nx - 1:
            h = xc[i + 1] - xc[i]
            cl = y[o_ce + i] * c0
            cr = y[o_ce + i + 1] * c0
            w = dx[i] / (dx[i] + dx[i + 1])
            # floors as in PyBaMM (10 mol/m3 for the property fits, 0.01 for 1/c):
            # a locally depleted electrolyte stays solvable
            kl = brug[i] * electrolyte_conductivity(fids[5], max(cl, 10.0), T)
            kr = brug[i + 1] * electrolyte_conductivity(fids[5], max(cr, 10.0), T)
            if geo[17] > 0.5:  # harmonic: flux-continuous where B jumps (2nd order)
                kap_f = 1.0 / (w / kl + (1.0 - w) / kr)
            else:  # PyBaMM's weighted arithmetic mean (1st order at region interfaces)
                kap_f = (1.0 - w) * kl + w * kr
            chil = 2.0 * (1.0 - tplus) * tdf * RT_F / max(cl, 1e-2)
            chir = 2.0 * (1.0 - tplus) * tdf * RT_F / max(cr, 1e-2)
            chi_f = 1.0 / (w / chil + (1.0 - w) / chir)
            dl = brug[i] * electrolyte_diffusivity(fids[4], max(cl, 10.0), T)
            dr_ = brug[i + 1] * electrolyte_diffusivity(fids[4], max(cr, 10.0), T)
            d_f = 1.0 / (w / dl + (1.0 - w) / dr_)
            gc = (cr - cl) / h
            ie_right = kap_f * (chi_f * gc - (y[o_pe + i + 1] - y[o_pe + i]) / h)
            Ne_right = -d_f * gc
        else:
            ie_right = 0.0
            Ne_right = 0.0
        src = a_s[i] * j[i]
        out[o_pe + i] = alg_scale * ((ie_right - ie_left) / dx[i] - src)
        out[o_ce + i] = (-(Ne_right - Ne_left) / dx[i] + (1.0 - tplus) * src / FARADAY) / (eps[i] * c0)
        ie_left = ie_right
        Ne_left = Ne_right
    # --- solid potentials
    for e in range(2):
        if e == 0:
            ncell = Nn; x0 = 0; sig = geo[11]; o_ps = o_psn
        else:
            ncell = Np; x0 = Nn + Ns; sig = geo[12]; o_ps = o_psp
        for i in range(ncell):
            ix = x0 + i
            if i == 0:
                if e == 0:
                    is_l = -sig * (y[o_ps] - 0.0) / (0.5 * dx[ix])  # phi_s(0) = 0
                else:
                    is_l = 0.0
            else:
                is_l = -sig * (y[o_ps + i] - y[o_ps + i - 1]) / (xc[ix] - xc[ix - 1])
            if i == ncell - 1:
                is_r = i_app if e == 1 else 0.0
            else:
                is_r = -sig * (y[o_ps + i + 1] - y[o_ps + i]) / (xc[ix + 1] - xc[ix])
            out[o_ps + i] = alg_scale * ((is_r - is_l) / dx[ix] + a_s[ix] * j[ix])

@numba.njit(cache=True)
def fd_jacobian(y, i_app, shift, mass, diag_pos, n_colours, col_ptr, col_idx, csc_ptr, csc_rows,
                csc_to_csr, data, f0, ftmp, ytmp, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, T):
    n = y.size
    rhs(y, i_app, f0, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, T)
    for q in range(n):
        ytmp[q] = y[q]
    for c in range(n_colours):
        for p in range(col_ptr[c], col_ptr[c + 1]):
            col = col_idx[p]
            ytmp[col] = y[col] + 1.5e-8 * max(abs(y[col]), 1.0)
        rhs(ytmp, i_app, ftmp, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, T)
        for p in range(col_ptr[c], col_ptr[c + 1]):
            col = col_idx[p]
            hcol = ytmp[col] - y[col]
            for q in range(csc_ptr[col], csc_ptr[col + 1]):
                r = csc_rows[q]
                data[csc_to_csr[q]] = -(ftmp[r] - f0[r]) / hcol
            ytmp[col] = y[col]
    for q in range(n):
        data[diag_pos[q]] += shift * mass[q]


_FUNCTION_KEYS = ("negative_electrode_ocp_V", "positive_electrode_ocp_V", "negative_exchange_current_density_A_m2",
                  "positive_exchange_current_density_A_m2", "electrolyte_diffusivity_m2_s", "electrolyte_conductivity_S_m")
_STO_MARGIN = 1e-6
_MIN_CE_FRACTION = 1e-6


class DFNModel:
    """A DFN cell discretised once; :meth:`discharge` re-solves it for any current.

    ``points`` = cells in (negative, separator, positive); ``r_points`` = shells in the
    (negative, positive) particles. ``conductivity_average``: electrolyte conductivity
    B*kappa at cell faces by the harmonic mean (default; second order where B jumps
    between regions) or PyBaMM's weighted arithmetic mean (first order there).
    Build cost (compilation, sparsity, colouring) is paid in the constructor;
    ``build_time_s`` records it.
    """

    def __init__(self, params: dict, points=(20, 20, 20), r_points=(20, 20), conductivity_average="harmonic"):
        if conductivity_average not in ("harmonic", "arithmetic"):
            raise ValueError(f"conductivity_average must be 'harmonic' or 'arithmetic', got {conductivity_average!r}")
        t0 = time.perf_counter()
        self.Nn, self.Ns, self.Np = (int(v) for v in points)
        self.Nrn, self.Nrp = (int(v) for v in r_points)
        if min(points) < 2 or min(r_points) < 3:
            raise ValueError("need at least 2 cells per domain in x and 3 shells in r")
        self.conductivity_average = conductivity_average
        self._set_values(params)
        self._rhs, self._fdjac = rhs, fd_jacobian
        # layout
        Nx = self.Nn + self.Ns + self.Np
        self.o_sp = self.Nn * self.Nrn
        self.o_ce = self.o_sp + self.Np * self.Nrp
        self.o_pe = self.o_ce + Nx
        self.o_psn = self.o_pe + Nx
        self.o_psp = self.o_psn + self.Nn
        self.n = self.o_psp + self.Np
        self.mass = np.zeros(self.n)
        self.mass[: self.o_pe] = 1.0
        self.algebraic = np.flatnonzero(self.mass == 0)
        self._build_jacobian_structure()
        self.build_time_s = time.perf_counter() - t0

    def set_parameters(self, params: dict):
        """Swap in new parameter values on the same mesh (e.g. a tortuosity factor or an
        OCP table in a sweep) without recompiling or recolouring: the sparsity pattern
        does not depend on the values."""
        self._set_values(params)

    def _set_values(self, params: dict):
        self.params = p = params
        # property functions by id (-1: OCP from a table in ocp_tab rows 0-1 / 2-3)
        cats = (OCP, OCP, EXCHANGE_CURRENT, EXCHANGE_CURRENT, ELECTROLYTE_DIFFUSIVITY, ELECTROLYTE_CONDUCTIVITY)
        fns = [function(p, k) for k in _FUNCTION_KEYS]
        tables = [p[k] if isinstance(p[k], dict) else None for k in _FUNCTION_KEYS[:2]]
        m = max([2] + [t["x"].size for t in tables if t is not None])
        self._ocp_tab = np.zeros((4, m))
        lengths = [2, 2]
        for e, t in enumerate(tables):
            if t is not None:
                lengths[e] = t["x"].size
                self._ocp_tab[2 * e, :lengths[e]] = t["x"]
                self._ocp_tab[2 * e + 1, :lengths[e]] = t["ocv_V"]
        self._fids = np.array([-1 if f is None else function_id(f, c) for f, c in zip(fns, cats)] + lengths,
                              dtype=np.int64)
        self._ocp_n = ocp_callable(p, _FUNCTION_KEYS[0])
        self._ocp_p = ocp_callable(p, _FUNCTION_KEYS[1])
        Nx = self.Nn + self.Ns + self.Np
        Ls = [p["negative_electrode_thickness_m"], p["separator_thickness_m"], p["positive_electrode_thickness_m"]]
        counts = [self.Nn, self.Ns, self.Np]
        self.dx = np.concatenate([np.full(n, L / n) for n, L in zip(counts, Ls)])
        edges = np.concatenate([[0.0], np.cumsum(self.dx)])
        self.xc = 0.5 * (edges[1:] + edges[:-1])
        self.x_edges = edges
        self.eps = np.concatenate([np.full(n, p[f"{r}_porosity"]) for n, r in zip(counts, _REGIONS)])
        self.brug = np.concatenate([np.full(n, transport_efficiency(p, r)) for n, r in zip(counts, _REGIONS)])
        eps_s_n = p["negative_electrode_active_material_volume_fraction"]
        eps_s_p = p["positive_electrode_active_material_volume_fraction"]
        Rn, Rp = p["negative_particle_radius_m"], p["positive_particle_radius_m"]
        self.a_s = np.concatenate([np.full(self.Nn, 3 * eps_s_n / Rn), np.zeros(self.Ns), np.full(self.Np, 3 * eps_s_p / Rp)])
        self.area_m2 = p["electrode_height_m"] * p["electrode_width_m"]
        self.T = float(p["temperature_K"])
        L = edges[-1]
        self.one_c_A = p["nominal_cell_capacity_Ah"]
        i_1c = self.one_c_A / self.area_m2
        self.geo = np.array([self.Nn, self.Ns, self.Np, self.Nrn, self.Nrp,
                             p["negative_maximum_concentration_mol_m3"], p["positive_maximum_concentration_mol_m3"],
                             Rn, Rp, p["negative_particle_diffusivity_m2_s"], p["positive_particle_diffusivity_m2_s"],
                             p["negative_electrode_conductivity_S_m"], p["positive_electrode_conductivity_S_m"],
                             p["initial_electrolyte_concentration_mol_m3"], p["cation_transference_number"],
                             p["thermodynamic_factor"], L / i_1c,
                             1.0 if self.conductivity_average == "harmonic" else 0.0], dtype=float)

    # ---- helpers -------------------------------------------------------------
    def _eval_rhs(self, y, i_app, out=None):
        out = np.empty(self.n) if out is None else out
        self._rhs(y, i_app, out, self.geo, self.dx, self.xc, self.eps, self.brug, self.a_s, self._fids, self._ocp_tab, self.T)
        return out

    def initial_state(self) -> np.ndarray:
        """Uniform concentrations; potentials from the open-circuit values (made
        consistent by :meth:`consistent_algebraic`)."""
        p = self.params
        y = np.zeros(self.n)
        sn = p["initial_negative_concentration_mol_m3"] / p["negative_maximum_concentration_mol_m3"]
        spp = p["initial_positive_concentration_mol_m3"] / p["positive_maximum_concentration_mol_m3"]
        y[: self.o_sp] = sn
        y[self.o_sp: self.o_ce] = spp
        y[self.o_ce: self.o_pe] = 1.0
        Un, Up = self._ocp_n(sn), self._ocp_p(spp)
        y[self.o_pe: self.o_psn] = -Un
        y[self.o_psn: self.o_psp] = 0.0
        y[self.o_psp:] = Up - Un
        return y

    def _build_jacobian_structure(self):
        """Structural sparsity of df/dy from perturbing each column at two random
        states, then a greedy distance-2 colouring of the columns."""
        rng = np.random.default_rng(0)
        rows, cols = [], []
        for trial in range(3):
            # random interior states: stoichiometries strictly inside (0, 1) so that no
            # kinetic term vanishes and hides a coupling
            y = self.initial_state()
            y[: self.o_ce] = rng.uniform(0.2, 0.8, self.o_ce)
            y[self.o_ce: self.o_pe] *= 1 + 0.1 * rng.standard_normal(self.o_pe - self.o_ce)
            y[self.o_pe:] += 0.01 * rng.standard_normal(self.n - self.o_pe)
            f0 = self._eval_rhs(y, 30.0)
            for c in range(self.n):
                yp = y.copy()
                yp[c] += 1e-6 * max(abs(y[c]), 1.0)
                r = np.flatnonzero(self._eval_rhs(yp, 30.0) != f0)
                rows.append(r)
                cols.append(np.full(r.size, c))
        rows = np.concatenate(rows + [np.arange(self.n)])
        cols = np.concatenate(cols + [np.arange(self.n)])
        pat = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(self.n, self.n))
        pat.sum_duplicates()
        pat.sort_indices()
        pat.data[:] = 1.0
        self.indptr = pat.indptr.astype(np.int32)
        self.indices = pat.indices.astype(np.int32)
        nnz = self.indices.size
        # csr position of each csc entry
        csr_pos = sp.csr_matrix((np.arange(nnz, dtype=float) + 1, pat.indices, pat.indptr), shape=pat.shape)
        csc = csr_pos.tocsc()
        csc.sort_indices()
        self.csc_ptr = csc.indptr.astype(np.int64)
        self.csc_rows = csc.indices.astype(np.int64)
        self.csc_to_csr = (csc.data - 1).astype(np.int64)
        self.diag_pos = np.array([self.indptr[i] + np.searchsorted(self.indices[self.indptr[i]:self.indptr[i + 1]], i)
                                  for i in range(self.n)], dtype=np.int64)
        # greedy colouring: columns sharing a row get different colours
        colour = -np.ones(self.n, dtype=np.int64)
        col_rows = [self.csc_rows[self.csc_ptr[c]:self.csc_ptr[c + 1]] for c in range(self.n)]
        row_cols = [self.indices[self.indptr[r]:self.indptr[r + 1]] for r in range(self.n)]
        for c in range(self.n):
            forbidden = set()
            for r in col_rows[c]:
                forbidden.update(colour[row_cols[r]].tolist())
            k = 0
            while k in forbidden:
                k += 1
            colour[c] = k
        self.n_colours = int(colour.max()) + 1
        order = np.argsort(colour, kind="stable")
        self.col_idx = order.astype(np.int64)
        self.col_ptr = np.searchsorted(colour[order], np.arange(self.n_colours + 1)).astype(np.int64)
        # algebraic-algebraic block of the pattern (CSC), for the consistent initial potentials
        pos = sp.csr_matrix((np.arange(nnz, dtype=float) + 1, self.indices, self.indptr), shape=pat.shape)
        block = pos[self.algebraic][:, self.algebraic].tocsc()
        block.sort_indices()
        self._alg_pos = (block.data - 1).astype(np.int64)
        self._alg_indices, self._alg_indptr = block.indices, block.indptr
        self._jdata = np.zeros(nnz)
        self._f0 = np.zeros(self.n)
        self._ftmp = np.zeros(self.n)
        self._ytmp = np.zeros(self.n)

    def jacobian_data(self, y, i_app, shift):
        """CSR values of ``shift*M - df/dy`` on the structure ``(indptr, indices)``."""
        self._fdjac(y, i_app, shift, self.mass, self.diag_pos, self.n_colours, self.col_ptr, self.col_idx,
                    self.csc_ptr, self.csc_rows, self.csc_to_csr, self._jdata, self._f0, self._ftmp, self._ytmp,
                    self.geo, self.dx, self.xc, self.eps, self.brug, self.a_s, self._fids, self._ocp_tab, self.T)
        return self._jdata

    def consistent_algebraic(self, y, i_app, tol=1e-9, maxit=30):
        """Newton on the algebraic unknowns with the differential ones fixed; stops
        when the update is at round-off (1e-13 V) and the scaled residual < tol."""
        y = y.copy()
        alg = self.algebraic
        for _ in range(maxit):
            f = self._eval_rhs(y, i_app)[alg]
            data = self.jacobian_data(y, i_app, 0.0)
            J = sp.csc_matrix((data[self._alg_pos], self._alg_indices, self._alg_indptr), shape=(alg.size, alg.size))
            dy = sp.linalg.spsolve(J, f)  # J = -df/dy
            y[alg] += dy
            if np.max(np.abs(dy)) < 1e-13 or (np.max(np.abs(dy)) < 1e-11 and np.max(np.abs(f)) < tol):
                return y
        raise SolverDivergedError(f"initial potentials did not converge (max residual {np.max(np.abs(f)):.3g})")

    def voltage(self, y):
        a, b = y[self.o_psp + self.Np - 1], y[self.o_psp + self.Np - 2]
        return a + 0.5 * (a - b)

    def lithium_inventory(self, y) -> tuple[float, float]:
        """Moles of Li per electrode area in the particles and in the electrolyte."""
        p = self.params
        solid = 0.0
        for (off, nc, nr, x0, key, frac) in ((0, self.Nn, self.Nrn, 0, "negative", "negative_electrode"),
                                             (self.o_sp, self.Np, self.Nrp, self.Nn + self.Ns, "positive",
                                              "positive_electrode")):
            k = np.arange(nr)
            wv = ((k + 1) ** 3 - k ** 3) / nr ** 3  # shell volume fractions
            sto = y[off: off + nc * nr].reshape(nc, nr)
            solid += np.sum(self.dx[x0:x0 + nc] * p[f"{frac}_active_material_volume_fraction"]
                            * p[f"{key}_maximum_concentration_mol_m3"] * (sto @ wv))
        electrolyte = np.sum(self.dx * self.eps * y[self.o_ce:self.o_pe]) * p["initial_electrolyte_concentration_mol_m3"]
        return float(solid), float(electrolyte)

    def surface_stoichiometry(self, y):
        out = []
        for off, nc, nr in ((0, self.Nn, self.Nrn), (self.o_sp, self.Np, self.Nrp)):
            s = y[off: off + nc * nr].reshape(nc, nr)
            out.append(s[:, -1] + 0.5 * (s[:, -1] - s[:, -2]))
        return out

    def describe_variable(self, idx: int) -> str:
        if idx < self.o_sp:
            i, k = divmod(idx, self.Nrn)
            return f"negative particle stoichiometry (x-cell {i}, shell {k})"
        if idx < self.o_ce:
            i, k = divmod(idx - self.o_sp, self.Nrp)
            return f"positive particle stoichiometry (x-cell {i}, shell {k})"
        if idx < self.o_pe:
            return f"electrolyte concentration (x-cell {idx - self.o_ce})"
        if idx < self.o_psn:
            return f"electrolyte potential (x-cell {idx - self.o_pe})"
        if idx < self.o_psp:
            return f"negative solid potential (x-cell {idx - self.o_psn})"
        return f"positive solid potential (x-cell {idx - self.o_psp})"

    def _suspect_variable(self, y_prev, y):
        """Index of the unknown most likely responsible for a failure."""
        bad = ~np.isfinite(y)
        if bad.any():
            return int(np.flatnonzero(bad)[0])
        sto = y[: self.o_ce]
        out = np.flatnonzero((sto <= 0) | (sto >= 1))
        if out.size:
            return int(out[0])
        ce = y[self.o_ce:self.o_pe]
        if (ce <= 0).any():
            return self.o_ce + int(np.argmin(ce))
        sn, spp = self.surface_stoichiometry(y)
        for s, off, nr in ((sn, 0, self.Nrn), (spp, self.o_sp, self.Nrp)):
            bad = np.flatnonzero((s <= 0) | (s >= 1))
            if bad.size:
                return off + bad[0] * nr + nr - 1
        return int(np.argmax(np.abs(y - y_prev) / (np.abs(y_prev) + 1e-3)))

    # ---- solve ---------------------------------------------------------------
    def discharge(self, c_rate: float = 1.0, cutoff_V: float | None = None, rtol=1e-6, atol=1e-6,
                  max_step_s: float | None = None, t_max_s: float | None = None, petsc_options=None,
                  prefix="dfn_", y0=None) -> DischargeResult:
        """Constant-current discharge at ``c_rate`` until ``cutoff_V`` (located by a TS
        event to ~1e-9 V) or ``t_max_s``. Raises SolverDivergedError (with the partial
        curve in ``.partial``) if the time stepper fails."""
        cutoff_V = self.params["lower_voltage_cutoff_V"] if cutoff_V is None else cutoff_V
        current_A = c_rate * self.one_c_A
        i_app = current_A / self.area_m2
        t_max = t_max_s if t_max_s is not None else 1.5 * 3600.0 / max(c_rate, 1e-12)
        y = self.initial_state() if y0 is None else y0.copy()
        y = self.consistent_algebraic(y, i_app)
        y_init = y.copy()
        comm = PETSc.COMM_SELF
        X = PETSc.Vec().createWithArray(y, comm=comm)
        F = X.duplicate()
        J = PETSc.Mat().createAIJ([self.n, self.n], csr=(self.indptr, self.indices, self._jdata), comm=comm)
        J.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, True)
        rhs, mass, f_buf = self._rhs, self.mass, np.empty(self.n)
        geo, dx, xc, eps, brug, a_s, T = self.geo, self.dx, self.xc, self.eps, self.brug, self.a_s, self.T
        fids, ocp_tab = self._fids, self._ocp_tab

        def ifunction(ts, t, x, xdot, f):
            rhs(x.getArray(readonly=True), i_app, f_buf, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, T)
            f.setArray(mass * xdot.getArray(readonly=True) - f_buf)

        def ijacobian(ts, t, x, xdot, shift, A, P):
            data = self.jacobian_data(x.getArray(readonly=True), i_app, shift)
            P.setValuesCSR(self.indptr, self.indices, data)
            P.assemble()
            if A != P:
                A.assemble()

        times, volts = [0.0], [self.voltage(y)]
        # the last two accepted states: on failure, the fastest-changing unknown is the suspect
        state = {"prev": y.copy(), "cur": y.copy()}

        def monitor(ts, step, t, x):
            if step == 0:
                return
            xa = x.getArray(readonly=True)
            times.append(t)
            volts.append(self.voltage(xa))
            state["prev"], state["cur"] = state["cur"], xa.copy()

        def event(ts, t, x, fvalue):
            xa = x.getArray(readonly=True)
            fvalue[0] = self.voltage(xa) - cutoff_V
            # a discharge also ends when a particle surface or the electrolyte is
            # exhausted. PyBaMM's property floors are used so that a nearly depleted
            # electrolyte stays solvable, but unlike PyBaMM (which goes on through
            # c_e <= 0) the discharge stops when c_e reaches _MIN_CE_FRACTION * c_e0.
            sn, spp = self.surface_stoichiometry(xa)
            fvalue[1] = min(sn.min(), spp.min()) - _STO_MARGIN
            fvalue[2] = 1.0 - _STO_MARGIN - max(sn.max(), spp.max())
            fvalue[3] = np.min(xa[self.o_ce:self.o_pe]) - _MIN_CE_FRACTION

        ts = PETSc.TS().create(comm=comm)
        ts.setProblemType(PETSc.TS.ProblemType.NONLINEAR)
        ts.setEquationType(PETSc.TS.EquationType.DAE_IMPLICIT_INDEX1)
        ts.setType(PETSc.TS.Type.BDF)
        ts.setIFunction(ifunction, F)
        ts.setIJacobian(ijacobian, J)
        ts.setTolerances(rtol=rtol, atol=atol)
        ts.setTime(0.0)
        ts.setTimeStep(1e-3 * 3600.0 / max(c_rate, 1e-12) / 100)
        ts.setMaxTime(t_max)
        ts.setMaxSteps(20000)
        ts.setExactFinalTime(PETSc.TS.ExactFinalTime.MATCHSTEP)
        ts.setMonitor(monitor)
        ts.setEventHandler([-1] * 4, [True] * 4, event)
        ts.setEventTolerances(tol=1e-9)
        ts.setMaxStepRejections(100)
        ts.setMaxSNESFailures(-1)
        snes = ts.getSNES()
        snes.setTolerances(rtol=1e-8, atol=1e-8, stol=1e-12, max_it=10)
        ksp = snes.getKSP()
        ksp.setType(PETSc.KSP.Type.PREONLY)
        ksp.getPC().setType(PETSc.PC.Type.LU)
        ts.setErrorIfStepFails(False)
        if max_step_s is not None:
            ts.setStepLimits(1e-12, max_step_s)
        # order-4 BDF, Jacobian re-evaluated every 3rd Newton iteration (in practice once per
        # step): fastest settings measured at rtol = atol = 1e-6
        opts = {"ts_bdf_order": 4, "snes_lag_jacobian": 3}
        opts.update(petsc_options or {})
        ts.setOptionsPrefix(prefix)
        with scoped_options(prefix, opts):
            ts.setFromOptions()
        t0 = time.perf_counter()
        failure = None
        try:
            ts.solve(X)
        except PETSc.Error as e:
            failure = str(e)
        reason = ts.getConvergedReason()
        solve_time = time.perf_counter() - t0
        t_end = ts.getTime()
        steps = ts.getStepNumber()
        self.last_stats = dict(reason=int(reason), t_end=t_end, steps=steps, snes_its=ts.getSNESIterations(),
                               rejects=ts.getStepRejections(), snes_fails=ts.getSNESFailures())
        yf = X.getArray().copy()
        ts.destroy(); J.destroy(); X.destroy(); F.destroy()
        times, volts = np.asarray(times), np.asarray(volts)
        reached = volts[-1] <= cutoff_V + 1e-6
        self.stop_reason = ("cut-off voltage" if reached else "time limit" if t_end >= t_max * (1 - 1e-12)
                            else "electrolyte or particle surface exhausted")
        if failure is not None or reason < 0:
            idx = self._suspect_variable(state["prev"], yf)
            partial = self._result(c_rate, current_A, times, volts, False, steps, solve_time, yf, y_init,
                                   "solver failure")
            raise SolverDivergedError(
                f"DFN time stepping failed at t = {t_end:.6g} s (C-rate {c_rate:g}, V = {volts[-1]:.4f} V, "
                f"reason {reason}); suspect variable: {self.describe_variable(idx)} = {yf[idx]:.6g}",
                reason=reason, partial=partial)
        if not reached and reason == PETSc.TS.ConvergedReason.CONVERGED_ITS:
            idx = self._suspect_variable(state["prev"], yf)
            raise SolverDivergedError(
                f"DFN time stepping stalled at t = {t_end:.6g} s (C-rate {c_rate:g}, V = {volts[-1]:.4f} V, "
                f"{steps} steps); suspect variable: {self.describe_variable(idx)} = {yf[idx]:.6g}", reason=reason,
                partial=self._result(c_rate, current_A, times, volts, False, steps, solve_time, yf, y_init,
                                     "solver stalled"))
        return self._result(c_rate, current_A, times, volts, bool(reached), steps, solve_time, yf, y_init,
                            self.stop_reason)

    @staticmethod
    def _result(c_rate, current_A, times, volts, reached, steps, solve_time, yf, y0, stop_reason):
        cap = current_A * times[-1] / 3600.0
        energy = float(np.sum(0.5 * (volts[1:] + volts[:-1]) * np.diff(times)) * current_A / 3600.0)
        return DischargeResult(c_rate=c_rate, current_A=current_A, time_s=times, voltage_V=volts,
                               capacity_Ah=cap, energy_Wh=energy, reached_cutoff=reached, steps=steps,
                               solve_time_s=solve_time, stop_reason=stop_reason, final_state=yf, initial_state=y0)
