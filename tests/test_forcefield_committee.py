"""Query-by-committee: models trained on near-equilibrium data disagree more on
far-from-equilibrium configurations, and an active-learning round selects those."""
import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT

from ionscale.kernels.atomistic.committee import active_learning_round, committee_disagreement, train_committee
from ionscale.kernels.atomistic.dataset import Dataset
from ionscale.kernels.atomistic.sampling import label, sample_alloy_configurations
from ionscale.kernels.atomistic.training import TrainConfig


@pytest.fixture(scope="module")
def committee():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    near = dict(temperatures=(200.0,), strains=(0.0,), shear=0.0, md_steps=20, stride=10)
    train_set = label(sample_alloy_configurations(["Cu", "Au"], 24, seed=5, **near), EMT())
    cfg = TrainConfig(hidden=(16,), max_epochs=25, patience=10, batch_size=8, seed=1)
    models = train_committee(train_set, cfg, size=3)
    in_dist = sample_alloy_configurations(["Cu", "Au"], 8, seed=6, **near)
    far = sample_alloy_configurations(["Cu", "Au"], 8, seed=7, temperatures=(3000.0,), strains=(0.07, -0.06),
                                      shear=0.03, md_steps=20, stride=10)
    yield models, train_set, in_dist, far, cfg
    torch.set_num_threads(threads)


def test_disagreement_larger_off_distribution(committee):
    models, _, in_dist, far, _ = committee
    s_in, _ = committee_disagreement(models, in_dist.atoms)
    s_far, _ = committee_disagreement(models, far.atoms)
    print("committee force sigma: in-distribution", np.median(s_in), "far", np.median(s_far))
    assert np.median(s_far) > 2 * np.median(s_in)


def test_active_learning_round_selects_far_configurations(committee):
    models, train_set, in_dist, far, cfg = committee
    pool = Dataset(in_dist.atoms + far.atoms)
    new_models, merged, chosen, _ = active_learning_round(models, train_set, pool, EMT(), 6,
                                                          TrainConfig(hidden=(16,), max_epochs=2, batch_size=8))
    assert np.sum(np.asarray(chosen) >= len(in_dist)) >= 5  # indices >= 8 are the far configurations
    assert len(merged) == len(train_set) + 6 and len(new_models) == 3
    # the added structures carry reference labels
    a = merged.atoms[-1].copy()
    a.calc = EMT()
    assert merged.energies[-1] == pytest.approx(a.get_potential_energy(), abs=1e-8)
