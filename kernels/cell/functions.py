"""Named property functions referenced by parameter files (``"fn:NAME"``).

All are numba-compiled scalar functions so the DFN residual can call them.
Signatures: OCP ``U(sto)`` [V]; exchange current ``j0(c_e, c_s_surf, c_s_max, T)``
[A m-2]; electrolyte ``D_e(c_e, T)`` [m2 s-1] and ``kappa_e(c_e, T)`` [S m-1].

Chen2020 (LG M50, NMC811 / graphite-SiOx) fits from C.-H. Chen et al., J.
Electrochem. Soc. 167 (2020) 080534; electrolyte (LiPF6 in EC:EMC) from A. Nyman
et al., Electrochim. Acta 53 (2008) 6356. Values as in PyBaMM's Chen2020 set.
"""
from __future__ import annotations

import math

import numba

R_GAS = 8.314462618
FARADAY = 96485.33212


@numba.njit(cache=True)
def graphite_LGM50_ocp_Chen2020(sto):
    return (1.9793 * math.exp(-39.3631 * sto) + 0.2482
            - 0.0909 * math.tanh(29.8538 * (sto - 0.1234))
            - 0.04478 * math.tanh(14.9159 * (sto - 0.2769))
            - 0.0205 * math.tanh(30.4444 * (sto - 0.6103)))


@numba.njit(cache=True)
def nmc_LGM50_ocp_Chen2020(sto):
    return (-0.8090 * sto + 4.4875
            - 0.0428 * math.tanh(18.5138 * (sto - 0.5542))
            - 17.7326 * math.tanh(15.7890 * (sto - 0.3117))
            + 17.5842 * math.tanh(15.9308 * (sto - 0.3120)))


@numba.njit(cache=True)
def _sqrt_pos(x):
    # the square-root kinetics must stay real if Newton overshoots a bound
    return math.sqrt(x) if x > 0.0 else 0.0


@numba.njit(cache=True)
def graphite_LGM50_exchange_current_Chen2020(c_e, c_s_surf, c_s_max, T):
    arrhenius = math.exp(35000.0 / R_GAS * (1.0 / 298.15 - 1.0 / T))
    return 6.48e-7 * arrhenius * _sqrt_pos(c_e) * _sqrt_pos(c_s_surf) * _sqrt_pos(c_s_max - c_s_surf)


@numba.njit(cache=True)
def nmc_LGM50_exchange_current_Chen2020(c_e, c_s_surf, c_s_max, T):
    arrhenius = math.exp(17800.0 / R_GAS * (1.0 / 298.15 - 1.0 / T))
    return 3.42e-6 * arrhenius * _sqrt_pos(c_e) * _sqrt_pos(c_s_surf) * _sqrt_pos(c_s_max - c_s_surf)


@numba.njit(cache=True)
def electrolyte_diffusivity_Nyman2008(c_e, T):
    x = c_e / 1000.0
    return 8.794e-11 * x * x - 3.972e-10 * x + 4.862e-10


@numba.njit(cache=True)
def electrolyte_conductivity_Nyman2008(c_e, T):
    x = c_e / 1000.0
    return 0.1297 * x ** 3 - 2.51 * _sqrt_pos(x) ** 3 + 3.329 * x


# ---- dispatch by integer id, so the compiled DFN kernels are module-level and cacheable
# (a new function is added to its category tuple AND to the matching dispatcher below)
OCP = (graphite_LGM50_ocp_Chen2020, nmc_LGM50_ocp_Chen2020)
EXCHANGE_CURRENT = (graphite_LGM50_exchange_current_Chen2020, nmc_LGM50_exchange_current_Chen2020)
ELECTROLYTE_DIFFUSIVITY = (electrolyte_diffusivity_Nyman2008,)
ELECTROLYTE_CONDUCTIVITY = (electrolyte_conductivity_Nyman2008,)


@numba.njit(cache=True)
def ocp(fid, sto):
    if fid == 0:
        return graphite_LGM50_ocp_Chen2020(sto)
    if fid == 1:
        return nmc_LGM50_ocp_Chen2020(sto)
    return math.nan


@numba.njit(cache=True)
def exchange_current(fid, c_e, c_s_surf, c_s_max, T):
    if fid == 0:
        return graphite_LGM50_exchange_current_Chen2020(c_e, c_s_surf, c_s_max, T)
    if fid == 1:
        return nmc_LGM50_exchange_current_Chen2020(c_e, c_s_surf, c_s_max, T)
    return math.nan


@numba.njit(cache=True)
def electrolyte_diffusivity(fid, c_e, T):
    if fid == 0:
        return electrolyte_diffusivity_Nyman2008(c_e, T)
    return math.nan


@numba.njit(cache=True)
def electrolyte_conductivity(fid, c_e, T):
    if fid == 0:
        return electrolyte_conductivity_Nyman2008(c_e, T)
    return math.nan


FUNCTIONS = {f.py_func.__name__: f for f in OCP + EXCHANGE_CURRENT + ELECTROLYTE_DIFFUSIVITY + ELECTROLYTE_CONDUCTIVITY}


def function_id(fn, category) -> int:
    """Index of compiled function ``fn`` in its category tuple (see the dispatchers)."""
    return category.index(fn)
