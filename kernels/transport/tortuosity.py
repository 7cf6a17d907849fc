"""Steady diffusion through a voxel image -> tortuosity factor.

Cell-centred finite volumes on a PETSc DMDA (distributed over the ranks of
``comm``). Concentration 1 and 0 are imposed *at the faces* of the first and last
voxel layer normal to the solve direction (half-cell conductance 2 D/h), all
other faces are no-flux, so a straight channel gives tau = 1 exactly. Face
conductances between voxels are harmonic means of the voxel diffusivities,
g_pq = 2 D_p D_q / (D_p + D_q) * A_face / h.

The matrix is assembled in chunks of voxel planes with numpy (no per-voxel Python
loops) directly in CSR form, so no full-grid (n, 7) temporaries exist; voxels
outside the percolating cluster keep an identity row, so they neither make the
operator singular nor carry flux.

tau follows TauFactor's (multi-phase) definition D_eff = mean(D) / tau, i.e. for
one phase of diffusivity 1, D_eff = eps / tau with eps the phase volume fraction.

Solvers: by default :mod:`.voxel_mg` (matrix-free aggregation multigrid on the voxel grid,
no assembled matrix); ``solver='hypre'`` assembles the compact operator described above for
hypre's CG + BoomerAMG, ``'gamg'``/``'mg'`` or any PETSc option for PETSc's KSP.

Stopping rule: the Krylov solve stops at ``rtol`` (relative residual); then the
inlet and outlet fluxes must agree to ``flux_tol`` (|J_in - J_out| / J); if they do
not, the solve is continued from the current iterate with a 100x tighter rtol
(:mod:`.voxel_mg` instead checks the fluxes at every iteration once rtol holds).
Both numbers are reported.
"""
from __future__ import annotations

import logging
import time
import dataclasses
from dataclasses import dataclass

import numpy as np

from ionscale.errors import SolverDivergedError
from ionscale.petsc_options import scoped_options

from .assembly import chunk_row_lengths, chunk_rows
from .percolation import percolating_mask

log = logging.getLogger("ionscale")

AXES = {"x": 0, "y": 1, "z": 2}

#: default PETSc solver of the problems :mod:`.voxel_mg` does not cover (periodic cell problems,
#: electrode tortuosity) and of the Dirichlet solve whenever PETSc options are given, chosen by
#: measurement (docs/bench_transport.md). "mg" is geometric multigrid on the DMDA hierarchy
#: with Galerkin coarse operators.
DEFAULT_SOLVER = {"ksp_type": "cg", "pc_type": "hypre"}

#: solvers of the Dirichlet-face solve: "voxel_mg" (default, measured fastest and leanest:
#: docs/bench_transport.md) is ionscale's matrix-free aggregation multigrid (:mod:`.voxel_mg`);
#: "hypre" drives hypre's CG + BoomerAMG directly (:mod:`.hypre_ij`); "gamg" and "mg" run
#: through PETSc's KSP, as does any solver once PETSc options are given.
SOLVERS = ("voxel_mg", "hypre", "gamg", "mg")
DEFAULT_DIRICHLET_SOLVER = "voxel_mg"

#: voxels per assembly chunk: bounds the numpy temporaries (~150 bytes per voxel of a chunk);
#: small chunks also keep the allocator from holding on to freed temporaries (measured:
#: 2^20 -> +175 B/voxel RSS after assembly, 2^16 -> +60 B/voxel)
CHUNK_VOXELS = 1 << 16


@dataclass
class DirectionResult:
    direction: str
    tau: float
    deff: float                 # effective diffusivity, units of the input diffusivity
    mean_diffusivity: float     # mean of D over all voxels (= porosity for one phase of D = 1)
    percolating_fraction: float  # fraction of all voxels in the spanning cluster
    flux_in: float
    flux_out: float
    flux_mismatch: float        # |J_in - J_out| / mean(J)
    iterations: int
    residual_norm: float
    solve_time_s: float
    converged_reason: str = ""
    field: np.ndarray | None = dataclasses.field(default=None, repr=False)  # concentration (rank 0, full grid)
    relative_residual: float = 0.0  # ||b - A x|| / ||b|| at the end
    profile: np.ndarray | None = dataclasses.field(default=None, repr=False)  # tau(x) along the solve axis
    setup_time_s: float = 0.0       # assembly + preconditioner setup
    timings: dict = dataclasses.field(default_factory=dict)  # seconds per phase (percolation, assembly, pc_setup, solve)


class VoxelDiffusivity:
    """Read-only view of voxel diffusivities D = lut[labels] without a float64 full-grid copy.

    Any object with ``shape`` and ``block(slices) -> float64 array`` may be passed
    to the assembly; plain arrays are wrapped by :func:`as_diffusivity`."""

    def __init__(self, labels: np.ndarray, lut: np.ndarray):
        self.labels = labels
        self.lut = np.asarray(lut, dtype=np.float64)
        self.shape = labels.shape

    def block(self, sl) -> np.ndarray:
        return self.lut[self.labels[sl]]

    def positive(self) -> np.ndarray:
        return (self.lut > 0)[self.labels]

    def labels_lut(self):
        """(labels, table of diffusivities), D = lut[labels], with at most ``MAX_LABELS`` table
        entries: large label values are renumbered by distinct diffusivity (once, cached);
        ValueError if there are more distinct values than that."""
        if len(self.lut) <= MAX_LABELS:
            return self.labels, self.lut
        if not hasattr(self, "_compact"):
            values, inverse = np.unique(self.lut, return_inverse=True)
            if len(values) > MAX_LABELS:
                raise ValueError(f"{len(values)} distinct diffusivities: label-encoded solvers take at most "
                                 f"{MAX_LABELS}")
            self._compact = (inverse.astype(np.uint8)[self.labels], values)
        return self._compact

    def mean(self) -> float:
        counts = np.bincount(self.labels.ravel(), minlength=len(self.lut))
        return float(np.dot(counts[:len(self.lut)], self.lut) / self.labels.size)


class _ArrayDiffusivity:
    def __init__(self, D: np.ndarray):
        self.D = D
        self.shape = D.shape

    def block(self, sl) -> np.ndarray:
        return np.asarray(self.D[sl], dtype=np.float64)

    def positive(self) -> np.ndarray:
        return self.D > 0

    def mean(self) -> float:
        return float(self.D.mean(dtype=np.float64))

    def labels_lut(self):
        """The diffusivities as (labels, table of distinct values), for solvers that encode the
        operator by labels (computed once); raises ValueError beyond ``MAX_LABELS`` values."""
        if not hasattr(self, "_labels_lut"):
            if self.D.dtype == np.bool_:
                self._labels_lut = (self.D.view(np.uint8), np.array([0.0, 1.0]))
            else:
                lut, labels = np.unique(self.D, return_inverse=True)
                if len(lut) > MAX_LABELS:
                    self._labels_lut = ValueError(f"{len(lut)} distinct voxel diffusivities: label-encoded "
                                                  f"solvers take at most {MAX_LABELS}")
                else:
                    self._labels_lut = (labels.reshape(self.D.shape).astype(np.uint8), lut.astype(np.float64))
        if isinstance(self._labels_lut, Exception):
            raise self._labels_lut
        return self._labels_lut


#: most distinct diffusivities :mod:`.voxel_mg` encodes by labels (its conductance tables are
#: 3 x (n + 1)^2); images with more (e.g. continuous diffusivity maps) are solved with hypre
MAX_LABELS = 256


def as_diffusivity(D):
    if isinstance(D, (VoxelDiffusivity, _ArrayDiffusivity)):
        return D
    D = np.asarray(D)
    if D.ndim != 3:
        raise ValueError(f"expected a 3D array, got shape {D.shape}")
    if np.any(D < 0):
        raise ValueError("voxel diffusivities must be >= 0")
    return _ArrayDiffusivity(D)


def create_dmda(shape, comm, periodic=False, slabs=False):
    """DMDA whose x is numpy axis 2, so a local box flattened in C order is PETSc's
    local ordering. ``slabs``: split only numpy axis 0 (whole planes per rank)."""
    from petsc4py import PETSc

    n0, n1, n2 = (int(s) for s in shape)
    bt = PETSc.DM.BoundaryType.PERIODIC if periodic else PETSc.DM.BoundaryType.NONE
    kw = {"proc_sizes": (1, 1, comm.size)} if slabs else {}
    return PETSc.DMDA().create(dim=3, sizes=(n2, n1, n0), dof=1, stencil_width=1, boundary_type=(bt, bt, bt),
                               stencil_type=PETSc.DMDA.StencilType.STAR, comm=comm, **kw)


def local_box(da):
    (xs, xe), (ys, ye), (zs, ze) = da.getRanges()
    return (zs, ys, xs), (ze - zs, ye - ys, xe - xs)


def face_weights(spacing):
    """Face area / centre distance for faces normal to each axis."""
    h = np.asarray(spacing, dtype=np.float64)
    return np.array([h[1] * h[2] / h[0], h[0] * h[2] / h[1], h[0] * h[1] / h[2]])


def ghosted_block(Dv, spanning, starts, box, periodic=False):
    """D (zeroed outside ``spanning``) on a box plus one layer each side.
    Outside the domain: zero (no flux) or, if periodic, the wrapped voxels."""
    shape = Dv.shape
    if periodic:
        idx = [np.arange(starts[a] - 1, starts[a] + box[a] + 1) % shape[a] for a in range(3)]
        sl = np.ix_(*idx)
        g = Dv.block(sl)
        if spanning is not None:
            g = g * spanning[sl]
        return g
    g = np.zeros(tuple(b + 2 for b in box), dtype=np.float64)
    src, dst = [], []
    for a in range(3):
        lo = max(starts[a] - 1, 0)
        hi = min(starts[a] + box[a] + 1, shape[a])
        src.append(slice(lo, hi))
        dst.append(slice(lo - (starts[a] - 1), hi - (starts[a] - 1)))
    src, dst = tuple(src), tuple(dst)
    g[dst] = Dv.block(src)
    if spanning is not None:
        g[dst] *= spanning[src]
    return g


def _harmonic(a, b):
    prod = a * b
    return np.divide(2.0 * prod, a + b, out=np.zeros_like(prod), where=prod > 0)


def _faces(g, weight):
    """The six face neighbours of a ghosted block's interior: (axis, sign, neighbour slice, conductance)."""
    Dp = g[1:-1, 1:-1, 1:-1]
    for a in range(3):
        for sign in (-1, 1):
            sl = [slice(1, -1)] * 3
            sl[a] = slice(1 + sign, g.shape[a] - 1 + sign)
            sl = tuple(sl)
            yield a, sign, sl, _harmonic(Dp, g[sl]) * weight[a]


def _pack_rows(diag, diag_cols, conds, neighbour_cols, col_dtype):
    """CSR rows: the diagonal first, then the non-zero face couplings in face order."""
    n = diag.size
    keep = np.stack([c > 0 for c in conds], axis=1)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1) + 1, out=indptr[1:])
    cols = np.empty(int(indptr[-1]), dtype=col_dtype)
    vals = np.empty(int(indptr[-1]))
    pos = indptr[:-1].copy()
    cols[pos] = diag_cols
    vals[pos] = diag
    pos += 1
    for s, (c, nc) in enumerate(zip(conds, neighbour_cols)):
        m = keep[:, s]
        dest = pos[m]
        cols[dest] = nc[m]
        vals[dest] = -c[m]
        pos[m] += 1
    return indptr, cols, vals


def _chunks(starts, box):
    """Split the local box into slabs of whole axis-0 planes of <= CHUNK_VOXELS voxels."""
    plane = box[1] * box[2]
    step = max(1, CHUNK_VOXELS // max(plane, 1))
    for i in range(0, box[0], step):
        n = min(step, box[0] - i)
        yield (starts[0] + i, starts[1], starts[2]), (n, box[1], box[2]), i


def _chunk_counts(Dv, spanning, cs, cb, starts, box, periodic):
    """Per-row nonzeros of one chunk inside / outside the local box (preallocation pass)."""
    g = ghosted_block(Dv, spanning, cs, cb, periodic) > 0
    Dp = g[1:-1, 1:-1, 1:-1]
    d_cnt = np.ones(cb, dtype=np.int32)  # the diagonal
    o_cnt = np.zeros(cb, dtype=np.int32)
    for a in range(3):
        pos = np.arange(cs[a], cs[a] + cb[a]).reshape([-1 if k == a else 1 for k in range(3)])
        for sign in (-1, 1):
            sl = [slice(1, -1)] * 3
            sl[a] = slice(1 + sign, g.shape[a] - 1 + sign)
            link = Dp & g[tuple(sl)]
            nb = (pos + sign) % Dv.shape[a] if periodic else pos + sign
            inside = (nb >= starts[a]) & (nb < starts[a] + box[a])
            d_cnt += link & inside
            o_cnt += link & ~inside
    return d_cnt.ravel(), o_cnt.ravel()


def _chunk_rows(Dv, spanning, cs, cb, starts, box, shape, weight, axis, periodic, faces=(True, True)):
    """CSR rows of one chunk in natural numbering: (indptr, cols, vals, bc_in, bc_out)."""
    g = ghosted_block(Dv, spanning, cs, cb, periodic)
    Dp = g[1:-1, 1:-1, 1:-1]
    it = np.int64
    ii = (np.arange(cs[0], cs[0] + cb[0], dtype=it)[:, None, None],
          np.arange(cs[1], cs[1] + cb[1], dtype=it)[None, :, None],
          np.arange(cs[2], cs[2] + cb[2], dtype=it)[None, None, :])
    conds, nb_cols = [], []
    diag = np.zeros(cb)
    for a, sign, _, cond in _faces(g, weight):
        diag += cond
        conds.append(cond.ravel())
        nb = list(ii)
        nb[a] = (ii[a] + sign) % shape[a] if periodic else ii[a] + sign
        nb_cols.append(np.broadcast_to((nb[0] * shape[1] + nb[1]) * shape[2] + nb[2], cb).ravel())
    bi = bo = None
    if axis is not None:
        bi = np.where(np.broadcast_to(ii[axis] == 0, cb), 2.0 * Dp * weight[axis], 0.0)
        bo = np.where(np.broadcast_to(ii[axis] == shape[axis] - 1, cb), 2.0 * Dp * weight[axis], 0.0)
        bi *= faces[0]
        bo *= faces[1]
        diag += bi + bo
    diag[diag == 0.0] = 1.0  # decoupled voxel: identity row, zero right-hand side
    own = ((ii[0] * shape[1] + ii[1]) * shape[2] + ii[2]).ravel()
    indptr, cols, vals = _pack_rows(diag.ravel(), own, conds, nb_cols, it)
    return indptr, cols, vals, bi, bo


def assemble(D, axis, da, spacing=(1.0, 1.0, 1.0), c_in=1.0, c_out=0.0, spanning=None, periodic=False,
             faces=(True, True)):
    """Operator and right-hand side of the diffusion problem on ``da``.

    ``D``: voxel diffusivities (array or :class:`VoxelDiffusivity`, full grid, every
    rank); ``spanning``: optional mask of the voxels that take part (others get
    identity rows). Dirichlet faces normal to ``axis`` (``axis=None``: none, e.g.
    for periodic cell problems). Returns (A, b, bc_in, bc_out) where bc_* are the
    local boundary conductances used for the flux balance (None without axis);
    ``faces``: which of the (low, high) faces carry the Dirichlet condition.
    Peak numpy memory is bounded by the chunk size; the matrix is preallocated
    exactly (two passes), so PETSc holds ~12 bytes per nonzero."""
    from petsc4py import PETSc

    Dv = as_diffusivity(D)
    shape = Dv.shape
    starts, box = local_box(da)
    nloc = int(np.prod(box))
    plane = box[1] * box[2]
    weight = face_weights(spacing)
    N = int(np.prod(shape))
    comm = da.getComm()
    ao = da.getAO()
    # pass 1: exact per-row counts of the diagonal / off-diagonal blocks
    d_nnz = np.empty(nloc, dtype=PETSc.IntType)
    o_nnz = np.empty(nloc, dtype=PETSc.IntType)
    for cs, cb, off in _chunks(starts, box):
        dc, oc = _chunk_counts(Dv, spanning, cs, cb, starts, box, periodic)
        rows = slice(off * plane, off * plane + len(dc))
        d_nnz[rows] = dc
        o_nnz[rows] = oc
    A = PETSc.Mat().createAIJ(size=((nloc, N), (nloc, N)), nnz=(d_nnz, o_nnz), comm=comm)
    del d_nnz, o_nnz
    row0 = A.getOwnershipRange()[0]
    bc_in = np.zeros(box) if axis is not None else None
    bc_out = np.zeros(box) if axis is not None else None
    rhs = np.zeros(nloc)
    for cs, cb, off in _chunks(starts, box):
        indptr, cols, vals, bi, bo = _chunk_rows(Dv, spanning, cs, cb, starts, box, shape, weight, axis, periodic, faces)
        n = len(indptr) - 1
        if axis is not None:
            bc_in[off:off + cb[0]] = bi
            bc_out[off:off + cb[0]] = bo
            rhs[off * plane: off * plane + n] = (bi * c_in + bo * c_out).ravel()
        petsc_cols = np.asarray(ao.app2petsc(cols.astype(PETSc.IntType)), dtype=PETSc.IntType)
        rowmap = np.arange(row0 + off * plane, row0 + off * plane + n, dtype=PETSc.IntType)
        A.setValuesIJV(indptr.astype(PETSc.IntType), petsc_cols, vals, rowmap=rowmap)
    A.assemble()
    A.setOption(PETSc.Mat.Option.SYMMETRIC, True)
    A.setOption(PETSc.Mat.Option.SPD, True)
    b = A.createVecLeft()
    b.setArray(rhs)
    return A, b, bc_in, bc_out


def compact_numbering(active: np.ndarray, da):
    """Global PETSc index of every ``active`` voxel (-1 elsewhere), numbered rank box by rank
    box (the DMDA's partition) in C order; full grid, identical on all ranks. Returns
    (index array, number of active voxels owned by this rank, total, first index of this rank)."""
    from petsc4py import PETSc

    lx, ly, lz = (np.asarray(r) for r in da.getOwnershipRanges())  # PETSc x = numpy axis 2
    e0, e1, e2 = (np.concatenate([[0], np.cumsum(r)]) for r in (lz, ly, lx))
    gidx = np.full(active.shape, -1, dtype=PETSc.IntType)
    offset, rank, mine, first = 0, da.getComm().getRank(), 0, 0
    r = 0
    for pz in range(len(lz)):  # loops over ranks, not voxels
        for py in range(len(ly)):
            for px in range(len(lx)):
                sl = (slice(e0[pz], e0[pz + 1]), slice(e1[py], e1[py + 1]), slice(e2[px], e2[px + 1]))
                blk = active[sl]
                n = int(np.count_nonzero(blk))
                sub = gidx[sl]
                sub[blk] = np.arange(offset, offset + n, dtype=PETSc.IntType)
                if r == rank:
                    mine, first = n, offset
                offset += n
                r += 1
    return gidx, mine, offset, first


def assemble_compact(D, axis, da, spanning, spacing=(1.0, 1.0, 1.0), c_in=1.0, c_out=0.0, target="petsc"):
    """Like :func:`assemble` but with unknowns only on the ``spanning`` voxels (no identity
    rows): for a 35 % porous image this removes ~2/3 of the rows, the vector entries and the
    AMG work. Rows come from the compiled kernels of :mod:`.assembly`, one chunk of planes at
    a time (two passes: row lengths, then values), handed to PETSc as one CSR block. Returns
    (A, b, bc_in, bc_out, local_active) with 1D bc arrays over the local unknowns and
    ``local_active`` the mask of the unknowns in the local DMDA box. ``target="hypre"``: A is
    an assembled :class:`.hypre_ij.IJMatrix` (rows written straight into hypre, no PETSc copy)
    and b the local right-hand side as a numpy array."""
    from petsc4py import PETSc

    Dv = as_diffusivity(D)
    shape = Dv.shape
    starts, box = local_box(da)
    weight = face_weights(spacing)
    gidx, nloc, ntot, lo = compact_numbering(spanning, da)
    comm = da.getComm()
    hi = lo + nloc
    box_sl = tuple(slice(starts[a], starts[a] + box[a]) for a in range(3))
    local_active = spanning[box_sl]

    def ghosted_index(cs, cb):
        gi = np.full(tuple(b + 2 for b in cb), -1, dtype=PETSc.IntType)
        src, dst = [], []
        for a in range(3):
            l0 = max(cs[a] - 1, 0)
            h0 = min(cs[a] + cb[a] + 1, shape[a])
            src.append(slice(l0, h0))
            dst.append(slice(l0 - (cs[a] - 1), h0 - (cs[a] - 1)))
        gi[tuple(dst)] = gidx[tuple(src)]
        return gi

    bc_in = np.zeros(nloc)
    bc_out = np.zeros(nloc)

    def fill(indptr, cols, vals, cs, cb, r0, k):
        """rows of one chunk from CSR row r0; its boundary conductances go to bc_*[k:]"""
        return chunk_rows(ghosted_block(Dv, spanning, cs, cb, False), ghosted_index(cs, cb), weight, axis, 0,
                          shape[axis] - 1, cs[axis] - 1, indptr, cols, vals, r0, bc_in[k:], bc_out[k:])

    if comm.getSize() == 1 and target == "petsc":
        # one rank: PETSc adopts the CSR arrays without copying them (no second copy, no per-row calls)
        indptr = np.zeros(nloc + 1, dtype=PETSc.IntType)
        k = 0
        for cs, cb, _ in _chunks(starts, box):
            k += chunk_row_lengths(ghosted_index(cs, cb), lo, hi, indptr[1:], None, k)
        np.cumsum(indptr, out=indptr)
        cols = np.empty(int(indptr[-1]), dtype=PETSc.IntType)
        vals = np.empty(int(indptr[-1]))
        k = 0
        for cs, cb, _ in _chunks(starts, box):
            k += fill(indptr, cols, vals, cs, cb, k, k)
        A = PETSc.Mat().createAIJWithArrays(size=((nloc, ntot), (nloc, ntot)), csr=(indptr, cols, vals), comm=comm)
    else:
        # several ranks: exact preallocation of the diagonal / off-diagonal blocks, then one chunk of
        # rows at a time through reused buffers (PETSc splits the rows into its two blocks)
        d_nnz = np.empty(nloc, dtype=PETSc.IntType)
        o_nnz = np.empty(nloc, dtype=PETSc.IntType)
        k = 0
        for cs, cb, _ in _chunks(starts, box):
            k += chunk_row_lengths(ghosted_index(cs, cb), lo, hi, d_nnz, o_nnz, k)
        if target == "hypre":
            from .hypre_ij import IJMatrix
            A = IJMatrix(comm.tompi4py(), lo, hi, d_nnz, o_nnz)
        else:
            A = PETSc.Mat().createAIJ(size=((nloc, ntot), (nloc, ntot)), nnz=(d_nnz, o_nnz), comm=comm)
        del d_nnz, o_nnz
        rows = max(1, min(nloc, CHUNK_VOXELS + box[1] * box[2]))
        indptr = np.zeros(rows + 1, dtype=PETSc.IntType)
        cols = np.empty(7 * rows, dtype=PETSc.IntType)
        vals = np.empty(7 * rows)
        k = 0
        for cs, cb, _ in _chunks(starts, box):
            n = fill(indptr, cols, vals, cs, cb, 0, k)
            if n and target == "hypre":
                A.set_rows(lo + k, indptr[:n + 1], cols[:indptr[n]], vals[:indptr[n]])
            elif n:
                A.setValuesIJV(indptr[:n + 1], cols[:indptr[n]], vals[:indptr[n]],
                               rowmap=np.arange(lo + k, lo + k + n, dtype=PETSc.IntType))
            k += n
        del indptr, cols, vals
    del gidx
    A.assemble()
    if target == "hypre":
        return A, bc_in * c_in + bc_out * c_out, bc_in, bc_out, local_active
    A.setOption(PETSc.Mat.Option.SYMMETRIC, True)
    A.setOption(PETSc.Mat.Option.SPD, True)
    b = A.createVecLeft()
    b.setArray(bc_in * c_in + bc_out * c_out)
    return A, b, bc_in, bc_out, local_active


def mg_levels(shape, coarsest=8):
    """Levels of a DMDA multigrid hierarchy: halve while every axis keeps >= ``coarsest`` cells."""
    levels, s = 1, np.array(shape)
    while np.all(s // 2 >= coarsest) and levels < 8:
        s = s // 2
        levels += 1
    return levels


def make_solver(A, da, rtol, petsc_options, prefix, max_it=10000, solver=None):
    """CG + preconditioner on ``A``'s communicator; ``solver``: 'hypre', 'gamg' or 'mg' (DMDA
    geometric multigrid with Galerkin coarse operators), default :data:`DEFAULT_SOLVER`;
    ``petsc_options`` (scoped under ``prefix``) override everything."""
    from petsc4py import PETSc

    ksp = PETSc.KSP().create(comm=A.getComm())
    ksp.setOperators(A)
    ksp.setType(DEFAULT_SOLVER["ksp_type"])
    # voxel_mg solves only the Dirichlet-face problem (solve_direction); elsewhere it means the default
    pc_type = DEFAULT_SOLVER["pc_type"] if solver in (None, "voxel_mg") else solver
    opts = dict(petsc_options or {})
    pc_type = str(opts.get("pc_type", pc_type))
    pc = ksp.getPC()
    if pc_type == "mg":
        # matrix rows are in the DMDA's global ordering, so the DMDA supplies the grid transfer
        da.setInterpolationType(PETSc.DMDA.InterpolationType.Q0)
        ksp.setDM(da)
        ksp.setDMActive(False)
        pc.setType("mg")
        opts.setdefault("pc_mg_levels", mg_levels(da.getSizes()))
        opts.setdefault("pc_mg_galerkin", "both")
    elif pc_type == "hypre":
        pc.setType("hypre")
        opts.setdefault("pc_hypre_type", "boomeramg")
        # 3D settings chosen by measurement (docs/bench_transport.md): PMIS + ext+i with one
        # level of aggressive coarsening and P_max 4 (operator complexity ~1.3). PMIS against
        # HMIS (session 3): setup 7.0 vs 10.7-12.6 s at 200^3 eps 0.5, 13-14 vs 20-22 s on the
        # real pore phase, 1-2 more CG iterations, 4-6 % less peak memory
        opts.setdefault("pc_hypre_boomeramg_coarsen_type", "PMIS")
        opts.setdefault("pc_hypre_boomeramg_interp_type", "ext+i")
        opts.setdefault("pc_hypre_boomeramg_strong_threshold", 0.25)
        opts.setdefault("pc_hypre_boomeramg_agg_nl", 1)
        opts.setdefault("pc_hypre_boomeramg_P_max", 4)
    else:
        pc.setType(pc_type)
    ksp.setTolerances(rtol=rtol, atol=0.0, max_it=max_it)
    ksp.setOptionsPrefix(prefix)
    with scoped_options(prefix, opts):
        ksp.setFromOptions()
    return ksp


def _reason_name(reason):
    from petsc4py import PETSc
    names = {v: k for k, v in PETSc.KSP.ConvergedReason.__dict__.items() if isinstance(v, int)}
    return names.get(reason, str(reason))


def solve_direction(D, axis: int, comm, *, spacing=(1.0, 1.0, 1.0), rtol=1e-8,
                    petsc_options: dict | None = None, prefix: str = "tortuosity_",
                    return_field: bool = False, max_it: int = 10000, flux_tol: float | None = None,
                    solver: str | None = None, profile: bool = False,
                    amg_statistics: bool = False) -> DirectionResult:
    """Solve one direction. ``D``: voxel diffusivity (array or :class:`VoxelDiffusivity`, full grid,
    identical on all ranks). ``flux_tol``: required inlet/outlet flux agreement (None: not enforced);
    ``solver``: 'hypre' | 'gamg' | 'mg' (see :func:`make_solver`; 'hypre' without PETSc options runs
    through :mod:`.hypre_ij`); ``profile``: also compute tau(x); ``amg_statistics``: hypre prints
    the BoomerAMG hierarchy after its setup (direct hypre path)."""
    name = "xyz"[axis]
    Dv = as_diffusivity(D)
    mean_d = Dv.mean()
    t_perc = time.perf_counter()
    spanning = percolating_mask(Dv.positive(), axis)
    frac = float(spanning.mean())
    if frac == 0.0:
        log.warning("phase does not percolate in %s: tau_%s = inf", name, name)
        return DirectionResult(name, float("inf"), 0.0, mean_d, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0.0, "not percolating")
    t_setup = time.perf_counter()
    timings = {"percolation": t_setup - t_perc}
    petsc_given = _petsc_options_given(prefix, petsc_options)
    name_ = solver or DEFAULT_DIRICHLET_SOLVER
    if name_ not in SOLVERS:
        raise ValueError(f"unknown solver {name_!r}: expected one of {', '.join(SOLVERS)}")
    # voxel_mg needs at least one plane per rank and no PETSc options (they select PETSc's KSP)
    use_voxel_mg = name_ == "voxel_mg" and not petsc_given and Dv.shape[0] >= comm.size
    if use_voxel_mg:
        try:
            Dv.labels_lut()
        except ValueError as e:  # e.g. a continuous diffusivity map
            log.info("tortuosity %s: %s; solving with hypre instead of voxel_mg", name, e)
            use_voxel_mg = False
    if name_ == "voxel_mg" and not use_voxel_mg:
        name_ = DEFAULT_SOLVER["pc_type"]
    da = create_dmda(Dv.shape, comm, slabs=use_voxel_mg)
    pc_name = str((petsc_options or {}).get("pc_type", name_))
    # hypre without PETSc options for this solver: drive hypre directly, one stored operator
    # (:mod:`.hypre_ij`); any PETSc option (deck petsc: or command line -<prefix>...) keeps PETSc's KSP
    direct = pc_name == "hypre" and not petsc_given
    local_active = None
    if use_voxel_mg:
        lin = _VoxelMGSolve(Dv, spanning, axis, spacing, da, max_it)
        in_rows, g_in, out_rows, g_out = lin.in_rows, lin.g_in, lin.out_rows, lin.g_out
        local_shape = None
        timings["assembly"] = lin.assembly_time
    else:
        if pc_name == "mg":  # geometric multigrid needs every DMDA point as an unknown
            A, b, bc_in, bc_out = assemble(Dv, axis, da, spacing, spanning=spanning)
        else:
            A, b, bc_in, bc_out, local_active = assemble_compact(Dv, axis, da, spanning, spacing,
                                                                 target="hypre" if direct else "petsc")
        # keep only the boundary rows' conductances (flux balance): the dense arrays would hold
        # 16 bytes per unknown through the AMG setup, where the memory peaks
        local_shape = bc_in.shape
        in_rows, out_rows = np.flatnonzero(bc_in.ravel()), np.flatnonzero(bc_out.ravel())
        g_in, g_out = bc_in.ravel()[in_rows], bc_out.ravel()[out_rows]
        del bc_in, bc_out
        timings["assembly"] = time.perf_counter() - t_setup
        if direct:
            lin = _HypreSolve(da.getComm().tompi4py(), A, b, rtol, max_it, amg_statistics)
        else:
            lin = _PetscSolve(A, b, make_solver(A, da, rtol, petsc_options, prefix, max_it, solver))
        del A, b
    setup_time = time.perf_counter() - t_setup
    timings["pc_setup"] = setup_time - timings["assembly"]
    h = np.asarray(spacing, dtype=np.float64)
    length = Dv.shape[axis] * h[axis]
    area = float(np.prod([Dv.shape[a] * h[a] for a in range(3) if a != axis]))
    t0 = time.perf_counter()
    its_total = 0
    cur_rtol = rtol

    def flux_balance(c):
        j_in = comm.allreduce(float(np.sum(g_in * (1.0 - c[in_rows]))))
        j_out = comm.allreduce(float(np.sum(g_out * c[out_rows])))
        return j_in, j_out

    def fluxes_agree(x):
        j_in, j_out = flux_balance(x.ravel())
        return abs(j_in - j_out) <= flux_tol * 0.5 * (j_in + j_out)

    while True:
        if use_voxel_mg and flux_tol is not None:
            # the flux test is cheap here: checked every iteration once the residual test holds
            its, ok, reason = lin.solve(cur_rtol, accept=fluxes_agree)
        else:
            its, ok, reason = lin.solve(cur_rtol)
        its_total += its
        if not ok:
            raise SolverDivergedError(f"tortuosity solve along {name} did not converge ({reason}) after "
                                      f"{its_total} iterations; try a looser rtol or another solver",
                                      reason=reason, iterations=its_total)
        c = lin.values()
        j_in, j_out = flux_balance(c)
        j = 0.5 * (j_in + j_out)
        mismatch = abs(j_in - j_out) / j if j > 0 else 0.0
        if flux_tol is None or mismatch <= flux_tol or cur_rtol < 1e-13:
            break
        # stopping rule: fluxes disagree -> continue from this iterate with a tighter tolerance
        # (relative to ||b|| throughout, not to the already small restart residual)
        cur_rtol *= 1e-2
        log.debug("%s: flux mismatch %.2e > %.2e, tightening rtol to %.0e", name, mismatch, flux_tol, cur_rtol)
    solve_time = time.perf_counter() - t0
    timings["solve"] = solve_time
    log.debug("tortuosity %s: %s", name, ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    if flux_tol is not None and mismatch > flux_tol:
        log.warning("tortuosity %s: flux mismatch %.2e above flux_tol %.2e at rtol %.0e", name, mismatch,
                    flux_tol, cur_rtol)
    rel_res, resid = lin.residual()
    deff = j * length / area
    tau = mean_d / deff if deff > 0 else float("inf")
    if use_voxel_mg:
        c = lin.field()
    else:
        c = c.reshape(local_shape) if local_active is None else _expand(c, local_active)
    prof = None
    if profile:
        prof = tau_profile(c, spanning, Dv, da, axis, j, spacing, comm)
    field_full = _gather_field(c, da, Dv.shape, comm) if return_field else None
    result = DirectionResult(name, float(tau), float(deff), mean_d, frac, j_in, j_out, float(mismatch),
                             int(its_total), float(resid), solve_time, reason, field_full,
                             float(rel_res), prof, setup_time, timings)
    lin.destroy()
    da.destroy()
    return result


def _petsc_options_given(prefix, petsc_options) -> bool:
    """True if the deck or the command line sets any PETSc option under ``prefix``."""
    from petsc4py import PETSc

    return bool(petsc_options) or any(k.startswith(prefix) for k in PETSc.Options().getAll())


class _PetscSolve:
    """PETSc KSP on an assembled AIJ operator (tolerances relative to ||b||)."""

    def __init__(self, A, b, ksp):
        self.A, self.b, self.ksp = A, b, ksp
        self.x = A.createVecRight()
        ksp.setUp()
        self.bnorm = b.norm()
        self.first = True

    def solve(self, rtol):
        if not self.first:  # restart from the current iterate, target still relative to ||b||
            self.ksp.setTolerances(rtol=0.0, atol=rtol * self.bnorm)
            self.ksp.setInitialGuessNonzero(True)
        self.first = False
        self.ksp.solve(self.b, self.x)
        reason = self.ksp.getConvergedReason()
        return self.ksp.getIterationNumber(), reason >= 0, _reason_name(reason)

    def values(self):
        return self.x.getArray(readonly=True)

    def residual(self):
        r = self.b.duplicate()
        self.A.mult(self.x, r)
        r.aypx(-1.0, self.b)
        rel = r.norm() / self.bnorm if self.bnorm > 0 else 0.0
        r.destroy()
        return rel, self.ksp.getResidualNorm()

    def destroy(self):
        for obj in (self.ksp, self.A, self.b, self.x):
            obj.destroy()


class _VoxelMGSolve:
    """:class:`.voxel_mg.VoxelMG` on the slab of ``da`` (whole axis-0 planes per rank); values and
    boundary rows index the padded slab, flattened."""

    def __init__(self, Dv, spanning, axis, spacing, da, max_it):
        from .voxel_mg import VoxelMG, label_operator, solver_threads

        t0 = time.perf_counter()
        comm = da.getComm().tompi4py()
        starts, box = local_box(da)
        self.threads = solver_threads(comm)
        with self.threads:
            fine, apply, (self.in_rows, self.g_in), (self.out_rows, self.g_out) = label_operator(
                Dv, spanning, axis, spacing, comm, (starts[0], starts[0] + box[0]))
            self.b = fine.zeros()  # c = 1 at the inlet, 0 at the outlet
            self.b.ravel()[self.in_rows] = self.g_in
            self.assembly_time = time.perf_counter() - t0
            self.mg = VoxelMG(fine, apply)
        self.x = fine.zeros()
        self.max_it = max_it
        self.rel = 0.0
        self.bnorm = float(np.sqrt(comm.allreduce(float(np.dot(self.g_in, self.g_in)))))

    def solve(self, rtol, accept=None):
        with self.threads:
            its, self.rel, ok = self.mg.solve(self.b, self.x, rtol, self.max_it, accept=accept)  # continues from x
        return its, ok, "converged (relative residual)" if ok else "voxel_mg flexible CG stalled"

    def values(self):
        return self.x.ravel()

    def field(self):
        return np.ascontiguousarray(self.x[1:-1, 1:-1, 1:-1])

    def residual(self):
        return self.rel, self.rel * self.bnorm

    def destroy(self):
        self.mg = self.x = self.b = None


class _HypreSolve:
    """hypre's CG + BoomerAMG on an :class:`.hypre_ij.IJMatrix` (see :mod:`.hypre_ij`)."""

    def __init__(self, comm, A, rhs, rtol, max_it, statistics=False):
        from .hypre_ij import BoomerAMGCG, IJVector

        lo = comm.exscan(len(rhs)) or 0
        self.A = A
        self.b = IJVector(comm, lo, lo + len(rhs), rhs)
        self.x = IJVector(comm, lo, lo + len(rhs), np.zeros(len(rhs)))
        self.cg = BoomerAMGCG(comm, A, rtol, max_it, statistics)
        self.cg.setup(self.b, self.x)
        self.max_it = max_it
        self.rel = 0.0
        self.bnorm = float(np.sqrt(comm.allreduce(float(np.dot(rhs, rhs)))))

    def solve(self, rtol):
        its, self.rel, ok = self.cg.solve(self.b, self.x, rtol)  # starts from the current x
        return its, ok, "converged (hypre PCG, relative residual)" if ok else "hypre PCG did not converge"

    def values(self):
        return self.x.values()

    def residual(self):
        return self.rel, self.rel * self.bnorm

    def destroy(self):
        self.cg.destroy()
        for obj in (self.A, self.b, self.x):
            obj.destroy()


def _expand(values, active):
    full = np.zeros(active.shape)
    full[active] = values
    return full


def tau_profile(c_local, spanning, Dv, da, axis, flux, spacing, comm):
    """Through-thickness tortuosity tau(x_i), one value per pair of neighbouring slices:
    tau_i = mean_D(slices i, i+1) * A * (cbar_i - cbar_{i+1}) / (J h), with cbar the mean
    concentration over the transporting voxels of a slice; = 1 for a straight channel,
    and its harmonic-type average over i recovers the global tau for layered media."""
    starts, box = local_box(da)
    shape = Dv.shape
    n = shape[axis]
    sl = tuple(slice(starts[a], starts[a] + box[a]) for a in range(3))
    span = spanning[sl]
    other = tuple(a for a in range(3) if a != axis)
    csum = np.zeros(n)
    cnt = np.zeros(n)
    dsum = np.zeros(n)
    lo = starts[axis]
    csum[lo:lo + box[axis]] = np.sum(np.where(span, c_local, 0.0), axis=other)
    cnt[lo:lo + box[axis]] = np.sum(span, axis=other)
    dsum[lo:lo + box[axis]] = np.sum(Dv.block(sl), axis=other)
    csum, cnt, dsum = (comm.allreduce(v) for v in (csum, cnt, dsum))
    h = np.asarray(spacing, dtype=np.float64)
    area = float(np.prod([shape[a] * h[a] for a in other]))
    cbar = np.divide(csum, cnt, out=np.full(n, np.nan), where=cnt > 0)
    dmean = dsum / float(np.prod([shape[a] for a in other]))
    dpair = 0.5 * (dmean[:-1] + dmean[1:])
    return dpair * area * (cbar[:-1] - cbar[1:]) / (flux * h[axis])


def _gather_field(c_local, da, shape, comm):
    starts, box = local_box(da)
    parts = comm.gather((starts, box, np.ascontiguousarray(c_local)), root=0)
    if comm.rank != 0:
        return None
    full = np.empty(shape, dtype=np.float64)
    for (s, bx, arr) in parts:
        full[s[0]:s[0] + bx[0], s[1]:s[1] + bx[1], s[2]:s[2] + bx[2]] = arr
    return full


def tortuosity(D_or_mask, directions="all", *, comm, spacing=(1.0, 1.0, 1.0), rtol=1e-8,
               petsc_options=None, prefix="tortuosity_", return_field=False, progress=None,
               flux_tol=None, solver=None, profile=False) -> dict:
    """Tortuosity factor along one or several directions.

    ``D_or_mask``: boolean mask of the conducting phase, voxel diffusivities, or a
    :class:`VoxelDiffusivity`. Returns ``{direction: DirectionResult}``."""
    D = as_diffusivity(D_or_mask)
    dirs = ["x", "y", "z"] if directions == "all" else list(directions)
    out = {}
    it = progress(dirs) if progress else dirs
    for d in it:
        out[d] = solve_direction(D, AXES[d], comm, spacing=spacing, rtol=rtol, petsc_options=petsc_options,
                                 prefix=f"{prefix}{d}_" if len(dirs) > 1 else prefix, return_field=return_field,
                                 flux_tol=flux_tol, solver=solver, profile=profile)
    return out
