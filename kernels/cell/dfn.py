"""Doyle-Fuller-Newman (P2D) model of a Li-ion cell, finite volumes, PETSc TS.

Unknowns (per unit electrode area, x through the cell, r in the particles)::

    sto_k(x, r) = c_s / c_s,max     particles in electrode k = n, p   (differential)
    ce(x)       = c_e / c_e,0       electrolyte concentration          (differential)
    phi_e(x), phi_s(x)              potentials [V]                     (algebraic)

Equations (j > 0 for Li leaving the particle, I > 0 on discharge)::

    d c_s/dt = 1/r^2 d/dr (r^2 D_s d c_s/dr),   -D_s dc_s/dr |_R = j / F,  a = 3 eps_s / R
    eps dc_e/dt = -d/dx N_e + a j / F,   N_e = -B D_e(c_e) dc_e/dx + t+(c_e) i_e / F
    d/dx i_e = a j,   i_e = B kappa(c_e) [ 2 (1-t+(c_e)) TDF(c_e) RT/F d ln c_e/dx - d phi_e/dx ]
    d/dx i_s = -a j,  i_s = -sigma d phi_s/dx,  phi_s(0) = 0,  i_s(L) = I
    j = 2 j0(c_e, c_s,surf) sinh(F (phi_s - phi_e - U(sto_surf)) / (2 R T))
    V = phi_s(L) - phi_s(0) - I R_series,  R_series = R_contact + (L_cn/sigma_cn + L_cp/sigma_cp) / A

Half-cell (``half_cell=True``, cathode vs Li metal): no negative electrode; a Li foil
at x = 0 (potential 0) feeds the electrolyte with i_e(0) = 2 j0_Li (c_e/c_e0)^0.3
sinh(-F phi_e(0) / (2 R T)) and the matching diffusive salt flux (1 - t+) i_e(0) / F
(phi_e(0), c_e(0) linearly extrapolated); charge conservation makes i_e(0) = I.

B = eps / tau is the transport efficiency (tortuosity factor tau or Bruggeman).
t+ and the thermodynamic factor TDF are constants or functions / tables of (c_e, T)
(PyBaMM's DFN). With constant t+ the salt balance is solved in the equivalent form
eps dc_e/dt = d/dx (B D_e dc_e/dx) + (1 - t+) a j / F (as before this option existed:
bitwise the same results); with variable t+ in the conservative flux form above, t+ at
a face being the weighted arithmetic mean of its cells' t+(c_e) (PyBaMM's node-to-edge
mean of a node value times i_e), and chi = 2 (1 - t+) TDF / c per cell, harmonic at faces
(t+, TDF at c_e >= 0.01 mol/m3 there, as PyBaMM's chiRT_over_Fc).
The finite-volume scheme follows PyBaMM's (cell-centred uniform sub-meshes, harmonic
face means for B D_e and chi, linear extrapolation for surface and boundary values,
volume-weighted spherical divergence, floors c_e >= 10 mol/m3 in D_e and kappa and
>= 0.01 in chi). B kappa at faces is the harmonic mean by default (second-order
convergence where B jumps between regions); ``conductivity_average="arithmetic"``
is PyBaMM's weighted arithmetic mean.

Time: PETSc TS (BDF order 4, adaptive) on the index-1 DAE ``M y' = f(y; I)``
extended by the applied current y[n] = I / I_1C (algebraic): ``y[n] = setpoint``
for a constant current or rest, ``V(y) = setpoint`` for a voltage hold (CV). The
Jacobian is analytic (numba; derivatives of the scalar property fits by forward
differences of those scalars, the constant particle-diffusion part precomputed),
written in place into the value array of a PETSc AIJ matrix and factorised by LU
(RCM ordering). Each BDF step's nonlinear system is solved by :class:`_ModifiedNewton`
(IDA's Newton strategy: df/dy reused over up to 20 steps with the exact shift put on its
diagonal before each refactorisation, convergence tested on the weighted correction norm);
``DFNModel.newton = "petsc"`` restores PETSc's newtonls. TS events end a step at a
voltage or current limit (located to 1e-11), at particle-surface exhaustion and at
electrolyte depletion (c_e < 1e-6 c_e0).
:meth:`DFNModel.discharge` runs one constant-current discharge,
:meth:`DFNModel.run_protocol` a list of cc / cv / rest steps (see protocol.py).

Thermal (``thermal="lumped"``, PyBaMM's lumped model; default "isothermal": T = temperature_K)::

    rho_cp_eff V dT/dt = A n_par Q - h A_cool (T - T_amb),   T(0) = temperature_K
    rho_cp_eff = sum_k L_k rho_k c_p,k / sum_k L_k   (both collectors, electrodes, separator)
    Q = int [ -i_e d phi_e/dx - i_s d phi_s/dx + a j eta + a j T dU/dT ] dx + i^2 R_series A   [W/m2]
    U(sto, T) = U(sto) + (T - T_ref) dU/dT(sto),   D_s(T) = D_s,ref exp(E_a/R (1/T_ref - 1/T))

T is one more differential unknown y[n+1]; every T-dependent property (RT/F in the kinetics
and the diffusion potential, Arrhenius j0 / D_e / kappa / D_s, the OCP's entropic term) is
evaluated at the state T. Its Jacobian column is a forward difference of the compiled
residual in T; its row keeps only the diagonal (see :func:`thermal_jacobian_entries`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.sparse as sp
from petsc4py import PETSc

from ionscale.errors import DeckError, SolverDivergedError
from ionscale.petsc_options import scoped_options

from .functions import (ENTROPIC_CHANGE, FARADAY, R_GAS, arrhenius, electrolyte_conductivity_of,
                        electrolyte_diffusivity_of, entropic_change, entropic_change_table, exchange_current_of,
                        function_id, ocp_of, thermodynamic_factor_of, transference_number_of)
from .parameters import (electrolyte_number_ids, function, ocp_callable, pack_properties, particle_diffusivity,
                         transport_efficiency)

_REGIONS = ("negative_electrode", "separator", "positive_electrode")


def _drop_stale_numba_cache():
    """numba's on-disk cache of this module's kernels does not track the property
    functions they inline from functions.py: drop it when functions.py is newer."""
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    cache_dir = os.path.join(here, "__pycache__")
    try:
        t_functions = os.path.getmtime(os.path.join(here, "functions.py"))
        names = os.listdir(cache_dir)
    except OSError:
        return
    for name in names:
        if name.startswith("dfn.") and name.endswith((".nbi", ".nbc")):
            path = os.path.join(cache_dir, name)
            try:
                if os.path.getmtime(path) < t_functions:
                    os.remove(path)
            except OSError:  # another rank removed it first
                pass


_drop_stale_numba_cache()


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
    #: cell temperature [K] at each time (constant when isothermal) and, for the lumped
    #: thermal model, the total heat generated [W] (see :func:`heat_sources`)
    temperature_K: np.ndarray = field(repr=False, default=None)
    heat_W: np.ndarray = field(repr=False, default=None)

    @property
    def capacity_curve_Ah(self):
        return self.current_A * self.time_s / 3600.0


# ---- compiled kernels (module level so numba caches them; property functions by id) ----

@numba.njit(cache=True)
def _ocp_of(e, fids, ocp_tab, sto):
    """OCP of electrode e (0 negative, 1 positive): compiled function or table."""
    return ocp_of(e, fids, ocp_tab, sto)


@numba.njit(cache=True)
def _entropic_of(e, geo, tab, sto):
    """Entropic change dU/dT [V/K] of electrode e: compiled function (id geo[22 + e] >= 0),
    table (id -2, functions.entropic_change_table) or the constant geo[24 + e] (id -1)."""
    fid = int(geo[22 + e])
    if fid >= 0:
        return entropic_change(fid, sto)
    if fid == -2:
        return entropic_change_table(e, tab, sto)
    return geo[24 + e]


@numba.njit(cache=True)
def _ocp_at(e, fids, ocp_tab, geo, sto, T):
    """U(sto, T) = U(sto) + (T - T_ref) dU/dT(sto) (PyBaMM's form; exactly U(sto) at T_ref)."""
    return _ocp_of(e, fids, ocp_tab, sto) + (T - geo[26]) * _entropic_of(e, geo, ocp_tab, sto)


@numba.njit(cache=True)
def _face(cl, cr, h, w, bl, br, fids, ocp_tab, tplus, tdf, RT_F, harmonic, T):
    """Electrolyte fluxes at the face between two cells: returns (B kappa, chi B kappa dc/dx
    part of i_e, diffusive flux N_e = -B D_e dc/dx), c in mol/m3."""
    # floors as in PyBaMM (10 mol/m3 for the property fits, 0.01 for 1/c):
    # a locally depleted electrolyte stays solvable
    kl = bl * electrolyte_conductivity_of(fids, ocp_tab, max(cl, 10.0), T)
    kr = br * electrolyte_conductivity_of(fids, ocp_tab, max(cr, 10.0), T)
    if harmonic:  # flux-continuous where B jumps (2nd order)
        kap_f = 1.0 / (w / kl + (1.0 - w) / kr)
    else:  # PyBaMM's weighted arithmetic mean (1st order at region interfaces)
        kap_f = (1.0 - w) * kl + w * kr
    chil = 2.0 * (1.0 - tplus) * tdf * RT_F / max(cl, 1e-2)
    chir = 2.0 * (1.0 - tplus) * tdf * RT_F / max(cr, 1e-2)
    chi_f = 1.0 / (w / chil + (1.0 - w) / chir)
    dl = bl * electrolyte_diffusivity_of(fids, ocp_tab, max(cl, 10.0), T)
    dr_ = br * electrolyte_diffusivity_of(fids, ocp_tab, max(cr, 10.0), T)
    d_f = 1.0 / (w / dl + (1.0 - w) / dr_)
    gc = (cr - cl) / h
    return kap_f, kap_f * chi_f * gc, -d_f * gc


@numba.njit(cache=True)
def _variable_numbers(geo):
    """True when t+ or the thermodynamic factor is a function / table of (c_e, T)
    (ids geo[29], geo[30]; -1 = the constants geo[14], geo[15])."""
    return geo[29] != -1.0 or geo[30] != -1.0


@numba.njit(cache=True)
def _chi_over_c(c, geo, ocp_tab, RT_F, T):
    """2 (1 - t+) TDF RT / (F c) of one cell, t+ and TDF at c floored to 1e-2 mol/m3
    (PyBaMM's chiRT_over_Fc)."""
    cf = max(c, 1e-2)
    tp = transference_number_of(int(geo[29]), ocp_tab, geo[14], cf, T)
    tdf = thermodynamic_factor_of(int(geo[30]), ocp_tab, geo[15], cf, T)
    return 2.0 * (1.0 - tp) * tdf * RT_F / cf


@numba.njit(cache=True)
def _face_variable(cl, cr, h, w, bl, br, fids, ocp_tab, geo, RT_F, harmonic, T):
    """:func:`_face` with t+(c_e, T) and TDF(c_e, T): returns (B kappa, chi B kappa dc/dx part
    of i_e, diffusive flux -B D_e dc/dx, t+ at the face). chi per cell then harmonic (as
    PyBaMM's chiRT_over_Fc times a gradient); t+ at the face is PyBaMM's weighted arithmetic
    mean of the cells' t+(c_e) (a node value times the edge quantity i_e)."""
    kl = bl * electrolyte_conductivity_of(fids, ocp_tab, max(cl, 10.0), T)
    kr = br * electrolyte_conductivity_of(fids, ocp_tab, max(cr, 10.0), T)
    if harmonic:
        kap_f = 1.0 / (w / kl + (1.0 - w) / kr)
    else:
        kap_f = (1.0 - w) * kl + w * kr
    chil = _chi_over_c(cl, geo, ocp_tab, RT_F, T)
    chir = _chi_over_c(cr, geo, ocp_tab, RT_F, T)
    chi_f = 1.0 / (w / chil + (1.0 - w) / chir)
    dl = bl * electrolyte_diffusivity_of(fids, ocp_tab, max(cl, 10.0), T)
    dr_ = br * electrolyte_diffusivity_of(fids, ocp_tab, max(cr, 10.0), T)
    d_f = 1.0 / (w / dl + (1.0 - w) / dr_)
    gc = (cr - cl) / h
    tid = int(geo[29])
    t_f = ((1.0 - w) * transference_number_of(tid, ocp_tab, geo[14], cl, T)
           + w * transference_number_of(tid, ocp_tab, geo[14], cr, T))
    return kap_f, kap_f * chi_f * gc, -d_f * gc, t_f


@numba.njit(cache=True)
def _foil_current(pe_b, ce_b, j0_ref, c0, RT_F):
    """Butler-Volmer current density [A/m2] of the Li foil (potential 0) into the
    electrolyte: j0 = j0_ref (c_e/c_e0)^0.3 (Xu2019 form, alpha = 1/2)."""
    j0 = j0_ref * max(ce_b / c0, 0.0) ** 0.3
    return 2.0 * j0 * math.sinh(0.5 * (0.0 - pe_b) / RT_F)


@numba.njit(cache=True)
def _layout(geo):
    """Cell counts and the offsets of each unknown block in the state vector:
    (Nn, Ns, Np, Nrn, Nrp, Nx, o_sp, o_ce, o_pe, o_psn, o_psp); blocks in order: negative
    particle shells, positive particle shells, c_e, phi_e, phi_s negative, phi_s positive."""
    Nn = int(geo[0]); Ns = int(geo[1]); Np = int(geo[2]); Nrn = int(geo[3]); Nrp = int(geo[4])
    Nx = Nn + Ns + Np
    o_sp = Nn * Nrn
    o_ce = o_sp + Np * Nrp
    o_pe = o_ce + Nx
    o_psn = o_pe + Nx
    o_psp = o_psn + Nn
    return Nn, Ns, Np, Nrn, Nrp, Nx, o_sp, o_ce, o_pe, o_psn, o_psp


@numba.njit(cache=True)
def _electrode_block(geo, e):
    """Electrode e (0 negative, 1 positive): (cells, shells, offset of its particle block,
    c_s_max, particle radius, particle diffusivity, first x cell, offset of its phi_s block,
    solid conductivity)."""
    Nn, Ns, Np, Nrn, Nrp, Nx, o_sp, o_ce, o_pe, o_psn, o_psp = _layout(geo)
    if e == 0:
        return Nn, Nrn, 0, geo[5], geo[7], geo[9], 0, o_psn, geo[11]
    return Np, Nrp, o_sp, geo[6], geo[8], geo[10], Nn + Ns, o_psp, geo[12]


@numba.njit(cache=True)
def rhs(y, i_app, out, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, T):
    # geo: Nn, Ns, Np, Nrn, Nrp, csmax_n, csmax_p, Rn, Rp, Ds_n, Ds_p, sig_n, sig_p,
    #      c0, tplus, tdf, alg_scale, harmonic, half_cell, foil_j0, R_series A, i_1c, [22:29] thermal,
    #      [29] t+ id, [30] TDF id (-1: the constants tplus, tdf)
    Nn, Ns, Np, Nrn, Nrp, Nx, o_sp, o_ce, o_pe, o_psn, o_psp = _layout(geo)
    c0 = geo[13]; tplus = geo[14]; tdf = geo[15]; alg_scale = geo[16]
    harmonic = geo[17] > 0.5
    RT_F = R_GAS * T / FARADAY
    # constant t+: the salt balance as eps dc/dt = -d/dx(-B D_e dc/dx) + (1 - t+) a j / F; variable
    # t+(c_e, T): the conservative form with N_e = -B D_e dc/dx + t+ i_e / F and source a j / F
    variable = _variable_numbers(geo)
    src_share = 1.0 if variable else 1.0 - tplus
    j = np.zeros(Nx)
    # --- particles and reaction current
    for e in range(2):
        ncell, nrr, off, cmax, Rp_, Ds, x0, o_ps, _ = _electrode_block(geo, e)
        # Arrhenius D_s(T) of the lumped thermal model (geo[27 + e] = 0 otherwise: a factor of exactly 1)
        Ds *= arrhenius(geo[27 + e], geo[26], T)
        dr = Rp_ / nrr
        for i in range(ncell):
            base = off + i * nrr
            s_last = y[base + nrr - 1]
            s_prev = y[base + nrr - 2]
            sto_surf = s_last + 0.5 * (s_last - s_prev)
            ix = x0 + i
            ce = y[o_ce + ix] * c0
            U = _ocp_at(e, fids, ocp_tab, geo, sto_surf, T)
            j0 = exchange_current_of(e, fids, ocp_tab, ce, sto_surf * cmax, cmax, T)
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
    if geo[18] > 0.5:  # half-cell: the Li foil at x = 0 feeds the electrolyte
        pe_b = 1.5 * y[o_pe] - 0.5 * y[o_pe + 1]
        ce_b = (1.5 * y[o_ce] - 0.5 * y[o_ce + 1]) * c0
        ie_left = _foil_current(pe_b, ce_b, geo[19], c0, RT_F)
        # (variable t+: the total flux (1 - t+) i/F + t+ i/F at the foil)
        Ne_left = src_share * ie_left / FARADAY
    for i in range(Nx):
        if i < Nx - 1:
            h = xc[i + 1] - xc[i]
            w = dx[i] / (dx[i] + dx[i + 1])
            if variable:
                kap_f, ie_c, Ne_right, t_f = _face_variable(y[o_ce + i] * c0, y[o_ce + i + 1] * c0, h, w, brug[i],
                                                            brug[i + 1], fids, ocp_tab, geo, RT_F, harmonic, T)
                ie_right = ie_c - kap_f * (y[o_pe + i + 1] - y[o_pe + i]) / h
                Ne_right += t_f * ie_right / FARADAY
            else:
                kap_f, ie_c, Ne_right = _face(y[o_ce + i] * c0, y[o_ce + i + 1] * c0, h, w, brug[i], brug[i + 1],
                                              fids, ocp_tab, tplus, tdf, RT_F, harmonic, T)
                ie_right = ie_c - kap_f * (y[o_pe + i + 1] - y[o_pe + i]) / h
        else:
            ie_right = 0.0
            Ne_right = 0.0
        src = a_s[i] * j[i]
        out[o_pe + i] = alg_scale * ((ie_right - ie_left) / dx[i] - src)
        out[o_ce + i] = (-(Ne_right - Ne_left) / dx[i] + src_share * src / FARADAY) / (eps[i] * c0)
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
def diffusion_entries(rows, cols, vals, geo):
    """The constant (state-independent) part of df/dy: spherical diffusion in every
    particle, as triplets. Returns the number written."""
    q = 0
    for e in range(2):
        ncell, nrr, off, _, Rp_, Ds, _, _, _ = _electrode_block(geo, e)
        dr = Rp_ / nrr
        for i in range(ncell):
            base = off + i * nrr
            for k in range(nrr):
                vol = ((k + 1) ** 3 - k ** 3) * dr ** 3 / 3.0
                if k < nrr - 1:
                    g = Ds * ((k + 1) * dr) ** 2 / (dr * vol)
                    rows[q] = base + k; cols[q] = base + k + 1; vals[q] = g; q += 1
                    rows[q] = base + k; cols[q] = base + k; vals[q] = -g; q += 1
                if k > 0:
                    g = Ds * (k * dr) ** 2 / (dr * vol)
                    rows[q] = base + k; cols[q] = base + k; vals[q] = -g; q += 1
                    rows[q] = base + k; cols[q] = base + k - 1; vals[q] = g; q += 1
    return q


@numba.njit(cache=True)
def jacobian_entries(y, rows, cols, vals, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, T):
    """Analytic df/dy of :func:`rhs` without the constant particle diffusion (see
    :func:`diffusion_entries`) as (row, col, value) triplets in a fixed order
    (duplicates are summed on assembly). Derivatives of the scalar property
    functions (OCP, j0, D_e, kappa) are forward differences of those scalars with
    steps ~ sqrt(machine epsilon); the rest is exact. Returns the number written."""
    Nn, Ns, Np, Nrn, Nrp, Nx, o_sp, o_ce, o_pe, o_psn, o_psp = _layout(geo)
    c0 = geo[13]; tplus = geo[14]; tdf = geo[15]; alg_scale = geo[16]
    harmonic = geo[17] > 0.5
    RT_F = R_GAS * T / FARADAY
    variable = _variable_numbers(geo)  # see rhs
    src_share = 1.0 if variable else 1.0 - tplus
    q = 0
    for e in range(2):
        ncell, nrr, off, cmax, Rp_, Ds, x0, o_ps, _ = _electrode_block(geo, e)
        dr = Rp_ / nrr
        for i in range(ncell):
            base = off + i * nrr
            # reaction current jj(s_last, s_prev, ce, phi_s, phi_e)
            s_last = y[base + nrr - 1]
            s_prev = y[base + nrr - 2]
            sto = s_last + 0.5 * (s_last - s_prev)
            ix = x0 + i
            ce = y[o_ce + ix] * c0
            # forward differences, stepping away from the nearer bound of sto in (0, 1)
            hs = 1.5e-8 if sto < 0.5 else -1.5e-8
            U = _ocp_at(e, fids, ocp_tab, geo, sto, T)
            dU = (_ocp_at(e, fids, ocp_tab, geo, sto + hs, T) - U) / hs
            cs = sto * cmax
            j0 = exchange_current_of(e, fids, ocp_tab, ce, cs, cmax, T)
            hc = 1.5e-8 * max(ce, 1.0)
            dj0_dce = (exchange_current_of(e, fids, ocp_tab, ce + hc, cs, cmax, T) - j0) / hc
            hcs = hs * cmax
            dj0_dcs = (exchange_current_of(e, fids, ocp_tab, ce, cs + hcs, cmax, T) - j0) / hcs
            arg = 0.5 * (y[o_ps + i] - y[o_pe + ix] - U) / RT_F
            sh = math.sinh(arg)
            gphi = j0 * math.cosh(arg) / RT_F  # d jj / d phi_s
            dj_dsto = 2.0 * dj0_dcs * cmax * sh - gphi * dU
            dj_dce = 2.0 * dj0_dce * c0 * sh  # per unit of the scaled c_e
            # rows fed by jj, with d(row)/d(jj)
            r_surf = base + nrr - 1
            vol = (nrr ** 3 - (nrr - 1) ** 3) * dr ** 3 / 3.0
            fac_surf = -Rp_ * Rp_ / (FARADAY * cmax * vol)
            fac_ce = src_share * a_s[ix] / (FARADAY * eps[ix] * c0)
            fac_pe = -alg_scale * a_s[ix]
            fac_ps = alg_scale * a_s[ix]
            for rr in range(4):
                if rr == 0:
                    row = r_surf; fac = fac_surf
                elif rr == 1:
                    row = o_ce + ix; fac = fac_ce
                elif rr == 2:
                    row = o_pe + ix; fac = fac_pe
                else:
                    row = o_ps + i; fac = fac_ps
                rows[q] = row; cols[q] = base + nrr - 1; vals[q] = fac * 1.5 * dj_dsto; q += 1
                rows[q] = row; cols[q] = base + nrr - 2; vals[q] = -fac * 0.5 * dj_dsto; q += 1
                rows[q] = row; cols[q] = o_ce + ix; vals[q] = fac * dj_dce; q += 1
                rows[q] = row; cols[q] = o_ps + i; vals[q] = fac * gphi; q += 1
                rows[q] = row; cols[q] = o_pe + ix; vals[q] = -fac * gphi; q += 1
    # electrolyte faces
    if geo[18] > 0.5:  # Li foil current into cell 0 (half-cell)
        pe_b = 1.5 * y[o_pe] - 0.5 * y[o_pe + 1]
        ce_b = (1.5 * y[o_ce] - 0.5 * y[o_ce + 1]) * c0
        hp = 1e-7
        dI_dpe = (_foil_current(pe_b + hp, ce_b, geo[19], c0, RT_F)
                  - _foil_current(pe_b - hp, ce_b, geo[19], c0, RT_F)) / (2.0 * hp)
        hc = 1e-6 * max(abs(ce_b), 1.0)
        dI_dce = (_foil_current(pe_b, ce_b + hc, geo[19], c0, RT_F)
                  - _foil_current(pe_b, ce_b - hc, geo[19], c0, RT_F)) / (2.0 * hc) * c0
        # out_pe[0] has -ie_left/dx0; out_ce[0] has +Ne_left/(dx0 eps0 c0), Ne_left = (1-t+) ie_left/F
        fpe = -alg_scale / dx[0]
        fce = src_share / FARADAY / (dx[0] * eps[0] * c0)
        for rr in range(2):
            row = o_pe if rr == 0 else o_ce
            fac = fpe if rr == 0 else fce
            rows[q] = row; cols[q] = o_pe; vals[q] = fac * 1.5 * dI_dpe; q += 1
            rows[q] = row; cols[q] = o_pe + 1; vals[q] = -fac * 0.5 * dI_dpe; q += 1
            rows[q] = row; cols[q] = o_ce; vals[q] = fac * 1.5 * dI_dce; q += 1
            rows[q] = row; cols[q] = o_ce + 1; vals[q] = -fac * 0.5 * dI_dce; q += 1
    for i in range(Nx - 1):
        h = xc[i + 1] - xc[i]
        w = dx[i] / (dx[i] + dx[i + 1])
        cl = y[o_ce + i] * c0
        cr = y[o_ce + i + 1] * c0
        dpe = y[o_pe + i + 1] - y[o_pe + i]
        hl = 1.5e-8 * max(cl, 1.0)
        hr = 1.5e-8 * max(cr, 1.0)
        if variable:  # N_e = -B D_e dc/dx + t+_f i_e / F: d/dc by forward differences, d/dphi_e exact
            kap_f, ie_c, Ne, t_f = _face_variable(cl, cr, h, w, brug[i], brug[i + 1], fids, ocp_tab, geo, RT_F,
                                                  harmonic, T)
            ie0 = ie_c - kap_f * dpe / h
            N0 = Ne + t_f * ie0 / FARADAY
            kp, iep, Nep, tp = _face_variable(cl + hl, cr, h, w, brug[i], brug[i + 1], fids, ocp_tab, geo, RT_F,
                                              harmonic, T)
            iep = iep - kp * dpe / h
            die_l = (iep - ie0) / hl * c0
            dNe_l = (Nep + tp * iep / FARADAY - N0) / hl * c0
            kp, iep, Nep, tp = _face_variable(cl, cr + hr, h, w, brug[i], brug[i + 1], fids, ocp_tab, geo, RT_F,
                                              harmonic, T)
            iep = iep - kp * dpe / h
            die_r = (iep - ie0) / hr * c0
            dNe_r = (Nep + tp * iep / FARADAY - N0) / hr * c0
            dN_pl = t_f * kap_f / (h * FARADAY)
        else:
            kap_f, ie_c, Ne = _face(cl, cr, h, w, brug[i], brug[i + 1], fids, ocp_tab, tplus, tdf, RT_F, harmonic,
                                    T)
            ie0 = ie_c - kap_f * dpe / h
            kp, iep, Nep = _face(cl + hl, cr, h, w, brug[i], brug[i + 1], fids, ocp_tab, tplus, tdf, RT_F, harmonic,
                                 T)
            die_l = ((iep - kp * dpe / h) - ie0) / hl * c0
            dNe_l = (Nep - Ne) / hl * c0
            kp, iep, Nep = _face(cl, cr + hr, h, w, brug[i], brug[i + 1], fids, ocp_tab, tplus, tdf, RT_F, harmonic,
                                 T)
            die_r = ((iep - kp * dpe / h) - ie0) / hr * c0
            dNe_r = (Nep - Ne) / hr * c0
            dN_pl = 0.0
        die_pl = kap_f / h
        die_pr = -kap_f / h
        for side in range(2):
            cell = i if side == 0 else i + 1
            sgn = 1.0 if side == 0 else -1.0  # the face is the right face of i, the left of i+1
            fpe = sgn * alg_scale / dx[cell]
            fce = -sgn / (dx[cell] * eps[cell] * c0)
            rows[q] = o_pe + cell; cols[q] = o_ce + i; vals[q] = fpe * die_l; q += 1
            rows[q] = o_pe + cell; cols[q] = o_ce + i + 1; vals[q] = fpe * die_r; q += 1
            rows[q] = o_pe + cell; cols[q] = o_pe + i; vals[q] = fpe * die_pl; q += 1
            rows[q] = o_pe + cell; cols[q] = o_pe + i + 1; vals[q] = fpe * die_pr; q += 1
            rows[q] = o_ce + cell; cols[q] = o_ce + i; vals[q] = fce * dNe_l; q += 1
            rows[q] = o_ce + cell; cols[q] = o_ce + i + 1; vals[q] = fce * dNe_r; q += 1
            if variable:  # the migration flux t+ i_e / F couples c_e to phi_e
                rows[q] = o_ce + cell; cols[q] = o_pe + i; vals[q] = fce * dN_pl; q += 1
                rows[q] = o_ce + cell; cols[q] = o_pe + i + 1; vals[q] = -fce * dN_pl; q += 1
    # solid potentials (linear)
    for e in range(2):
        if e == 0:
            ncell = Nn; x0 = 0; sig = geo[11]; o_ps = o_psn
        else:
            ncell = Np; x0 = Nn + Ns; sig = geo[12]; o_ps = o_psp
        for i in range(ncell):
            ix = x0 + i
            f = alg_scale / dx[ix]
            if i == 0:
                if e == 0:
                    rows[q] = o_ps; cols[q] = o_ps; vals[q] = f * sig / (0.5 * dx[ix]); q += 1
            else:
                g = sig / (xc[ix] - xc[ix - 1])
                rows[q] = o_ps + i; cols[q] = o_ps + i; vals[q] = f * g; q += 1
                rows[q] = o_ps + i; cols[q] = o_ps + i - 1; vals[q] = -f * g; q += 1
            if i < ncell - 1:
                g = sig / (xc[ix + 1] - xc[ix])
                rows[q] = o_ps + i; cols[q] = o_ps + i + 1; vals[q] = -f * g; q += 1
                rows[q] = o_ps + i; cols[q] = o_ps + i; vals[q] = f * g; q += 1
    return q


@numba.njit(cache=True)
def assemble_jacobian(y, shift, mass, diag_pos, trip_pos, rows, cols, vals, data, base, geo, dx, xc, eps, brug,
                      a_s, fids, ocp_tab, T):
    """CSR values of ``shift*M - df/dy``: the constant part ``base`` (= -particle
    diffusion) plus the state-dependent triplets (k goes to CSR position trip_pos[k])."""
    nq = jacobian_entries(y, rows, cols, vals, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, T)
    data[:] = base
    for k in range(nq):
        data[trip_pos[k]] -= vals[k]
    for r in range(mass.size):
        data[diag_pos[r]] += shift * mass[r]


@numba.njit(cache=True)
def event_values(y, cutoff_V, geo, fvalue):
    """TS event functions: V - cut-off, min/max particle surface stoichiometry inside
    (0, 1) by _STO_MARGIN, min c_e / c_e0 - _MIN_CE_FRACTION."""
    Nn = int(geo[0]); Ns = int(geo[1]); Np = int(geo[2]); Nrn = int(geo[3]); Nrp = int(geo[4])
    Nx = Nn + Ns + Np
    o_sp = Nn * Nrn
    o_ce = o_sp + Np * Nrp
    o_psp = o_ce + 2 * Nx + Nn
    # terminal voltage: the electrode's, less the series-resistance drop (y[n] = current / 1C)
    v = y[o_psp + Np - 1] + 0.5 * (y[o_psp + Np - 1] - y[o_psp + Np - 2]) - y[o_psp + Np] * geo[21] * geo[20]
    fvalue[0] = v - cutoff_V
    smin = 1.0
    smax = 0.0
    for e in range(2):
        ncell = Nn if e == 0 else Np
        nrr = Nrn if e == 0 else Nrp
        off = 0 if e == 0 else o_sp
        for i in range(ncell):
            b = off + i * nrr
            s = 1.5 * y[b + nrr - 1] - 0.5 * y[b + nrr - 2]
            smin = min(smin, s)
            smax = max(smax, s)
    fvalue[1] = smin - _STO_MARGIN
    fvalue[2] = 1.0 - _STO_MARGIN - smax
    cmin = y[o_ce]
    for i in range(Nx):
        cmin = min(cmin, y[o_ce + i])
    fvalue[3] = cmin - _MIN_CE_FRACTION


@numba.njit(cache=True)
def residual_ext(yx, ydotx, i1c, voltage_mode, setpoint, f, fbuf, mass, geo, dx, xc, eps, brug, a_s, fids, ocp_tab,
                 T):
    """IFunction of the system extended by the applied current y[n] (C-rate units):
    rows < n are ``M y' - f(y; I)``, row n is ``y[n] - setpoint`` or ``V(y) - setpoint``."""
    n = mass.size
    y = yx[:n]
    rhs(y, yx[n] * i1c, fbuf, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, T)
    for r in range(n):
        f[r] = mass[r] * ydotx[r] - fbuf[r]
    if voltage_mode:
        f[n] = 1.5 * y[n - 1] - 0.5 * y[n - 2] - yx[n] * i1c * geo[20] - setpoint
    else:
        f[n] = yx[n] - setpoint


@numba.njit(cache=True)
def extension_entries(data, ext_pos, voltage_mode, coef, r_drop):
    """Jacobian entries of the current unknown: column n of the last positive
    solid-potential row, and row n (see :func:`residual_ext`); r_drop = dV/dy[n]
    of the series resistance."""
    data[ext_pos[0]] = -coef
    if voltage_mode:
        data[ext_pos[1]] = -0.5
        data[ext_pos[2]] = 1.5
        data[ext_pos[3]] = -r_drop
    else:
        data[ext_pos[1]] = 0.0
        data[ext_pos[2]] = 0.0
        data[ext_pos[3]] = 1.0


# ---- lumped thermal model: heat sources, the temperature row and column -----------------------

@numba.njit(cache=True)
def heat_sources(y, i_app, T, q, geo, dx, xc, eps, brug, a_s, fids, ocp_tab):
    """Heat generated per unit electrode area [W/m2] by state ``y`` at current density
    ``i_app`` and temperature T, into q: [0] electrolyte Ohmic -sum_faces i_e d(phi_e),
    [1] solid Ohmic sigma (d phi_s)^2 / h per face (plus the collector-side half cells),
    [2] series resistance i^2 R A (collectors' through-plane drop + contact),
    [3] irreversible a j eta dx, [4] reversible a j T dU/dT dx (PyBaMM's definitions).
    Written as fluxes times potential differences over the same faces as :func:`rhs`,
    so that by summation by parts q[0] + q[1] + q[2] + q[3] = i (U_p - U_n - V) exactly
    when each electrode's OCP is uniform (tested)."""
    Nn, Ns, Np, Nrn, Nrp, Nx, o_sp, o_ce, o_pe, o_psn, o_psp = _layout(geo)
    c0 = geo[13]; tplus = geo[14]; tdf = geo[15]
    harmonic = geo[17] > 0.5
    RT_F = R_GAS * T / FARADAY
    for k in range(5):
        q[k] = 0.0
    for e in range(2):
        ncell, nrr, off, cmax, _, _, x0, o_ps, sig = _electrode_block(geo, e)
        for i in range(ncell):
            base = off + i * nrr
            sto_surf = 1.5 * y[base + nrr - 1] - 0.5 * y[base + nrr - 2]
            ix = x0 + i
            U = _ocp_at(e, fids, ocp_tab, geo, sto_surf, T)
            j0 = exchange_current_of(e, fids, ocp_tab, y[o_ce + ix] * c0, sto_surf * cmax, cmax, T)
            eta = y[o_ps + i] - y[o_pe + ix] - U
            aj_dx = a_s[ix] * 2.0 * j0 * math.sinh(0.5 * eta / RT_F) * dx[ix]
            q[3] += aj_dx * eta
            q[4] += aj_dx * T * _entropic_of(e, geo, ocp_tab, sto_surf)
            if i < ncell - 1:
                d = y[o_ps + i + 1] - y[o_ps + i]
                q[1] += sig * d * d / (xc[ix + 1] - xc[ix])
        if ncell > 0:
            if e == 0:  # phi_s(0) = 0 over half a cell
                q[1] += sig * y[o_ps] * y[o_ps] / (0.5 * dx[x0])
            else:  # i_s = i_app into the extrapolated phi_s(L)
                q[1] -= i_app * 0.5 * (y[o_ps + ncell - 1] - y[o_ps + ncell - 2])
    # i_e at the faces as in _face (same floors and means), each cell's B kappa and chi
    # evaluated once and carried to the next face (D_e is not needed here)
    variable = _variable_numbers(geo)
    cr = y[o_ce] * c0
    kr = brug[0] * electrolyte_conductivity_of(fids, ocp_tab, max(cr, 10.0), T)
    if variable:
        chir = _chi_over_c(cr, geo, ocp_tab, RT_F, T)
    else:
        chir = 2.0 * (1.0 - tplus) * tdf * RT_F / max(cr, 1e-2)
    for i in range(Nx - 1):
        cl, kl, chil = cr, kr, chir
        cr = y[o_ce + i + 1] * c0
        kr = brug[i + 1] * electrolyte_conductivity_of(fids, ocp_tab, max(cr, 10.0), T)
        if variable:
            chir = _chi_over_c(cr, geo, ocp_tab, RT_F, T)
        else:
            chir = 2.0 * (1.0 - tplus) * tdf * RT_F / max(cr, 1e-2)
        h = xc[i + 1] - xc[i]
        w = dx[i] / (dx[i] + dx[i + 1])
        if harmonic:
            kap_f = 1.0 / (w / kl + (1.0 - w) / kr)
        else:
            kap_f = (1.0 - w) * kl + w * kr
        chi_f = 1.0 / (w / chil + (1.0 - w) / chir)
        dpe = y[o_pe + i + 1] - y[o_pe + i]
        q[0] -= (kap_f * chi_f * ((cr - cl) / h) - kap_f * dpe / h) * dpe
    q[2] = i_app * i_app * geo[20]


@numba.njit(cache=True)
def residual_thermal(yx, ydotx, i1c, voltage_mode, setpoint, f, fbuf, mass, geo, dx, xc, eps, brug, a_s, fids,
                     ocp_tab, therm, q):
    """IFunction of the system extended by the current y[n] and the cell temperature
    y[n+1] (lumped): rows <= n as :func:`residual_ext` at T = y[n+1], row n+1 is
    ``dT/dt - (k_Q sum(q) - k_h (T - T_amb))`` with therm = (k_Q, k_h, T_amb),
    k_Q = A n_parallel / (rho c_p V), k_h = h A_cool / (rho c_p V)."""
    n = mass.size
    T = yx[n + 1]
    residual_ext(yx[:n + 1], ydotx[:n + 1], i1c, voltage_mode, setpoint, f[:n + 1], fbuf, mass, geo, dx, xc, eps,
                 brug, a_s, fids, ocp_tab, T)
    heat_sources(yx[:n], yx[n] * i1c, T, q, geo, dx, xc, eps, brug, a_s, fids, ocp_tab)
    f[n + 1] = ydotx[n + 1] - (therm[0] * (q[0] + q[1] + q[2] + q[3] + q[4]) - therm[1] * (T - therm[2]))


@numba.njit(cache=True)
def thermal_jacobian_entries(yx, i1c, shift, data, tcol_pos, tdiag_pos, fa, fb, q, geo, dx, xc, eps, brug, a_s, fids,
                             ocp_tab, therm, diff_pos, diff_vals, diff_side, reuse):
    """The temperature column d(rows < n)/dT by a forward difference of the compiled
    residual (one extra evaluation) and the temperature row's diagonal; the constant
    particle-diffusion part (assembled at D_s(T_ref)) rescaled by the Arrhenius factors
    at T. The row's dependence on the other unknowns (d Q / d y, a dense row) is left
    out: Newton on this slightly inexact Jacobian (quasi-Newton) converges, T being a
    slow variable coupled weakly back into the electrochemistry (measured: 344 vs 297
    Newton iterations for a 1C discharge). ``reuse``: fa and q already hold rhs and the
    heat sources at this very state (the IFunction's last evaluation), saving one of each."""
    n = fa.size
    y = yx[:n]
    i_app = yx[n] * i1c
    T = yx[n + 1]
    fac_n = arrhenius(geo[27], geo[26], T) - 1.0
    fac_p = arrhenius(geo[28], geo[26], T) - 1.0
    if fac_n != 0.0 or fac_p != 0.0:
        for k in range(diff_pos.size):
            data[diff_pos[k]] -= (fac_p if diff_side[k] else fac_n) * diff_vals[k]
    hT = 1e-6 * T
    if not reuse:
        rhs(y, i_app, fa, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, T)
        heat_sources(y, i_app, T, q, geo, dx, xc, eps, brug, a_s, fids, ocp_tab)
    qa = q[0] + q[1] + q[2] + q[3] + q[4]
    rhs(y, i_app, fb, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, T + hT)
    for r in range(n):
        data[tcol_pos[r]] = -(fb[r] - fa[r]) / hT
    heat_sources(y, i_app, T + hT, q, geo, dx, xc, eps, brug, a_s, fids, ocp_tab)
    qb = q[0] + q[1] + q[2] + q[3] + q[4]
    data[tdiag_pos] = shift + therm[1] - therm[0] * (qb - qa) / hT


@numba.njit(cache=True)
def same_state(a, b):
    """a == b elementwise (numpy's array_equal costs ~8 us per call at this size)."""
    for k in range(a.size):
        if a[k] != b[k]:
            return False
    return True


@numba.njit(cache=True)
def residual(y, ydot, i_app, f, fbuf, mass, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, T):
    """TS IFunction ``M y' - f(y)`` written straight into PETSc's array."""
    rhs(y, i_app, fbuf, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, T)
    for r in range(f.size):
        f[r] = mass[r] * ydot[r] - fbuf[r]


@numba.njit(cache=True)
def dense_solve(A, b):
    """Gaussian elimination with partial pivoting, in place (single-threaded: a BLAS
    call on a shared machine spawns threads that cost more than this ~100 x 100 solve)."""
    n = b.size
    for k in range(n):
        p = k
        for r in range(k + 1, n):
            if abs(A[r, k]) > abs(A[p, k]):
                p = r
        if A[p, k] == 0.0:
            return np.full(n, np.nan)
        if p != k:
            for c in range(n):
                A[k, c], A[p, c] = A[p, c], A[k, c]
            b[k], b[p] = b[p], b[k]
        for r in range(k + 1, n):
            m = A[r, k] / A[k, k]
            if m != 0.0:
                for c in range(k, n):
                    A[r, c] -= m * A[k, c]
                b[r] -= m * b[k]
    for k in range(n - 1, -1, -1):
        s = b[k]
        for c in range(k + 1, n):
            s -= A[k, c] * b[c]
        b[k] = s / A[k, k]
    return b


THERMAL_MODELS = ("isothermal", "lumped")
#: parameters the lumped thermal model needs (see _thermal_constants)
_THERMAL_LAYERS = ("negative_current_collector", "negative_electrode", "separator", "positive_electrode",
                   "positive_current_collector")
#: current-collector thicknesses are optional: a set without them (a BPX file) has no collector
#: layers, i.e. no collector heat capacity and no collector series resistance (PyBaMM's BPX import
#: sets them to 0 too); the collectors' density and specific heat are needed only when a thickness > 0
THERMAL_KEYS = tuple(f"{layer}_{prop}" for prop in ("density_kg_m3", "specific_heat_J_kg_K")
                     for layer in _THERMAL_LAYERS if "collector" not in layer) + (
    "total_heat_transfer_coefficient_W_m2_K", "cell_cooling_surface_area_m2", "cell_volume_m3",
    "ambient_temperature_K")
_ENTROPIC_KEYS = ("negative_electrode_ocp_entropic_change_V_K", "positive_electrode_ocp_entropic_change_V_K")

_FUNCTION_KEYS = ("negative_electrode_ocp_V", "positive_electrode_ocp_V", "negative_exchange_current_density_A_m2",
                  "positive_exchange_current_density_A_m2", "electrolyte_diffusivity_m2_s", "electrolyte_conductivity_S_m")
_STO_MARGIN = 1e-6

#: Li-foil exchange current density at c_e = c_e0 = 1000 mol/m3: PyBaMM's Xu2019 form
#: 3.5e-8 F c_Li^0.7 c_e^0.3 with c_Li = 76900 mol/m3 (plated Li)
LI_FOIL_J0_A_M2 = 3.5e-8 * FARADAY * 76900.0 ** 0.7 * 1000.0 ** 0.3
_MIN_CE_FRACTION = 1e-6


@numba.njit(cache=True)
def shift_diagonal(data, diag_pos, mass, t_diag, dshift):
    """Add dshift M to the CSR values (the shift of the BDF iteration matrix shift M - df/dy);
    t_diag >= 0: the temperature row's diagonal (unit mass) too."""
    for r in range(mass.size):
        data[diag_pos[r]] += dshift * mass[r]
    if t_diag >= 0:
        data[t_diag] += dshift


@numba.njit(cache=True)
def newton_update(x, d, scale, y_ref, rtol, atol):
    """x -= scale d; returns the weighted RMS norm of the correction scale d,
    sqrt(mean((scale d_k / (rtol |y_ref_k| + atol))^2)) (IDA's error norm)."""
    s = 0.0
    for k in range(d.size):
        dk = scale * d[k]
        x[k] -= dk
        w = dk / (rtol * abs(y_ref[k]) + atol)
        s += w * w
    return math.sqrt(s / d.size)


class _ModifiedNewton:
    """PETSc SNES (type python) for the BDF stage equations G(x) = 0, with IDA's Newton strategy
    (SUNDIALS IDA, Hindmarsh et al. 2005) and PETSc's LU:

    * the iteration matrix G' = shift M - df/dy is not re-evaluated every step: DFNModel._integrate
      keeps df/dy for up to ``jacobian_max_age`` steps and only puts the new shift on the
      diagonal before the LU refactorisation, so that the shift is always exact and every linear
      invariant of the DAE (Li inventory, salt, charge balance: w^T df/dy = 0) is satisfied to
      round-off after each correction. Optionally (``jacobian_shift_ratio`` > 1, experimental) the
      factorisation itself is kept while the shift is within that ratio of its own; the correction
      is then scaled by s0 / shift (s0: the factorisation's shift), which keeps those invariants
      exact too (IDA's 2 / (1 + shift / s0) does not: ~1e-7 charge errors, measured);
    * convergence on the correction, not the residual: with d_m the m-th correction in the weighted
      RMS norm of the time-integration tolerances (weights 1 / (rtol |x_pred| + atol)), the rate
      estimate R = (d_m / d_0)^(1/m) and S = R / (1 - R) (S = 20 after a new factorisation, carried
      over otherwise, 100 after a shift change on a kept factorisation), converged when S d_m <= 0.33
      (or d_0 <= 0.33e-4), i.e. when the remaining nonlinear error is a third of the local error
      the BDF step may make;
    * at most 4 corrections, R > 0.9 is a failure; a failure on an old df/dy is retried once from
      the predictor with a fresh Jacobian, a second failure is DIVERGED_MAX_IT and TS cuts the step.
    Each correction costs one residual and one pair of triangular solves; no residual is computed
    after the last correction (PETSc's newtonls needs one more to test the residual norm).
    """

    EPCON, MAXCOR, RATEMAX = 0.33, 4, 0.9

    def __init__(self, jac_kept, rtol, atol):
        self.jac, self.rtol, self.atol = jac_kept, float(rtol), float(atol)
        self.ss = 20.0
        self.last_shift = None
        self.F = self.Y = self.lu = None

    def solve(self, snes, b, x):
        if self.F is None:  # work vectors and their arrays (views, valid while the vectors live)
            self.F, self.Y = x.duplicate(), x.duplicate()
            self.y_arr = self.Y.getArray(readonly=True)
            self.x_pred = np.empty(x.getLocalSize())
            self.ksp, self.J = snes.getKSP(), snes.getJacobian()[0]
        F, Y, jac, ksp, J, x_pred, y_arr = self.F, self.Y, self.jac, self.ksp, self.J, self.x_pred, self.y_arr
        x_arr = x.getArray()
        x_pred[:] = x_arr
        its, converged = 0, False
        for attempt in range(2):
            jac["force"] = attempt > 0
            if attempt:
                x.setArray(x_pred)
                x_arr = x.getArray()
            evals, factors = jac["evals"], jac["factors"]
            for m in range(self.MAXCOR):
                snes.computeFunction(x, F)
                if m == 0:
                    snes.computeJacobian(x, J, J)  # DFNModel's callback decides: keep, new shift, or fresh
                    shift = jac["current"]
                    if jac["factors"] != factors or self.lu is None:
                        self.ss = 20.0
                        # refactorise (PCSetUp sees the changed matrix); then triangular solves
                        # straight on the factor (no KSP bookkeeping per correction)
                        ksp.setOperators(J, J)
                        ksp.setUp()
                        self.lu = ksp.getPC().getFactorMatrix()
                    elif shift != self.last_shift:
                        self.ss = 100.0
                    self.last_shift = shift
                    # a kept factorisation with an older shift s0: correction scaled by s0 / shift, which
                    # keeps every linear invariant (w^T df/dy = 0: Li, salt, charge balance) exact
                    # after each correction (IDA's 2 / (1 + shift / s0) leaves ~1e-7 charge errors)
                    scale = jac["shift"] / shift
                self.lu.solve(F, Y)
                its += 1
                delnrm = newton_update(x_arr, y_arr, scale, x_pred, self.rtol, self.atol)
                x.stateIncrease()
                if not math.isfinite(delnrm):
                    break
                if m == 0:
                    oldnrm = delnrm
                    if delnrm <= 1e-4 * self.EPCON:
                        converged = True
                        break
                else:
                    rate = (delnrm / oldnrm) ** (1.0 / m)
                    if rate > self.RATEMAX:
                        break
                    self.ss = rate / (1.0 - rate)
                if self.ss * delnrm <= self.EPCON:
                    converged = True
                    break
            if converged or jac["evals"] != evals:  # failed on a fresh Jacobian: TS cuts the step
                break
        jac["force"] = False
        snes.setIterationNumber(its)
        snes.setConvergedReason(PETSc.SNES.ConvergedReason.CONVERGED_SNORM_RELATIVE if converged
                                else PETSc.SNES.ConvergedReason.DIVERGED_MAX_IT)


class DFNModel:
    """A DFN cell discretised once; :meth:`discharge` re-solves it for any current.

    ``points`` = cells in (negative, separator, positive); ``r_points`` = shells in the
    (negative, positive) particles. ``conductivity_average``: electrolyte conductivity
    B*kappa at cell faces by the harmonic mean (default; second order where B jumps
    between regions) or PyBaMM's weighted arithmetic mean (first order there).
    Build cost (compilation, sparsity, colouring) is paid in the constructor;
    ``build_time_s`` records it.
    """

    def __init__(self, params: dict, points=(20, 20, 20), r_points=(20, 20), conductivity_average="harmonic",
                 half_cell=False, thermal="isothermal"):
        if conductivity_average not in ("harmonic", "arithmetic"):
            raise ValueError(f"conductivity_average must be 'harmonic' or 'arithmetic', got {conductivity_average!r}")
        if thermal not in THERMAL_MODELS:
            raise ValueError(f"thermal must be one of {THERMAL_MODELS}, got {thermal!r}")
        if thermal == "lumped" and half_cell:
            raise ValueError("thermal 'lumped' is not available for a half-cell (no Li-foil heat terms)")
        t0 = time.perf_counter()
        self.thermal = thermal
        self.half_cell = bool(half_cell)
        # event location tolerance (V, or C-rate units for a current limit): 1e-11 so that a cc step
        # ending at a voltage limit hands the next (cv) step a state whose consistent current
        # matches the cc current to ~1e-11 (at 1e-9 V the modified Newton's event landed 3e-10 V off,
        # a 5e-9 relative current jump); costs no extra step at 1C (measured)
        self.event_tol = 1e-11
        # nonlinear solver of each BDF step: "modified" (_ModifiedNewton: IDA's Newton, df/dy kept
        # for up to jacobian_max_age steps, the shift always exact: jacobian_shift_ratio 1) or
        # "petsc" (PETSc's newtonls with a fresh Jacobian every step, the solver of session 2).
        # jacobian_shift_ratio > 1 (experimental) keeps factorisations across shift changes: 5/3
        # (IDA's) was ~10 % faster at 1C, but a cc-cv protocol stalled in event location at 1.15
        self.newton = "modified"
        self.jacobian_shift_ratio = 1.0
        self.jacobian_max_age = 20
        self.Nn, self.Ns, self.Np = (int(v) for v in points)
        self.Nrn, self.Nrp = (int(v) for v in r_points)
        if min(points) < 2 or min(r_points) < 3:
            raise ValueError("need at least 2 cells per domain in x and 3 shells in r")
        if self.half_cell:  # Li foil instead of the negative electrode
            self.Nn = 0
        self.conductivity_average = conductivity_average
        self._set_values(params)
        self._rhs = rhs
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
        variable_before = _variable_numbers(self.geo)
        self._set_values(params)
        if _variable_numbers(self.geo) != variable_before:  # the migration term adds c_e-phi_e entries
            self._build_jacobian_structure()
        else:
            self._refresh_constant_jacobian()

    def _set_values(self, params: dict):
        self.params = p = params
        # property functions by id and the packed tables / Arrhenius constants (parameters.pack_properties)
        self._fids, self._ocp_tab = pack_properties(p)
        self._ocp_n = ocp_callable(p, _FUNCTION_KEYS[0])
        self._ocp_p = ocp_callable(p, _FUNCTION_KEYS[1])
        Ls = [p["negative_electrode_thickness_m"], p["separator_thickness_m"], p["positive_electrode_thickness_m"]]
        counts = [self.Nn, self.Ns, self.Np]
        self.dx = np.concatenate([np.full(n, L / max(n, 1)) for n, L in zip(counts, Ls)])
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
        # lumped series resistance: contact resistance plus the through-plane ohmic drop of both
        # current collectors (the 1D model has no in-plane collector potential); a collector
        # without a thickness (BPX) or of thickness 0 adds nothing
        collector_drop = 0.0
        for s in ("negative", "positive"):
            L_cc = float(p.get(f"{s}_current_collector_thickness_m", 0.0))
            if L_cc > 0:
                key = f"{s}_current_collector_conductivity_S_m"
                if key not in p:
                    raise DeckError(f"parameter set '{p.get('_name', '?')}': {s}_current_collector_thickness_m "
                                    f"= {L_cc:g} m needs '{key}' (or thickness 0: no collector)")
                collector_drop += L_cc / float(p[key])
        self.series_resistance_ohm = p.get("contact_resistance_Ohm", 0.0) + collector_drop / self.area_m2
        # D_s at temperature_K (Arrhenius about reference_temperature_K); the lumped thermal
        # kernels apply the factor at the state's T themselves, so they get the reference value
        # t+ and TDF: geo[14], geo[15] the constants (nan for a function / table), geo[29], geo[30] their ids
        number_ids, number_constants = electrolyte_number_ids(p)
        Ds_ref = [particle_diffusivity(p, side) if getattr(self, "thermal", "isothermal") != "lumped"
                  else float(p[f"{side}_particle_diffusivity_m2_s"]) for side in ("negative", "positive")]
        self.geo = np.array([self.Nn, self.Ns, self.Np, self.Nrn, self.Nrp,
                             p["negative_maximum_concentration_mol_m3"], p["positive_maximum_concentration_mol_m3"],
                             Rn, Rp, Ds_ref[0], Ds_ref[1],
                             p["negative_electrode_conductivity_S_m"], p["positive_electrode_conductivity_S_m"],
                             p["initial_electrolyte_concentration_mol_m3"], number_constants[0],
                             number_constants[1], L / i_1c,
                             1.0 if self.conductivity_average == "harmonic" else 0.0,
                             1.0 if self.half_cell else 0.0,
                             p.get("lithium_foil_exchange_current_density_A_m2", LI_FOIL_J0_A_M2),
                             self.series_resistance_ohm * self.area_m2, i_1c] + self._thermal_geo(p) + number_ids,
                            dtype=float)
        self.therm = self._thermal_constants(p) if self.thermal == "lumped" else np.zeros(3)
        if self.thermal == "lumped":  # D_s at T_ref, scaled by its Arrhenius factor at the state T
            self.geo[9] = particle_diffusivity(p, "negative", self.geo[26])
            self.geo[10] = particle_diffusivity(p, "positive", self.geo[26])

    def _thermal_geo(self, p):
        """geo[22:29]: entropic-change ids (-1: constant, -2: table), the constants [V/K], T_ref,
        and (lumped thermal only, else 0) the particle-diffusivity activation energies [J/mol]."""
        ids, consts = [], []
        for key in _ENTROPIC_KEYS:
            v = p.get(key, 0.0)
            if isinstance(v, str):
                ids.append(float(function_id(function(p, key), ENTROPIC_CHANGE)))
                consts.append(0.0)
            elif isinstance(v, dict):
                ids.append(-2.0)
                consts.append(0.0)
            else:
                ids.append(-1.0)
                consts.append(float(v))
        ea = [float(p.get(f"{side}_particle_diffusivity_activation_energy_J_mol", 0.0)) if self.thermal == "lumped"
              else 0.0 for side in ("negative", "positive")]
        return ids + consts + [float(p.get("reference_temperature_K", p["temperature_K"]))] + ea

    def _thermal_constants(self, p):
        """(k_Q, k_h, T_amb) of the lumped energy balance rho_cp_eff V dT/dt = A n_par Q - h A_cool (T - T_amb):
        rho_cp_eff is PyBaMM's thickness-weighted mean over the collectors, electrodes and separator."""
        collectors = {s: float(p.get(f"{s}_current_collector_thickness_m", 0.0)) for s in ("negative", "positive")}
        missing = [k for k in THERMAL_KEYS if k not in p] + [
            f"{s}_current_collector_{prop}" for s, L in collectors.items() if L > 0
            for prop in ("density_kg_m3", "specific_heat_J_kg_K") if f"{s}_current_collector_{prop}" not in p]
        if missing:
            raise DeckError(f"thermal 'lumped' needs parameter(s) {', '.join(missing)} in set "
                            f"'{p.get('_name', '?')}'")
        layers = (("negative_current_collector", collectors["negative"]),
                  ("negative_electrode", p["negative_electrode_thickness_m"]),
                  ("separator", p["separator_thickness_m"]),
                  ("positive_electrode", p["positive_electrode_thickness_m"]),
                  ("positive_current_collector", collectors["positive"]))
        layers = tuple((k, L) for k, L in layers if L > 0)  # a collector of thickness 0 is absent
        L_total = sum(L for _, L in layers)
        self.rho_cp_eff = sum(L * p[f"{k}_density_kg_m3"] * p[f"{k}_specific_heat_J_kg_K"] for k, L in layers) / L_total
        self.heat_capacity_J_K = self.rho_cp_eff * p["cell_volume_m3"]
        self.heat_scale_m2 = self.area_m2 * p.get("number_of_electrodes_in_parallel", 1.0)
        h_A = p["total_heat_transfer_coefficient_W_m2_K"] * p["cell_cooling_surface_area_m2"]
        return np.array([self.heat_scale_m2 / self.heat_capacity_J_K, h_A / self.heat_capacity_J_K,
                         p["ambient_temperature_K"]])

    # ---- helpers -------------------------------------------------------------
    def _eval_rhs(self, y, i_app, out=None, T=None):
        out = np.empty(self.n) if out is None else out
        T = self.T if T is None else T
        self._rhs(y, i_app, out, self.geo, self.dx, self.xc, self.eps, self.brug, self.a_s, self._fids, self._ocp_tab,
                  T)
        return out

    def heat_sources(self, y, i_app, T=None) -> dict:
        """Heat generated in state ``y`` at current density ``i_app`` [A/m2] and temperature T,
        in W for the whole cell (per-area terms times electrode area x electrodes in parallel):
        Ohmic (electrolyte, solid, series resistance), irreversible, reversible, total."""
        q = np.zeros(5)
        T = self.T if T is None else T
        heat_sources(y[:self.n], i_app, T, q, self.geo, self.dx, self.xc, self.eps, self.brug, self.a_s, self._fids,
                     self._ocp_tab)
        scale = self.area_m2 * self.params.get("number_of_electrodes_in_parallel", 1.0)
        out = dict(zip(("ohmic_electrolyte_W", "ohmic_solid_W", "ohmic_series_W", "irreversible_W", "reversible_W"),
                       (float(v) * scale for v in q)))
        out["total_W"] = float(np.sum(q)) * scale
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
        Un = 0.0 if self.half_cell else self._ocp_n(sn)  # half-cell: potentials vs the Li foil
        Up = self._ocp_p(spp)
        y[self.o_pe: self.o_psn] = -Un
        y[self.o_psn: self.o_psp] = 0.0
        y[self.o_psp:] = Up - Un
        return y

    def _build_jacobian_structure(self):
        """CSR sparsity of ``shift M - df/dy`` from the analytic triplets (their order
        and positions do not depend on the state), plus the diagonal."""
        nq_max = 40 * self.n + 64
        self._rows = np.zeros(nq_max, dtype=np.int64)
        self._cols = np.zeros(nq_max, dtype=np.int64)
        self._vals = np.zeros(nq_max)
        nq = jacobian_entries(self.initial_state(), self._rows, self._cols, self._vals, self.geo, self.dx, self.xc,
                              self.eps, self.brug, self.a_s, self._fids, self._ocp_tab, self.T)
        m = 4 * self.o_ce + 4
        d_rows, d_cols, d_vals = np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64), np.zeros(m)
        nd = diffusion_entries(d_rows, d_cols, d_vals, self.geo)
        d_rows, d_cols, d_vals = d_rows[:nd], d_cols[:nd], d_vals[:nd]
        # one extra unknown, the applied current y[n] (see residual_ext): it enters the last
        # positive solid-potential row; its own row involves V (last two phi_s,p) and itself
        n = self.n
        # lumped thermal: one more unknown T = y[n+1]; its column is full (every row may
        # depend on T), its row only the diagonal (see thermal_jacobian_entries)
        n1 = n + (2 if self.thermal == "lumped" else 1)
        last = self.o_psp + self.Np - 1
        ext_rows = np.array([last, n, n, n])
        ext_cols = np.array([n, last - 1, last, n])
        th_rows = np.arange(n + 1) if self.thermal == "lumped" else np.zeros(0, dtype=np.int64)
        th_cols = np.full(th_rows.size, n + 1)
        if th_rows.size:
            th_rows[n] = n + 1  # the diagonal of the T row (row n does not depend on T)
        rows = np.concatenate([self._rows[:nq], d_rows, np.arange(n), ext_rows, th_rows])
        cols = np.concatenate([self._cols[:nq], d_cols, np.arange(n), ext_cols, th_cols])
        keys = np.unique(rows * n1 + cols)
        self.indptr = np.searchsorted(keys // n1, np.arange(n1 + 1)).astype(PETSc.IntType)
        self.indices = (keys % n1).astype(PETSc.IntType)
        self._trip_pos = np.searchsorted(keys, self._rows * n1 + self._cols).astype(np.int64)
        self._trip_pos[nq:] = 0
        self.diag_pos = np.searchsorted(keys, np.arange(n) * (n1 + 1)).astype(np.int64)
        self._ext_pos = np.searchsorted(keys, ext_rows * n1 + ext_cols).astype(np.int64)
        self._n_ext = n1
        if th_rows.size:
            self._tcol_pos = np.searchsorted(keys, np.arange(n) * n1 + n + 1).astype(np.int64)
            self._tdiag_pos = int(np.searchsorted(keys, (n + 1) * n1 + n + 1))
        nnz = keys.size
        # algebraic-algebraic block of the pattern (CSC), for the consistent initial potentials
        pos = sp.csr_matrix((np.arange(nnz, dtype=float) + 1, self.indices, self.indptr), shape=(n1, n1))
        block = pos[self.algebraic][:, self.algebraic].tocsc()
        block.sort_indices()
        self._alg_pos = (block.data - 1).astype(np.int64)
        self._alg_indices, self._alg_indptr = block.indices, block.indptr
        # (row, col) of each block entry: the block (~100 x 100) is solved dense
        self._alg_cols = np.repeat(np.arange(block.shape[1]), np.diff(block.indptr))
        self._jdata = np.zeros(nnz, dtype=PETSc.ScalarType)
        self._diff_pos = np.searchsorted(keys, d_rows * n1 + d_cols)
        self._refresh_constant_jacobian()

    def _refresh_constant_jacobian(self):
        """CSR values of the constant part (-particle diffusion) for the current values."""
        m = 4 * self.o_ce + 4
        d_rows, d_cols, d_vals = np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64), np.zeros(m)
        nd = diffusion_entries(d_rows, d_cols, d_vals, self.geo)
        self._jbase = np.zeros(self._jdata.size)
        np.add.at(self._jbase, self._diff_pos, -d_vals[:nd])
        # for the lumped thermal model's Arrhenius rescaling of this part (thermal_jacobian_entries)
        self._diff_vals = d_vals[:nd].copy()
        self._diff_side = (d_rows[:nd] >= self.o_sp).astype(np.int64)
        self._f0 = np.zeros(self.n)

    def jacobian_data(self, y, i_app, shift, out=None, T=None):
        """CSR values of ``shift*M - df/dy`` on the structure ``(indptr, indices)`` of
        shape (n+1, n+1), (n+2, n+2) with the lumped thermal model (the last rows/columns,
        the applied-current and temperature unknowns, stay 0 here). Analytic; ``i_app`` enters
        only boundary values, not the Jacobian."""
        out = self._jdata if out is None else out
        assemble_jacobian(y, shift, self.mass, self.diag_pos, self._trip_pos, self._rows, self._cols, self._vals,
                          out, self._jbase, self.geo, self.dx, self.xc, self.eps, self.brug, self.a_s, self._fids,
                          self._ocp_tab, self.T if T is None else T)
        return out

    def consistent_algebraic(self, y, i_app, tol=1e-9, maxit=30, T=None):
        """Newton on the algebraic unknowns with the differential ones fixed; stops
        when the update is at round-off (1e-13 V) and the scaled residual < tol."""
        y = y.copy()
        alg = self.algebraic
        for _ in range(maxit):
            f = self._eval_rhs(y, i_app, T=T)[alg]
            data = self.jacobian_data(y, i_app, 0.0, T=T)
            J = np.zeros((alg.size, alg.size))
            J[self._alg_indices, self._alg_cols] = data[self._alg_pos]
            dy = dense_solve(J, f.copy())  # J = -df/dy
            y[alg] += dy
            if np.max(np.abs(dy)) < 1e-13 or (np.max(np.abs(dy)) < 1e-11 and np.max(np.abs(f)) < tol):
                return y
        raise SolverDivergedError(f"initial potentials did not converge (max residual {np.max(np.abs(f)):.3g})")

    def voltage(self, y, i_app=None):
        """Terminal voltage of state ``y``: the extrapolated phi_s(L) less the series
        resistance drop at current density ``i_app`` [A/m2] (taken from y[n] when y
        carries the current unknown, else 0)."""
        a, b = y[self.o_psp + self.Np - 1], y[self.o_psp + self.Np - 2]
        if i_app is None:
            i_app = y[self.n] * self.one_c_A / self.area_m2 if y.size > self.n else 0.0
        return a + 0.5 * (a - b) - i_app * self.series_resistance_ohm * self.area_m2

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
                  prefix="dfn_", y0=None, T0=None) -> DischargeResult:
        """Constant-current discharge at ``c_rate`` until ``cutoff_V`` (located by a TS
        event to ~1e-11 V) or ``t_max_s``; ``T0`` the initial cell temperature of the lumped
        thermal model (default: the set's temperature_K). Raises SolverDivergedError (with
        the partial curve in ``.partial``) if the time stepper fails."""
        cutoff_V = self.params["lower_voltage_cutoff_V"] if cutoff_V is None else cutoff_V
        current_A = c_rate * self.one_c_A
        t_max = t_max_s if t_max_s is not None else 1.5 * 3600.0 / max(c_rate, 1e-12)
        y = self.initial_state() if y0 is None else y0.copy()
        seg = self._integrate(y, "current", c_rate, v_stop=cutoff_V, i_stop=None, t_max=t_max, rtol=rtol, atol=atol,
                              max_step_s=max_step_s, petsc_options=petsc_options, prefix=prefix,
                              label=f"C-rate {c_rate:g}", T0=T0)
        times, volts, steps, solve_time = seg["time_s"], seg["voltage_V"], seg["steps"], seg["solve_time_s"]
        yf, y_init = seg["final_state"], seg["initial_state"]
        if seg["failure"] is not None:
            partial = self._result(c_rate, current_A, times, volts, False, steps, solve_time, yf, y_init,
                                   seg["failure_kind"])
            partial.temperature_K, partial.heat_W = seg["temperature_K"], seg["heat_W"]
            raise SolverDivergedError(seg["failure"], reason=seg["reason"], partial=partial)
        reached = seg["stop_reason"] == "voltage limit"
        self.stop_reason = "cut-off voltage" if reached else seg["stop_reason"]
        res = self._result(c_rate, current_A, times, volts, bool(reached), steps, solve_time, yf, y_init,
                           self.stop_reason)
        res.temperature_K, res.heat_W = seg["temperature_K"], seg["heat_W"]
        return res

    def _consistent_cv(self, y, v_set, i_guess, T=None):
        """Consistent potentials and applied current (in C-rate units) for a voltage hold:
        secant iterations on V(i) - v_set (V is nearly affine in i)."""
        i1c = self.one_c_A / self.area_m2
        a, b = i_guess, i_guess + 0.01
        ya = self.consistent_algebraic(y, a * i1c, T=T)
        ga = self.voltage(ya, a * i1c) - v_set
        for _ in range(30):
            yb = self.consistent_algebraic(ya, b * i1c, T=T)
            gb = self.voltage(yb, b * i1c) - v_set
            if abs(gb) < 1e-11:
                return yb, b
            a, b, ga = b, b - gb * (b - a) / (gb - ga), gb
            ya = yb
        raise SolverDivergedError(f"no consistent current for the voltage hold at {v_set:g} V (last V - V_set = "
                                  f"{gb:.3g} V)")

    def _integrate(self, y, mode, setpoint, v_stop=None, i_stop=None, t_max=3600.0, rtol=1e-6, atol=1e-6,
                   max_step_s=None, petsc_options=None, prefix="dfn_", label="", t0=0.0, T0=None):
        """One step of a protocol on PETSc TS. The applied current density is an extra
        algebraic unknown y[n] (in C-rate units, > 0 on discharge) with the equation
        ``y[n] = setpoint`` (mode 'current') or ``V(y) = setpoint`` (mode 'voltage');
        with the lumped thermal model the cell temperature is one more (differential)
        unknown y[n+1], starting at T0 (default: the set's temperature_K).
        Stops at V = v_stop, at |I| = i_stop (C-rate units), at t_max (step time) or on
        particle-surface / electrolyte exhaustion; all located by TS events.
        Returns a dict with the curve and 'failure' (message) if the stepper failed."""
        i1c = self.one_c_A / self.area_m2
        thermal = self.thermal == "lumped"
        T_start = self.T if T0 is None or not thermal else float(T0)
        if mode == "current":
            y = self.consistent_algebraic(y, setpoint * i1c, T=T_start)
            i0 = setpoint
        else:
            y, i0 = self._consistent_cv(y, setpoint, 0.0, T=T_start)
        n = self.n
        n_ext = self._n_ext
        y_init = y.copy()
        yx = np.empty(n_ext)
        yx[:n] = y
        yx[n] = i0
        if thermal:
            yx[n + 1] = T_start
        comm = PETSc.COMM_SELF
        X = PETSc.Vec().createWithArray(yx, comm=comm)
        F = X.duplicate()
        # the matrix wraps self._jdata (no copy): the compiled assembly writes the values
        # in place and assemble() only marks the matrix changed for the LU refactorisation
        jdata = self._jdata
        J = PETSc.Mat().createAIJWithArrays([n_ext, n_ext], (self.indptr, self.indices, jdata), comm=comm)
        J.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, True)
        mass, f_buf = self.mass, np.empty(n)
        geo, dx, xc, eps, brug, a_s, T = self.geo, self.dx, self.xc, self.eps, self.brug, self.a_s, self.T
        fids, ocp_tab = self._fids, self._ocp_tab
        diag_pos, trip_pos, rows_, cols_, vals_ = self.diag_pos, self._trip_pos, self._rows, self._cols, self._vals
        ext_pos, jbase = self._ext_pos, self._jbase
        voltage_mode = 1 if mode == "voltage" else 0
        # d(rhs of the last positive solid-potential row)/d(y[n])
        coef = geo[16] * i1c / dx[-1]
        r_drop = i1c * geo[20]

        # Jacobian reuse across steps (the modified Newton of _ModifiedNewton): at the first Newton
        # iteration of a step the Jacobian shift M - df/dy of an earlier step is
        #   kept as it is (no evaluation, no factorisation: PETSc's PC sees an unchanged matrix)
        #     while the BDF shift alpha/dt is within a factor jacobian_shift_ratio of its own, or
        #   given the new shift on its diagonal and refactorised, df/dy kept, for up to
        #     jacobian_max_age steps, or
        #   evaluated afresh ("force": the Newton driver asks after a convergence failure).
        newton = self.newton
        if any(k.startswith(("snes", "ksp", "pc_")) for k in (petsc_options or {})):
            newton = "petsc"  # the caller configures PETSc's own Newton / linear solver
        jac_kept = dict(shift=None, current=None, evals=0, factors=0, age=0, force=False,
                        low=1.0 / self.jacobian_shift_ratio, high=self.jacobian_shift_ratio,
                        max_age=self.jacobian_max_age)
        t_diag = self._tdiag_pos if thermal else -1

        def reuse_jacobian(shift, P):
            """True when the factorised matrix serves this step (kept, or shift-updated here)."""
            jac_kept["current"] = shift
            kept = jac_kept["shift"]
            if newton != "modified" or kept is None or jac_kept["force"]:
                return False
            if jac_kept["low"] <= shift / kept <= jac_kept["high"]:
                return True
            if jac_kept["age"] >= jac_kept["max_age"]:
                return False
            shift_diagonal(jdata, diag_pos, mass, t_diag, shift - kept)
            jac_kept.update(shift=shift, age=jac_kept["age"] + 1, factors=jac_kept["factors"] + 1)
            P.assemble()
            return True

        def fresh_jacobian(shift):
            jac_kept.update(shift=shift, age=0, evals=jac_kept["evals"] + 1, factors=jac_kept["factors"] + 1)

        if thermal:
            therm, q_buf, fa_buf, fb_buf = self.therm, np.zeros(5), np.empty(n), np.empty(n)
            tcol_pos, tdiag_pos = self._tcol_pos, self._tdiag_pos
            diff_pos, diff_vals, diff_side = self._diff_pos.astype(np.int64), self._diff_vals, self._diff_side
            heat_scale = self.heat_scale_m2

            x_last = np.full(n_ext, np.nan)  # state of the last IFunction call (f_buf, q_buf hold its rhs, heat)

            def ifunction(ts, t, x, xdot, f):
                xa = x.getArray(readonly=True)
                residual_thermal(xa, xdot.getArray(readonly=True), i1c, voltage_mode, setpoint,
                                 f.getArray(), f_buf, mass, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, therm, q_buf)
                x_last[:] = xa

            def ijacobian(ts, t, x, xdot, shift, A, P):
                if reuse_jacobian(shift, P):
                    return
                fresh_jacobian(shift)
                xa = x.getArray(readonly=True)
                reuse = same_state(xa, x_last)
                x_last[0] = np.nan  # q_buf is overwritten below
                assemble_jacobian(xa, shift, mass, diag_pos, trip_pos, rows_, cols_, vals_, jdata, jbase, geo, dx, xc,
                                  eps, brug, a_s, fids, ocp_tab, xa[n + 1])
                extension_entries(jdata, ext_pos, voltage_mode, coef, r_drop)
                thermal_jacobian_entries(xa, i1c, shift, jdata, tcol_pos, tdiag_pos, f_buf if reuse else fa_buf,
                                         fb_buf, q_buf, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, therm, diff_pos,
                                         diff_vals, diff_side, reuse)
                P.assemble()
                if A != P:
                    A.assemble()

            q_mon = np.zeros(5)  # its own buffer: q_buf may be reused by the next Jacobian

            def heat_W(xa):
                if same_state(xa, x_last):  # the accepted state is usually the last one evaluated
                    return float(np.sum(q_buf)) * heat_scale
                heat_sources(xa[:n], xa[n] * i1c, xa[n + 1], q_mon, geo, dx, xc, eps, brug, a_s, fids, ocp_tab)
                return float(np.sum(q_mon)) * heat_scale
        else:
            def ifunction(ts, t, x, xdot, f):
                residual_ext(x.getArray(readonly=True), xdot.getArray(readonly=True), i1c, voltage_mode, setpoint,
                             f.getArray(), f_buf, mass, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, T)

            def ijacobian(ts, t, x, xdot, shift, A, P):
                if reuse_jacobian(shift, P):
                    return
                fresh_jacobian(shift)
                assemble_jacobian(x.getArray(readonly=True), shift, mass, diag_pos, trip_pos, rows_, cols_, vals_,
                                  jdata, jbase, geo, dx, xc, eps, brug, a_s, fids, ocp_tab, T)
                extension_entries(jdata, ext_pos, voltage_mode, coef, r_drop)
                P.assemble()
                if A != P:
                    A.assemble()

        times, volts, amps = [t0], [self.voltage(y, i0 * i1c)], [i0]
        temps = [T_start]
        heats = [heat_W(yx)] if thermal else []
        # the last two accepted states: on failure, the fastest-changing unknown is the suspect
        state = {"prev": y.copy(), "cur": y.copy()}

        def monitor(ts, step, t, x):
            if step == 0:
                return
            xa = x.getArray(readonly=True)
            times.append(t0 + t)
            volts.append(self.voltage(xa))
            amps.append(xa[n])
            if thermal:
                temps.append(xa[n + 1])
                heats.append(heat_W(xa))
            state["prev"], state["cur"] = state["cur"], xa[:n].copy()

        v_lim = 0.0 if v_stop is None else v_stop
        i_lim = 0.0 if i_stop is None else abs(i_stop)
        fired = []

        def event(ts, t, x, fvalue):
            # a step also ends when a particle surface or the electrolyte is exhausted.
            # PyBaMM's property floors are used so that a nearly depleted electrolyte
            # stays solvable, but unlike PyBaMM (which goes on through c_e <= 0) the
            # step stops when c_e reaches _MIN_CE_FRACTION * c_e0.
            xa = x.getArray(readonly=True)
            event_values(xa, v_lim, geo, fvalue)
            if v_stop is None:
                fvalue[0] = 1.0
            fvalue[4] = abs(xa[n]) - i_lim if i_stop is not None else 1.0

        def postevent(ts, events, t, x, forward):
            fired.extend(int(e) for e in events)

        ts = PETSc.TS().create(comm=comm)
        ts.setProblemType(PETSc.TS.ProblemType.NONLINEAR)
        ts.setEquationType(PETSc.TS.EquationType.DAE_IMPLICIT_INDEX1)
        ts.setType(PETSc.TS.Type.BDF)
        ts.setIFunction(ifunction, F)
        ts.setIJacobian(ijacobian, J)
        ts.setTolerances(rtol=rtol, atol=atol)
        ts.setTime(0.0)
        ts.setTimeStep(min(1e-3 * 3600.0 / max(abs(i0), 1e-2) / 100, t_max / 10))
        ts.setMaxTime(t_max)
        ts.setMaxSteps(20000)
        ts.setExactFinalTime(PETSc.TS.ExactFinalTime.MATCHSTEP)
        ts.setMonitor(monitor)
        ts.setEventHandler([0] * 5, [True] * 5, event, postevent=postevent)
        ts.setEventTolerances(tol=self.event_tol)
        ts.setMaxStepRejections(100)
        ts.setMaxSNESFailures(-1)
        snes = ts.getSNES()
        # Newton to 1e-4 relative / 1e-6 absolute (scaled residual), in the spirit of IDA's loose
        # nonlinear tolerance: 1C voltage moves by < 1 uV against 1e-8, with 23 % fewer iterations
        snes.setTolerances(rtol=1e-4, atol=1e-6, stol=1e-12, max_it=10)
        ksp = snes.getKSP()
        ksp.setType(PETSc.KSP.Type.PREONLY)
        ksp.getPC().setType(PETSc.PC.Type.LU)
        # reverse Cuthill-McKee: as little fill as quotient minimum degree for this banded-plus-
        # particles pattern (3767 vs 3779 factor non-zeros; ND 7349) and 40 % faster triangular
        # solves (4.0 vs 6.8 us), which the modified Newton does ~2.4 times per factorisation;
        # nzdiag: PETSc's LU does not pivot, and a voltage hold has a zero diagonal in row n
        ksp.getPC().setFactorOrdering(PETSc.Mat.OrderingType.RCM, nzdiag=1e-14)
        ts.setErrorIfStepFails(False)
        if max_step_s is not None:
            ts.setStepLimits(1e-12, max_step_s)
        # order-4 BDF, Jacobian re-evaluated every 3rd Newton iteration (in practice once per
        # step): fastest settings measured at rtol = atol = 1e-6
        opts = {"ts_bdf_order": 4, "snes_lag_jacobian": 3}
        if newton == "modified":
            snes.setType(PETSc.SNES.Type.PYTHON)
            snes.setPythonContext(_ModifiedNewton(jac_kept, rtol, atol))
            opts = {"ts_bdf_order": 4}
        opts.update(petsc_options or {})
        ts.setOptionsPrefix(prefix)
        with scoped_options(prefix, opts):
            ts.setFromOptions()
        tic = time.perf_counter()
        failure = None
        try:
            ts.solve(X)
        except PETSc.Error as e:
            failure = str(e)
        reason = ts.getConvergedReason()
        solve_time = time.perf_counter() - tic
        t_end = ts.getTime()
        steps = ts.getStepNumber()
        self.last_stats = dict(reason=int(reason), t_end=t_end, steps=steps, snes_its=ts.getSNESIterations(),
                               rejects=ts.getStepRejections(), snes_fails=ts.getSNESFailures(),
                               jacobian_evals=jac_kept["evals"], factorisations=jac_kept["factors"])
        yfx = X.getArray().copy()
        ts.destroy(); J.destroy(); X.destroy(); F.destroy()
        yf = yfx[:n]
        times, volts, amps = np.asarray(times), np.asarray(volts), np.asarray(amps)
        temps = np.asarray(temps) if thermal else np.full(times.size, T_start)
        if 0 in fired:
            why = "voltage limit"
        elif 4 in fired:
            why = "current limit"
        elif t_end >= t_max * (1 - 1e-12):
            why = "time limit"
        elif fired:  # event 1: a particle surface near stoichiometry 0, 2: near 1, 3: electrolyte near 0
            why = ", ".join(text for k, text in ((1, "particle surface emptied"), (2, "particle surface saturated"),
                                                 (3, "electrolyte depleted")) if k in fired) or "exhausted"
        else:
            why = "stopped"
        seg = dict(time_s=times, voltage_V=volts, current_C=amps, steps=steps, solve_time_s=solve_time,
                   final_state=yf, initial_state=y_init, stop_reason=why, failure=None, failure_kind="",
                   reason=int(reason), current_A=amps * self.one_c_A, temperature_K=temps,
                   heat_W=np.asarray(heats) if thermal else None, final_temperature_K=float(temps[-1]))
        if failure is not None or reason < 0:
            idx = self._suspect_variable(state["prev"], yf)
            seg["failure"] = (f"DFN time stepping failed at t = {t0 + t_end:.6g} s ({label}, V = {volts[-1]:.4f} V, "
                              f"reason {reason}); suspect variable: {self.describe_variable(idx)} = {yf[idx]:.6g}")
            seg["failure_kind"] = "solver failure"
        elif why == "stopped":
            idx = self._suspect_variable(state["prev"], yf)
            seg["failure"] = (f"DFN time stepping stalled at t = {t0 + t_end:.6g} s ({label}, V = {volts[-1]:.4f} V, "
                              f"{steps} steps); suspect variable: {self.describe_variable(idx)} = {yf[idx]:.6g}")
            seg["failure_kind"] = "solver stalled"
        return seg

    def run_protocol(self, steps, rtol=1e-6, atol=1e-6, petsc_options=None, prefix="dfn_", y0=None, T0=None):
        """Run a list of protocol steps (see :mod:`ionscale.kernels.cell.protocol`:
        dicts with kind 'cc' | 'cv' | 'rest', value and stop limits) from the initial
        state (or ``y0``), each starting from the previous step's final state.
        Returns a :class:`ProtocolResult`; raises SolverDivergedError with the partial
        result in ``.partial``. The lumped thermal model carries the cell temperature
        from step to step, starting at ``T0`` (default: the set's temperature_K)."""
        y = self.initial_state() if y0 is None else y0.copy()
        y_first = None
        parts, t0 = [], 0.0
        T_now = self.T if T0 is None or self.thermal != "lumped" else float(T0)
        for k, step in enumerate(steps):
            kind = step["kind"]
            if kind == "cv":
                mode, setpoint = "voltage", step["value"]
            else:
                mode, setpoint = "current", (step["value"] if kind == "cc" else 0.0)
            if step.get("t_max_s"):
                t_max = step["t_max_s"]
            else:  # no duration given: 1.5 h at a cc step's rate, 1.5 h for a voltage hold
                t_max = 1.5 * 3600.0 / abs(setpoint) if kind == "cc" else 5400.0
            v_stop, i_stop = step.get("v_stop"), step.get("i_stop")
            if v_stop is not None and kind == "cc":
                i_set = setpoint * self.one_c_A / self.area_m2
                y_now = self.consistent_algebraic(y, i_set, T=T_now)
                v_now = self.voltage(y_now, i_set)
                if (setpoint > 0 and v_now <= v_stop) or (setpoint < 0 and v_now >= v_stop):
                    heat = (np.array([self.heat_sources(y_now, i_set, T_now)["total_W"]])
                            if self.thermal == "lumped" else None)
                    parts.append(dict(time_s=np.array([t0]), voltage_V=np.array([v_now]),
                                      current_C=np.array([setpoint]), stop_reason="voltage limit at start", step=k,
                                      temperature_K=np.array([T_now]), heat_W=heat))
                    continue
            seg = self._integrate(y, mode, setpoint, v_stop=v_stop, i_stop=i_stop, t_max=t_max, rtol=rtol, atol=atol,
                                  petsc_options=petsc_options, prefix=prefix, label=f"protocol step {k} ({kind})",
                                  t0=t0, T0=T_now)
            if y_first is None:
                y_first = seg["initial_state"]
            seg["step"] = k
            parts.append(seg)
            if seg["failure"] is not None:
                partial = ProtocolResult.from_parts(parts, self.one_c_A, y_first, seg["final_state"])
                raise SolverDivergedError(seg["failure"], reason=seg["reason"], partial=partial)
            y, t0, T_now = seg["final_state"], seg["time_s"][-1], seg["final_temperature_K"]
        return ProtocolResult.from_parts(parts, self.one_c_A, y_first, y)

    @staticmethod
    def _result(c_rate, current_A, times, volts, reached, steps, solve_time, yf, y0, stop_reason):
        cap = current_A * times[-1] / 3600.0
        energy = float(np.sum(0.5 * (volts[1:] + volts[:-1]) * np.diff(times)) * current_A / 3600.0)
        return DischargeResult(c_rate=c_rate, current_A=current_A, time_s=times, voltage_V=volts,
                               capacity_Ah=cap, energy_Wh=energy, reached_cutoff=reached, steps=steps,
                               solve_time_s=solve_time, stop_reason=stop_reason, final_state=yf, initial_state=y0)


@dataclass
class ProtocolResult:
    """Concatenated curve of a multi-step protocol. ``current_A`` > 0 on discharge;
    ``capacity_Ah`` is the net discharged charge (trapezoidal integral of I dt);
    ``step_index`` the protocol step of each sample; ``stop_reasons`` per step."""

    time_s: np.ndarray
    voltage_V: np.ndarray
    current_A: np.ndarray
    capacity_Ah: np.ndarray
    step_index: np.ndarray
    stop_reasons: list
    final_state: np.ndarray = field(repr=False, default=None)
    initial_state: np.ndarray = field(repr=False, default=None)
    #: cell temperature [K] per sample; heat generated [W] (lumped thermal model only, else None)
    temperature_K: np.ndarray = field(repr=False, default=None)
    heat_W: np.ndarray = field(repr=False, default=None)

    @classmethod
    def from_parts(cls, parts, one_c_A, y0, yf):
        t = np.concatenate([p["time_s"] for p in parts])
        v = np.concatenate([p["voltage_V"] for p in parts])
        i = np.concatenate([p["current_C"] for p in parts]) * one_c_A
        k = np.concatenate([np.full(p["time_s"].size, p["step"]) for p in parts])
        q = np.concatenate([[0.0], np.cumsum(0.5 * (i[1:] + i[:-1]) * np.diff(t))]) / 3600.0
        temps = np.concatenate([p["temperature_K"] for p in parts])
        heats = (np.concatenate([p["heat_W"] for p in parts])
                 if all(p.get("heat_W") is not None for p in parts) else None)
        return cls(time_s=t, voltage_V=v, current_A=i, capacity_Ah=q, step_index=k,
                   stop_reasons=[p["stop_reason"] for p in parts], final_state=yf, initial_state=y0,
                   temperature_K=temps, heat_W=heats)
