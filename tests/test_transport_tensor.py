"""Periodic homogenisation: analytic layered tensors, Maxwell's dilute limit, symmetry,
positive definiteness, rotation covariance, rank invariance. Marked ``mpi``."""
import numpy as np
import pytest
from mpi4py import MPI

from ionscale.kernels.mesostructure import overlapping_spheres
from ionscale.kernels.transport.homogenisation import effective_tensor, periodic_clusters

pytestmark = pytest.mark.mpi


def test_homogeneous_medium_gives_identity_any_voxel_size(comm):
    r = effective_tensor(np.full((6, 7, 5), 0.7), comm, spacing=(0.3, 1.0, 2.0), rtol=1e-12)
    assert np.allclose(r.deff, 0.7 * np.eye(3), atol=1e-12)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_layered_medium_gives_harmonic_and_arithmetic_means(comm, axis):
    d = np.array([1.0, 0.2, 0.5, 0.05, 1.0, 0.3, 0.8])
    shape = [5, 6, 4]
    shape[axis] = len(d)
    view = [1, 1, 1]
    view[axis] = len(d)
    D = np.broadcast_to(d.reshape(view), shape).copy()
    r = effective_tensor(D, comm, spacing=(0.5, 1.0, 2.0), rtol=1e-12)
    expected = np.full(3, d.mean())
    expected[axis] = len(d) / np.sum(1.0 / d)  # series (Reuss) across the layers
    assert np.allclose(r.deff, np.diag(expected), rtol=1e-9, atol=1e-12)


def test_dilute_insulating_spheres_approach_maxwell(comm):
    """D_eff/D -> 2 eps / (3 - eps) as the sphere fraction 1 - eps -> 0; Maxwell-Garnett is also
    the Hashin-Shtrikman upper bound for insulating inclusions, so it must not be exceeded."""
    errors = []
    for n in (32, 40, 48):
        i, j, k = np.indices((n, n, n))
        c = (n - 1) / 2
        matrix = ((i - c) ** 2 + (j - c) ** 2 + (k - c) ** 2) > 36.0
        eps = matrix.mean()
        r = effective_tensor(matrix, comm, rtol=1e-10)
        maxwell = 2 * eps / (3 - eps)
        d = np.diag(r.deff)
        assert np.allclose(d, d[0], rtol=1e-8)  # cubic symmetry of the cell
        assert np.all(d <= maxwell * (1 + 1e-10))
        errors.append(abs(d[0] / maxwell - 1))
        assert errors[-1] < 0.25 * (1 - eps)  # the deviation is second order in the sphere fraction
    assert errors[0] > errors[1] > errors[2]
    assert errors[-1] < 2e-3


def test_random_structure_tensor_is_symmetric_positive_definite(comm):
    solid = overlapping_spheres((24, 22, 20), radius=3, porosity=0.45, seed=4)
    r = effective_tensor(~solid, comm, spacing=(1.0, 1.2, 0.8), rtol=1e-10)
    assert np.allclose(r.deff, r.deff.T, rtol=1e-6, atol=1e-9)
    assert r.eigenvalues.min() > 0
    assert np.all(r.eigenvalues < (~solid).mean())  # below the Voigt (parallel) bound
    assert r.relative_residual < 1e-9


def test_rotated_image_gives_permuted_tensor(comm):
    solid = overlapping_spheres((20, 24, 16), radius=3, porosity=0.5, seed=9)
    pore = ~solid
    base = effective_tensor(pore, comm, rtol=1e-11).deff
    perm = (2, 0, 1)
    rotated = effective_tensor(np.transpose(pore, perm), comm, rtol=1e-11).deff
    assert np.allclose(rotated, base[np.ix_(perm, perm)], rtol=1e-7, atol=1e-10)
    # a mirror flips the sign of the off-diagonal terms that involve the mirrored axis
    mirrored = effective_tensor(pore[::-1], comm, rtol=1e-11).deff
    sign = np.array([-1.0, 1.0, 1.0])
    assert np.allclose(mirrored, base * np.outer(sign, sign), rtol=1e-7, atol=1e-10)


def test_disconnected_channels_and_isolated_pores(comm):
    """Two straight channels along x (two periodic clusters, each pinned) and an isolated pore:
    D_xx = channel fraction exactly, no transport across."""
    m = np.zeros((8, 10, 10), bool)
    m[:, 1:3, 1:3] = True
    m[:, 6:9, 5:7] = True
    m[3, 5, 0] = True  # isolated voxel
    labels, n = periodic_clusters(m)
    assert n == 3
    r = effective_tensor(m, comm, rtol=1e-12)
    channels = (4 + 6) * 8 / m.size
    assert r.deff[0, 0] == pytest.approx(channels, rel=1e-10)
    assert abs(r.deff[1, 1]) < 1e-12 and abs(r.deff[2, 2]) < 1e-12


def test_periodic_wrap_connects_clusters():
    m = np.zeros((6, 6, 6), bool)
    m[0, 2, 2] = m[-1, 2, 2] = True  # neighbours through the periodic boundary
    assert periodic_clusters(m)[1] == 1


def test_same_tensor_on_one_and_all_ranks(comm):
    solid = overlapping_spheres((20, 18, 22), radius=3, porosity=0.5, seed=12)
    on_all = effective_tensor(~solid, comm, rtol=1e-12).deff
    on_one = effective_tensor(~solid, MPI.COMM_SELF, rtol=1e-12).deff
    assert np.allclose(on_all, on_one, rtol=1e-8, atol=1e-12)
    assert max(comm.allgather(on_all[0, 0])) == min(comm.allgather(on_all[0, 0]))
