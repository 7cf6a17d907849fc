"""O(N) cell-list neighbour search with periodic boundaries (numba).

For a cell ``h`` (rows are lattice vectors) and cutoff ``r_c`` every pair (i, j, S)
with ``|x_j + S h - x_i| < r_c`` is returned, where ``S`` is the integer image shift
(both directions, i.e. a full list; the self pair i == j is returned only for S != 0).

Binning: along lattice direction d the perpendicular height of the cell is
``H_d = V / |a_e x a_f|``; the fractional axis is cut into ``n_d = max(1, floor(H_d/r_c))``
bins, so a bin is at least ``r_c`` thick and all neighbours of an atom lie within
``r_d = ceil(r_c n_d / H_d)`` bins (r_d = 1 unless the cell is thinner than r_c, in
which case several periodic images of the same bin are visited with distinct shifts).
Each atom visits a fixed number of bins holding O(1) atoms: the cost is O(N).
Non-periodic directions use the bounding box of the atoms and no wrapping.
"""
from __future__ import annotations

import numba
import numpy as np


def _cell_geometry(cell, pbc, frac):
    """Bins per direction, search reach (bins) and origin/extent in fractional units."""
    cell = np.asarray(cell, float)
    vol = abs(np.linalg.det(cell))
    heights = np.empty(3)
    for d in range(3):
        e, f = cell[(d + 1) % 3], cell[(d + 2) % 3]
        heights[d] = vol / np.linalg.norm(np.cross(e, f))
    lo = np.zeros(3)
    extent = np.ones(3)
    for d in range(3):
        if not pbc[d]:
            lo[d] = frac[:, d].min() if len(frac) else 0.0
            extent[d] = max(frac[:, d].max() - lo[d], 1e-12) * (1 + 1e-9) if len(frac) else 1.0
    return heights, lo, extent


@numba.njit(cache=True)
def _bin_and_search(frac, cart, cell, pbc, nbins, reach, lo, extent, cutoff, cap):
    n = frac.shape[0]
    ncell = nbins[0] * nbins[1] * nbins[2]
    bin3 = np.empty((n, 3), np.int64)
    flat = np.empty(n, np.int64)
    for a in range(n):
        for d in range(3):
            b = int(np.floor((frac[a, d] - lo[d]) / extent[d] * nbins[d]))
            if b < 0:
                b = 0
            if b >= nbins[d]:
                b = nbins[d] - 1
            bin3[a, d] = b
        flat[a] = (bin3[a, 0] * nbins[1] + bin3[a, 1]) * nbins[2] + bin3[a, 2]
    # counting sort of atoms by bin
    start = np.zeros(ncell + 1, np.int64)
    for a in range(n):
        start[flat[a] + 1] += 1
    for c in range(ncell):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    order = np.empty(n, np.int64)
    for a in range(n):
        order[fill[flat[a]]] = a
        fill[flat[a]] += 1

    ii = np.empty(cap, np.int64)
    jj = np.empty(cap, np.int64)
    ss = np.empty((cap, 3), np.int64)
    npair = 0
    rc2 = cutoff * cutoff
    for a in range(n):
        for o0 in range(-reach[0], reach[0] + 1):
            t0 = bin3[a, 0] + o0
            if pbc[0]:
                s0 = t0 // nbins[0]
                t0 -= s0 * nbins[0]
            else:
                s0 = 0
                if t0 < 0 or t0 >= nbins[0]:
                    continue
            for o1 in range(-reach[1], reach[1] + 1):
                t1 = bin3[a, 1] + o1
                if pbc[1]:
                    s1 = t1 // nbins[1]
                    t1 -= s1 * nbins[1]
                else:
                    s1 = 0
                    if t1 < 0 or t1 >= nbins[1]:
                        continue
                for o2 in range(-reach[2], reach[2] + 1):
                    t2 = bin3[a, 2] + o2
                    if pbc[2]:
                        s2 = t2 // nbins[2]
                        t2 -= s2 * nbins[2]
                    else:
                        s2 = 0
                        if t2 < 0 or t2 >= nbins[2]:
                            continue
                    c = (t0 * nbins[1] + t1) * nbins[2] + t2
                    sx = s0 * cell[0, 0] + s1 * cell[1, 0] + s2 * cell[2, 0]
                    sy = s0 * cell[0, 1] + s1 * cell[1, 1] + s2 * cell[2, 1]
                    sz = s0 * cell[0, 2] + s1 * cell[1, 2] + s2 * cell[2, 2]
                    for q in range(start[c], start[c + 1]):
                        b = order[q]
                        if b == a and s0 == 0 and s1 == 0 and s2 == 0:
                            continue
                        dx = cart[b, 0] + sx - cart[a, 0]
                        dy = cart[b, 1] + sy - cart[a, 1]
                        dz = cart[b, 2] + sz - cart[a, 2]
                        if dx * dx + dy * dy + dz * dz < rc2:
                            if npair >= cap:
                                return ii, jj, ss, -1
                            ii[npair] = a
                            jj[npair] = b
                            ss[npair, 0] = s0
                            ss[npair, 1] = s1
                            ss[npair, 2] = s2
                            npair += 1
    return ii, jj, ss, npair


def neighbor_list(positions, cell, pbc, cutoff: float):
    """Full neighbour list within ``cutoff``.

    Returns ``(i, j, shifts, wrapped)``: int64 arrays of centre and neighbour indices,
    integer image shifts (n_pairs, 3) such that the pair vector is
    ``wrapped[j] + shifts @ cell - wrapped[i]``, and the positions wrapped into the
    cell along periodic directions (``wrapped = positions + k @ cell`` with integer ``k``,
    so ``positions`` themselves can be used with ``shifts + k[j] - k[i]``; see
    :func:`neighbor_list_unwrapped`).
    """
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, bool), (3,)).copy()
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3).copy()
    if cutoff <= 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    if abs(np.linalg.det(cell)) < 1e-12:
        if pbc.any():
            raise ValueError("a periodic structure needs a cell of non-zero volume")
        span = np.ptp(pos, axis=0) if len(pos) else np.zeros(3)
        cell = np.diag(np.maximum(span, 1.0) + cutoff)
    frac = np.linalg.solve(cell.T, pos.T).T
    k = np.zeros_like(frac)
    k[:, pbc] = np.floor(frac[:, pbc])
    frac = frac - k
    wrapped = pos - k @ cell
    heights, lo, extent = _cell_geometry(cell, pbc, frac)
    nbins = np.maximum(1, np.floor(heights * extent / cutoff)).astype(np.int64)
    # bins may be over-many for huge cells: cap total bins to ~2 N so memory stays O(N)
    while nbins.prod() > max(8, 2 * len(pos)) and nbins.max() > 1:
        nbins[np.argmax(nbins)] //= 2
    bin_width = heights * extent / nbins
    reach = np.ceil(cutoff / bin_width - 1e-12).astype(np.int64)
    reach = np.maximum(reach, 1)
    reach[~pbc] = 1  # open direction: bins are >= cutoff thick or there is a single bin
    vol = abs(np.linalg.det(cell)) * np.prod(extent)
    density = len(pos) / max(vol, 1e-12)
    per_atom = min(4.2 * cutoff ** 3 * density * 1.3 + 16, len(pos) * np.prod(2 * reach + 1))
    cap = int(len(pos) * per_atom) + 64
    while True:
        ii, jj, ss, npair = _bin_and_search(frac, wrapped, cell, pbc, nbins, reach, lo, extent, float(cutoff), cap)
        if npair >= 0:
            return ii[:npair].copy(), jj[:npair].copy(), ss[:npair].copy(), wrapped
        cap *= 2


def neighbor_list_unwrapped(positions, cell, pbc, cutoff: float):
    """Like :func:`neighbor_list` but shifts refer to the given (unwrapped) positions:
    pair vector = ``positions[j] + shifts @ cell - positions[i]``."""
    pos = np.asarray(positions, dtype=np.float64)
    ii, jj, ss, wrapped = neighbor_list(pos, cell, pbc, cutoff)
    cellm = np.asarray(cell, float).reshape(3, 3)
    if abs(np.linalg.det(cellm)) < 1e-12:
        return ii, jj, ss
    k = np.rint(np.linalg.solve(cellm.T, (pos - wrapped).T).T).astype(np.int64)
    return ii, jj, ss - k[jj] + k[ii]
