"""Geometry metrics of labelled voxel images.

- volume fractions eps_p = N_p / N;
- specific surface area per phase pair, S_ab = A_ab / V (1/length), two ways:
  *face counting* (sum of voxel faces between a and b, exact for the voxel geometry,
  overestimates smooth surfaces by ~3/2 on average) and *marching cubes*
  (scikit-image; area of the 0.5-isosurface of each phase's indicator after a
  Gaussian pre-smoothing of sigma = 0.63 voxel, pair areas by
  inclusion-exclusion S_ab = (S_a + S_b - S_{a u b}) / 2); the domain boundary is not
  counted as surface;
- triple-phase-boundary density (length / volume): voxel edges whose four
  surrounding voxels contain all three requested phases;
- two-point correlation S2(r) = P(x in p, x + r in p), from the FFT autocorrelation of
  the zero-padded indicator, normalised by the number of pairs at each lag (no
  periodicity assumed), radially averaged; S2(0) = eps, S2(r -> inf) -> eps^2;
- chord-length distribution along each axis: lengths of runs of the phase on lines
  parallel to the axis; chords cut by the domain boundary are excluded.
"""
from __future__ import annotations

import numpy as np


def volume_fractions(labels: np.ndarray, phases: dict) -> dict:
    counts = np.bincount(labels.ravel().astype(np.int64))
    n = labels.size
    return {name: float(counts[v] / n) if v < len(counts) else 0.0 for name, v in phases.items()}


def face_count_area(labels: np.ndarray, a: int, b: int, spacing=(1.0, 1.0, 1.0)) -> float:
    """Total area of the voxel faces between label ``a`` and label ``b`` (length^2)."""
    h = np.asarray(spacing, dtype=np.float64)
    face_area = (h[1] * h[2], h[0] * h[2], h[0] * h[1])
    total = 0.0
    for ax in range(3):
        n = labels.shape[ax]
        lo = np.take(labels, np.arange(n - 1), axis=ax)
        hi = np.take(labels, np.arange(1, n), axis=ax)
        count = np.count_nonzero((lo == a) & (hi == b)) + np.count_nonzero((lo == b) & (hi == a))
        total += count * face_area[ax]
    return total


#: Gaussian pre-smoothing (voxels) of the indicator before marching cubes. On the raw
#: binary indicator the isosurface keeps the voxel staircase and overestimates smooth
#: surfaces by ~8 %; sigma = 0.63 brings spheres of radius 7 voxels within 1 % (measured
#: over random sub-voxel centres: -0.9 % to +0.9 %).
MC_SMOOTHING_SIGMA = 0.63


def marching_cubes_area(mask: np.ndarray, spacing=(1.0, 1.0, 1.0), sigma: float = MC_SMOOTHING_SIGMA) -> float:
    """Area of the 0.5-isosurface of a (smoothed) boolean indicator (scikit-image marching
    cubes). The domain boundary is not part of the surface: the field is padded by
    replication and the isosurface is clipped to the domain box."""
    from scipy import ndimage
    from skimage.measure import marching_cubes, mesh_surface_area

    if not mask.any() or mask.all():
        return 0.0
    field = mask.astype(np.float32)
    if sigma > 0:
        field = ndimage.gaussian_filter(field, sigma, mode="nearest")
    # pad by replication so the isosurface reaches the domain faces, then clip it there
    field = np.pad(field, 1, mode="edge")
    verts, faces, _, _ = marching_cubes(field, level=0.5)
    verts -= 1.0  # back to voxel-centre coordinates of the unpadded image
    verts = np.clip(verts, -0.5, np.asarray(mask.shape) - 0.5) * np.asarray(spacing, dtype=np.float64)
    return float(mesh_surface_area(verts, faces))


def specific_surface_areas(labels, phases: dict, spacing=(1.0, 1.0, 1.0), marching_cubes=True) -> dict:
    """``{"a|b": {"face_count": S, "marching_cubes": S}}`` per phase pair, per unit volume."""
    h = np.asarray(spacing, dtype=np.float64)
    volume = labels.size * float(np.prod(h))
    names = list(phases)
    mc_single = {}
    if marching_cubes:
        for n in names:
            mc_single[n] = marching_cubes_area(labels == phases[n], h)
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            entry = {"face_count": face_count_area(labels, phases[a], phases[b], h) / volume}
            if marching_cubes:
                if len(names) == 2:
                    pair = mc_single[a]
                else:
                    union = marching_cubes_area(np.isin(labels, [phases[a], phases[b]]), h)
                    pair = 0.5 * (mc_single[a] + mc_single[b] - union)
                entry["marching_cubes"] = pair / volume
            out[f"{a}|{b}"] = entry
    return out


def triple_phase_boundary_density(labels, a: int, b: int, c: int, spacing=(1.0, 1.0, 1.0)) -> float:
    """Length of voxel edges surrounded by all of labels a, b, c, per unit volume (1/length^2)."""
    h = np.asarray(spacing, dtype=np.float64)
    length = 0.0
    for ax in range(3):
        p, q = [x for x in range(3) if x != ax]
        # the four voxels around edges parallel to ax: offsets (0/1 along p) x (0/1 along q)
        blocks = []
        for dp in (0, 1):
            for dq in (0, 1):
                sl = [slice(None)] * 3
                sl[p] = slice(dp, labels.shape[p] - 1 + dp)
                sl[q] = slice(dq, labels.shape[q] - 1 + dq)
                blocks.append(labels[tuple(sl)])
        has = [np.zeros(blocks[0].shape, dtype=bool) for _ in range(3)]
        for blk in blocks:
            for k, v in enumerate((a, b, c)):
                has[k] |= blk == v
        length += np.count_nonzero(has[0] & has[1] & has[2]) * h[ax]
    return length / (labels.size * float(np.prod(h)))


def two_point_correlation(mask: np.ndarray, spacing=(1.0, 1.0, 1.0), max_lag: int | None = None, bins=None):
    """Radially averaged two-point probability S2(r) of a boolean phase indicator.

    Returns (r, S2) with r in length units (bin centres)."""
    mask = np.asarray(mask, dtype=np.float64)
    shape = mask.shape
    fshape = tuple(2 * s for s in shape)  # zero padding: no wrap-around
    f = np.fft.rfftn(mask, fshape, axes=(0, 1, 2))
    corr = np.fft.irfftn(f * np.conj(f), fshape, axes=(0, 1, 2))
    ones = np.fft.rfftn(np.ones(shape), fshape, axes=(0, 1, 2))
    pairs = np.fft.irfftn(ones * np.conj(ones), fshape, axes=(0, 1, 2))
    del f, ones
    max_lag = max_lag or min(shape) // 2
    h = np.asarray(spacing, dtype=np.float64)
    lags = [np.fft.fftfreq(fs, 1.0 / fs) for fs in fshape]
    r = np.sqrt(sum(((lags[a] * h[a]) ** 2).reshape([-1 if k == a else 1 for k in range(3)]) for a in range(3)))
    keep = np.ones(fshape, dtype=bool)
    for a in range(3):
        keep &= (np.abs(lags[a]) <= max_lag).reshape([-1 if k == a else 1 for k in range(3)])
    s2 = corr[keep] / np.maximum(pairs[keep], 1.0)
    rr = r[keep]
    if bins is None:
        bins = np.arange(0.0, max_lag * h.min() + h.min(), h.min()) - 0.5 * h.min()
        bins[0] = 0.0
    which = np.digitize(rr, bins) - 1
    nb = len(bins) - 1
    ok = (which >= 0) & (which < nb)
    sums = np.bincount(which[ok], weights=s2[ok], minlength=nb)
    cnt = np.bincount(which[ok], minlength=nb)
    centres = np.concatenate([[0.0], 0.5 * (bins[1:-1] + bins[2:])]) if bins[0] == 0.0 else 0.5 * (bins[:-1] + bins[1:])
    # the r = 0 bin holds only the zero lag
    zero = rr == 0
    sums[0], cnt[0] = s2[zero].sum(), zero.sum()
    with np.errstate(invalid="ignore"):
        return centres[:nb], sums / np.maximum(cnt, 1)


def chord_lengths(mask: np.ndarray, axis: int, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Lengths (length units) of the runs of ``mask`` along ``axis`` that do not touch the
    domain boundary (those are cut and would bias the distribution)."""
    m = np.moveaxis(np.asarray(mask, dtype=bool), axis, -1)
    n = m.shape[-1]
    m2 = m.reshape(-1, n).astype(np.int8)
    padded = np.zeros((m2.shape[0], n + 2), dtype=np.int8)
    padded[:, 1:-1] = m2
    d = np.diff(padded, axis=1)
    starts = np.nonzero(d == 1)
    ends = np.nonzero(d == -1)
    # np.nonzero is row-major, so starts and ends pair up in order
    s_col, e_col = starts[1], ends[1]
    interior = (s_col > 0) & (e_col < n)
    return (e_col - s_col)[interior] * float(spacing[axis])


def chord_length_distribution(mask, spacing=(1.0, 1.0, 1.0), bins: int = 32):
    """Histogram (all three axes pooled) and per-axis mean chord length."""
    per_axis = [chord_lengths(mask, a, spacing) for a in range(3)]
    pooled = np.concatenate(per_axis)
    means = np.array([c.mean() if len(c) else 0.0 for c in per_axis])
    if len(pooled) == 0:
        return np.zeros(bins + 1), np.zeros(bins), means
    hist, edges = np.histogram(pooled, bins=bins, range=(0.0, float(pooled.max())), density=True)
    return edges, hist, means
