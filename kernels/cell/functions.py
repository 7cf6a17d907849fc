"""Named property functions referenced by parameter files (``"fn:NAME"``).

All are numba-compiled scalar functions so the DFN residual can call them.
Signatures: OCP ``U(sto)`` [V]; exchange current ``j0(c_e, c_s_surf, c_s_max, T)``
[A m-2]; electrolyte ``D_e(c_e, T)`` [m2 s-1] and ``kappa_e(c_e, T)`` [S m-1];
OCP entropic change ``dU/dT(sto)`` [V K-1] (U(sto, T) = U(sto) + (T - T_ref) dU/dT);
electrolyte cation transference number ``t+(c_e, T)`` [-] and thermodynamic factor
``TDF(c_e, T) = 1 + d ln f_+- / d ln c_e`` [-] (c_e in mol m-3, T in K).

Chen2020 (LG M50, NMC811 / graphite-SiOx) fits from C.-H. Chen et al., J.
Electrochem. Soc. 167 (2020) 080534; electrolyte (LiPF6 in EC:EMC) from A. Nyman
et al., Electrochim. Acta 53 (2008) 6356. Values as in PyBaMM's Chen2020 set.
Marquis2019 (Kokam SLPB78205130H, graphite MCMB2528 / LiCoO2): Dualfoil 1998 OCP
and kinetics fits, electrolyte from Capiglia et al. (1999); as in PyBaMM's set.
Transference number and thermodynamic factor of LiPF6 in EC:EMC (3:7 w:w) from
J. Landesfeind and H. A. Gasteiger, J. Electrochem. Soc. 166 (2019) A3079 (their
9-coefficient polynomial in c [mol/L] and T [K], coefficients as in PyBaMM's ORegan2022 set).
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


# ---- transference number and thermodynamic factor, Landesfeind & Gasteiger 2019 (LiPF6 in EC:EMC 3:7 w:w):
# p1 + p2 c + p3 T + p4 c^2 + p5 c T + p6 T^2 + p7 c^3 + p8 c^2 T + p9 c T^2, c in mol/L (their Table / fit)

@numba.njit(cache=True)
def _landesfeind2019_polynomial(c_e, T, p1, p2, p3, p4, p5, p6, p7, p8, p9):
    c = c_e / 1000.0
    return (p1 + p2 * c + p3 * T + p4 * c * c + p5 * c * T + p6 * T * T + p7 * c * c * c + p8 * c * c * T
            + p9 * c * T * T)


@numba.njit(cache=True)
def electrolyte_transference_number_EC_EMC_3_7_Landesfeind2019(c_e, T):
    return _landesfeind2019_polynomial(c_e, T, -1.28e1, -6.12, 8.21e-2, 9.04e-1, 3.18e-2, -1.27e-4, 1.75e-2,
                                       -3.12e-3, -3.96e-5)


@numba.njit(cache=True)
def electrolyte_TDF_EC_EMC_3_7_Landesfeind2019(c_e, T):
    return _landesfeind2019_polynomial(c_e, T, 2.57e1, -4.51e1, -1.77e-1, 1.94, 2.95e-1, 3.08e-4, 2.59e-1,
                                       -9.46e-3, -4.54e-4)


# ---- entropic change dU/dT(sto) [V/K] of the OCP, U(sto, T) = U_ref(sto) + (T - T_ref) dU/dT(sto)
# (lumped thermal model). Moura2016 fits from S. Moura's fastDFN, as in PyBaMM's Marquis2019 set;
# written per unit stoichiometry (the fits' c_s_max divided out as PyBaMM does)

@numba.njit(cache=True)
def _sech2(x):
    c = math.cosh(x)
    return 1.0 / (c * c) if abs(x) < 350.0 else 0.0  # cosh overflows past ~710


@numba.njit(cache=True)
def graphite_entropic_change_Moura2016(sto):
    c_s_max = 24983.2619938437
    return (-1.5 * (120.0 / c_s_max) * math.exp(-120.0 * sto)
            + (0.0351 / (0.083 * c_s_max)) * _sech2((sto - 0.286) / 0.083)
            - (0.0045 / (0.119 * c_s_max)) * _sech2((sto - 0.849) / 0.119)
            - (0.035 / (0.05 * c_s_max)) * _sech2((sto - 0.9233) / 0.05)
            - (0.0147 / (0.034 * c_s_max)) * _sech2((sto - 0.5) / 0.034)
            - (0.102 / (0.142 * c_s_max)) * _sech2((sto - 0.194) / 0.142)
            - (0.022 / (0.0164 * c_s_max)) * _sech2((sto - 0.9) / 0.0164)
            - (0.011 / (0.0226 * c_s_max)) * _sech2((sto - 0.124) / 0.0226)
            + (0.0155 / (0.029 * c_s_max)) * _sech2((sto - 0.105) / 0.029))


@numba.njit(cache=True)
def lico2_entropic_change_Moura2016(sto):
    s = 1.062 * sto  # the OCP fit's stoichiometry stretch
    c_s_max = 51217.9257309275
    return (0.07645 * (-54.4806 / c_s_max) * _sech2(30.834 - 54.4806 * s)
            + 2.1581 * (-50.294 / c_s_max) * _sech2(52.294 - 50.294 * s)
            + 0.14169 * (19.854 / c_s_max) * _sech2(11.0923 - 19.8543 * s)
            - 0.2051 * (5.4888 / c_s_max) * _sech2(1.4684 - 5.4888 * s)
            - (0.2531 / 0.1316 / c_s_max) * _sech2((-s + 0.56478) / 0.1316)
            - (0.02167 / 0.006 / c_s_max) * _sech2((s - 0.525) / 0.006))


# ---- dispatch by integer id, so the compiled DFN kernels are module-level and cacheable
# (a new function is added to its category tuple AND to the matching dispatcher below)
OCP = (graphite_LGM50_ocp_Chen2020, nmc_LGM50_ocp_Chen2020, graphite_mcmb2528_ocp_Dualfoil1998,
       lico2_ocp_Dualfoil1998)
EXCHANGE_CURRENT = (graphite_LGM50_exchange_current_Chen2020, nmc_LGM50_exchange_current_Chen2020,
                    graphite_exchange_current_Dualfoil1998, lico2_exchange_current_Dualfoil1998)
ELECTROLYTE_DIFFUSIVITY = (electrolyte_diffusivity_Nyman2008, electrolyte_diffusivity_Capiglia1999)
ELECTROLYTE_CONDUCTIVITY = (electrolyte_conductivity_Nyman2008, electrolyte_conductivity_Capiglia1999)
ENTROPIC_CHANGE = (graphite_entropic_change_Moura2016, lico2_entropic_change_Moura2016)
TRANSFERENCE_NUMBER = (electrolyte_transference_number_EC_EMC_3_7_Landesfeind2019,)
THERMODYNAMIC_FACTOR = (electrolyte_TDF_EC_EMC_3_7_Landesfeind2019,)


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


@numba.njit(cache=True)
def entropic_change(fid, sto):
    if fid == 0:
        return graphite_entropic_change_Moura2016(sto)
    if fid == 1:
        return lico2_entropic_change_Moura2016(sto)
    return math.nan


@numba.njit(cache=True)
def transference_number(fid, c_e, T):
    if fid == 0:
        return electrolyte_transference_number_EC_EMC_3_7_Landesfeind2019(c_e, T)
    return math.nan


@numba.njit(cache=True)
def thermodynamic_factor(fid, c_e, T):
    if fid == 0:
        return electrolyte_TDF_EC_EMC_3_7_Landesfeind2019(c_e, T)
    return math.nan


FUNCTIONS = {f.py_func.__name__: f for f in OCP + EXCHANGE_CURRENT + ELECTROLYTE_DIFFUSIVITY + ELECTROLYTE_CONDUCTIVITY
             + ENTROPIC_CHANGE + TRANSFERENCE_NUMBER + THERMODYNAMIC_FACTOR}


def function_id(fn, category) -> int:
    """Index of compiled function ``fn`` in its category tuple (see the dispatchers)."""
    return category.index(fn)


# ---- tabulated properties (BPX import, OCP tables) and generic Arrhenius kinetics --------------
# The kernels take ONE packed float array ``tab`` (shape (TAB_ROWS, m)) next to the integer ids
# ``fids`` (0 U_n, 1 U_p, 2 j0_n, 3 j0_p, 4 D_e, 5 kappa; 6, 7 OCP table lengths). An id of -1
# selects the table / generic form:
#   slot k (rows 2k: abscissa, 2k+1: values; linear interpolation, constant beyond the ends):
#     TAB_OCP_N / TAB_OCP_P  U(sto) [V]             (lengths fids[6], fids[7])
#     TAB_DIFFUSIVITY        D_e,ref(c_e) [m2/s]    (length tab[TAB_SCALARS, S_LEN_DIFFUSIVITY])
#     TAB_CONDUCTIVITY       kappa_ref(c_e) [S/m]   (length tab[TAB_SCALARS, S_LEN_CONDUCTIVITY])
#     TAB_ENTROPIC_N / _P    dU/dT(sto) [V/K]       (lengths tab[TAB_SCALARS, S_LEN_ENTROPIC_N / _P])
#     TAB_TRANSFERENCE       t+(c_e) [-]            (length tab[TAB_SCALARS, S_LEN_TRANSFERENCE])
#     TAB_TDF                TDF(c_e) [-]           (length tab[TAB_SCALARS, S_LEN_TDF])
#   row TAB_SCALARS: the lengths above, and
#     j0 = k_e A(Ea_e) sqrt(c_e c_s (c_s,max - c_s))    (k_e in A m-2 (mol m-3)^-1.5)
#     D_e = D_e,ref(c_e) A(Ea_D),  kappa = kappa_ref(c_e) A(Ea_kappa),
#     A(Ea) = exp(Ea / R (1 / T_ref - 1 / T))           (BPX's Arrhenius factor)
TAB_OCP_N, TAB_OCP_P, TAB_DIFFUSIVITY, TAB_CONDUCTIVITY, TAB_ENTROPIC_N, TAB_ENTROPIC_P = 0, 1, 2, 3, 4, 5
TAB_TRANSFERENCE, TAB_TDF = 6, 7
TAB_SCALARS = 16
TAB_ROWS = 17
S_LEN_DIFFUSIVITY, S_LEN_CONDUCTIVITY, S_LEN_ENTROPIC_N, S_LEN_ENTROPIC_P = 0, 1, 2, 3
S_RATE_N, S_EA_RATE_N, S_RATE_P, S_EA_RATE_P, S_EA_DIFFUSIVITY, S_EA_CONDUCTIVITY, S_T_REF = 4, 5, 6, 7, 8, 9, 10
S_LEN_TRANSFERENCE, S_LEN_TDF = 11, 12
TAB_MIN_COLUMNS = 13


@numba.njit(cache=True)
def arrhenius(activation_energy, T_ref, T):
    return math.exp(activation_energy / R_GAS * (1.0 / T_ref - 1.0 / T))


@numba.njit(cache=True)
def table_value(tab, slot, n, x):
    """Linear interpolation in slot ``slot`` of the packed table (n points, increasing
    abscissae), constant beyond the ends; np.interp's formula by bisection (2.3x faster
    than numba's np.interp for a scalar, measured)."""
    xt = tab[2 * slot]
    yt = tab[2 * slot + 1]
    if x <= xt[0]:
        return yt[0]
    if x >= xt[n - 1]:
        return yt[n - 1]
    lo = 0
    hi = n - 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if xt[mid] <= x:
            lo = mid
        else:
            hi = mid
    return (yt[hi] - yt[lo]) / (xt[hi] - xt[lo]) * (x - xt[lo]) + yt[lo]


@numba.njit(cache=True)
def ocp_of(e, fids, tab, sto):
    """OCP of electrode e (0 negative, 1 positive): compiled function or table."""
    if fids[e] >= 0:
        return ocp(fids[e], sto)
    return table_value(tab, e, fids[6 + e], sto)


@numba.njit(cache=True)
def exchange_current_of(e, fids, tab, c_e, c_s_surf, c_s_max, T):
    """Exchange current density [A/m2] of electrode e: compiled function, or (id -1) the
    generic k A(Ea) sqrt(c_e c_s (c_max - c_s)) with k, Ea from the scalar row."""
    if fids[2 + e] >= 0:
        return exchange_current(fids[2 + e], c_e, c_s_surf, c_s_max, T)
    s = TAB_SCALARS
    return (tab[s, S_RATE_N + 2 * e] * arrhenius(tab[s, S_EA_RATE_N + 2 * e], tab[s, S_T_REF], T)
            * _sqrt_pos(c_e) * _sqrt_pos(c_s_surf) * _sqrt_pos(c_s_max - c_s_surf))


@numba.njit(cache=True)
def electrolyte_diffusivity_of(fids, tab, c_e, T):
    if fids[4] >= 0:
        return electrolyte_diffusivity(fids[4], c_e, T)
    s = TAB_SCALARS
    return (table_value(tab, TAB_DIFFUSIVITY, int(tab[s, S_LEN_DIFFUSIVITY]), c_e)
            * arrhenius(tab[s, S_EA_DIFFUSIVITY], tab[s, S_T_REF], T))


@numba.njit(cache=True)
def electrolyte_conductivity_of(fids, tab, c_e, T):
    if fids[5] >= 0:
        return electrolyte_conductivity(fids[5], c_e, T)
    s = TAB_SCALARS
    return (table_value(tab, TAB_CONDUCTIVITY, int(tab[s, S_LEN_CONDUCTIVITY]), c_e)
            * arrhenius(tab[s, S_EA_CONDUCTIVITY], tab[s, S_T_REF], T))


@numba.njit(cache=True)
def entropic_change_table(e, tab, sto):
    """dU/dT [V/K] of electrode e from its table slot (for a thermal model; a file
    without such a table has length 0 here and gives 0)."""
    n = int(tab[TAB_SCALARS, S_LEN_ENTROPIC_N + e])
    if n == 0:
        return 0.0
    return table_value(tab, TAB_ENTROPIC_N + e, n, sto)


@numba.njit(cache=True)
def transference_number_of(fid, tab, constant, c_e, T):
    """Cation transference number: compiled function (fid >= 0), table over c_e (fid -2,
    slot TAB_TRANSFERENCE) or ``constant`` (fid -1)."""
    if fid >= 0:
        return transference_number(fid, c_e, T)
    if fid == -2:
        return table_value(tab, TAB_TRANSFERENCE, int(tab[TAB_SCALARS, S_LEN_TRANSFERENCE]), c_e)
    return constant


@numba.njit(cache=True)
def thermodynamic_factor_of(fid, tab, constant, c_e, T):
    """Thermodynamic factor: compiled function (fid >= 0), table over c_e (fid -2, slot
    TAB_TDF) or ``constant`` (fid -1)."""
    if fid >= 0:
        return thermodynamic_factor(fid, c_e, T)
    if fid == -2:
        return table_value(tab, TAB_TDF, int(tab[TAB_SCALARS, S_LEN_TDF]), c_e)
    return constant
