"""Benchmark: semi-grand-canonical lattice Monte Carlo throughput, ionscale vs icet/mchammer.

Same model in both codes: a binary simple-cubic lattice (Au = vacancy, Pd = "Li") with a
nearest-neighbour cluster expansion set in icet; its energies are mapped exactly onto ionscale's
occupation-basis ECIs by fitting them (``fit_ecis``) to icet's predictions of random
configurations (the fit RMSE, ~1e-15 eV, is printed). Both codes then run SGC chains at the same
temperature and chemical potentials mu = mu_Pd - mu_Au; printed: attempted moves per second per
core of each (min-of-N timing of the chain only), their ratio, and <x> of both codes at each mu
(the accuracy difference, with the ionscale standard error).

    .venv/bin/python scripts/bench_montecarlo.py [--size 16] [--repeats 3]

icet is a measuring peer only (``pip install -c scripts/constraints.txt icet``); without it the
script reports ionscale alone and says so.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from ionscale.kernels.atomistic.lattice import make_lattice
from ionscale.kernels.atomistic.lattice_fit import fit_ecis, random_occupations
from ionscale.kernels.atomistic.montecarlo import K_B_EV, run_chain, throughput


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16, help="cells per side of the simple-cubic supercell")
    ap.add_argument("--temperature", type=float, default=600.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--icet-sweeps", type=int, default=40, help="sweeps per icet chain (it is slow)")
    ap.add_argument("--sweeps", type=int, default=400, help="sweeps per ionscale chain")
    args = ap.parse_args()
    lat = make_lattice("cubic", args.size, 1)
    n = lat.n_sites
    print(f"simple-cubic {args.size}^3 = {n} sites, nearest-neighbour pairs, T = {args.temperature} K; "
          f"cpus visible: {os.cpu_count()} (shared machine: timings noisy, min of {args.repeats})")
    try:
        from ase import Atoms
        from icet import ClusterExpansion, ClusterSpace
        from mchammer.calculators import ClusterExpansionCalculator
        from mchammer.ensembles import SemiGrandCanonicalEnsemble
        import icet
        have_icet = True
    except ImportError as e:
        have_icet = False
        print(f"PEER MISSING: icet/mchammer not importable ({e}); ionscale numbers only")

    if have_icet:
        prim = Atoms("Au", positions=[[0, 0, 0]], cell=np.eye(3) * 3.0, pbc=True)
        cs = ClusterSpace(prim, cutoffs=[3.5], chemical_symbols=["Au", "Pd"])
        ce = ClusterExpansion(cs, [0.01, -0.02, 0.015])  # zerolet, singlet, NN pair (icet's basis)
        supercell = prim.repeat(args.size)
        # site k of the ionscale lattice is atom k of prim.repeat (same C-order of cell indices)
        occ_train = random_occupations(lat, 30, np.random.default_rng(0))
        energies = []
        for o in occ_train:
            a = supercell.copy()
            a.set_chemical_symbols(np.where(o == 1, "Pd", "Au"))
            energies.append(ce.predict(a) * n)
        fit = fit_ecis(lat, occ_train, energies, alphas=[0.0])
        ham = fit.hamiltonian
        print(f"icet {icet.__version__} CE mapped to ionscale ECIs {ham.as_dict()} (fit RMSE "
              f"{fit.fit_rmse_eV_per_site:.1e} eV/site)")
    else:
        from ionscale.kernels.atomistic.lattice import ClusterHamiltonian
        ham = ClusterHamiltonian(0.0, 0.0, (0.06,))
    # chemical potentials across the filling range of this model
    h_full = ham.e1 + 6 * ham.pairs[0]
    mus = np.linspace(min(ham.e1, h_full) - 0.05, max(ham.e1, h_full) + 0.05, 5)[1:-1]

    rate_ion = throughput(lat, ham, float(mus[1]), args.temperature, args.sweeps, repeats=args.repeats)
    print(f"ionscale: {rate_ion:.3e} attempted moves/s/core")
    x_ion, x_err = [], []
    for k, mu in enumerate(mus):
        n_rec, _, _ = run_chain(lat, ham, mu, args.temperature, 200, 2000, seed=k)
        xs = n_rec / n
        x_ion.append(xs.mean())
        x_err.append(xs.std() / np.sqrt(len(xs) / 10))  # ~10-sweep correlation time, rough
    if not have_icet:
        return

    rates, x_icet = [], []
    for k, mu in enumerate(mus):
        a = supercell.copy()
        a.set_chemical_symbols(["Au"] * n)
        calc = ClusterExpansionCalculator(a, ce)
        mc = SemiGrandCanonicalEnsemble(a, calc, temperature=args.temperature,
                                        chemical_potentials={"Au": 0.0, "Pd": float(mu)},
                                        random_seed=k + 1, ensemble_data_write_interval=n)
        mc.run(10 * n)  # equilibrate
        best = np.inf
        for _ in range(args.repeats if k == 1 else 1):
            t0 = time.perf_counter()
            mc.run(args.icet_sweeps * n)
            best = min(best, time.perf_counter() - t0)
        rates.append(args.icet_sweeps * n / best)
        counts = np.asarray(mc.data_container.get("Pd_count"), float)
        x_icet.append(counts[10:].mean() / n)
    rate_icet = max(rates)
    print(f"icet/mchammer: {rate_icet:.3e} attempted moves/s/core")
    print(f"RATIO ionscale / icet throughput: {rate_ion / rate_icet:.0f}x")
    print(f"{'mu [eV]':>9} {'x ionscale':>11} {'+-':>7} {'x icet':>8} {'diff':>8}")
    for mu, a, e, b in zip(mus, x_ion, x_err, x_icet):
        print(f"{mu:9.4f} {a:11.4f} {e:7.4f} {b:8.4f} {a - b:8.4f}")
    print(f"(kT = {K_B_EV * args.temperature:.4f} eV; icet <x> from {args.icet_sweeps * args.repeats} sweeps or fewer, "
          f"so its sampling error is the larger one)")


if __name__ == "__main__":
    main()
