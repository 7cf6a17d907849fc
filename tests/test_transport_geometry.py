"""Geometry metrics: exact face counts, marching-cubes sphere area, TPB length, S2 limits,
chord lengths."""
import numpy as np
import pytest

from ionscale.kernels.transport import geometry as geo


def test_cube_in_a_box_face_count_is_exact():
    labels = np.zeros((20, 18, 16), np.uint8)
    labels[5:12, 4:11, 3:10] = 1  # 7^3 cube
    h = (0.5, 1.0, 2.0)
    area = geo.face_count_area(labels, 0, 1, h)
    assert area == pytest.approx(2 * 49 * (1.0 * 2.0 + 0.5 * 2.0 + 0.5 * 1.0))
    ssa = geo.specific_surface_areas(labels, {"pore": 0, "solid": 1}, h, marching_cubes=False)
    assert ssa["pore|solid"]["face_count"] == pytest.approx(area / (labels.size * 1.0))


def test_domain_boundary_is_not_surface():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[:, :, 5:] = 1  # one flat interface of 10 x 10
    assert geo.face_count_area(labels, 0, 1) == 100.0
    assert geo.marching_cubes_area(labels == 1) == pytest.approx(100.0, rel=1e-6)


@pytest.mark.parametrize("centre", [(15.5, 15.7, 16.2), (16.0, 16.0, 16.0), (15.3, 16.1, 15.9)])
def test_sphere_of_radius_7_marching_cubes_within_one_percent(centre):
    i, j, k = np.indices((32, 32, 32))
    sphere = ((i - centre[0]) ** 2 + (j - centre[1]) ** 2 + (k - centre[2]) ** 2) <= 49
    exact = 4 * np.pi * 49
    assert geo.marching_cubes_area(sphere) == pytest.approx(exact, rel=0.01)
    # face counting over-estimates a sphere by ~3/2 (mean |n_x|+|n_y|+|n_z| over directions)
    fc = geo.face_count_area(sphere.astype(np.uint8), 0, 1)
    assert 1.35 < fc / exact < 1.6


def test_pair_areas_by_inclusion_exclusion():
    labels = np.zeros((24, 24, 24), np.uint8)
    labels[:, :, 12:] = 2
    labels[:, 12:, :12] = 1
    h = (1.0, 1.0, 1.0)
    ssa = geo.specific_surface_areas(labels, {"a": 0, "b": 1, "c": 2}, h)
    V = labels.size
    # planes: a|b: y=12, z<12 (24 x 12); a|c and b|c: z=12 halves (24 x 12 each)
    for pair in ("a|b", "a|c", "b|c"):
        assert ssa[pair]["face_count"] * V == pytest.approx(288.0)
        assert ssa[pair]["marching_cubes"] * V == pytest.approx(288.0, rel=0.06)


def test_triple_phase_boundary_single_line():
    labels = np.zeros((9, 10, 12), np.uint8)
    labels[:, :, 6:] = 1
    labels[:, 5:, 6:] = 2
    h = (0.4, 1.0, 1.0)
    tpb = geo.triple_phase_boundary_density(labels, 0, 1, 2, h)
    assert tpb == pytest.approx(9 * 0.4 / (labels.size * 0.4))


def test_two_point_correlation_limits():
    rng = np.random.default_rng(3)
    mask = rng.random((40, 40, 40)) < 0.3
    r, s2 = geo.two_point_correlation(mask, max_lag=10)
    eps = mask.mean()
    assert r[0] == 0.0 and s2[0] == pytest.approx(eps)
    # uncorrelated voxels: S2(r >= 1) = eps^2
    assert np.allclose(s2[1:8], eps ** 2, rtol=0.03)
    # a slab structure: S2 along the normal falls linearly, S2(r) <= S2(0)
    slab = np.zeros((32, 32, 32), bool)
    slab[:, :, :16] = True
    _, s2s = geo.two_point_correlation(slab, max_lag=8)
    assert np.all(np.diff(s2s) <= 1e-12)


def test_chord_lengths_of_slabs_and_boundary_chords_excluded():
    mask = np.zeros((30, 6, 5), bool)
    mask[3:10] = True   # chord of 7 along x
    mask[15:27] = True  # chord of 12
    mask[29:] = True    # touches the boundary: excluded
    chords = geo.chord_lengths(mask, 0, (0.5, 1, 1))
    assert sorted(set(chords.tolist())) == [3.5, 6.0]
    assert len(chords) == 2 * 6 * 5
    edges, pdf, means = geo.chord_length_distribution(mask, (0.5, 1, 1), bins=8)
    assert means[0] == pytest.approx((3.5 + 6.0) / 2)
    assert np.sum(pdf * np.diff(edges)) == pytest.approx(1.0)
