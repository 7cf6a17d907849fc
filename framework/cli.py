"""``ionscale`` command line: run, validate, describe, info.

PETSc options may follow the deck (``-tau_x_ksp_monitor``) and win over the
deck's ``petsc:`` blocks. Errors print one line each; ``--traceback`` shows more.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback


def _parser():
    p = argparse.ArgumentParser(prog="ionscale", description="Multiscale electrochemistry on MPI/PETSc with ML.")
    p.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a deck: mpirun -n N ionscale run deck.yaml")
    r.add_argument("deck")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a deck value, e.g. --set stages.tau.direction=y (repeatable)")
    r.add_argument("--output", help="results folder (overrides run.output)")
    r.add_argument("--restart", action="store_true",
                   help="reuse finished stages of the earlier results file whose inputs are unchanged")
    r.add_argument("-v", "--verbose", action="count", default=0)
    r.add_argument("--quiet", action="store_true", help="do not print the summary table")
    r.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    v = sub.add_parser("validate", help="check a deck without running it")
    v.add_argument("deck")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    v.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    d = sub.add_parser("describe", help="list stage types, or one type's parameters and outputs")
    d.add_argument("type", nargs="?")
    d.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    i = sub.add_parser("info", help="versions of ionscale, Python, PETSc, MPI, torch, numba; ranks; GPU")
    i.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def _split_petsc_args(argv):
    """Arguments after ``--``, and single-dash options argparse does not know, go to PETSc."""
    if "--" in argv:
        k = argv.index("--")
        return argv[:k], argv[k + 1:]
    return argv, []


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, petsc_args = _split_petsc_args(argv)
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    bad = [u for u in unknown if not u.startswith("-") or u.startswith("--")]
    if bad:
        parser.error(f"unrecognised arguments: {' '.join(bad)}")
    petsc_args = unknown + petsc_args  # e.g. -tau_x_ksp_monitor, -log_view

    import petsc4py
    petsc4py.init([sys.argv[0]] + petsc_args)
    from mpi4py import MPI

    from .errors import DeckError, IonscaleError
    from .log import setup_logging

    comm = MPI.COMM_WORLD.Dup()  # library work never on the user's communicator itself
    rank = comm.rank
    try:
        if args.command == "run":
            return _cmd_run(args, comm, setup_logging(comm, args.verbose))
        if args.command == "validate":
            return _cmd_validate(args, comm)
        if rank == 0:
            print(_cmd_describe(args) if args.command == "describe" else _cmd_info(comm))
        return 0
    except IonscaleError as e:
        if rank == 0 or not e.collective:
            lines = [str(p) for p in e.problems] if isinstance(e, DeckError) else str(e).splitlines()[:1]
            for line in lines:
                print(f"ionscale: error: {line}", file=sys.stderr)
            if args.traceback:
                traceback.print_exc()
            elif not isinstance(e, DeckError):
                print("ionscale: (run with --traceback for details)", file=sys.stderr)
        sys.stderr.flush()
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence prints one line, not a wall
        print(f"ionscale: error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        if args.traceback:
            traceback.print_exc()
        else:
            print("ionscale: (run with --traceback for details)", file=sys.stderr)
        return 1
    finally:
        comm.Free()


def _load(args, comm):
    from .comm import collective_call
    from .deck import load_deck

    return collective_call(load_deck, comm, args.deck, overrides=args.overrides)


def _cmd_validate(args, comm) -> int:
    plan = _load(args, comm)
    if comm.rank == 0:
        n = len(plan.case_plans)
        print(f"{args.deck}: valid ({len(plan.stages)} stage{'s' if len(plan.stages) != 1 else ''}: "
              f"{', '.join(f'{s.name} ({s.type})' for s in plan.stages)}"
              + (f"; sweep of {n} cases" if n else "") + ")")
    return 0


def _cmd_run(args, comm, log) -> int:
    from .runner import run_plan

    plan = _load(args, comm)
    if args.output:
        plan.run["output"] = args.output
        for cp in plan.case_plans:
            cp.run["output"] = args.output
    log.info("ionscale run %s: %d stage(s), %d rank(s), results -> %s", args.deck, len(plan.stages), comm.size,
             plan.results_path)
    runner = run_plan(plan, comm, restart=args.restart)
    if comm.rank == 0 and not args.quiet:
        print(summary_table(runner))
        print(f"results: {os.path.abspath(plan.results_path)}")
    return 0


def summary_table(runner) -> str:
    """Scalar outputs (short 1-D arrays and short strings too) of each stage, with units, one line each."""
    import numbers

    import numpy as np

    def short(v):
        if isinstance(v, numbers.Number) and not isinstance(v, bool):
            return f"{v:<14.6g}"
        if isinstance(v, str) and 0 < len(v) <= 200:  # paths, stop reasons
            return v
        arr = np.asarray(v) if isinstance(v, (list, np.ndarray)) else None
        if arr is not None and arr.ndim == 1 and 0 < arr.size <= 8 and arr.dtype.kind in "iuf":
            return "[" + ", ".join(f"{x:.5g}" for x in arr) + "]"
        return None

    lines = []
    for name, rec in runner.records.items():  # name carries a "[case i] " label in sweeps
        tag = " (reused)" if rec.reused else ""
        lines.append(f"{name} [{rec.type}] {rec.wall_time_s:.2f} s{tag}")
        for k, v in rec.outputs.items():
            text = short(v)
            if text is None:
                continue
            units = rec.units.get(k, "")
            lines.append(f"    {k:<28} {text} {units if units and units != '1' else ''}".rstrip())
    return "\n".join(lines)


def _cmd_describe(args) -> str:
    from .deck import describe_type
    from .stage import stage_types

    if args.type:
        return describe_type(args.type)
    types = stage_types()
    width = max((len(t) for t in types), default=8) + 2
    return "stage types (ionscale describe TYPE for parameters):\n" + "\n".join(
        f"  {t:<{width}}{cls.summary()}" for t, cls in types.items())


def _cmd_info(comm) -> str:
    from .info import gpu_description, versions

    v = versions()
    lines = [f"{k:<10} {val}" for k, val in v.items()]
    lines.append(f"{'ranks':<10} {comm.size}")
    lines.append(f"{'gpu':<10} {gpu_description()}")
    lines.append(f"{'PETSC_DIR':<10} {os.environ.get('PETSC_DIR', '(unset)')}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
