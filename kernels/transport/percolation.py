"""Connectivity of a phase: which voxels belong to clusters spanning two opposite faces."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

#: 6-connectivity (face neighbours): the connectivity of the finite-volume stencil
FACE_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)


def percolating_mask(active: np.ndarray, axis: int) -> np.ndarray:
    """Voxels of ``active`` in 6-connected clusters touching both faces normal to ``axis``."""
    labels, n = ndimage.label(active, structure=FACE_CONNECTIVITY)
    if n == 0:
        return np.zeros(active.shape, dtype=bool)
    inlet = np.unique(np.take(labels, 0, axis=axis))
    outlet = np.unique(np.take(labels, -1, axis=axis))
    spanning = np.intersect1d(inlet, outlet)
    lut = np.zeros(n + 1, dtype=bool)
    lut[spanning[spanning > 0]] = True
    return lut[labels]


def percolation_report(active: np.ndarray, axis: int) -> dict:
    """Volume fractions (of the whole image) of the phase ``active`` split by its 6-connected
    clusters with respect to the two faces normal to ``axis``:

    - ``percolating``: clusters touching both faces (they carry the through-flux),
    - ``dead_end``: clusters touching exactly one face (accessible, but no through path),
    - ``isolated``: clusters touching neither face.

    The three add up to the phase volume fraction; ``n_clusters`` counts all clusters."""
    labels, n = ndimage.label(active, structure=FACE_CONNECTIVITY)
    total = active.size
    if n == 0:
        return {"percolating": 0.0, "dead_end": 0.0, "isolated": 0.0, "n_clusters": 0}
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    touch = np.zeros(n + 1, dtype=np.int8)
    touch[np.unique(np.take(labels, 0, axis=axis))] += 1
    touch[np.unique(np.take(labels, -1, axis=axis))] += 1
    touch[0] = -1  # background
    return {"percolating": float(sizes[touch == 2].sum() / total),
            "dead_end": float(sizes[touch == 1].sum() / total),
            "isolated": float(sizes[touch == 0].sum() / total),
            "n_clusters": int(n)}
