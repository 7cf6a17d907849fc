"""Single particle model (SPM) sharing the DFN's parameter sets and particle mesh.

One representative particle per electrode with a uniform reaction current
(electrolyte at its initial concentration, no ohmic drop)::

    d c_s/dt = 1/r^2 d/dr (r^2 D_s d c_s/dr),   -D_s dc_s/dr |_R = j_k / F
    j_n = I / (a_n L_n),   j_p = -I / (a_p L_p),   a_k = 3 eps_s,k / R_k
    V = U_p(sto_p,surf) - U_n(sto_n,surf) + 2RT/F [asinh(j_p / 2 j0_p) - asinh(j_n / 2 j0_n)]

The particles are the DFN's finite volumes (volume-weighted spherical divergence,
linear surface extrapolation), so the SPM is the DFN's limit of fast electrolyte
transport and uniform reaction. The ODE ``y' = A y + b I`` is linear: PETSc TS (BDF)
with the constant sparse Jacobian ``A``; the cut-off voltage is a TS event.
"""
from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp
from petsc4py import PETSc

from ionscale.errors import SolverDivergedError
from ionscale.petsc_options import scoped_options

from .dfn import DischargeResult
from .functions import FARADAY, R_GAS, electrolyte_conductivity_of, electrolyte_diffusivity_of, exchange_current_of
from .parameters import electrolyte_number, ocp_callable, pack_properties, particle_diffusivity


def particle_operator(n_shells: int, radius: float, diffusivity: float, c_max: float):
    """Finite-volume sphere: ``dsto/dt = A sto + b * j`` with j [A/m2] the outward
    reaction current density at the surface."""
    dr = radius / n_shells
    k = np.arange(n_shells)
    vol = ((k + 1) ** 3 - k ** 3) * dr ** 3 / 3.0
    r_out = (k + 1) * dr
    # interior edges between shell k and k+1: r^2 N = -D r^2 (s_{k+1} - s_k)/dr
    g = diffusivity * r_out[:-1] ** 2 / dr
    rows = np.concatenate([k[:-1], k[:-1], k[1:], k[1:]])
    cols = np.concatenate([k[:-1], k[1:], k[1:], k[:-1]])
    vals = np.concatenate([-g, g, -g, g]) / np.concatenate([vol[:-1], vol[:-1], vol[1:], vol[1:]])
    A = sp.csr_matrix((vals, (rows, cols)), shape=(n_shells, n_shells))
    b = np.zeros(n_shells)
    b[-1] = -radius ** 2 / (FARADAY * c_max) / vol[-1]
    return A, b


class SPMModel:
    """SPM discretised once; :meth:`discharge` mirrors :meth:`DFNModel.discharge`."""

    def __init__(self, params: dict, r_points=(20, 20)):
        t0 = time.perf_counter()
        p = self.params = params
        self.Nrn, self.Nrp = (int(v) for v in r_points)
        if min(r_points) < 3:
            raise ValueError("need at least 3 shells per particle")
        self.area_m2 = p["electrode_height_m"] * p["electrode_width_m"]
        self.one_c_A = p["nominal_cell_capacity_Ah"]
        self.T = float(p["temperature_K"])
        self.cmax = (p["negative_maximum_concentration_mol_m3"], p["positive_maximum_concentration_mol_m3"])
        radii = (p["negative_particle_radius_m"], p["positive_particle_radius_m"])
        self.a_L = (3 * p["negative_electrode_active_material_volume_fraction"] / radii[0]
                    * p["negative_electrode_thickness_m"],
                    3 * p["positive_electrode_active_material_volume_fraction"] / radii[1]
                    * p["positive_electrode_thickness_m"])
        An, bn = particle_operator(self.Nrn, radii[0], particle_diffusivity(p, "negative"), self.cmax[0])
        Ap, bp = particle_operator(self.Nrp, radii[1], particle_diffusivity(p, "positive"), self.cmax[1])
        self.A = sp.block_diag([An, Ap], format="csr")
        self.b_n, self.b_p = np.concatenate([bn, 0 * bp]), np.concatenate([0 * bn, bp])
        self.n = self.Nrn + self.Nrp
        self.ocp = (ocp_callable(p, "negative_electrode_ocp_V"), ocp_callable(p, "positive_electrode_ocp_V"))
        # property dispatch shared with the DFN kernels (compiled function, table or rate constant)
        self._fids, self._tab = fids, tab = pack_properties(p)
        self.j0 = tuple((lambda c_e, c_s, c_max, T, e=e: exchange_current_of(e, fids, tab, c_e, c_s, c_max, T))
                        for e in (0, 1))
        self.ce0 = p["initial_electrolyte_concentration_mol_m3"]
        self.build_time_s = time.perf_counter() - t0

    def initial_state(self):
        p = self.params
        y = np.empty(self.n)
        y[: self.Nrn] = p["initial_negative_concentration_mol_m3"] / self.cmax[0]
        y[self.Nrn:] = p["initial_positive_concentration_mol_m3"] / self.cmax[1]
        return y

    def voltage(self, y, i_app):
        s_n = y[self.Nrn - 1] + 0.5 * (y[self.Nrn - 1] - y[self.Nrn - 2])
        s_p = y[-1] + 0.5 * (y[-1] - y[-2])
        two_rt_f = 2 * R_GAS * self.T / FARADAY
        j_n, j_p = i_app / self.a_L[0], -i_app / self.a_L[1]
        j0_n = self.j0[0](self.ce0, s_n * self.cmax[0], self.cmax[0], self.T)
        j0_p = self.j0[1](self.ce0, s_p * self.cmax[1], self.cmax[1], self.T)
        if j0_n <= 0 or j0_p <= 0:
            return -math.inf  # a particle surface is exhausted: no kinetics left
        return (self.ocp[1](s_p) - self.ocp[0](s_n) + two_rt_f * (math.asinh(j_p / (2 * j0_p))
                                                                - math.asinh(j_n / (2 * j0_n))))

    def discharge(self, c_rate=1.0, cutoff_V=None, rtol=1e-6, atol=1e-6, t_max_s=None, petsc_options=None,
                  prefix="spm_") -> DischargeResult:
        cutoff_V = self.params["lower_voltage_cutoff_V"] if cutoff_V is None else cutoff_V
        current_A = c_rate * self.one_c_A
        i_app = current_A / self.area_m2
        t_max = t_max_s if t_max_s is not None else 1.5 * 3600.0 / c_rate
        comm = PETSc.COMM_SELF
        y0 = self.initial_state()
        X = PETSc.Vec().createWithArray(y0.copy(), comm=comm)
        A = PETSc.Mat().createAIJ([self.n, self.n], csr=(self.A.indptr.astype(np.int32),
                                                          self.A.indices.astype(np.int32), self.A.data), comm=comm)
        A.assemble()
        J = A.duplicate(copy=True)
        source = PETSc.Vec().createWithArray(self.b_n * (i_app / self.a_L[0]) + self.b_p * (-i_app / self.a_L[1]),
                                             comm=comm)

        def rhs(ts, t, x, f):
            A.mult(x, f)
            f.axpy(1.0, source)

        indptr, indices = self.A.indptr.astype(np.int32), self.A.indices.astype(np.int32)

        def jac(ts, t, x, J, P):
            # constant, but TS shifts/scales the matrix in place: refill it each time
            P.setValuesCSR(indptr, indices, self.A.data)
            P.assemble()

        times, volts = [0.0], [self.voltage(y0, i_app)]

        def monitor(ts, step, t, x):
            if step > 0:
                times.append(t)
                volts.append(self.voltage(x.getArray(readonly=True), i_app))

        def event(ts, t, x, fvalue):
            v = self.voltage(x.getArray(readonly=True), i_app)
            fvalue[0] = max(v, cutoff_V - 1.0) - cutoff_V

        ts = PETSc.TS().create(comm=comm)
        ts.setProblemType(PETSc.TS.ProblemType.LINEAR)
        ts.setType(PETSc.TS.Type.BDF)
        ts.setRHSFunction(rhs, X.duplicate())
        ts.setRHSJacobian(jac, J, J)
        ts.setTolerances(rtol=rtol, atol=atol)
        ts.setTimeStep(1e-5 * t_max)
        ts.setMaxTime(t_max)
        # the states are smooth enough for huge steps; the OCP-shaped voltage is not
        ts.setStepLimits(1e-12, t_max / 400)
        ts.setExactFinalTime(PETSc.TS.ExactFinalTime.MATCHSTEP)
        ts.setMonitor(monitor)
        ts.setEventHandler([-1], [True], event)
        ts.setEventTolerances(tol=1e-9)
        ksp = ts.getSNES().getKSP()
        ksp.setType(PETSc.KSP.Type.PREONLY)
        ksp.getPC().setType(PETSc.PC.Type.LU)
        ts.setOptionsPrefix(prefix)
        with scoped_options(prefix, {"ts_bdf_order": 4, **(petsc_options or {})}):
            ts.setFromOptions()
        t0 = time.perf_counter()
        try:
            ts.solve(X)
        except PETSc.Error as e:
            t_fail = ts.getTime()
            ts.destroy(); A.destroy(); J.destroy(); X.destroy(); source.destroy()
            partial = DischargeResult(c_rate=c_rate, current_A=current_A, time_s=np.asarray(times),
                                      voltage_V=np.asarray(volts), capacity_Ah=current_A * times[-1] / 3600.0,
                                      energy_Wh=float("nan"), reached_cutoff=False, steps=len(times) - 1,
                                      solve_time_s=time.perf_counter() - t0, stop_reason="solver failure")
            raise SolverDivergedError(f"SPM time stepping failed at t = {t_fail:.6g} s (C-rate {c_rate:g}); "
                                      f"variable: particle stoichiometries ({e})", partial=partial) from None
        solve_time = time.perf_counter() - t0
        steps = ts.getStepNumber()
        yf = X.getArray().copy()
        ts.destroy(); A.destroy(); J.destroy(); X.destroy(); source.destroy()
        times, volts = np.asarray(times), np.asarray(volts)
        reached = volts[-1] <= cutoff_V + 1e-6
        # the voltage is -inf once a particle surface (or the SPMe electrolyte) is exhausted
        why = ("cut-off voltage" if reached else "time limit" if times[-1] >= t_max * (1 - 1e-12)
               else "electrolyte or particle surface exhausted")
        cap = current_A * times[-1] / 3600.0
        energy = float(np.sum(0.5 * (volts[1:] + volts[:-1]) * np.diff(times)) * current_A / 3600.0)
        return DischargeResult(c_rate=c_rate, current_A=current_A, time_s=times, voltage_V=volts, capacity_Ah=cap,
                               energy_Wh=energy, reached_cutoff=bool(reached), steps=steps, solve_time_s=solve_time,
                               stop_reason=why, final_state=yf,
                               initial_state=y0)


class SPMeModel(SPMModel):
    """Single particle model with electrolyte (SPMe, Marquis et al. 2019, linear form):
    the SPM's particles plus electrolyte diffusion with the x-uniform reaction source,
    transport properties at the initial concentration c_e0 (so the ODE stays linear)::

        eps dc_e/dt = d/dx (B D_e(c_e0) dc_e/dx) + (1 - t+) a_k j_k / F,   zero flux at 0, L
        V = U_p - U_n + eta_p - eta_n                  (eta_k = 2RT/F asinh(j_k / 2 j0(<c_e>_k, c_s,surf)))
            + 2 (1 - t+) TDF RT/F (<ln c_e>_p - <ln c_e>_n)                   (concentration)
            - I (L_n / 3 kappa_n + L_s / kappa_s + L_p / 3 kappa_p)            (electrolyte ohmic)
            - I (L_n / sigma_n + L_p / sigma_p) / 3                            (solid ohmic)

    with kappa_k = B_k kappa(c_e0) and <.>_k the average over electrode k. Same x mesh
    as the DFN (``points``), harmonic face means of B D_e. Valid while c_e stays near
    c_e0: with D_e frozen at c_e0 the electrolyte of Chen2020 depletes at 2C (the DFN's
    D_e(c_e) rises 2.7x towards c_e = 0 and it does not); the discharge then stops with
    stop_reason 'electrolyte or particle surface exhausted'."""

    def __init__(self, params: dict, r_points=(20, 20), points=(20, 20, 20)):
        super().__init__(params, r_points)
        t0 = time.perf_counter()
        p = self.params
        from .dfn import _REGIONS
        from .parameters import transport_efficiency
        self.Nx_k = tuple(int(v) for v in points)
        if min(self.Nx_k) < 2:
            raise ValueError("need at least 2 cells per domain in x")
        Ls = [p["negative_electrode_thickness_m"], p["separator_thickness_m"], p["positive_electrode_thickness_m"]]
        self.L = Ls
        dx = np.concatenate([np.full(n, L / n) for n, L in zip(self.Nx_k, Ls)])
        xc = np.cumsum(dx) - 0.5 * dx
        eps = np.concatenate([np.full(n, p[f"{r}_porosity"]) for n, r in zip(self.Nx_k, _REGIONS)])
        B = np.array([transport_efficiency(p, r) for r in _REGIONS])
        T, c0 = self.T, self.ce0
        d0 = electrolyte_diffusivity_of(self._fids, self._tab, c0, T)
        k0 = electrolyte_conductivity_of(self._fids, self._tab, c0, T)
        self.kappa_eff = B * k0
        BD = np.concatenate([np.full(n, b * d0) for n, b in zip(self.Nx_k, B)])
        Nx = dx.size
        w = dx[:-1] / (dx[:-1] + dx[1:])
        face = 1.0 / (w / BD[:-1] + (1 - w) / BD[1:]) / (xc[1:] - xc[:-1])  # B D / h at interior faces
        i = np.arange(Nx - 1)
        rows = np.concatenate([i, i, i + 1, i + 1])
        cols = np.concatenate([i, i + 1, i + 1, i])
        vals = np.concatenate([-face / (dx[i] * eps[i]), face / (dx[i] * eps[i]),
                               -face / (dx[i + 1] * eps[i + 1]), face / (dx[i + 1] * eps[i + 1])])
        Ae = sp.csr_matrix((vals, (rows, cols)), shape=(Nx, Nx))
        self.A = sp.block_diag([self.A, Ae], format="csr")
        # t+ and TDF at c_e0 (a function or table of c_e too): SPMe's electrolyte is linear about c_e0
        tplus = electrolyte_number(p, "cation_transference_number", c0, T)
        tdf = electrolyte_number(p, "thermodynamic_factor", c0, T)
        a_n = 3 * p["negative_electrode_active_material_volume_fraction"] / p["negative_particle_radius_m"]
        a_p = 3 * p["positive_electrode_active_material_volume_fraction"] / p["positive_particle_radius_m"]
        Nn, Ns, Np = self.Nx_k
        src_n, src_p = np.zeros(Nx), np.zeros(Nx)
        # per unit of j_k, on the scaled concentration c_e / c_e0
        src_n[:Nn] = (1 - tplus) * a_n / (FARADAY * eps[:Nn] * c0)
        src_p[Nn + Ns:] = (1 - tplus) * a_p / (FARADAY * eps[Nn + Ns:] * c0)
        self.b_n = np.concatenate([self.b_n, src_n])
        self.b_p = np.concatenate([self.b_p, src_p])
        self.o_ce = self.Nrn + self.Nrp
        self.n = self.o_ce + Nx
        self.dx = dx
        self.eps = eps
        self.chi = 2 * (1 - tplus) * tdf * R_GAS * T / FARADAY
        self.r_ohm = (Ls[0] / (3 * self.kappa_eff[0]) + Ls[1] / self.kappa_eff[1] + Ls[2] / (3 * self.kappa_eff[2])
                      + (Ls[0] / p["negative_electrode_conductivity_S_m"]
                         + Ls[2] / p["positive_electrode_conductivity_S_m"]) / 3)  # Ohm m2
        self.build_time_s += time.perf_counter() - t0

    def initial_state(self):
        p = self.params
        y = np.ones(self.n)  # c_e / c_e0 = 1
        y[: self.Nrn] = p["initial_negative_concentration_mol_m3"] / self.cmax[0]
        y[self.Nrn: self.o_ce] = p["initial_positive_concentration_mol_m3"] / self.cmax[1]
        return y

    def _electrode_average(self, values, k):
        Nn, Ns, Np = self.Nx_k
        sl = slice(0, Nn) if k == 0 else slice(Nn + Ns, Nn + Ns + Np)
        return float(np.sum(values[sl] * self.dx[sl]) / np.sum(self.dx[sl]))

    def voltage(self, y, i_app):
        ce = y[self.o_ce:]
        if np.any(ce <= 0):
            return -math.inf  # electrolyte depleted
        s_n = y[self.Nrn - 1] + 0.5 * (y[self.Nrn - 1] - y[self.Nrn - 2])
        s_p = y[self.o_ce - 1] + 0.5 * (y[self.o_ce - 1] - y[self.o_ce - 2])
        two_rt_f = 2 * R_GAS * self.T / FARADAY
        j_n, j_p = i_app / self.a_L[0], -i_app / self.a_L[1]
        c_n, c_p = self._electrode_average(ce, 0) * self.ce0, self._electrode_average(ce, 1) * self.ce0
        j0_n = self.j0[0](c_n, s_n * self.cmax[0], self.cmax[0], self.T)
        j0_p = self.j0[1](c_p, s_p * self.cmax[1], self.cmax[1], self.T)
        if j0_n <= 0 or j0_p <= 0:
            return -math.inf  # a particle surface is exhausted: no kinetics left
        log_ce = np.log(ce)
        return (self.ocp[1](s_p) - self.ocp[0](s_n)
                + two_rt_f * (math.asinh(j_p / (2 * j0_p)) - math.asinh(j_n / (2 * j0_n)))
                + self.chi * (self._electrode_average(log_ce, 1) - self._electrode_average(log_ce, 0))
                - i_app * self.r_ohm)

    def salt_inventory(self, y) -> float:
        """Moles of salt per electrode area in the electrolyte."""
        return float(np.sum(self.dx * self.eps * y[self.o_ce:]) * self.ce0)
