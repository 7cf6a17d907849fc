"""Checks shared by every tabulated property function (OCP tables, BPX tables)."""
from __future__ import annotations

import numpy as np


def table_problem(x: np.ndarray, y: np.ndarray) -> str | None:
    """What makes the 1D arrays ``x``, ``y`` unusable as a linear-interpolation table
    (lengths, size, NaN/inf), or None; ordering is checked by the callers."""
    if x.size != y.size:
        return f"x and y differ in length ({x.size} vs {y.size})"
    if x.size < 2:
        return "needs at least 2 points"
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return "contains NaN or inf"
    return None
