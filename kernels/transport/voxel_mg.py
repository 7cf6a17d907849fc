"""Matrix-free aggregation multigrid on the voxel grid (ionscale's own solver for the
Dirichlet-face tortuosity problem).

Why: BoomerAMG treats the voxel operator as an unstructured graph. Its setup (coarsening,
interpolation, triple products) costs more than the whole solve at high porosity, and its
stored hierarchy holds ~140 B/voxel (docs/bench_transport.md). On a voxel grid the
coarse spaces can be built geometrically instead:

- Level l+1 aggregates 2x2x2 blocks of level l (fewer along an axis that is too thin).
  With piecewise-constant interpolation the Galerkin operator P^T A P of a conductance
  (graph-Laplacian) operator is again a 7-point conductance operator: the conductance
  between two blocks is the sum of the fine face conductances between them, and the
  Dirichlet conductance of a block the sum of its cells'. Setup is one pass of sums.
- Unsmoothed aggregation needs a Krylov-accelerated cycle to converge independently of the
  number of levels (Notay & Vassilevski's K-cycle, as in AGMG): each coarse problem is
  solved by two steps of flexible CG preconditioned by the next level's cycle.
- Smoother: symmetric red-black Gauss-Seidel (red then black before the coarse correction,
  black then red after), so the preconditioner is symmetric; the outer iteration is
  flexible CG (Notay's FCG(1): each direction A-orthogonalised against the previous one)
  because the K-cycle makes the preconditioner nonlinear.
- The operator is stored as float32 face conductances on the padded grid (3 + the
  diagonal), the fine level's computed once from tables of label-pair conductances. No index arrays, no sparse
  matrices, compiled loops (numba, threads over planes).

Distribution: slabs of whole axis-0 planes, one ghost plane each side, exchanged with
the neighbouring ranks before every sweep. Aggregates never cross a slab boundary (a slab
with an odd number of planes keeps a one-plane block), so every level has the same slab
decomposition and the same neighbours. The coarsest level (<= ``COARSEST_CELLS`` cells
in total) is gathered on every rank and solved by a dense Cholesky factorisation.
"""
from __future__ import annotations

import numba
import numpy as np

#: the coarsest level is gathered and factorised densely once it has at most this many cells
COARSEST_CELLS = 2000

# Layout: every array is a slab padded by one cell on each side of every axis; the padding
# carries zero conductances, and the two padding planes of axis 0 are the ghost planes
# exchanged with the neighbouring ranks. c0[p, j, k] is the conductance between cells
# (p, j, k) and (p + 1, j, k), likewise c1 along axis 1 and c2 along axis 2; cb is the
# Dirichlet (reservoir) conductance of a cell, diag the operator's diagonal (0: no unknown).
# Operators are stored in float32 (sums of face conductances; exact for binary images),
# vectors in float64.


# ----------------------------------------------------------------------------- operator setup
@numba.njit(cache=True, parallel=True)
def _label_conductances(lab, H, G, ax, n_ax, plane0, c0, c1, c2, cb):
    """Face and Dirichlet conductances from labels: H[d, a, b] between labels a and b along
    axis d, G[a] for a cell on the first or last layer (global position 1 or n_ax, padded
    numbering) along the solve axis ``ax``."""
    n0, n1, n2 = lab.shape
    for p in numba.prange(n0):
        for j in range(n1):
            for k in range(n2):
                a = lab[p, j, k]
                c0[p, j, k] = H[0, a, lab[p + 1, j, k]] if p + 1 < n0 else 0.0
                c1[p, j, k] = H[1, a, lab[p, j + 1, k]] if j + 1 < n1 else 0.0
                c2[p, j, k] = H[2, a, lab[p, j, k + 1]] if k + 1 < n2 else 0.0
                pos = p + plane0 if ax == 0 else (j if ax == 1 else k)
                inside = 0 < p < n0 - 1 and 0 < j < n1 - 1 and 0 < k < n2 - 1
                cb[p, j, k] = G[a] if inside and (pos == 1 or pos == n_ax) else 0.0


@numba.njit(cache=True, parallel=True)
def _diagonal(c0, c1, c2, cb, diag):
    n0, n1, n2 = diag.shape
    for p in numba.prange(1, n0 - 1):
        for j in range(1, n1 - 1):
            for k in range(1, n2 - 1):
                diag[p, j, k] = (c0[p - 1, j, k] + c0[p, j, k] + c1[p, j - 1, k] + c1[p, j, k]
                                 + c2[p, j, k - 1] + c2[p, j, k] + cb[p, j, k])


@numba.njit(cache=True, parallel=True)
def _coarse_faces(c0, c1, c2, cb, fac, C0, C1, C2, CB):
    """Galerkin operator of piecewise-constant aggregation: the conductance between two
    aggregates is the sum of the fine face conductances between them. C0[P] (face above
    coarse plane P) sums the fine faces above the aggregate's top plane; P = 0 is the face
    to the ghost plane below. Blocks at the upper end of an axis may be thinner."""
    n0, n1, n2 = CB.shape
    m0, m1, m2 = cb.shape
    for P in numba.prange(0, n0 - 1):
        p_lo = fac[0] * (P - 1) + 1
        p_hi = min(fac[0] * P, m0 - 2)
        top0 = p_hi if P > 0 else 0
        for J in range(0, n1 - 1):
            j_lo = fac[1] * (J - 1) + 1
            j_hi = min(fac[1] * J, m1 - 2)
            top1 = j_hi if J > 0 else 0
            for K in range(0, n2 - 1):
                k_lo = fac[2] * (K - 1) + 1
                k_hi = min(fac[2] * K, m2 - 2)
                top2 = k_hi if K > 0 else 0
                s0 = 0.0
                s1 = 0.0
                s2 = 0.0
                sb = 0.0
                if J > 0 and K > 0:
                    for j in range(j_lo, j_hi + 1):
                        for k in range(k_lo, k_hi + 1):
                            s0 += c0[top0, j, k]
                if P > 0 and K > 0:
                    for p in range(p_lo, p_hi + 1):
                        for k in range(k_lo, k_hi + 1):
                            s1 += c1[p, top1, k]
                if P > 0 and J > 0:
                    for p in range(p_lo, p_hi + 1):
                        for j in range(j_lo, j_hi + 1):
                            s2 += c2[p, j, top2]
                            for k in range(k_lo, k_hi + 1):
                                sb += cb[p, j, k]
                C0[P, J, K] = s0
                C1[P, J, K] = s1
                C2[P, J, K] = s2
                CB[P, J, K] = sb


# ----------------------------------------------------------------------------- stencil kernels
@numba.njit(cache=True, inline="always", fastmath=True)
def _neighbour_sum(c0, c1, c2, x, p, j, k):
    """sum over the six faces of conductance * neighbour value: A x = diag x - this."""
    return (c0[p - 1, j, k] * x[p - 1, j, k] + c0[p, j, k] * x[p + 1, j, k]
            + c1[p, j - 1, k] * x[p, j - 1, k] + c1[p, j, k] * x[p, j + 1, k]
            + c2[p, j, k - 1] * x[p, j, k - 1] + c2[p, j, k] * x[p, j, k + 1])


@numba.njit(cache=True, parallel=True, fastmath=True)
def _matvec(c0, c1, c2, diag, x, y):
    """y = A x on the interior (ghost planes of x must be current)."""
    n0, n1, n2 = diag.shape
    for p in numba.prange(1, n0 - 1):
        for j in range(1, n1 - 1):
            for k in range(1, n2 - 1):
                y[p, j, k] = diag[p, j, k] * x[p, j, k] - _neighbour_sum(c0, c1, c2, x, p, j, k)


@numba.njit(cache=True, parallel=True)
def _label_matvec(lab, H, G, ax, n_ax, plane0, x, y):
    """y = A x with every conductance taken from the float64 tables (exact operator)."""
    n0, n1, n2 = lab.shape
    for p in numba.prange(1, n0 - 1):
        for j in range(1, n1 - 1):
            for k in range(1, n2 - 1):
                a = lab[p, j, k]
                if a == 0:
                    y[p, j, k] = 0.0
                    continue
                g0 = H[0, lab[p - 1, j, k], a]
                g1 = H[0, a, lab[p + 1, j, k]]
                g2 = H[1, lab[p, j - 1, k], a]
                g3 = H[1, a, lab[p, j + 1, k]]
                g4 = H[2, lab[p, j, k - 1], a]
                g5 = H[2, a, lab[p, j, k + 1]]
                pos = p + plane0 if ax == 0 else (j if ax == 1 else k)
                d = g0 + g1 + g2 + g3 + g4 + g5 + (G[a] if pos == 1 or pos == n_ax else 0.0)
                y[p, j, k] = (d * x[p, j, k] - g0 * x[p - 1, j, k] - g1 * x[p + 1, j, k] - g2 * x[p, j - 1, k]
                              - g3 * x[p, j + 1, k] - g4 * x[p, j, k - 1] - g5 * x[p, j, k + 1])


@numba.njit(cache=True, parallel=True, fastmath=True)
def _gauss_seidel_colour(c0, c1, c2, diag, x, b, colour, plane0):
    """One colour of a red-black Gauss-Seidel sweep. The colour of a cell is the parity of its
    global position, so the sweep does not depend on the slab decomposition or thread count."""
    n0, n1, n2 = diag.shape
    for p in numba.prange(1, n0 - 1):
        for j in range(1, n1 - 1):
            k0 = 1 if (plane0 + p + j + 1) % 2 == colour else 2
            for k in range(k0, n2 - 1, 2):
                d = diag[p, j, k]
                s = b[p, j, k] + _neighbour_sum(c0, c1, c2, x, p, j, k)
                x[p, j, k] = s / (d + (d == 0.0))  # no unknown: s = 0 there


@numba.njit(cache=True, parallel=True, fastmath=True)
def _residual_restrict(c0, c1, c2, diag, x, b, fac, R):
    """R[P, J, K] = sum over the aggregate of (b - A x): the residual is never stored."""
    n0, n1, n2 = R.shape
    m0, m1, m2 = diag.shape
    for P in numba.prange(1, n0 - 1):
        for J in range(1, n1 - 1):
            for K in range(1, n2 - 1):
                R[P, J, K] = 0.0
        for p in range(fac[0] * (P - 1) + 1, min(fac[0] * P, m0 - 2) + 1):
            for j in range(1, m1 - 1):
                J = (j - 1) // fac[1] + 1
                for k in range(1, m2 - 1):
                    r = b[p, j, k] - diag[p, j, k] * x[p, j, k] + _neighbour_sum(c0, c1, c2, x, p, j, k)
                    R[P, J, (k - 1) // fac[2] + 1] += r


@numba.njit(cache=True, parallel=True, fastmath=True)
def _prolong_add(E, fac, diag, x):
    """x += piecewise-constant interpolation of E, on the cells with unknowns."""
    m0, m1, m2 = x.shape
    for p in numba.prange(1, m0 - 1):
        P = (p - 1) // fac[0] + 1
        for j in range(1, m1 - 1):
            J = (j - 1) // fac[1] + 1
            for k in range(1, m2 - 1):
                if diag[p, j, k] > 0.0:
                    x[p, j, k] += E[P, J, (k - 1) // fac[2] + 1]


# ----------------------------------------------------------------------------- vector kernels
@numba.njit(cache=True, parallel=True, fastmath=True)
def _dot(a, b):
    n0, n1, n2 = a.shape
    s = 0.0
    for p in numba.prange(1, n0 - 1):
        for j in range(1, n1 - 1):
            for k in range(1, n2 - 1):
                s += a[p, j, k] * b[p, j, k]
    return s


@numba.njit(cache=True, parallel=True, fastmath=True)
def _dot3(a, b, c, d, e, f):
    """(a.b, c.d, e.f) in one pass."""
    n0, n1, n2 = a.shape
    s = 0.0
    t = 0.0
    u = 0.0
    for p in numba.prange(1, n0 - 1):
        for j in range(1, n1 - 1):
            for k in range(1, n2 - 1):
                s += a[p, j, k] * b[p, j, k]
                t += c[p, j, k] * d[p, j, k]
                u += e[p, j, k] * f[p, j, k]
    return s, t, u


@numba.njit(cache=True, parallel=True, fastmath=True)
def _combine(out, a, x, b, y):
    """out = a x + b y on the interior."""
    n0, n1, n2 = out.shape
    for p in numba.prange(1, n0 - 1):
        for j in range(1, n1 - 1):
            for k in range(1, n2 - 1):
                out[p, j, k] = a * x[p, j, k] + b * y[p, j, k]


@numba.njit(cache=True, parallel=True, fastmath=True)
def _cg_step(x, r, p_, q, alpha):
    """x += alpha p; r -= alpha q; returns r.r"""
    n0, n1, n2 = x.shape
    s = 0.0
    for p in numba.prange(1, n0 - 1):
        for j in range(1, n1 - 1):
            for k in range(1, n2 - 1):
                x[p, j, k] += alpha * p_[p, j, k]
                v = r[p, j, k] - alpha * q[p, j, k]
                r[p, j, k] = v
                s += v * v
    return s


# ----------------------------------------------------------------------------- levels
class _Slabs:
    """Ghost-plane exchange along axis 0 between neighbouring ranks, and global sums."""

    def __init__(self, comm):
        self.comm = comm
        self.size = comm.size
        self.below = comm.rank - 1 if comm.rank > 0 else None
        self.above = comm.rank + 1 if comm.rank < comm.size - 1 else None

    def exchange(self, v):
        if self.size == 1:
            return
        from mpi4py import MPI

        t = v.shape[0] - 2
        reqs = []
        if self.below is not None:
            reqs.append(self.comm.Irecv(v[0], source=self.below, tag=1))
            reqs.append(self.comm.Isend(v[1], dest=self.below, tag=2))
        if self.above is not None:
            reqs.append(self.comm.Irecv(v[t + 1], source=self.above, tag=2))
            reqs.append(self.comm.Isend(v[t], dest=self.above, tag=1))
        MPI.Request.Waitall(reqs)

    def sum(self, *values):
        """Global sums of a few local scalars (one allreduce)."""
        values = np.array(values, dtype=np.float64)
        if self.size > 1:
            from mpi4py import MPI
            self.comm.Allreduce(MPI.IN_PLACE, values, op=MPI.SUM)
        return values


class Level:
    """One level of a slab: face conductances, Dirichlet conductances and diagonal."""

    def __init__(self, c0, c1, c2, cb, plane0, slabs):
        self.c0, self.c1, self.c2, self.cb = c0, c1, c2, cb
        self.diag = np.zeros(cb.shape, dtype=cb.dtype)
        _diagonal(c0, c1, c2, cb, self.diag)
        self.shape = cb.shape  # padded
        self.plane0 = plane0   # global number of the first interior plane (= padded index offset)
        self.slabs = slabs
        self.fac = None        # aggregate size per axis towards the next level

    def zeros(self):
        return np.zeros(self.shape)

    def apply(self, x, y):
        """y = A x"""
        self.slabs.exchange(x)
        _matvec(self.c0, self.c1, self.c2, self.diag, x, y)

    def smooth(self, x, b, colours):
        for colour in colours:
            self.slabs.exchange(x)
            _gauss_seidel_colour(self.c0, self.c1, self.c2, self.diag, x, b, colour, self.plane0)

    def restrict_residual(self, x, b, R):
        self.slabs.exchange(x)
        _residual_restrict(self.c0, self.c1, self.c2, self.diag, x, b, self.fac, R)

    def coarsen(self, fac) -> "Level":
        """The Galerkin level of aggregates of ``fac`` cells per axis (thinner at the upper ends)."""
        self.fac = np.asarray(fac, dtype=np.int64)
        cshape = tuple(-(-(n - 2) // f) + 2 for n, f in zip(self.shape, fac))
        C = [np.zeros(cshape, dtype=self.cb.dtype) for _ in range(4)]
        _coarse_faces(self.c0, self.c1, self.c2, self.cb, self.fac, *C)
        below = self.slabs.comm.exscan(cshape[0] - 2) if self.slabs.size > 1 else 0
        return Level(*C, plane0=below or 0, slabs=self.slabs)

    def cells(self):
        return int(np.prod([n - 2 for n in self.shape]))


def dense_operator(diag, c0, c1, c2) -> np.ndarray:
    """Dense matrix of an unpadded block of a level (cells in C order): ``diag`` and the
    conductances to the + neighbours along each axis (the last plane's are not couplings)."""
    diag, c0, c1, c2 = (np.asarray(a, dtype=np.float64) for a in (diag, c0, c1, c2))
    idx = np.arange(diag.size).reshape(diag.shape)
    A = np.zeros((diag.size, diag.size))
    A[idx.ravel(), idx.ravel()] = diag.ravel()
    for cond, a, b in ((c0[:-1], idx[:-1], idx[1:]), (c1[:, :-1], idx[:, :-1], idx[:, 1:]),
                       (c2[:, :, :-1], idx[:, :, :-1], idx[:, :, 1:])):
        A[a.ravel(), b.ravel()] = -cond.ravel()
        A[b.ravel(), a.ravel()] = -cond.ravel()
    return A


class _DenseCoarsest:
    """The coarsest level gathered on every rank and factorised once (Cholesky)."""

    def __init__(self, level: Level):
        from scipy.linalg import cho_factor

        self.level = level
        inner = (slice(1, -1),) * 3
        parts = [level.diag[inner], level.c0[inner], level.c1[inner], level.c2[inner]]
        if level.slabs.size > 1:
            gathered = level.slabs.comm.allgather([np.ascontiguousarray(a) for a in parts])
            counts = [g[0].size for g in gathered]
            parts = [np.concatenate([g[i] for g in gathered]) for i in range(len(parts))]
            self.offset = int(sum(counts[:level.slabs.comm.rank]))
        else:
            self.offset = 0
        diag = np.asarray(parts[0], dtype=np.float64)
        A = dense_operator(*parts)
        self.empty = np.flatnonzero(diag.ravel() == 0.0)
        A[self.empty, self.empty] = 1.0  # cells without unknowns: identity rows, zero solution
        self.factor = cho_factor(A)
        self.local = tuple(n - 2 for n in level.shape)

    def solve(self, b, x):
        from scipy.linalg import cho_solve

        rhs = np.ascontiguousarray(b[1:-1, 1:-1, 1:-1]).ravel()
        if self.level.slabs.size > 1:
            rhs = np.concatenate(self.level.slabs.comm.allgather(rhs))
        rhs[self.empty] = 0.0
        sol = cho_solve(self.factor, rhs)
        n = int(np.prod(self.local))
        x[1:-1, 1:-1, 1:-1] = sol[self.offset:self.offset + n].reshape(self.local)


class VoxelMG:
    """K-cycle aggregation multigrid on the voxel grid; :meth:`solve` runs flexible CG
    (Notay's FCG(1)) preconditioned by it.

    ``fine``: the level-0 :class:`Level`; ``apply``: the exact operator for the outer
    iteration (default: ``fine.apply``)."""

    #: the K-cycle skips its second inner iteration once the first has reduced the coarse
    #: residual below this fraction (Notay & Vassilevski 2008)
    KCYCLE_SKIP = 0.25

    def __init__(self, fine: Level, apply=None, coarsest_cells: int = COARSEST_CELLS):
        self.levels = [fine]
        self.apply = apply or fine.apply
        slabs = fine.slabs
        while True:
            L = self.levels[-1]
            t, n1, n2 = (s - 2 for s in L.shape)
            cells, thin = slabs.sum(L.cells(), t < 2)
            fac = (2 if t >= 2 else 1, 2 if n1 >= 2 else 1, 2 if n2 >= 2 else 1)
            if cells <= coarsest_cells or (thin == slabs.size and fac[1:] == (1, 1)):
                break
            self.levels.append(L.coarsen(fac))
        self.coarsest = _DenseCoarsest(self.levels[-1])
        self.work = [None] + [{k: L.zeros() for k in ("rhs", "v1", "w1", "r2", "v2", "w2")}
                              for L in self.levels[1:]]
        for L in self.levels:
            L.cb = None  # the Dirichlet conductances live on in diag; only coarsening needed them

    def cycle(self, l, r, z):
        """z <- B_l r for z = 0 on entry: symmetric red-black Gauss-Seidel around the coarse correction."""
        L = self.levels[l]
        if l == len(self.levels) - 1:
            self.coarsest.solve(r, z)
            return
        L.smooth(z, r, (0, 1))
        W = self.work[l + 1]
        L.restrict_residual(z, r, W["rhs"])
        _prolong_add(self.coarse_solve(l + 1), L.fac, L.diag, z)
        L.smooth(z, r, (1, 0))

    def coarse_solve(self, c):
        """Approximate solution of level c with right-hand side work[c]['rhs'] (K-cycle)."""
        W = self.work[c]
        rc, v1, w1, r2, v2, w2 = (W[k] for k in ("rhs", "v1", "w1", "r2", "v2", "w2"))
        v1.fill(0.0)
        if c == len(self.levels) - 1:
            self.coarsest.solve(rc, v1)
            return v1
        L = self.levels[c]
        S = L.slabs
        self.cycle(c, rc, v1)
        L.apply(v1, w1)
        rho1, a1, rr = S.sum(*_dot3(v1, w1, v1, rc, rc, rc))
        if rho1 <= 0.0:
            return v1
        s1 = a1 / rho1
        _combine(r2, 1.0, rc, -s1, w1)
        if S.sum(_dot(r2, r2))[0] <= self.KCYCLE_SKIP ** 2 * rr:
            v1 *= s1
            return v1
        v2.fill(0.0)
        self.cycle(c, r2, v2)
        L.apply(v2, w2)
        gamma, beta, a2 = S.sum(*_dot3(v2, w1, v2, w2, v2, r2))
        rho2 = beta - gamma * gamma / rho1
        if rho2 <= 0.0:
            v1 *= s1
            return v1
        _combine(v1, s1 - gamma * a2 / (rho1 * rho2), v1, a2 / rho2, v2)
        return v1

    def solve(self, b, x, rtol, max_it=10000, callback=None, accept=None, rtol_floor=1e-13):
        """Flexible CG from ``x`` until ||b - A x|| <= rtol ||b|| and ``accept(x)`` (if given;
        checked only once the residual test holds, e.g. a flux balance), or until the residual
        reaches ``rtol_floor``. Returns (iterations, relative residual recomputed from b - A x
        at the end, converged)."""
        L = self.levels[0]
        S = L.slabs
        r, z, p, q = L.zeros(), L.zeros(), L.zeros(), L.zeros()
        self.apply(x, q)
        _combine(r, 1.0, b, -1.0, q)
        bb, rr = S.sum(_dot(b, b), _dot(r, r))
        if bb == 0.0:
            return 0, 0.0, True
        it = 0
        pq = 0.0
        def done():
            if rr > rtol * rtol * bb:
                return False
            return accept is None or rr <= rtol_floor * rtol_floor * bb or accept(x)

        while it < max_it and not done():
            z.fill(0.0)
            self.cycle(0, r, z)
            if pq > 0.0:  # A-orthogonalise against the previous direction (flexible CG)
                _combine(p, 1.0, z, -S.sum(_dot(z, q))[0] / pq, p)
            else:
                p[...] = z
            self.apply(p, q)
            pq, pr = S.sum(_dot(p, q), _dot(p, r))
            if pq <= 0.0:
                break
            rr = S.sum(_cg_step(x, r, p, q, pr / pq))[0]
            it += 1
            if callback is not None:
                callback(it, np.sqrt(rr / bb))
        converged = rr <= rtol * rtol * bb
        self.apply(x, q)
        _combine(r, 1.0, b, -1.0, q)
        return it, float(np.sqrt(S.sum(_dot(r, r))[0] / bb)), bool(converged)


def label_operator(Dv, spanning, axis, spacing, comm, planes):
    """Level 0 of the slab ``planes = (first, stop)`` along axis 0, the exact operator
    (``apply(x, y)``), and the inlet and outlet conductances as (flat indices into the padded
    slab, values).

    Each voxel gets a label (0: no unknown, else 1 + its diffusivity label) and every
    conductance is a table entry, so the float32 level-0 operator of the preconditioner
    comes from one pass and the outer iteration can use the float64 tables."""
    from .tortuosity import face_weights

    shape = Dv.shape
    s, e = planes
    labels, lut = Dv.labels_lut()
    lut0 = np.concatenate([[0.0], np.asarray(lut, dtype=np.float64)])
    dtype = np.uint8 if len(lut0) <= 256 else np.uint16  # MAX_LABELS keeps it uint8 in practice
    lab = np.zeros((e - s + 2, shape[1] + 2, shape[2] + 2), dtype=dtype)
    lo, hi = max(s - 1, 0), min(e + 1, shape[0])
    inner = lab[lo - (s - 1):hi - (s - 1), 1:-1, 1:-1]
    np.add(labels[lo:hi], 1, out=inner, casting="unsafe")  # in place: no full-size temporaries
    np.multiply(inner, spanning[lo:hi], out=inner, casting="unsafe")
    w = face_weights(spacing)
    a, b = np.meshgrid(lut0, lut0, indexing="ij")
    harm = np.divide(2.0 * a * b, a + b, out=np.zeros_like(a), where=(a > 0) & (b > 0))
    H = np.stack([harm * w[d] for d in range(3)])
    G = 2.0 * lut0 * w[axis]
    slabs = _Slabs(comm)
    c0, c1, c2, cb = (np.zeros(lab.shape, dtype=np.float32) for _ in range(4))
    _label_conductances(lab, H, G, axis, shape[axis], s, c0, c1, c2, cb)
    fine = Level(c0, c1, c2, cb, plane0=s, slabs=slabs)

    def layer(pos):
        """Dirichlet conductances of the cells of padded layer ``pos`` along ``axis``, sparse
        (interior cells only: not the ghost planes)."""
        sl = [slice(1, -1)] * 3
        sl[axis] = slice(pos, pos + 1)
        vals = G[lab[tuple(sl)]]
        nz = list(np.nonzero(vals))
        g = vals[tuple(nz)]
        nz = [c + (pos if d == axis else 1) for d, c in enumerate(nz)]
        return np.ravel_multi_index(nz, lab.shape), g

    none = (np.zeros(0, dtype=np.int64), np.zeros(0))
    if axis == 0:
        inlet = layer(1) if s == 0 else none
        outlet = layer(e - s) if e == shape[0] else none
    else:
        inlet, outlet = layer(1), layer(shape[axis])
    # float32 conductances are exact when every table entry is (binary images, unit spacing):
    # then the outer iteration uses them too, otherwise the float64 tables
    exact = np.array_equal(H.astype(np.float32).astype(np.float64), H) and \
        np.array_equal(G.astype(np.float32).astype(np.float64), G)
    if exact:
        apply = fine.apply
        del lab
    else:
        def apply(x, y):
            slabs.exchange(x)
            _label_matvec(lab, H, G, axis, shape[axis], s, x, y)
    return fine, apply, inlet, outlet


class solver_threads:
    """Context: numba threads for this rank = the cores it may run on, shared among the ranks
    of its node (mpirun's binding is respected; NUMBA_NUM_THREADS caps it)."""

    def __init__(self, comm):
        import os

        from mpi4py import MPI

        node = comm.Split_type(MPI.COMM_TYPE_SHARED)
        ranks_here = node.Get_size()
        node.Free()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.n = max(1, min(numba.config.NUMBA_NUM_THREADS, cores, (os.cpu_count() or 1) // ranks_here))

    def __enter__(self):
        self.old = numba.get_num_threads()
        numba.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        numba.set_num_threads(self.old)
        return False
