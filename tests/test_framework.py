"""Framework pieces: scoped PETSc options, atomic results, registry, communicators."""
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


def test_rank_local_failure_aborts_instead_of_hanging(tmp_path):
    """One rank fails inside collective work while the other waits in a collective:
    the job must end (non-zero) rather than hang."""
    import subprocess
    import sys

    from conftest import clean_env

    script = tmp_path / "fail_one_rank.py"
    script.write_text(
        "from mpi4py import MPI\n"
        "from ionscale.comm import abort_on_rank_local_error\n"
        "comm = MPI.COMM_WORLD\n"
        "with abort_on_rank_local_error(comm, 'test stage'):\n"
        "    if comm.rank == 1:\n"
        "        raise ValueError('only on rank 1')\n"
        "    comm.Barrier()\n")
    r = subprocess.run(["mpirun", "--oversubscribe", "-n", "2", sys.executable, str(script)],
                       capture_output=True, text=True, env=clean_env(), timeout=120)
    assert r.returncode != 0
    assert "rank 1 of 2: test stage failed: ValueError: only on rank 1" in r.stderr


@pytest.mark.mpi
def test_collective_call_fails_on_all_ranks(comm):
    from ionscale.comm import collective_call
    from ionscale.errors import DeckError

    def parse():
        raise DeckError("bad deck")

    with pytest.raises(DeckError, match="bad deck"):
        collective_call(parse, comm)
    assert collective_call(lambda: {"rank0": True}, comm) == {"rank0": True}


@pytest.mark.mpi
def test_split_ensemble_checks_sizes(comm):
    from ionscale.comm import split_ensemble
    from ionscale.errors import CommunicatorError

    with pytest.raises(CommunicatorError, match="does not divide"):
        split_ensemble(comm, comm.size + 1)
    sub, group, n = split_ensemble(comm, 1)
    assert (sub.size, group, n) == (1, comm.rank, comm.size)
    sub.Free()
