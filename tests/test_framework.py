"""Framework pieces: scoped PETSc options, atomic results, registry, hashing."""
import numpy as np
import pytest

from ionscale.petsc_options import flatten, scoped_options
from ionscale.results import ResultsFile, StageRecord, atomic_write, read_records


def test_flatten_nested_options():
    assert flatten({"ksp": {"type": "cg", "rtol": 1e-6}, "pc_type": "gamg", "ksp_view": True, "x": False}) == \
        {"ksp_type": "cg", "ksp_rtol": "1e-06", "pc_type": "gamg", "ksp_view": ""}


def test_scoped_options_are_removed_and_command_line_wins():
    from petsc4py import PETSc
    db = PETSc.Options()
    db.setValue("s1_ksp_rtol", "1e-3")  # as if given on the command line
    try:
        with scoped_options("s1_", {"ksp_type": "gmres", "ksp_rtol": 1e-9}):
            ksp = PETSc.KSP().create(comm=PETSc.COMM_SELF)
            ksp.setOptionsPrefix("s1_")
            ksp.setFromOptions()
            assert ksp.getType() == "gmres"
            assert ksp.getTolerances()[0] == pytest.approx(1e-3)
            ksp.destroy()
        assert not db.hasName("s1_ksp_type")
        assert db.getString("s1_ksp_rtol") == "1e-3"
    finally:
        db.delValue("s1_ksp_rtol")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "r.h5"
    rf = ResultsFile(str(path), {"x": 1})
    rf.add(StageRecord("a", "t", "h1", {}, {"v": np.arange(3.0)}, {"v": "m"}))
    rf.write()
    before = path.read_bytes()

    def explode(f):
        f.create_dataset("partial", data=np.zeros(10))
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(str(path), explode)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.h5"]  # no temp file left behind
    rec = read_records(str(path))["a"]
    np.testing.assert_array_equal(rec.outputs["v"], np.arange(3.0))
    assert rec.units["v"] == "m"


def test_value_round_trip(tmp_path):
    values = {"f": 1.5, "i": 3, "b": True, "s": "text", "inf": float("inf"), "arr": np.eye(2),
              "d": {"pore": 0, "nmc": 85}, "l": [1, 2.5], "nested": [{"a": 1}]}
    rf = ResultsFile(str(tmp_path / "v.h5"), {})
    rf.add(StageRecord("s", "t", "h", {}, values))
    rf.write()
    back = read_records(str(tmp_path / "v.h5"))["s"].outputs
    for k, v in values.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(back[k], v)
        else:
            assert back[k] == v, k


def test_every_stage_type_documents_its_parameters():
    from ionscale.stage import stage_types
    types = stage_types()
    assert {"image", "spheres", "tortuosity"} <= set(types)
    for name, cls in types.items():
        assert cls.__doc__, name
        for key, p in cls.params.items():
            assert p.doc, f"{name}.{key} has no doc"
