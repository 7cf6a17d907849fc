"""Image readers: formats round-trip, bad files give errors that name the file."""
import h5py
import numpy as np
import pytest
import tifffile

from ionscale.errors import InputDataError
from ionscale.kernels.imaging.io import read_volume, select_phase


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    return rng.choice(np.array([0, 85, 170], dtype=np.uint8), size=(5, 6, 7))


def test_formats_round_trip(tmp_path, labels):
    tifffile.imwrite(tmp_path / "a.tiff", labels)
    np.save(tmp_path / "a.npy", labels)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["seg"] = labels
        f["other"] = np.zeros((2, 2))
    for path in ("a.tiff", "a.npy", "a.h5", "a.h5::seg"):
        np.testing.assert_array_equal(read_volume(str(tmp_path / path)), labels)


def test_errors_name_the_file(tmp_path, labels):
    with pytest.raises(InputDataError, match="not found: .*missing.tiff"):
        read_volume(str(tmp_path / "missing.tiff"))
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["x"] = labels
        f["y"] = labels
    with pytest.raises(InputDataError, match=r"b.h5: name the 3D dataset"):
        read_volume(str(tmp_path / "b.h5"))
    with pytest.raises(InputDataError, match=r"b.h5: no dataset 'z'"):
        read_volume(str(tmp_path / "b.h5::z"))
    np.save(tmp_path / "f.npy", np.full((3, 3, 3), 0.5))
    with pytest.raises(InputDataError, match="f.npy: expected integer labels"):
        read_volume(str(tmp_path / "f.npy"))
    np.save(tmp_path / "4d.npy", np.zeros((2, 2, 2, 2), np.uint8))
    with pytest.raises(InputDataError, match=r"expected a 3D label image, got an array of shape \(2, 2, 2, 2\)"):
        read_volume(str(tmp_path / "4d.npy"))
    (tmp_path / "x.raw").write_bytes(b"\0" * 8)
    with pytest.raises(InputDataError, match="unsupported image format '.raw'"):
        read_volume(str(tmp_path / "x.raw"))


def test_select_phase_by_name_and_value(labels):
    phases = {"pore": 0, "nmc": 85, "cbd": 170}
    np.testing.assert_array_equal(select_phase(labels, ["pore", 170], phases), (labels == 0) | (labels == 170))
    with pytest.raises(InputDataError, match="unknown phase name 'pre' \\(did you mean 'pore'\\?\\)"):
        select_phase(labels, "pre", phases)


def test_real_electrode_fractions(electrode_path):
    vol = read_volume(str(electrode_path))
    assert vol.shape == (256, 256, 256)
    fractions = {v: (vol == v).mean() for v in (0, 85, 170)}
    assert fractions[0] == pytest.approx(0.450, abs=0.005)
    assert fractions[85] == pytest.approx(0.400, abs=0.005)
    assert fractions[170] == pytest.approx(0.150, abs=0.005)
