"""The levers and plumbing that turn a generator into training data: counts, generator cache, confidence
filter, fine-tuning on real images, lever grids and their labels in the report."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blobs as _blobs

from synthmed.data import load_dataset, make_subset
from synthmed.errors import SynthmedError
from synthmed.experiment.report import method_label
from synthmed.experiment.runner import expand
from synthmed.experiment.synthesis import (
    FILTER_OVERSAMPLE,
    SynthesisPlan,
    _confidence_filter,
    synthesise,
    synthetic_counts,
)
from synthmed.train.recipes import get_recipe
from synthmed.train.trainer import TrainConfig, fine_tune_on_real, train_classifier


def test_synthetic_counts_fixed_ratio_and_balance():
    labels = np.array([0] * 10 + [1] * 4 + [2] * 6)
    assert synthetic_counts(labels, 3) == {0: 150, 1: 150, 2: 150}
    assert synthetic_counts(labels, 3, per_class=7) == {0: 7, 1: 7, 2: 7}
    assert synthetic_counts(labels, 3, ratio=0.5) == {0: 5, 1: 2, 2: 3}
    assert synthetic_counts(labels, 3, balance=True) == {0: 0, 1: 6, 2: 4}


@pytest.mark.parametrize("plan, phrase", [
    (SynthesisPlan("cvae", per_class=5, ratio=0.5), "only one of"),
    (SynthesisPlan("cvae", per_class=0), "at least 1"),
    (SynthesisPlan("cvae", ratio=-1.0), "must be positive"),
    (SynthesisPlan("cvae", min_confidence=1.5), "in (0, 1)"),
])
def test_bad_plans_are_one_line_errors(plan, phrase):
    with pytest.raises(SynthmedError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        plan.check()


def test_confidence_filter_keeps_the_first_passing_images_of_each_class():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    confidence = np.array([0.9, 0.2, 0.8, 0.95, 0.1, 0.7, 0.3, 0.9])
    index, info = _confidence_filter(np.zeros((8, 2, 2)), labels, {0: 2, 1: 2}, confidence, 0.6)
    assert index.tolist() == [0, 2, 5, 7]  # in sampling order, not the most confident first
    assert info["kept"] == {"0": 2, "1": 2} and info["kept_share"] == 1.0
    index, info = _confidence_filter(np.zeros((8, 2, 2)), labels, {0: 2, 1: 2}, confidence, 0.85)
    assert index.tolist() == [0, 3, 7] and info["kept_share"] == 0.75


@pytest.fixture(scope="module")
def breast_small(real_root):
    data = load_dataset("breastmnist", data_root=real_root)
    return data, make_subset(data, "lowdata", seed=0, per_class=20)


@pytest.mark.slow
def test_generator_cache_reuses_the_fit_and_reproduces_the_samples(breast_small, tmp_path):
    data, subset = breast_small
    plan = SynthesisPlan("cvae", {"epochs": 2}, per_class=6, fidelity=False)
    first = synthesise(data, subset, plan, 0, tmp_path, device="cpu")
    assert not first.generator_cached and first.generator_path.exists()
    again = synthesise(data, subset, plan, 0, tmp_path, device="cpu")
    assert again.generator_cached and again.generator_path == first.generator_path
    assert np.array_equal(again.images, first.images) and np.array_equal(again.labels, first.labels)
    other_seed = synthesise(data, subset, plan, 1, tmp_path, device="cpu")
    assert not other_seed.generator_cached and other_seed.generator_path != first.generator_path
    shared = SynthesisPlan("cvae", {"epochs": 2}, per_class=6, fidelity=False, generator_seed=0)
    assert synthesise(data, subset, shared, 1, tmp_path, device="cpu").generator_cached


@pytest.mark.slow
def test_confidence_filter_and_fidelity_use_the_reference_classifier(breast_small, tmp_path):
    data, subset = breast_small
    plan = SynthesisPlan("cvae", {"epochs": 2}, per_class=10, min_confidence=0.5, fidelity_epochs=1)
    result = synthesise(data, subset, plan, 0, tmp_path, device="cpu", precision="fp32")
    info = result.audit["filter"]
    assert info["candidates"] == 2 * 10 * FILTER_OVERSAMPLE and info["requested"] == 20
    assert len(result.labels) == sum(info["kept"].values()) <= 20
    # every kept image is one the reference classifier assigns to its intended class
    assert result.audit["fidelity"]["accuracy"] == 1.0
    assert 0.0 <= info["candidate_fidelity"] <= 1.0
    summary = result.summary()
    assert summary["kept_share"] == info["kept_share"] and summary["fidelity"] == 1.0




@pytest.mark.slow
def test_fine_tuning_continues_on_real_and_keeps_the_better_model():
    train, val, test = _blobs(24, 0), _blobs(12, 1), _blobs(12, 2)
    config = TrainConfig(get_recipe("medmnist", 2), precision="fp32", device="cpu")
    fit = train_classifier(train, val, test, 2, "binary-class", config, seed=0)
    tuned = fine_tune_on_real(fit, train, val, test, 2, "binary-class", config, epochs=2, seed=0)
    assert tuned.epochs_run == 4 and [h.get("phase") for h in tuned.history] == [None, None, "finetune", "finetune"]
    info = tuned.extra["finetune"]
    if info["selected"]:
        assert tuned.best_epoch == 2 + info["best_epoch"]
        assert tuned.val["auc"] >= fit.val["auc"] - 1e-9
    else:
        assert tuned.best_epoch == fit.best_epoch and tuned.test == fit.test


def test_lever_grid_multiplies_only_generative_methods():
    specs = expand(["breastmnist"], ["none", "cvae"], [0, 1], levers={"synthetic_weight": [0.5, 1.0],
                                                                    "finetune_epochs": [None]},
                   method_grid={"epochs": [3]}, protocol="lowdata", fidelity=False)
    none = [s for s in specs if s.method == "none"]
    cvae = [s for s in specs if s.method == "cvae"]
    assert len(none) == 2 and all(s.synthetic_weight == 1.0 and s.fidelity and not s.method_params for s in none)
    assert len(cvae) == 4 and {s.synthetic_weight for s in cvae} == {0.5, 1.0}
    assert all(s.method_params == {"epochs": 3} and not s.fidelity for s in cvae)


def test_method_label_names_the_levers_that_differ_from_the_paper():
    def record(**config):
        return {"method": "cvae", "config": {"synthetic_weight": 1.0, "finetune_epochs": 0, "balance": False,
                                             "method_params": {}, **config}}

    assert method_label(record()) == "cvae"
    assert method_label(record(synthetic_weight=0.5, min_confidence=0.8, finetune_epochs=5,
                               method_params={"epochs": 100})) == "cvae weight 0.5 conf≥0.8 ft 5 epochs=100"


def test_method_parameter_grid_expands_every_combination():
    from synthmed.cli import _method_grid

    grid = _method_grid(["lr=1e-4,2e-4", "sn_generator=true", "activation=elu"], generator_epochs=7)
    assert grid == {"lr": [1e-4, 2e-4], "sn_generator": [True], "activation": ["elu"], "epochs": [7]}
    grid = _method_grid({"lr": [1e-4, 2e-4], "beta": [0.5, 1.0]}, None)
    specs = expand(["breastmnist"], ["flip", "cvae"], [0], method_grid=grid)
    assert len([s for s in specs if s.method == "cvae"]) == 4 and len(specs) == 5
    assert {(s.method_params["lr"], s.method_params["beta"]) for s in specs if s.method == "cvae"} == {
        (1e-4, 0.5), (1e-4, 1.0), (2e-4, 0.5), (2e-4, 1.0)}
    with pytest.raises(SynthmedError, match="KEY=VALUE"):
        _method_grid(["lr"], None)
