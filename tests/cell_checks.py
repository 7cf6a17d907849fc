"""Checks shared by the cell-model tests."""
import numpy as np
import scipy.sparse as sp


def perturbed_state(m, rng, ce_spread=0.1):
    """A consistent state of DFN model ``m`` with random particle, electrolyte and potential
    perturbations (so every coupling of the Jacobian is exercised)."""
    y = m.consistent_algebraic(m.initial_state(), 20.0)
    y[:m.o_ce] += rng.uniform(-0.05, 0.05, m.o_ce)
    y[m.o_ce:m.o_pe] *= 1 + ce_spread * rng.standard_normal(m.o_pe - m.o_ce)
    y[m.o_pe:] += 0.01 * rng.standard_normal(m.n - m.o_pe)
    return y


def assert_jacobian_matches_central_differences(m, y, rtol=1e-6):
    """The compiled Jacobian df/dy of ``m`` at ``y`` equals central differences of the residual
    to ``rtol`` (relative to each row's largest entry), and its sparsity pattern holds every
    nonzero coupling. Returns the finite-difference Jacobian."""
    data = m.jacobian_data(y, 20.0, 0.0).copy()
    shape = (m.n + 1, m.n + 1)
    jac = sp.csr_matrix((data, m.indices, m.indptr), shape=shape).toarray()[:m.n, :m.n]
    fd = np.empty_like(jac)
    for c in range(m.n):
        h = 1e-7 * max(abs(y[c]), 1.0)
        yp, ym = y.copy(), y.copy()
        yp[c] += h
        ym[c] -= h
        fd[:, c] = -(m._eval_rhs(yp, 20.0) - m._eval_rhs(ym, 20.0)) / (2 * h)
    scale = np.abs(fd).max(axis=1, keepdims=True)
    assert np.max(np.abs(jac - fd) / scale) < rtol
    pattern = sp.csr_matrix((np.ones_like(data), m.indices, m.indptr), shape=shape).toarray()[:m.n, :m.n]
    assert np.all(pattern[np.abs(fd) > 1e-12 * scale])
    return fd
