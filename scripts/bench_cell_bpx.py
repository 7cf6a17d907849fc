"""Benchmark: BPX import (ionscale) against PyBaMM's ``ParameterValues.create_from_bpx``,
same BPX file, same run.

1. Load time of the file (schema validation + conversion; ours also tabulates the
   expression functions), min-of-N.
2. DFN discharges at 0.5C / 1C / 2C, 20 cells per domain, 20 shells, rtol = atol = 1e-6
   (PyBaMM: IDAKLUSolver), ionscale with both face averages: re-solve time min-of-N
   (the two codes' repetitions interleaved), terminal-voltage RMS / max difference and
   capacity difference.
3. Cost of the table path: Chen2020 with its compiled OCP / electrolyte functions against
   the same set with those properties tabulated (the BPX form), ionscale only.

    python scripts/bench_cell_bpx.py [--repeat 7] [--files a.json b.json]
PyBaMM and bpx are measuring peers only; without them the script says so and reports ours.
"""
from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path

import numpy as np

from ionscale.kernels.cell.bpx import tabulate
from ionscale.kernels.cell.dfn import DFNModel
from ionscale.kernels.cell.functions import FUNCTIONS
from ionscale.kernels.cell.parameters import PARAMETER_DIR, load_parameter_set

try:
    import pybamm
except ImportError:  # the peer is optional
    pybamm = None
try:
    import bpx
except ImportError:
    bpx = None


def min_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def pybamm_sim(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pv = pybamm.ParameterValues.create_from_bpx(str(path))
    pv["Current function [A]"] = "[input]"
    return pybamm.Simulation(pybamm.lithium_ion.DFN(), parameter_values=pv,
                             solver=pybamm.IDAKLUSolver(rtol=1e-6, atol=1e-6))


def compare(args, path):
    if bpx is None:
        print("bpx NOT INSTALLED: cannot read BPX files (pip install bpx==1.1.1)")
        return
    t_load, values = min_time(lambda: load_parameter_set(str(path)), args.repeat)
    sizes = {k: v["x"].size for k, v in values.items() if isinstance(v, dict) and "x" in v}
    print(f"[load {path.name}] ionscale load_parameter_set: min {t_load * 1e3:.1f} ms; table points {sizes}")
    if pybamm is not None:
        def pb_load():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return pybamm.ParameterValues.create_from_bpx(str(path))
        t_pb, _ = min_time(pb_load, args.repeat)
        print(f"PyBaMM {pybamm.__version__} create_from_bpx: min {t_pb * 1e3:.1f} ms; ratio {t_load / t_pb:.2f}")
    else:
        print("PyBaMM NOT INSTALLED: no peer comparison (pip install pybamm to measure)")
    one_c = values["nominal_cell_capacity_Ah"]
    sim = None
    if pybamm is not None:
        t0 = time.perf_counter()
        sim = pybamm_sim(path)
        sim.solve([0, 1.2 * 3600], inputs={"Current function [A]": one_c})
        print(f"PyBaMM build + first solve {time.perf_counter() - t0:.2f} s")
    for average in ("harmonic", "arithmetic"):
        t0 = time.perf_counter()
        model = DFNModel(values, points=(20, 20, 20), r_points=(20, 20), conductivity_average=average)
        model.discharge(1.0)
        print(f"[DFN, {average} face average] ionscale build + first solve {time.perf_counter() - t0:.2f} s")
        for c in (0.5, 1.0, 2.0):
            ours, theirs = [], []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                r = model.discharge(c)
                ours.append(time.perf_counter() - t0)
                if sim is not None:
                    t0 = time.perf_counter()
                    sol = sim.solve([0, 1.2 * 3600 / c], inputs={"Current function [A]": one_c * c})
                    theirs.append(time.perf_counter() - t0)
            line = (f"  {c:g}C: ionscale {min(ours) * 1e3:.1f} ms ({model.last_stats['steps']} steps), "
                    f"capacity {r.capacity_Ah:.5f} A h")
            if sim is not None:
                t_ref, v_ref = sol["Time [s]"].entries, sol["Voltage [V]"].entries
                cap_ref = sol["Discharge capacity [A.h]"].entries[-1]
                keep = t_ref <= min(t_ref[-1], r.time_s[-1])
                d = np.interp(t_ref[keep], r.time_s, r.voltage_V) - v_ref[keep]
                line += (f"; PyBaMM {min(theirs) * 1e3:.1f} ms, ratio {min(ours) / min(theirs):.2f}; voltage RMS "
                         f"{math.sqrt(np.mean(d ** 2)) * 1e3:.3f} mV, max {np.abs(d).max() * 1e3:.3f} mV; capacity "
                         f"rel diff {(r.capacity_Ah - cap_ref) / cap_ref:+.2e}")
            print(line)


def table_overhead(args):
    """Chen2020 with compiled property functions vs the same properties as tables."""
    base = load_parameter_set("Chen2020")
    tabled = dict(base)
    for key in ("negative_electrode_ocp_V", "positive_electrode_ocp_V"):
        fn = FUNCTIONS[base[key][3:]]
        x, y = tabulate(np.vectorize(fn), 0.0, 1.0, key)
        tabled[key] = {"x": x, "ocv_V": y}
    T = base["temperature_K"]
    for key in ("electrolyte_diffusivity_m2_s", "electrolyte_conductivity_S_m"):
        fn = FUNCTIONS[base[key][3:]]
        x, y = tabulate(np.vectorize(lambda c, fn=fn: fn(c, T)), 0.0, 6000.0, key)
        tabled[key] = {"x": x, "y": y}
    m_fn, m_tab = DFNModel(base), DFNModel(tabled)
    r_fn, r_tab = m_fn.discharge(1.0), m_tab.discharge(1.0)
    t_fn, t_tab = [], []
    for _ in range(args.repeat):
        t_fn.append(min_time(lambda: m_fn.discharge(1.0), 1)[0])
        t_tab.append(min_time(lambda: m_tab.discharge(1.0), 1)[0])
    d = np.interp(r_fn.time_s, r_tab.time_s, r_tab.voltage_V) - r_fn.voltage_V
    print(f"[table path, Chen2020 1C] compiled functions {min(t_fn) * 1e3:.1f} ms, tables {min(t_tab) * 1e3:.1f} ms "
          f"(ratio {min(t_tab) / min(t_fn):.2f}); voltage max diff {np.abs(d).max() * 1e3:.4f} mV, capacity rel diff "
          f"{(r_tab.capacity_Ah - r_fn.capacity_Ah) / r_fn.capacity_Ah:+.1e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--files", nargs="+", type=Path, default=sorted((PARAMETER_DIR / "bpx").glob("*.json")),
                    help="BPX files (default: the bundled examples)")
    args = ap.parse_args()
    print("note: timings on a shared, loaded 2-core machine; min-of-N reported")
    for path in args.files:
        compare(args, path)
    table_overhead(args)


if __name__ == "__main__":
    main()
