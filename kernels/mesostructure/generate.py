"""Random mesostructure generators."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def overlapping_spheres(shape, radius: float, porosity: float, seed: int = 0) -> np.ndarray:
    """Boolean-model solid of overlapping spheres: returns True for solid.

    Sphere centres are a Poisson process with the density that gives ``porosity``
    for radius ``radius`` (voxels); the solid is then thresholded on the distance
    to the nearest centre so the pore fraction matches ``porosity`` to one voxel
    (the effective radius stays within a voxel of ``radius``).
    """
    shape = tuple(int(s) for s in shape)
    if not 0.0 < porosity < 1.0:
        raise ValueError(f"porosity must be in (0, 1), got {porosity}")
    rng = np.random.default_rng(seed)
    n_vox = int(np.prod(shape))
    v_sphere = 4.0 / 3.0 * np.pi * radius ** 3
    n_centres = max(1, int(round(-np.log(porosity) * n_vox / v_sphere)))
    centres = np.floor(rng.random((n_centres, 3)) * np.array(shape)).astype(np.int64)
    seeds = np.ones(shape, dtype=bool)
    seeds[centres[:, 0], centres[:, 1], centres[:, 2]] = False
    dist = ndimage.distance_transform_edt(seeds).ravel()
    # exact pore count: the n_solid voxels nearest to a centre are solid; ties on the
    # discrete distance shell are broken at random (jitter far below the shell spacing)
    dist += rng.random(dist.size) * 1e-3
    n_solid = int(round((1.0 - porosity) * n_vox))
    solid = np.zeros(n_vox, dtype=bool)
    if n_solid:
        solid[np.argpartition(dist, n_solid - 1)[:n_solid]] = True
    return solid.reshape(shape)
