"""Electrode tortuosity (blocking electrolyte, low-frequency transmission-line limit). Marked ``mpi``."""
import numpy as np
import pytest

from ionscale.kernels.mesostructure import overlapping_spheres
from ionscale.kernels.transport.electrode import active_surface_faces, electrode_tortuosity
from ionscale.kernels.transport.tortuosity import solve_direction

pytestmark = pytest.mark.mpi


def _channel(n=12, width=2):
    labels = np.ones((n, 7, 6), np.uint8)  # active material
    labels[:, 2:2 + width, 2:4] = 0         # pore channel along x
    return labels


@pytest.mark.parametrize("separator", ["low", "high"])
def test_straight_channel_with_uniform_surface_is_one(comm, separator):
    labels = _channel()
    r = electrode_tortuosity(labels == 0, labels == 1, 0, comm, separator=separator, spacing=(0.5, 1.0, 1.5))
    assert r.tau_e == pytest.approx(1.0, rel=1e-9)
    assert r.accessible_surface_fraction == 1.0


def test_nonuniform_sink_in_a_cross_section_adds_transverse_resistance(comm):
    """3x2 channel: edge voxels have 1 active face, corner voxels 2 -> transverse currents."""
    labels = _channel(width=3)
    r = electrode_tortuosity(labels == 0, labels == 1, 0, comm, rtol=1e-12)
    assert 1.0 < r.tau_e < 1.005


def test_series_layers_match_transmission_line_dissipation(comm):
    """Uniform sink per slice, conductivity varying along x: R = sum_k F_k^2 / g_k with
    F_k = I (n - k) / n, exactly (cell-centred discretisation)."""
    n = 10
    kappa = np.array([1.0, 0.5, 0.2, 1.0, 0.8, 0.3, 1.0, 0.6, 0.4, 0.9])
    D = np.zeros((n, 5, 5))
    D[:, 2, 1:4] = kappa[:, None]  # a 1-voxel-high, 3-voxel-wide channel
    active = np.zeros(D.shape, bool)
    active[:, 3, 1:4] = True       # the surface: the face above the channel
    r = electrode_tortuosity(D, active, 0, comm, rtol=1e-12)
    area = 3.0
    g = np.empty(n)
    g[0] = 2 * kappa[0] * area
    g[1:] = 2 * kappa[1:] * kappa[:-1] / (kappa[1:] + kappa[:-1]) * area
    flux = (n - np.arange(n)) / n
    R = np.sum(flux ** 2 / g)
    assert r.resistance == pytest.approx(R, rel=1e-9)
    kappa_e = n / (3 * R * 25) * (1 + 1 / (2 * n ** 2))
    assert r.tau_e == pytest.approx(D.mean() / kappa_e, rel=1e-9)


def test_surface_near_the_separator_lowers_tau_e(comm):
    """Charging only near the separator uses less of the pore length: tau_e < tau_e(uniform)."""
    labels = _channel(16)
    active = labels == 1
    near = active.copy()
    near[6:] = False
    uniform = electrode_tortuosity(labels == 0, active, 0, comm).tau_e
    assert electrode_tortuosity(labels == 0, near, 0, comm).tau_e < 0.5 * uniform


def test_random_electrode_tau_e_is_finite_and_surface_counted(comm):
    solid = overlapping_spheres((24, 20, 20), radius=3, porosity=0.45, seed=2)
    pore = ~solid
    r = electrode_tortuosity(pore, solid, 0, comm, rtol=1e-10)
    tau = solve_direction(pore, 0, comm, rtol=1e-10).tau
    assert np.isfinite(r.tau_e) and r.tau_e > 0
    assert 0.2 * tau < r.tau_e < 5 * tau
    faces = active_surface_faces(pore, solid, (1.0, 1.0, 1.0))
    assert r.surface_area <= faces.sum() + 1e-9
    assert 0.9 < r.accessible_surface_fraction <= 1.0
