"""The trainer: selection rule, determinism, batched augmentation."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from synthmed.augment import create_augmenter
from synthmed.data import load_dataset, make_subset
from synthmed.errors import SynthmedError
from synthmed.tensors import to_tensor
from synthmed.train.recipes import get_recipe
from synthmed.train.trainer import TrainConfig, better, train_classifier


def test_higher_validation_auc_wins():
    assert better((0.95, 0.9), (0.90, 0.1))
    assert not better((0.90, 0.1), (0.95, 0.9))


def test_auc_tie_is_broken_by_lower_validation_loss():
    """On a saturated validation set (AUC 1.0 from epoch 6 on), a later, better-calibrated epoch wins."""
    assert better((1.0, 0.20), (1.0, 0.35))
    assert not better((1.0, 0.40), (1.0, 0.35))
    history = [(0.9, 0.5), (1.0, 0.35), (1.0, 0.2), (1.0, 0.6), (0.99, 0.1)]
    best, chosen = None, None
    for epoch, key in enumerate(history, 1):
        if better(key, best):
            best, chosen = key, epoch
    assert chosen == 3


def test_nan_auc_never_beats_a_real_one():
    assert better((0.5, 1.0), (math.nan, 0.1))
    assert not better((math.nan, 0.1), (0.5, 1.0))
    assert better((math.nan, 0.1), None)


@pytest.fixture(scope="module")
def tiny(real_root):
    """12 training images per class, and 20 test images per class instead of the whole test split (156): an epoch
    on 24 images cost less than scoring the test split, which report_test_selected does every epoch."""
    data = load_dataset("breastmnist", data_root=real_root)
    sub = make_subset(data, "lowdata", seed=0, per_class=12)
    test = np.concatenate([np.flatnonzero(sub.test.labels == c)[:20] for c in (0, 1)])
    return data, dataclasses.replace(sub, test=sub.test.subset(test))


def _fit(tiny, **kwargs):
    data, sub = tiny
    config = TrainConfig(
        get_recipe("medmnist", epochs=3, batch_size=8),
        precision="fp32",
        report_test_selected=kwargs.pop("report_test_selected", False),
    )
    return train_classifier(sub.train, sub.val, sub.test, data.n_classes, data.task, config, **kwargs)


def test_same_seed_same_metrics(tiny):
    a, b = _fit(tiny, seed=4), _fit(tiny, seed=4)
    assert a.history == b.history and a.test == b.test and a.best_epoch == b.best_epoch


def test_selected_epoch_follows_the_rule_and_test_is_not_in_history(tiny):
    fit = _fit(tiny, seed=1, augmenter=create_augmenter("flip"))
    best = None
    for row in fit.history:
        if better((row["val_auc"], row["val_loss"]), best):
            best, chosen = (row["val_auc"], row["val_loss"]), row["epoch"]
    assert fit.best_epoch == chosen
    assert all("test_auc" not in row for row in fit.history)
    assert 0 <= fit.test["auc"] <= 1 and len(fit.test["confusion"]) == 2


def test_report_test_selected_records_test_every_epoch(tiny):
    fit = _fit(tiny, seed=1, report_test_selected=True)
    assert all("test_auc" in row for row in fit.history)


def test_synthetic_images_join_the_training_set(tiny):
    data, sub = tiny
    fake = (sub.train.images[:5], sub.train.labels[:5])
    fit = _fit(tiny, seed=0, synthetic=fake, synthetic_weight=0.5)
    assert fit.extra["n_train_synthetic"] == 5 and fit.extra["n_train_real"] == len(sub.train)


def test_flip_and_classic_keep_shape_and_range():
    x = to_tensor(np.random.default_rng(0).integers(0, 256, (16, 28, 28), dtype=np.uint8))
    gen = torch.Generator().manual_seed(0)
    flipped = create_augmenter("flip").transform_batch(x, gen)
    assert flipped.shape == x.shape
    assert torch.equal(flipped.flatten(1).sort(1).values, x.flatten(1).sort(1).values)  # same pixels
    assert not torch.equal(flipped, x)
    moved = create_augmenter("classic", degrees=15).transform_batch(x, gen)
    assert moved.shape == x.shape and moved.min() >= -1 and moved.max() <= 1


def test_unknown_names_are_clear_errors():
    with pytest.raises(SynthmedError, match="unknown recipe 'adamw'"):
        get_recipe("adamw")
    with pytest.raises(SynthmedError, match="unknown method 'gan2'"):
        create_augmenter("gan2")


def test_repeated_run_gives_identical_record(real_root, tmp_path):
    """Through the runner, at the precision `auto` picks on this machine: same seed, same subset and metrics."""
    from synthmed.experiment.runner import Runner
    from synthmed.spec import RunSpec

    spec = RunSpec("breastmnist", real_per_class=6, epochs=1, seed=3, method="classic")
    a = Runner(tmp_path / "a", data_root=real_root).run(spec)
    b = Runner(tmp_path / "b", data_root=real_root).run(spec)
    assert a["run_id"] == b["run_id"]
    assert (a["test_auc"], a["test_acc"], a["val_auc"], a["metrics"]) == (
        b["test_auc"],
        b["test_acc"],
        b["val_auc"],
        b["metrics"],
    )
    subset = (tmp_path / "a" / "runs" / a["run_id"] / "subset.json").read_text()
    assert subset == (tmp_path / "b" / "runs" / b["run_id"] / "subset.json").read_text()


def test_generative_method_adds_its_images_through_the_runner(real_root, tmp_path):
    from synthmed.experiment.runner import Runner
    from synthmed.spec import RunSpec, SyntheticLevers

    spec = RunSpec(
        "breastmnist",
        real_per_class=6,
        epochs=1,
        method="cvae",
        method_params={"epochs": 2},
        # one epoch of the reference classifier that scores the set's fidelity (30 by default: 34 of the test's 37 s)
        synthesis=SyntheticLevers(synthetic_per_class=4, fidelity_epochs=1),
    )
    record = Runner(tmp_path, data_root=real_root).run(spec)
    assert record["n_synthetic"] == 8 and record["n_train"] == 12
    assert record["config"]["method_params"] == {"epochs": 2}
