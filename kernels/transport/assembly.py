"""Compiled row kernels of the compact finite-volume operator (unknowns only on the
percolating voxels), used by :func:`ionscale.kernels.transport.tortuosity.assemble_compact`.

One chunk of whole planes is processed at a time from two ghosted blocks (one voxel layer
around the chunk): ``g`` the voxel diffusivity (0 outside the percolating cluster) and
``gi`` the global unknown number (-1 where there is no unknown). A face between two
unknowns p, q has conductance g_pq = 2 D_p D_q / (D_p + D_q) * A_face / h; a Dirichlet
face of the first/last layer along ``axis`` has 2 D_p A_face / h. Rows are written in C
order of the chunk: diagonal first, then the face couplings in the order
(-axis0, +axis0, -axis1, +axis1, -axis2, +axis2) - the same layout as the numpy path.

A single compiled pass per chunk replaces ~40 full-chunk numpy temporaries (measured:
assembly of 4 M unknowns 4.1 s -> see docs/bench_transport.md).
"""
from __future__ import annotations

import numba
import numpy as np

_OFFSETS = np.array([[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]], dtype=np.int64)


@numba.njit(cache=True)
def chunk_row_lengths(gi, lo, hi, d_nnz, o_nnz, k0):
    """Nonzeros of each unknown of one chunk, written from index ``k0``: into ``d_nnz`` the
    columns inside [lo, hi) (the rank's diagonal block) and into ``o_nnz`` the others; with
    ``o_nnz`` None, the whole row length goes to ``d_nnz``. Returns the number of rows."""
    n0, n1, n2 = gi.shape[0] - 2, gi.shape[1] - 2, gi.shape[2] - 2
    k = k0
    for i in range(1, n0 + 1):
        for j in range(1, n1 + 1):
            for l in range(1, n2 + 1):
                if gi[i, j, l] < 0:
                    continue
                d = 1
                o = 0
                for f in range(6):
                    c = gi[i + _OFFSETS[f, 0], j + _OFFSETS[f, 1], l + _OFFSETS[f, 2]]
                    if c >= 0:
                        if lo <= c < hi:
                            d += 1
                        else:
                            o += 1
                if o_nnz is None:
                    d_nnz[k] = d + o
                else:
                    d_nnz[k] = d
                    o_nnz[k] = o
                k += 1
    return k - k0


@numba.njit(cache=True)
def chunk_rows(g, gi, weight, axis, first_layer, last_layer, axis_offset, indptr, cols, vals, r0, bc_in, bc_out):
    """Fill the CSR rows of one chunk into CSR arrays, starting at row ``r0`` (``indptr[r0]``
    already holds the row's start), and the chunk's boundary conductances into ``bc_in``,
    ``bc_out`` from index 0.
    ``axis_offset``: global position of the chunk's first plane along ``axis`` minus 1 (ghost);
    ``first_layer``/``last_layer``: global positions of the Dirichlet layers. Returns the
    number of rows written."""
    n0, n1, n2 = g.shape[0] - 2, g.shape[1] - 2, g.shape[2] - 2
    r = r0
    nz = indptr[r0]
    for i in range(1, n0 + 1):
        for j in range(1, n1 + 1):
            for l in range(1, n2 + 1):
                row = gi[i, j, l]
                if row < 0:
                    continue
                dp = g[i, j, l]
                diag_pos = nz
                cols[nz] = row
                nz += 1
                diag = 0.0
                for f in range(6):
                    a = f // 2
                    ii = i + _OFFSETS[f, 0]
                    jj = j + _OFFSETS[f, 1]
                    ll = l + _OFFSETS[f, 2]
                    c = gi[ii, jj, ll]
                    if c < 0:
                        continue
                    dq = g[ii, jj, ll]
                    cond = 2.0 * dp * dq / (dp + dq) * weight[a]
                    cols[nz] = c
                    vals[nz] = -cond
                    nz += 1
                    diag += cond
                pos = (i, j, l)[axis] + axis_offset
                bi = 2.0 * dp * weight[axis] if pos == first_layer else 0.0
                bo = 2.0 * dp * weight[axis] if pos == last_layer else 0.0
                bc_in[r - r0] = bi
                bc_out[r - r0] = bo
                vals[diag_pos] = diag + bi + bo
                r += 1
                indptr[r] = nz
    return r - r0
