"""Per-solver PETSc options: a nested dict from the deck is flattened under a
unique prefix, inserted around ``setFromOptions`` only, then removed. Options
already in the database (command line, PETSC_OPTIONS) win."""
from __future__ import annotations

import contextlib
import itertools
import re

_counter = itertools.count()


def flatten(options: dict | None, parent: str = "") -> dict[str, str]:
    """``{ksp: {type: cg}, pc_type: gamg}`` -> ``{'ksp_type': 'cg', 'pc_type': 'gamg'}``."""
    flat: dict[str, str] = {}
    for key, value in (options or {}).items():
        name = f"{parent}_{key}" if parent else str(key).lstrip("-")
        if isinstance(value, dict):
            flat.update(flatten(value, name))
        elif value is None or value is True:
            flat[name] = ""  # a flag such as ksp_view
        elif value is False:
            continue
        else:
            flat[name] = str(value)
    return flat


def unique_prefix(name: str) -> str:
    """A PETSc options prefix for one solver, e.g. ``tau_ionic_x_``."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "ionscale"
    return f"{base}_"


def fresh_prefix(name: str) -> str:
    """Like ``unique_prefix`` but numbered, for solvers created repeatedly."""
    return f"{unique_prefix(name)}{next(_counter)}_"


@contextlib.contextmanager
def scoped_options(prefix: str, options: dict | None):
    """Insert ``options`` under ``prefix`` for the duration of the block."""
    from petsc4py import PETSc

    db = PETSc.Options()
    inserted = []
    for key, value in flatten(options).items():
        full = f"{prefix}{key}"
        if db.hasName(full):  # the command line wins
            continue
        db.setValue(full, value)
        inserted.append(full)
    try:
        yield prefix
    finally:
        for full in inserted:
            db.delValue(full)
