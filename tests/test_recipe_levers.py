"""Ways of choosing and scoring a classifier's final weights: EMA, SWA, the selection rule, flip TTA, ensembles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from synthmed.data import Split, load_dataset, make_subset
from synthmed.data.flips import LABEL_PRESERVING_FLIPS, flip, label_preserving_flips
from synthmed.errors import SynthmedError
from synthmed.nets.classifiers import build_classifier, predict
from synthmed.spec import RunSpec, coerce, method_label, recipe_label
from synthmed.train.averaging import WeightEMA, WeightSWA, batches
from synthmed.train.recipes import get_recipe
from synthmed.train.trainer import FitResult, TrainConfig, ensemble_fit, member_seed, train_classifier


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_classifier("resnet18", 1, 2, 28)


def _steps(model: nn.Module, n: int, on_step) -> None:
    """``n`` SGD steps on random images, calling ``on_step(model)`` after each (as the trainer does)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(n):
        x, y = torch.randn(8, 1, 28, 28, generator=gen), torch.randint(0, 2, (8,), generator=gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        on_step(model)


def test_ema_at_decay_zero_is_the_live_network_and_differs_above_zero():
    live = _net()
    zero, slow = WeightEMA(live, 0.0), WeightEMA(live, 0.9)

    def both(model):
        zero.step(model)
        slow.step(model)

    _steps(live, 4, both)
    live_state, zero_state, slow_state = live.state_dict(), zero.network().state_dict(), slow.network().state_dict()
    for name, value in live_state.items():
        if value.is_floating_point():  # weights and BatchNorm running statistics alike
            torch.testing.assert_close(zero_state[name], value)
    assert not torch.allclose(slow_state["conv1.weight"], live_state["conv1.weight"])
    assert not torch.allclose(slow_state["bn1.running_mean"], live_state["bn1.running_mean"])


def test_swa_recomputes_batchnorm_statistics_over_the_training_images():
    live = _net()
    swa = WeightSWA(live, 0.5, epochs=4)
    for epoch in range(1, 5):
        _steps(live, 2, lambda m: None)
        swa.epoch_end(live, epoch)
    assert swa.averaged == 2  # the last half of 4 epochs
    x = torch.randn(40, 1, 28, 28, generator=torch.Generator().manual_seed(3)) * 2 + 1
    averaged = swa.finish(batches(x, 20), torch.device("cpu"))  # equal batches: update_bn averages batch means
    # what one pass over all training images gives: the mean of bn1's input over images and positions
    with torch.no_grad():
        first = averaged.conv1(x.contiguous(memory_format=torch.channels_last))
    expected = first.mean(dim=(0, 2, 3))
    torch.testing.assert_close(averaged.bn1.running_mean, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(averaged.bn1.running_mean, live.bn1.running_mean)


def test_flip_tta_on_a_flip_symmetric_input_changes_nothing():
    net = _net().eval()
    x = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    x = x + flip(x, "horizontal")
    plain, _ = predict(net, x, "binary-class", "fp32")
    averaged, logits = predict(net, x, "binary-class", "fp32", flips=("horizontal",))
    torch.testing.assert_close(averaged, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.softmax(logits, 1), plain, rtol=1e-5, atol=1e-6)


def test_a_dataset_without_declared_flips_refuses_tta():
    assert label_preserving_flips("breastmnist") == ("horizontal",)
    assert LABEL_PRESERVING_FLIPS["organamnist"] == ()
    for name in ("organamnist", "npz:/tmp/mine.npz"):
        with pytest.raises(SynthmedError, match="no label-preserving flip is declared"):
            label_preserving_flips(name)


def _fake_fit(val_probs: np.ndarray, test_probs: np.ndarray, auc: float) -> FitResult:
    scores = {"auc": auc, "acc": 0.5, "loss": 0.7}
    return FitResult(nn.Linear(1, 1), 1, 2, [], scores, scores, 1.0, "fp32", "cpu", {}, val_probs, test_probs)


def test_an_ensemble_scores_the_mean_of_its_members_probabilities():
    labels = np.array([0, 1, 0, 1])
    a = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    b = np.array([[0.5, 0.5], [0.1, 0.9], [0.8, 0.2], [0.4, 0.6]])
    split = Split(np.zeros((4, 28, 28), np.uint8), labels)
    fit = ensemble_fit([_fake_fit(a, a, 0.75), _fake_fit(b, b, 0.75)], split, split, "binary-class")
    np.testing.assert_allclose(fit.test_probs, (a + b) / 2)
    assert fit.test["auc"] == 1.0  # mean P(1): 0.3, 0.65, 0.45, 0.7 ranks every positive above every negative
    assert [m["test_auc"] for m in fit.extra["members"]] == [0.75, 0.75]
    assert member_seed(7, 0) == 7 and member_seed(7, 1) != member_seed(7, 2) != 7


@pytest.fixture(scope="module")
def tiny(real_root):
    """12 training images per class, and 20 test images per class instead of the whole test split (156), which cost
    more to score (twice with flip TTA) than the three epochs on 24 images."""
    data = load_dataset("breastmnist", data_root=real_root)
    sub = make_subset(data, "lowdata", seed=0, per_class=12)
    test = np.concatenate([np.flatnonzero(sub.test.labels == c)[:20] for c in (0, 1)])
    return data, dataclasses.replace(sub, test=sub.test.subset(test))


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides, check",
    [
        ({"select": "last"}, lambda fit: fit.best_epoch == 3),
        ({"ema": 0.9}, lambda fit: 1 <= fit.best_epoch <= 3),
        ({"swa": 0.5}, lambda fit: fit.best_epoch == 3 and fit.extra["swa_epochs"] == 2),
        ({"select": "loss", "tta": "flips"}, lambda fit: fit.best_epoch == min(fit.history, key=_loss)["epoch"]),
    ],
)
def test_recipe_levers_train_and_select_as_documented(tiny, overrides, check):
    data, sub = tiny
    recipe = get_recipe("medmnist", epochs=3, batch_size=8, **overrides)
    config = TrainConfig(recipe, precision="fp32", flips=label_preserving_flips(data.name))
    fit = train_classifier(sub.train, sub.val, sub.test, data.n_classes, data.task, config, seed=0)
    assert check(fit)
    assert fit.test_probs is not None and fit.test_probs.shape == (len(sub.test), 2)


def _loss(row: dict) -> float:
    return row["val_loss"]


@pytest.mark.parametrize(
    "name, value, phrase",
    [
        ("ema", "1.5", "--ema 1.5 must be >= 0 and < 1"),
        ("swa", "0", "--swa 0.0 must be > 0 and <= 1"),
        ("select", "best", "--select 'best': choose one of auc, loss, last"),
        ("ensemble", "0", "--ensemble 0 must be >= 1"),
        ("tta", "rotations", "--tta 'rotations': choose one of flips"),
    ],
)
def test_bad_values_are_one_line_errors(name, value, phrase):
    with pytest.raises(SynthmedError) as err:
        coerce(name, value)
    assert phrase in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides, phrase",
    [
        ({"ema": 0.9, "swa": 0.5}, "give only one of --ema, --swa"),
        ({"swa": 0.5, "select": "auc"}, "use --select last"),
        ({"swa": 0.5, "patience": 3}, "--patience would stop before them"),
    ],
)
def test_settings_that_cannot_work_together_are_refused(overrides, phrase):
    patience = overrides.pop("patience", None)
    with pytest.raises(SynthmedError, match=phrase):
        get_recipe("medmnist", 20, patience, **overrides)


def test_new_fields_round_trip_through_yaml_the_cli_grid_and_the_label(tmp_path):
    from synthmed.experiment.grid import Grid, expand, load_grid, override

    path = tmp_path / "study.yaml"
    path.write_text(
        "datasets: breastmnist\nmethods: none\n"
        "recipes: {recipe: medmnist, epochs: 20, ema: 0.9, select: last, tta: flips, ensemble: 3}\nseeds: [0]\n"
    )
    from_yaml = expand(load_grid(path))
    given = {"epochs": 20, "ema": "0.9", "select": "last", "tta": "flips", "ensemble": "3"}
    from_cli = expand(override(Grid(datasets=["breastmnist"], seeds=[0]), given))
    assert [s.key("x")[0] for s in from_cli] == [s.key("x")[0] for s in from_yaml]
    spec = from_yaml[0]
    assert (spec.ema, spec.select, spec.tta, spec.ensemble) == (0.9, "last", "flips", 3)
    config = spec.key("x")[1]
    assert recipe_label(config) == "medmnist ema 0.9 select last tta flips ensemble 3"
    assert method_label(config) == "none"  # a recipe is the protocol of a table, not a row's label
    assert RunSpec(dataset="breastmnist").key("x")[0] == RunSpec(dataset="breastmnist", ema=None).key("x")[0]


def test_the_study_recipe_keeps_the_last_epoch_of_the_medmnist_schedule():
    """The protocol bench/noise.py chose: the medmnist optimiser and schedule at 20 epochs, no selection."""
    study, medmnist = get_recipe("study"), get_recipe("medmnist", 20)
    assert (study.select, study.epochs, study.ema, study.swa, study.tta, study.ensemble) == (
        "last",
        20,
        None,
        None,
        None,
        1,
    )
    assert (study.optimizer, study.lr, study.batch_size, study.milestones) == (
        medmnist.optimizer,
        medmnist.lr,
        medmnist.batch_size,
        medmnist.milestones,
    )
