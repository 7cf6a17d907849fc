"""Batched inference and reference labelling split over MPI ranks give the serial answer."""
import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

from ionscale.couplers.forcefield import evaluate_batch
from ionscale.kernels.atomistic.features import FeatureParams
from ionscale.kernels.atomistic.model import BPPotential

pytestmark = pytest.mark.mpi


def structures(n):
    out = []
    for s in range(n):
        a = bulk("Cu", "fcc", a=3.7, cubic=True) * (1 + s % 2, 2, 2)
        a.numbers[np.random.default_rng(s).random(len(a)) < 0.5] = 79
        a.rattle(0.1, seed=s)
        out.append(a)
    return out


def test_batched_inference_over_ranks_equals_serial(comm):
    torch.manual_seed(0)
    m = BPPotential(FeatureParams([29, 79]), hidden=(8,)).double()
    st = structures(7)
    par = evaluate_batch(m, st, batch_size=2, stress=True, comm=comm)
    ser = evaluate_batch(m, st, batch_size=7, stress=True, comm=None)
    np.testing.assert_allclose(par["energy"], ser["energy"], rtol=1e-12)
    np.testing.assert_allclose(par["stress"], ser["stress"], atol=1e-12)
    for f1, f2 in zip(par["forces"], ser["forces"]):
        np.testing.assert_allclose(f1, f2, atol=1e-12)
    assert [len(f) for f in par["forces"]] == [len(a) for a in st]


def test_label_stage_over_ranks_equals_emt(comm, tmp_path):
    from ionscale.kernels.atomistic.dataset import Dataset
    from ionscale.kernels.atomistic.stages import LabelConfigurations
    from ionscale.stage import StageInputs

    d = comm.bcast(str(tmp_path) if comm.rank == 0 else None)
    st = structures(5)
    if comm.rank == 0:
        Dataset(st).write(f"{d}/in.xyz")
    comm.Barrier()
    stage = LabelConfigurations("label")
    stage.output_dir, stage.run_name, stage.seed = d, "t", 0
    out = stage.run(comm, StageInputs(), {"input": f"{d}/in.xyz", "reference": {"engine": "emt"}})
    ds = Dataset.read(out["dataset"])
    for a, e, f in zip(st, ds.energies, ds.forces):
        a.calc = EMT()
        assert e == pytest.approx(a.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(f, a.get_forces(), atol=1e-6)
