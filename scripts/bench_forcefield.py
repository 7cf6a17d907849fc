"""Energy + force throughput of the ionscale Behler-Parrinello potential against TorchANI.

Both models use the same symmetry-function parameters (radial: 16 shifts, eta 16 A^-2,
R_c 5 A; angular: 4 x 4 shifts, eta 8, zeta 16, R_ca 3.5 A), two species (Cu, Au) and
identical network sizes (F-32-32-1 per element), randomly initialised (no download).
Periodic random Cu-Au fcc alloys of ~100, 1,000 and 10,000 atoms; throughput is
atoms x evaluations / s for energy + forces (autograd), min-of-N timing interleaved
(ionscale, TorchANI, ionscale, ...) in the same process.
The accuracy check compares the per-atom feature vectors of the two codes
(sorted, since the block order differs): they implement the same definitions.

    .venv/bin/python scripts/bench_forcefield.py [--repeats 5] [--threads 1] [--dtype float32]

TorchANI is a peer for measurement only (pip install -c scripts/constraints.txt torchani).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from ase.build import bulk

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

from ionscale.kernels.atomistic.features import FeatureParams, build_graph, compute_features  # noqa: E402
from ionscale.kernels.atomistic.model import BPPotential  # noqa: E402

SIZES = {108: (3, 3, 3), 1000: (5, 5, 10), 10000: (10, 10, 25)}


def structure(reps, seed=0):
    a = bulk("Cu", "fcc", a=3.75, cubic=True) * reps
    a.numbers[np.random.default_rng(seed).random(len(a)) < 0.5] = 79
    a.rattle(0.05, seed=seed)
    return a


def time_min_interleaved(fns, repeats):
    """Min-of-N wall time of each callable, alternating them so load changes hit both alike."""
    for fn in fns:
        fn()  # warm-up (numba compilation, allocator)
    best = [np.inf] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def torchani_model(fp: FeatureParams, hidden, dtype):
    import torchani
    from torchani.aev import AEVComputer
    from torchani.nn import AtomicNetwork, ANINetworks

    aev = AEVComputer.from_constants(
        radial_cutoff=fp.radial_cutoff, angular_cutoff=fp.angular_cutoff, radial_eta=fp.radial_eta,
        radial_shifts=fp.radial_shifts, angular_eta=fp.angular_eta, angular_zeta=fp.angular_zeta,
        angular_shifts=fp.angular_shifts, sections=fp.angle_shifts, num_species=2, neighborlist="cell_list")
    dims = [fp.n_features, *hidden, 1]
    nets = ANINetworks({"Cu": AtomicNetwork(dims, activation=torch.nn.SiLU(), bias=True),
                        "Au": AtomicNetwork(dims, activation=torch.nn.SiLU(), bias=True)})
    return aev.to(dtype), nets.to(dtype), torchani.__version__


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: fair on a shared machine)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    fp = FeatureParams([29, 79])
    hidden = (32, 32)
    model = BPPotential(fp, hidden=hidden).to(dtype)
    try:
        ani = torchani_model(fp, hidden, dtype)
    except ImportError as e:
        ani = None
        print(f"PEER MISSING: TorchANI is not installed ({e}); only ionscale is timed. "
              "Install with: .venv/bin/pip install -c scripts/constraints.txt torchani")
    print(f"device cpu, torch {torch.__version__}, threads {args.threads}, dtype {args.dtype}, "
          f"features {fp.n_features}, TorchANI {ani[2] if ani else 'absent'}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'atoms':>6} {'ionscale atoms*ev/s':>20} {'TorchANI atoms*ev/s':>20} {'ratio':>6} "
          f"{'max |dG| (sorted)':>18}")
    rows = []
    for n in args.sizes:
        atoms = structure(SIZES.get(n) or (round((n / 4) ** (1 / 3)),) * 3)
        n_at = len(atoms)

        def ours():
            model.evaluate([atoms], forces=True)

        t_ani, dg = np.nan, np.nan
        if not ani:
            t_ours = time_min_interleaved([ours], args.repeats)[0]
        if ani:
            aev, nets, _ = ani
            species = torch.as_tensor((atoms.numbers == 79).astype(np.int64))[None]
            cell = torch.as_tensor(atoms.cell[:], dtype=dtype)
            pbc = torch.tensor([True, True, True])
            pos0 = torch.as_tensor(atoms.positions, dtype=dtype)[None]

            def theirs():
                pos = pos0.clone().requires_grad_(True)
                e = nets(species, aev(species, pos, cell=cell, pbc=pbc))
                torch.autograd.grad(e.sum(), pos)

            try:
                t_ours, t_ani = time_min_interleaved([ours, theirs], args.repeats)
                with torch.no_grad():
                    g_ani = aev(species, pos0, cell=cell, pbc=pbc)[0].double()
                    g = build_graph([(atoms.positions, atoms.numbers, atoms.cell[:], atoms.pbc)], fp)
                    g_ours = compute_features(fp, g, torch.as_tensor(atoms.positions),
                                              torch.as_tensor(atoms.cell[:])[None])
                dg = float((torch.sort(g_ours, 1)[0] - torch.sort(g_ani, 1)[0]).abs().max())
            except Exception as e:  # report a peer failure instead of hiding it
                print(f"  TorchANI failed at {n_at} atoms: {type(e).__name__}: {e}")
                t_ours = time_min_interleaved([ours], args.repeats)[0]
        thr_ours, thr_ani = n_at / t_ours, n_at / t_ani
        rows.append((n_at, t_ours, t_ani))
        print(f"{n_at:>6} {thr_ours:>20.0f} {thr_ani:>20.0f} {thr_ours / thr_ani:>6.2f} {dg:>18.2e}")
    if len(rows) > 1:
        n = np.array([r[0] for r in rows], float)
        for label, k in (("ionscale", 1), ("TorchANI", 2)):
            t = np.array([r[k] for r in rows])
            if np.isfinite(t).all():
                slope = np.polyfit(np.log(n), np.log(t), 1)[0]
                print(f"scaling {label}: time ~ N^{slope:.2f}; time per atom (us): "
                      + ", ".join(f"{1e6 * ti / ni:.1f}" for ti, ni in zip(t, n)))


if __name__ == "__main__":
    main()
