"""Protocols: the paper's subset sizes, determinism in the seed, even class allocation."""

from __future__ import annotations

import numpy as np
import pytest

from synthmed.data import load_dataset, make_subset
from synthmed.data.dataset import Dataset, Split
from synthmed.data.protocol import water_fill
from synthmed.errors import SynthmedError


def toy(counts_train, counts_val=None, n_test=10) -> Dataset:
    counts_val = counts_val or [max(1, c // 9) for c in counts_train]

    def split(counts):
        labels = np.concatenate([np.full(c, i) for i, c in enumerate(counts)]).astype(np.int64)
        images = (np.arange(len(labels)) % 256).astype(np.uint8)[:, None, None].repeat(28, 1).repeat(28, 2)
        return Split(images, labels)

    n = len(counts_train)
    return Dataset(
        "toy",
        "multi-class",
        [f"c{i}" for i in range(n)],
        split(counts_train),
        split(counts_val),
        split([n_test // n] * n),
    )


def test_pneumonia_lowdata_is_300_34_balanced(real_root):
    data = load_dataset("pneumoniamnist", data_root=real_root)
    sub = make_subset(data, "lowdata", seed=0)
    assert (len(sub.train), len(sub.val), len(sub.test)) == (300, 34, 624)
    assert np.bincount(sub.train.labels).tolist() == [150, 150]
    assert np.bincount(sub.val.labels).tolist() == [17, 17]
    assert not set(sub.train_indices) & set(sub.val_indices)


def test_breast_lowdata_keeps_official_split(real_root):
    data = load_dataset("breastmnist", data_root=real_root)
    sub = make_subset(data, "lowdata", seed=5)
    assert (len(sub.train), len(sub.val)) == (546, 78)
    assert np.array_equal(sub.train.images, data.train.images)
    assert len(make_subset(data, "lowdata", seed=5, per_class=50).train) == 100


def test_same_seed_same_indices_other_seed_differs():
    data = toy([400, 500, 300, 700])
    a, b, c = (make_subset(data, "lowdata", seed=s) for s in (1, 1, 2))
    assert a.indices() == b.indices()
    assert a.indices()["train"] != c.indices()["train"]


def test_oct_like_sizes_600_67():
    sub = make_subset(toy([400, 500, 300, 700]), "lowdata", seed=0)
    assert (len(sub.train), len(sub.val)) == (600, 67)
    assert np.bincount(sub.train.labels).tolist() == [150] * 4


def test_small_class_gives_its_share_to_others():
    """Derma-like: one class has only 60 images; 7 x 150 = 1050 training images still drawn, val 117."""
    sub = make_subset(toy([60, 500, 400, 300, 900, 250, 800], [6] + [50] * 6), "lowdata", seed=0)
    counts = np.bincount(sub.train.labels)
    assert (len(sub.train), len(sub.val)) == (1050, 117)
    assert counts[0] < 66 and counts[0] + np.bincount(sub.val.labels)[0] <= 66
    assert counts[1:].max() - counts[1:].min() <= 1


def test_water_fill():
    assert water_fill(10, np.array([2, 100, 100])).tolist() == [2, 4, 4]
    assert water_fill(5, np.array([1, 1])).tolist() == [1, 1]


def test_fraction_protocol():
    data = toy([300, 100])
    sub = make_subset(data, "fraction", seed=0, fraction=0.1)
    assert len(sub.train) == 40 and len(sub.val) == len(data.val)
    strat = make_subset(data, "fraction", seed=0, fraction=0.1, stratified=True)
    assert np.bincount(strat.train.labels).tolist() == [30, 10]


def test_fraction_with_empty_class_is_refused_with_hint():
    with pytest.raises(SynthmedError, match="has no images.*--stratified"):
        make_subset(toy([1000, 2]), "fraction", seed=0, fraction=0.001)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"protocol": "tiny"}, "unknown protocol"),
        ({"protocol": "fraction"}, "needs --fraction"),
        ({"protocol": "fraction", "fraction": 1.5}, "outside"),
    ],
)
def test_bad_protocol_arguments(kwargs, pattern):
    with pytest.raises(SynthmedError, match=pattern):
        make_subset(toy([50, 50]), **kwargs)
