"""The levers and plumbing that turn a generator into training data: counts, generator cache, confidence
filter, fine-tuning on real images, lever grids and their labels in the report."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blobs as _blobs

from synthmed.audit.synthetic import FILTER_OVERSAMPLE, confidence_filter
from synthmed.data import load_dataset, make_subset
from synthmed.errors import SynthmedError
from synthmed.experiment.grid import Grid, expand, override, parse_method_params
from synthmed.experiment.synthetic_set import _fit_length, synthesise, synthetic_counts
from synthmed.spec import SyntheticLevers, coerce, method_label
from synthmed.train.recipes import get_recipe
from synthmed.train.trainer import TrainConfig, fine_tune_on_real, train_classifier


def test_synthetic_counts_fixed_ratio_and_balance():
    labels = np.array([0] * 10 + [1] * 4 + [2] * 6)
    assert synthetic_counts(labels, 3) == {0: 150, 1: 150, 2: 150}
    assert synthetic_counts(labels, 3, per_class=7) == {0: 7, 1: 7, 2: 7}
    assert synthetic_counts(labels, 3, ratio=0.5) == {0: 5, 1: 2, 2: 3}
    assert synthetic_counts(labels, 3, balance=True) == {0: 0, 1: 6, 2: 4}


def test_the_fit_log_names_steps_for_a_diffusion_preset_and_epochs_when_given():
    from synthmed.augment.diffusion import PRESETS

    assert _fit_length(PRESETS["ddpm"]) == f"{PRESETS['ddpm']['steps']} steps"  # was "None epochs"
    assert _fit_length({**PRESETS["ddpm"], "epochs": 3}) == "3 epochs"
    assert _fit_length({"epochs": 40}) == "40 epochs" and _fit_length({}) == "the preset's length"


def test_two_count_policies_are_refused():
    with pytest.raises(SynthmedError, match="give only one of --synthetic-per-class, --synthetic-ratio"):
        SyntheticLevers(synthetic_per_class=5, synthetic_ratio=0.5).check()


@pytest.mark.parametrize(
    "name, value, phrase",
    [
        ("synthetic_per_class", 0, "--synthetic-per-class 0 must be >= 1"),
        ("synthetic_ratio", -1.0, "--synthetic-ratio -1.0 must be > 0"),
        ("min_confidence", 1.5, "--min-confidence 1.5 must be > 0 and < 1"),
        ("finetune_epochs", "two", "--finetune-epochs should be an integer, got 'two'"),
    ],
)
def test_bad_lever_values_are_one_line_errors(name, value, phrase):
    with pytest.raises(SynthmedError) as err:
        coerce(name, value)
    assert str(err.value) == phrase


def test_confidence_filter_keeps_the_first_passing_images_of_each_class():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    confidence = np.array([0.9, 0.2, 0.8, 0.95, 0.1, 0.7, 0.3, 0.9])
    index, info = confidence_filter(np.zeros((8, 2, 2)), labels, {0: 2, 1: 2}, confidence, 0.6)
    assert index.tolist() == [0, 2, 5, 7]  # in sampling order, not the most confident first
    assert info["kept"] == {"0": 2, "1": 2} and info["kept_share"] == 1.0
    index, info = confidence_filter(np.zeros((8, 2, 2)), labels, {0: 2, 1: 2}, confidence, 0.85)
    assert index.tolist() == [0, 3, 7] and info["kept_share"] == 0.75


@pytest.fixture(scope="module")
def breast_small(real_root):
    data = load_dataset("breastmnist", data_root=real_root)
    return data, make_subset(data, "lowdata", seed=0, per_class=20)


@pytest.mark.slow
def test_generator_cache_reuses_the_fit_and_reproduces_the_samples(breast_small, tmp_path, monkeypatch):
    import synthmed.augment.generative as generative

    monkeypatch.setattr(generative, "PROGRESS_EVERY_S", 0.0)  # a line after every epoch of a fit
    data, subset = breast_small
    levers = SyntheticLevers(synthetic_per_class=6, fidelity=False)
    said: list[str] = []
    first = synthesise(data, subset, "cvae", {"epochs": 2}, levers, 0, tmp_path, device="cpu", on_status=said.append)
    assert not first.audit.generator_cached and first.generator_path.exists()
    assert [line.split(",")[0] for line in said if line.startswith("fitting cvae")] == [
        "fitting cvae (2 epochs)",
        "fitting cvae: epoch 1/2 (50 %)",
        "fitting cvae: epoch 2/2 (100 %)",
    ]
    said.clear()
    again = synthesise(data, subset, "cvae", {"epochs": 2}, levers, 0, tmp_path, device="cpu", on_status=said.append)
    assert again.audit.generator_cached and again.generator_path == first.generator_path
    assert not [line for line in said if line.startswith("fitting cvae")]  # loaded, not fitted, and says so
    assert "cvae: its fit loaded from the cache" in said
    assert np.array_equal(again.images, first.images) and np.array_equal(again.labels, first.labels)
    other_seed = synthesise(data, subset, "cvae", {"epochs": 2}, levers, 1, tmp_path, device="cpu")
    assert not other_seed.audit.generator_cached and other_seed.generator_path != first.generator_path
    shared = SyntheticLevers(synthetic_per_class=6, fidelity=False, generator_seed=0)
    assert synthesise(data, subset, "cvae", {"epochs": 2}, shared, 1, tmp_path, device="cpu").audit.generator_cached


@pytest.mark.slow
def test_confidence_filter_and_fidelity_use_the_reference_classifier(breast_small, tmp_path):
    data, subset = breast_small
    levers = SyntheticLevers(synthetic_per_class=10, min_confidence=0.5, fidelity_epochs=1)
    result = synthesise(data, subset, "cvae", {"epochs": 2}, levers, 0, tmp_path, device="cpu", precision="fp32")
    info = result.audit.details["filter"]
    assert info["candidates"] == 2 * 10 * FILTER_OVERSAMPLE and info["requested"] == 20
    assert len(result.labels) == sum(info["kept"].values()) <= 20
    # every kept image is one the reference classifier assigns to its intended class
    assert result.audit.details["fidelity"]["accuracy"] == 1.0
    assert 0.0 <= info["candidate_fidelity"] <= 1.0
    assert result.audit.kept_share == info["kept_share"] and result.audit.fidelity == 1.0
    # the run says it trained its reference and how long it took (a time budget costs the next such run by it)
    assert result.audit.reference_cached is False and result.audit.reference_seconds > 0
    again = synthesise(data, subset, "cvae", {"epochs": 2}, levers, 0, tmp_path, device="cpu", precision="fp32")
    assert again.audit.reference_cached is True and again.audit.reference_seconds is None


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
    grid = override(
        Grid(datasets=["breastmnist"], seeds=[0, 1]),
        {"method": "none,cvae", "synthetic_weight": "0.5,1", "fidelity": False, "generator_epochs": 3},
    )
    specs = expand(grid)
    none = [s for s in specs if s.method == "none"]
    cvae = [s for s in specs if s.method == "cvae"]
    assert len(none) == 2 and all(s.synthesis == SyntheticLevers() and not s.method_params for s in none)
    assert len(cvae) == 4 and {s.synthesis.synthetic_weight for s in cvae} == {0.5, 1.0}
    assert all(s.method_params == {"epochs": 3} and not s.synthesis.fidelity for s in cvae)
    with pytest.raises(
        SynthmedError, match="--synthetic-weight applies to methods that add a synthetic set; none of none, flip does"
    ):
        override(Grid(datasets=["breastmnist"]), {"method": "none,flip", "synthetic_weight": "0.5"})


def test_method_label_names_the_levers_that_differ_from_the_paper():
    def config(**levers):
        return {
            "method": "cvae",
            "method_params": levers.pop("method_params", {}),
            "synthesis": {"synthetic_weight": 1.0, "finetune_epochs": 0, "balance": False, **levers},
        }

    assert method_label(config()) == "cvae"
    assert (
        method_label(config(synthetic_weight=0.5, min_confidence=0.8, finetune_epochs=5, method_params={"epochs": 100}))
        == "cvae weight 0.5 conf≥0.8 ft 5 epochs=100"
    )


def test_method_parameter_grid_expands_every_combination():
    grid = parse_method_params(["lr=1e-4,2e-4", "sn_generator=true", "activation=elu", "betas=[0.5,0.9]"])
    assert grid == {"lr": [1e-4, 2e-4], "sn_generator": [True], "activation": ["elu"], "betas": [[0.5, 0.9]]}
    specs = expand(
        override(
            Grid(datasets=["breastmnist"], seeds=[0]),
            {"method": "flip,cvae", "method_params": ["lr=1e-4,2e-4", "latent_dim=16,32"]},
        )
    )
    assert len([s for s in specs if s.method == "cvae"]) == 4 and len(specs) == 5
    assert {(s.method_params["lr"], s.method_params["latent_dim"]) for s in specs if s.method == "cvae"} == {
        (1e-4, 16),
        (1e-4, 32),
        (2e-4, 16),
        (2e-4, 32),
    }
    with pytest.raises(SynthmedError, match="KEY=VALUE"):
        parse_method_params(["lr"])
    with pytest.raises(SynthmedError, match="no method of this grid .* has the parameter 'beta'"):
        override(Grid(datasets=["breastmnist"]), {"method": "cvae", "method_params": ["beta=2"]})


def test_the_generator_cache_key_names_the_feature_space_fid_selection_ranks_in():
    """``--select-generator fid`` keeps the checkpoint with the lowest FID in the reference classifier's features,
    which ``fidelity_epochs`` shape: two feature spaces are two generators, while without tracking none enters."""
    from types import SimpleNamespace

    from synthmed.experiment.synthetic_set import generator_key

    gen = SimpleNamespace(fit_config=lambda: {"method": "cvae", "epochs": 5})
    data = SimpleNamespace(name="breastmnist", md5="x", size=28)
    subset = SimpleNamespace(train_indices=np.arange(4), protocol="lowdata", unlabelled=None, unlabelled_indices=None)
    a = generator_key(gen, data, subset, 0, 10, True, "domain:reference_aaaa")  # type: ignore[arg-type]
    b = generator_key(gen, data, subset, 0, 10, True, "domain:reference_bbbb")  # type: ignore[arg-type]
    assert a != b
    plain = generator_key(gen, data, subset, 0, None, False, "domain:reference_aaaa")  # type: ignore[arg-type]
    assert "feature_space" not in plain


def test_a_run_pinned_to_a_precision_fits_its_ddpm_at_it_on_every_cpu():
    """ddpm's own ``precision: auto`` resolves by CPU; a run that pins bf16 (the study files) fits and samples its
    ddpm at bf16 everywhere, under a cache key of its own. A precision the method is given is kept, and a method
    without the parameter is untouched."""
    from synthmed.experiment.synthetic_set import create_generator

    assert create_generator("ddpm", {}, precision="bf16").params["precision"] == "bf16"
    assert create_generator("ddpm", {}, precision="auto").params["precision"] == "auto"
    assert create_generator("ddpm", {"precision": "fp32"}, precision="bf16").params["precision"] == "fp32"
    assert "precision" not in create_generator("conv-cvae", {}, precision="bf16").params
    assert "precision" not in create_generator("flip", {}, precision="bf16").params
    pinned, auto = (create_generator("ddpm", {}, precision=p).fit_config() for p in ("bf16", "auto"))
    assert pinned != auto and {**pinned, "precision": "auto"} == auto
