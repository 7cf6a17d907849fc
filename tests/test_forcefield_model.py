"""Behler-Parrinello model: neighbour list, symmetry, derivatives, cutoff smoothness,
batching and persistence (randomly initialised weights: these are properties of the
functional form, not of a fit)."""
import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from ionscale.couplers.forcefield import IonscaleCalculator
from ionscale.kernels.atomistic.dataset import Dataset
from ionscale.kernels.atomistic.features import FeatureParams
from ionscale.kernels.atomistic.model import BPPotential
from ionscale.kernels.atomistic.neighbors import neighbor_list_unwrapped


def random_model(seed=0, **fp):
    torch.manual_seed(seed)
    m = BPPotential(FeatureParams([29, 79], **fp), hidden=(16, 16)).double()
    with torch.no_grad():
        m.feature_std.fill_(0.5)
        m.energy_shift.copy_(torch.tensor([-0.1, 0.2], dtype=torch.float64))
    return m.to("cpu")


def alloy(rep=(2, 2, 2), rattle=0.1, seed=1, a=3.8):
    at = bulk("Cu", "fcc", a=a, cubic=True) * rep
    rng = np.random.default_rng(seed)
    at.numbers[rng.random(len(at)) < 0.5] = 79
    at.rattle(rattle, seed=seed)
    return at


def brute_force_pairs(pos, cell, pbc, rc):
    inv = np.linalg.inv(cell)
    frac = pos @ inv
    spread = frac.max(0) - frac.min(0)  # unwrapped atoms may sit several cells apart
    reach = [int(np.ceil(rc * np.linalg.norm(inv[:, d]) + spread[d])) + 1 if pbc[d] else 0 for d in range(3)]
    pairs = set()
    for s in itertools.product(*[range(-r, r + 1) for r in reach]):
        v = pos[None, :, :] + np.array(s) @ cell - pos[:, None, :]
        d = np.linalg.norm(v, axis=2)
        for i, j in zip(*np.nonzero(d < rc)):
            if not (i == j and s == (0, 0, 0)):
                pairs.add((i, j, s))
    return pairs


@pytest.mark.parametrize("pbc,rc", [((True, True, True), 7.3), ((True, False, True), 4.1), ((True, True, True), 2.9)])
def test_cell_list_equals_brute_force_triclinic(pbc, rc):
    rng = np.random.default_rng(3)
    cell = np.array([[4.0, 0.0, 0.0], [1.3, 3.5, 0.0], [0.7, -0.9, 5.2]])
    pos = rng.random((9, 3)) @ cell + rng.normal(0, 2.0, (9, 3))  # some atoms outside the cell
    i, j, s = neighbor_list_unwrapped(pos, cell, pbc, rc)
    got = {(a, b, tuple(int(x) for x in sh)) for a, b, sh in zip(i, j, s)}
    assert len(got) == len(i)  # no duplicates
    assert got == brute_force_pairs(pos, cell, pbc, rc)


def test_energy_invariant_under_translation_rotation_permutation():
    m = random_model()
    at = alloy()
    e0 = m.evaluate([at])["energy"][0]
    moved = at.copy()
    moved.positions += [0.37, -1.2, 2.9]  # crosses the cell boundary
    rot = at.copy()
    rot.rotate(33, "x", rotate_cell=True)
    rot.rotate(71, (1, 1, 0), rotate_cell=True)
    perm = at[np.random.default_rng(0).permutation(len(at))]
    for other in (moved, rot, perm):
        assert m.evaluate([other])["energy"][0] == pytest.approx(e0, rel=1e-12, abs=1e-11)


def test_energy_extensive_for_periodic_supercell():
    """A 2x1x3 replica of a periodic cell has exactly 6x its energy and the same stress."""
    m = random_model()
    at = alloy(rep=(1, 2, 1), rattle=0.15)
    big = at * (2, 1, 3)
    r1, r6 = m.evaluate([at], stress=True), m.evaluate([big], stress=True)
    assert r6["energy"][0] == pytest.approx(6 * r1["energy"][0], rel=1e-11)
    np.testing.assert_allclose(r6["stress"][0], r1["stress"][0], atol=1e-11)
    np.testing.assert_allclose(r6["forces"][0][: len(at)], r1["forces"][0], atol=1e-11)


def test_forces_and_stress_match_finite_differences():
    from ase.calculators.fd import calculate_numerical_stress

    m = random_model(seed=2)
    at = alloy(rattle=0.2, seed=4)
    at.set_cell(at.cell[:] @ np.array([[1, 0.03, 0], [0, 1, -0.02], [0.01, 0, 1.0]]), scale_atoms=True)
    at.calc = IonscaleCalculator(m)
    f = at.get_forces()
    h = 1e-5
    for (a, c) in [(0, 0), (5, 1), (17, 2), (30, 1)]:
        p, q = at.copy(), at.copy()
        p.positions[a, c] += h
        q.positions[a, c] -= h
        fd = -(m.evaluate([p], forces=False)["energy"][0] - m.evaluate([q], forces=False)["energy"][0]) / (2 * h)
        assert f[a, c] == pytest.approx(fd, abs=1e-7)
    np.testing.assert_allclose(f.sum(0), 0.0, atol=1e-11)  # translation invariance = Newton's third law
    num = calculate_numerical_stress(at, eps=1e-5)
    np.testing.assert_allclose(at.get_stress(), num, atol=1e-7)


def test_cutoff_is_smooth_energy_and_force_continuous():
    """A dimer across the radial cutoff: E and dE/dr approach their r > R_c values continuously."""
    m = random_model(radial_cutoff=4.0, angular_cutoff=3.0)
    def dimer(r):
        return Atoms("CuAu", positions=[[0, 0, 0], [r, 0, 0]], cell=np.eye(3) * 30, pbc=False)
    e_far = m.evaluate([dimer(4.5)])["energy"][0]
    r = m.evaluate([dimer(4.0 - 1e-4), dimer(4.0 - 1e-2)])
    # f_c(R_c - d) ~ (pi d / R_c)^2 / 4: energy and force vanish quadratically and linearly
    assert abs(r["energy"][0] - e_far) < 1e-7
    assert abs(r["forces"][0][0, 0]) < 1e-5
    assert abs(r["energy"][1] - e_far) > 10 * abs(r["energy"][0] - e_far)


def test_batched_equals_individual_and_mixed_sizes():
    m = random_model()
    structs = [alloy(seed=s, rep=rep) for s, rep in [(1, (2, 2, 2)), (2, (1, 1, 1)), (3, (2, 1, 3))]]
    structs.append(Atoms("Cu2Au", positions=[[0, 0, 0], [2.4, 0, 0], [0, 2.5, 0.3]], pbc=False))
    batch = m.evaluate(structs, stress=False)
    for k, s in enumerate(structs):
        one = m.evaluate([s])
        assert batch["energy"][k] == pytest.approx(one["energy"][0], rel=1e-12)
        np.testing.assert_allclose(batch["forces"][k], one["forces"][0], atol=1e-12)


def test_save_load_roundtrip_tensors_only(tmp_path):
    m = random_model(seed=5)
    path = str(tmp_path / "m.pt")
    m.save(path, {"training_data_hash": "abc"})
    state = torch.load(path, weights_only=True)  # plain tensors: loads without unpickling objects
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    m2 = BPPotential.load(path, device="cpu")
    at = alloy()
    assert m2.evaluate([at])["energy"][0] == pytest.approx(m.evaluate([at])["energy"][0], rel=1e-14)
    assert m2.metadata["training_data_hash"] == "abc"
    assert m2.metadata["feature_params"]["species"] == [29, 79]
    (tmp_path / "m.pt.json").write_text('{"kind": "something else"}')
    with pytest.raises(ValueError, match="not an ionscale potential"):
        BPPotential.load(path)


def test_unknown_element_is_a_clear_error():
    with pytest.raises(ValueError, match=r"atomic numbers \[28\]"):
        random_model().evaluate([bulk("Ni", "fcc", a=3.5)])


def test_dataset_roundtrip_xyz_and_hdf5(tmp_path):
    from ase.calculators.emt import EMT

    from ionscale.kernels.atomistic.sampling import label

    ds = label(Dataset([alloy(seed=s) for s in range(3)]), EMT())
    for name in ("d.xyz", "d.h5"):
        ds.write(str(tmp_path / name))
        back = Dataset.read(str(tmp_path / name))
        np.testing.assert_allclose(back.energies, ds.energies, rtol=1e-9)
        np.testing.assert_allclose(np.concatenate(back.forces), np.concatenate(ds.forces), atol=1e-7)
        assert [a.get_chemical_formula() for a in back.atoms] == [a.get_chemical_formula() for a in ds.atoms]
    assert Dataset.read(str(tmp_path / "d.h5")).content_hash() == ds.content_hash()
    from ionscale.errors import InputDataError
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputDataError, match="bad.h5"):
        Dataset.read(str(tmp_path / "bad.h5"))
