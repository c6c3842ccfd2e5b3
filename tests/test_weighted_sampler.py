"""data.WeightedRandomSampler: PyTorch's signature and behaviour (its random numbers are
not PyTorch's; the frequencies are checked instead), seeded like RandomSampler."""
import inspect

import numpy as np
import pytest
import torch

import tinydl as td
from tinydl.data import DataLoader, TensorDataset, WeightedRandomSampler


def test_signature_matches_torch():
    ours = inspect.signature(WeightedRandomSampler).parameters
    theirs = inspect.signature(torch.utils.data.WeightedRandomSampler).parameters
    assert list(ours)[:4] == list(theirs)
    assert [ours[k].default for k in theirs] == [v.default for v in theirs.values()]


def test_frequencies_follow_the_weights():
    weights = [0.1, 0.0, 2.0, 0.9, 1.0]
    sampler = WeightedRandomSampler(weights, 40000, seed=0)
    counts = np.bincount(list(sampler), minlength=5) / 40000
    np.testing.assert_allclose(counts, np.array(weights) / 4.0, atol=0.01)
    assert counts[1] == 0 and len(sampler) == 40000


def test_class_balanced_sampling_evens_out_an_imbalanced_set():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    weights = td.tensor(1.0 / np.bincount(labels)[labels])
    drawn = labels[list(WeightedRandomSampler(weights, 30000, seed=1))]
    np.testing.assert_allclose(np.bincount(drawn) / 30000, [1 / 3] * 3, atol=0.015)


def test_without_replacement_draws_distinct_indices():
    sampler = WeightedRandomSampler([1, 0, 5, 3, 2], 4, replacement=False, seed=2)
    order = list(sampler)
    assert sorted(order) == [0, 2, 3, 4]
    with pytest.raises(ValueError, match="cannot draw 5 samples without replacement from 4 indices"):
        WeightedRandomSampler([1, 0, 5, 3, 2], 5, replacement=False)


def test_seeded_per_epoch_and_resumable_in_a_loader():
    a, b = WeightedRandomSampler([1, 2, 3], 12, seed=5), WeightedRandomSampler([1, 2, 3], 12, seed=5)
    first, second = list(a), list(a)
    assert first == list(b) and second == list(b) and first != second
    td.manual_seed(0)
    ds = TensorDataset(td.arange(6))
    loader = DataLoader(ds, batch_size=4, sampler=WeightedRandomSampler([0, 0, 1, 1, 0, 1], 8))
    values = np.concatenate([batch[0].numpy() for batch in loader])
    assert len(values) == 8 and set(values.tolist()) <= {2, 3, 5}


@pytest.mark.parametrize("weights, num_samples, match", [
    ([1, -1], 3, "non-negative"), ([0, 0], 3, "not all zero"), ([[1, 2]], 3, "1-D"),
    ([1, 2], 0, "num_samples must be a positive int"), ([1, float("nan")], 2, "finite")])
def test_bad_arguments_name_the_sampler(weights, num_samples, match):
    with pytest.raises(ValueError, match=f"WeightedRandomSampler: .*{match}"):
        WeightedRandomSampler(weights, num_samples)
