"""Named property functions referenced by parameter files (``"fn:NAME"``).

All are numba-compiled scalar functions so the DFN residual can call them.
Signatures: OCP ``U(sto)`` [V]; exchange current ``j0(c_e, c_s_surf, c_s_max, T)``
[A m-2]; electrolyte ``D_e(c_e, T)`` [m2 s-1] and ``kappa_e(c_e, T)`` [S m-1].

Chen2020 (LG M50, NMC811 / graphite-SiOx) fits from C.-H. Chen et al., J.
Electrochem. Soc. 167 (2020) 080534; electrolyte (LiPF6 in EC:EMC) from A. Nyman
et al., Electrochim. Acta 53 (2008) 6356. Values as in PyBaMM's Chen2020 set.
Marquis2019 (Kokam SLPB78205130H, graphite MCMB2528 / LiCoO2): Dualfoil 1998 OCP
and kinetics fits, electrolyte from Capiglia et al. (1999); as in PyBaMM's set.
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


# ---- Marquis2019 (Kokam SLPB78205130H, graphite MCMB2528 / LiCoO2; Dualfoil 1998 fits, electrolyte
# Capiglia 1999), S. G. Marquis et al., J. Electrochem. Soc. 166 (2019) A3693; as in PyBaMM's Marquis2019

@numba.njit(cache=True)
def graphite_mcmb2528_ocp_Dualfoil1998(sto):
    return (0.194 + 1.5 * math.exp(-120.0 * sto) + 0.0351 * math.tanh((sto - 0.286) / 0.083)
            - 0.0045 * math.tanh((sto - 0.849) / 0.119) - 0.035 * math.tanh((sto - 0.9233) / 0.05)
            - 0.0147 * math.tanh((sto - 0.5) / 0.034) - 0.102 * math.tanh((sto - 0.194) / 0.142)
            - 0.022 * math.tanh((sto - 0.9) / 0.0164) - 0.011 * math.tanh((sto - 0.124) / 0.0226)
            + 0.0155 * math.tanh((sto - 0.105) / 0.029))


@numba.njit(cache=True)
def lico2_ocp_Dualfoil1998(sto):
    s = 1.062 * sto  # the fit's stoichiometry stretch
    return (2.16216 + 0.07645 * math.tanh(30.834 - 54.4806 * s) + 2.1581 * math.tanh(52.294 - 50.294 * s)
            - 0.14169 * math.tanh(11.0923 - 19.8543 * s) + 0.2051 * math.tanh(1.4684 - 5.4888 * s)
            + 0.2531 * math.tanh((-s + 0.56478) / 0.1316) - 0.02167 * math.tanh((s - 0.525) / 0.006))


@numba.njit(cache=True)
def graphite_exchange_current_Dualfoil1998(c_e, c_s_surf, c_s_max, T):
    arrhenius = math.exp(37480.0 / R_GAS * (1.0 / 298.15 - 1.0 / T))
    return 2e-5 * arrhenius * _sqrt_pos(c_e) * _sqrt_pos(c_s_surf) * _sqrt_pos(c_s_max - c_s_surf)


@numba.njit(cache=True)
def lico2_exchange_current_Dualfoil1998(c_e, c_s_surf, c_s_max, T):
    arrhenius = math.exp(39570.0 / R_GAS * (1.0 / 298.15 - 1.0 / T))
    return 6e-7 * arrhenius * _sqrt_pos(c_e) * _sqrt_pos(c_s_surf) * _sqrt_pos(c_s_max - c_s_surf)


@numba.njit(cache=True)
def electrolyte_diffusivity_Capiglia1999(c_e, T):
    return 5.34e-10 * math.exp(-0.65 * c_e / 1000.0) * math.exp(37040.0 / R_GAS * (1.0 / 298.15 - 1.0 / T))


@numba.njit(cache=True)
def electrolyte_conductivity_Capiglia1999(c_e, T):
    x = c_e / 1000.0
    return ((0.0911 + 1.9101 * x - 1.052 * x * x + 0.1554 * x ** 3)
            * math.exp(34700.0 / R_GAS * (1.0 / 298.15 - 1.0 / T)))


# ---- dispatch by integer id, so the compiled DFN kernels are module-level and cacheable
# (a new function is added to its category tuple AND to the matching dispatcher below)
OCP = (graphite_LGM50_ocp_Chen2020, nmc_LGM50_ocp_Chen2020, graphite_mcmb2528_ocp_Dualfoil1998,
       lico2_ocp_Dualfoil1998)
EXCHANGE_CURRENT = (graphite_LGM50_exchange_current_Chen2020, nmc_LGM50_exchange_current_Chen2020,
                    graphite_exchange_current_Dualfoil1998, lico2_exchange_current_Dualfoil1998)
ELECTROLYTE_DIFFUSIVITY = (electrolyte_diffusivity_Nyman2008, electrolyte_diffusivity_Capiglia1999)
ELECTROLYTE_CONDUCTIVITY = (electrolyte_conductivity_Nyman2008, electrolyte_conductivity_Capiglia1999)


@numba.njit(cache=True)
def ocp(fid, sto):
    if fid == 0:
        return graphite_LGM50_ocp_Chen2020(sto)
    if fid == 1:
        return nmc_LGM50_ocp_Chen2020(sto)
    if fid == 2:
        return graphite_mcmb2528_ocp_Dualfoil1998(sto)
    if fid == 3:
        return lico2_ocp_Dualfoil1998(sto)
    return math.nan


@numba.njit(cache=True)
def exchange_current(fid, c_e, c_s_surf, c_s_max, T):
    if fid == 0:
        return graphite_LGM50_exchange_current_Chen2020(c_e, c_s_surf, c_s_max, T)
    if fid == 1:
        return nmc_LGM50_exchange_current_Chen2020(c_e, c_s_surf, c_s_max, T)
    if fid == 2:
        return graphite_exchange_current_Dualfoil1998(c_e, c_s_surf, c_s_max, T)
    if fid == 3:
        return lico2_exchange_current_Dualfoil1998(c_e, c_s_surf, c_s_max, T)
    return math.nan


@numba.njit(cache=True)
def electrolyte_diffusivity(fid, c_e, T):
    if fid == 0:
        return electrolyte_diffusivity_Nyman2008(c_e, T)
    if fid == 1:
        return electrolyte_diffusivity_Capiglia1999(c_e, T)
    return math.nan


@numba.njit(cache=True)
def electrolyte_conductivity(fid, c_e, T):
    if fid == 0:
        return electrolyte_conductivity_Nyman2008(c_e, T)
    if fid == 1:
        return electrolyte_conductivity_Capiglia1999(c_e, T)
    return math.nan


FUNCTIONS = {f.py_func.__name__: f for f in OCP + EXCHANGE_CURRENT + ELECTROLYTE_DIFFUSIVITY + ELECTROLYTE_CONDUCTIVITY}


def function_id(fn, category) -> int:
    """Index of compiled function ``fn`` in its category tuple (see the dispatchers)."""
    return category.index(fn)
