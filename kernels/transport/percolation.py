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
