"""Niemeijer et al. 2024 (TSynD): epistemic uncertainty (MC dropout, ensembles, entropy, BALD) and TSynD's
latent optimisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import blobs as _blobs
from torch import nn

from synthmed.augment import Kind, create_augmenter
from synthmed.augment.generative import TorchGenerator
from synthmed.errors import SynthmedError
from synthmed.metrics.uncertainty import (
    ensemble_samples,
    image_uncertainty,
    mc_dropout_samples,
    mutual_information,
    predictive_entropy,
    split_head,
)
from synthmed.nets.classifiers import build_classifier
from synthmed.tensors import to_tensor
from synthmed.train.recipes import get_recipe
from synthmed.train.trainer import TrainConfig, train_classifier


def test_mutual_information_of_identical_samples_is_zero_and_uniform_entropy_is_log_c():
    probs = torch.softmax(torch.randn(1, 6, 4), -1).expand(5, 6, 4)  # 5 identical "samples"
    assert torch.allclose(mutual_information(probs), torch.zeros(6), atol=1e-6)
    uniform = torch.full((3, 2, 4), 0.25)
    assert torch.allclose(predictive_entropy(uniform), torch.full((2,), math.log(4)))
    # confident samples that disagree: maximal MI = log 2 for two classes
    split = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert mutual_information(split).item() == pytest.approx(math.log(2), abs=1e-6)


def test_deterministic_model_has_zero_mi_and_dropout_model_has_some():
    x = torch.randn(4, 1, 28, 28)
    plain = build_classifier("resnet18", 1, 3)
    with pytest.raises(SynthmedError, match="--dropout"):
        mc_dropout_samples(plain, x)
    assert torch.allclose(image_uncertainty([plain, plain], x)["mi"], torch.zeros(4), atol=1e-6)
    model = build_classifier("resnet18", 1, 3, dropout=0.5)
    samples = mc_dropout_samples(model, x, samples=8)
    assert samples.shape == (8, 4, 3) and not model.training
    assert (mutual_information(samples) > 0).all()
    # the head-only shortcut samples the same distribution as full passes (BatchNorm frozen in both)
    backbone, head = split_head(model)
    model.eval()
    assert torch.allclose(head(backbone(x)), model(x), atol=1e-5)
    assert ensemble_samples([plain, model], x).shape == (2, 4, 3)


@pytest.fixture(scope="module")
def trained():
    """A briefly trained dropout classifier and a briefly trained TSynD autoencoder on a toy problem."""
    train, val = _blobs(64, 0), _blobs(16, 1)
    config = TrainConfig(get_recipe("medmnist", 2), precision="fp32", device="cpu", dropout=0.5)
    fit = train_classifier(train, val, val, 2, "binary-class", config, seed=0)
    tsynd = create_augmenter(
        "tsynd", epochs=3, width=8, steps=4, eta=0.1, mc_samples=6, budget=0.125, every=1, device="cpu"
    ).fit(train.images, train.labels, seed=0)
    return fit.model, tsynd, train


@pytest.mark.parametrize("kind, constraint", [("mi", "ball"), ("entropy", "ball"), ("mi", "l2")])
def test_latent_optimisation_raises_the_classifiers_uncertainty(trained, kind, constraint):
    model, tsynd, train = trained
    tsynd.params.update(uncertainty=kind, constraint=constraint)
    torch.manual_seed(0)
    z0, z, stats = tsynd.optimise_latents(model, to_tensor(train.images[:8]))
    assert z.shape == z0.shape and z.shape[1:] == (8, 7, 7) and not torch.equal(z, z0)
    assert stats["uncertainty_end"] > stats["uncertainty_start"]
    shift = ((z - z0).flatten(1).norm(dim=1) / z0.flatten(1).norm(dim=1)).max().item()
    assert shift <= tsynd.params["radius"] + 1e-5 if constraint == "ball" else shift > 0


def test_rounds_add_images_with_their_source_labels(trained):
    model, tsynd, train = trained
    tsynd.params.update(uncertainty="mi", constraint="ball")
    new = tsynd.on_epoch_end(model, epoch=1)
    images, labels = new.images, new.labels
    assert not new.replace and create_augmenter("tsynd", mode="replace").kind is Kind.IN_LOOP
    assert images.dtype == np.uint8 and images.shape == (8, 28, 28) and labels.dtype == np.int64
    assert set(labels.tolist()) <= {0, 1} and len(tsynd.rounds_) >= 1 and tsynd.rounds_[-1]["n"] == 8
    assert model.training  # handed back ready to train
    assert create_augmenter("tsynd", every=3).on_epoch_end(model, epoch=2) is None


def test_random_latent_moves_by_the_same_distance_in_another_direction(trained):
    _, tsynd, _ = trained
    rand = create_augmenter("random-latent", device="cpu")
    rand._set_sources(np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.int64), 0)
    z0, z = torch.randn(5, 8, 7, 7), torch.randn(5, 8, 7, 7)
    moved = rand.move(z0, z)
    dist = lambda a: (a - z0).flatten(1).norm(dim=1)  # noqa: E731
    assert torch.allclose(dist(moved), dist(z), atol=1e-4) and not torch.allclose(moved, z)
    assert torch.equal(tsynd.move(z0, z), z)


def test_random_latent_rounds_report_the_uncertainty_of_the_images_they_add(trained):
    """Same autoencoder, same draws: TSynD's decoded latents are more uncertain than randomly moved ones, and the
    random-latent round reports its own images' uncertainty, not that of the optimised latents it discards."""
    model, _, train = trained
    settings = dict(epochs=3, width=8, steps=4, eta=0.1, mc_samples=6, budget=0.5, every=1, device="cpu")
    rounds, draws = {}, {}
    for method in ("tsynd", "random-latent"):
        augmenter = create_augmenter(method, **settings).fit(train.images, train.labels, seed=0)
        augmenter.on_epoch_end(model, epoch=1)
        rounds[method] = augmenter.rounds_[-1]
        draws[method] = augmenter.round_generator_.get_state()
    # the random directions draw from a generator of their own: every later round picks the same source images
    assert torch.equal(draws["tsynd"], draws["random-latent"])
    assert rounds["tsynd"]["uncertainty_start"] == pytest.approx(rounds["random-latent"]["uncertainty_start"])
    assert rounds["tsynd"]["latent_shift"] == pytest.approx(rounds["random-latent"]["latent_shift"], rel=1e-4)
    assert rounds["tsynd"]["uncertainty_end"] > rounds["random-latent"]["uncertainty_end"]
    model.train(False)


def test_save_load_keeps_the_autoencoder_and_the_round_draws(trained, tmp_path):
    model, tsynd, train = trained
    tsynd.save(tmp_path / "t.pt")
    a = TorchGenerator.load(tmp_path / "t.pt")
    b = TorchGenerator.load(tmp_path / "t.pt")
    assert a.name == "tsynd" and np.array_equal(a.source_images_, train.images)
    torch.manual_seed(0)
    first = a.on_epoch_end(model, 1)
    torch.manual_seed(0)
    second = b.on_epoch_end(model, 1)
    assert np.array_equal(first.labels, second.labels) and np.array_equal(first.images, second.images)


def test_the_autoencoder_trains_for_its_epochs_whatever_the_ascent_steps():
    """``steps`` is the latent ascent's; read as the shared loop's step budget it once cut 100 epochs to 20 steps."""
    train = _blobs(64, 0)
    tsynd = create_augmenter("tsynd", epochs=3, width=8, steps=1, batch_size=16, device="cpu")
    tsynd.fit(train.images, train.labels, seed=0)
    assert len(tsynd.history_) == 3 and tsynd._step == 12


def test_tsynds_variants_share_one_autoencoder_fit_and_keep_their_own_settings(tmp_path, monkeypatch):
    from synthmed.data import make_subset
    from synthmed.data.dataset import Dataset
    from synthmed.experiment.synthetic_set import fit_generator

    fits = []
    original = TorchGenerator.fit
    monkeypatch.setattr(TorchGenerator, "fit", lambda self, *a, **k: fits.append(self.name) or original(self, *a, **k))
    train = _blobs(64, 0)
    data = Dataset("toy", "binary-class", ["a", "b"], train, _blobs(16, 1), _blobs(16, 2), md5="toy")
    subset = make_subset(data, "fraction", seed=0, fraction=0.5)
    tiny = {"epochs": 1, "width": 8, "device": "cpu"}
    variants = [("tsynd", {}), ("tsynd", {"uncertainty": "entropy"}), ("random-latent", {})]
    results = [fit_generator(create_augmenter(m, **tiny, **p), data, subset, 0, tmp_path) for m, p in variants]
    assert fits == ["tsynd"] and [cached for _, cached, _, _ in results] == [False, True, True]
    assert len({path for *_, path in results}) == 1
    (_, entropy), (random, _) = (results[1][0].name, results[1][0].params["uncertainty"]), results[2][:2]
    assert entropy == "entropy" and random.name == "random-latent" and random.params["direction"] == "random"
    other = fit_generator(create_augmenter("tsynd", **{**tiny, "latent_channels": 4}), data, subset, 0, tmp_path)
    assert other[1] is False and fits == ["tsynd", "tsynd"]  # an autoencoder setting is a fit of its own


def test_tsynd_is_refused_without_dropout_and_outside_run(trained):
    from synthmed.experiment.runner import Runner
    from synthmed.spec import RunSpec

    _, tsynd, _ = trained
    with pytest.raises(SynthmedError, match="synthmed run"):
        tsynd.sample({0: 1})
    with pytest.raises(SynthmedError, match="uncertainty='bald'"):
        create_augmenter("tsynd", uncertainty="bald").check()

    class NoData(Runner):
        def dataset(self, spec):  # validation fails before the data are needed
            raise AssertionError("data should not be loaded")

    with pytest.raises(SynthmedError, match="--dropout"):
        NoData("/tmp/never").validate([RunSpec("breastmnist", method="tsynd")])


def test_trainer_replace_mode_keeps_only_the_last_round():
    class Adds(nn.Module):
        pass

    from synthmed.augment.base import Augmenter, NewImages

    class TwoRounds(Augmenter):
        sizes: list[int] = []

        def on_epoch_end(self, classifier, epoch):
            return NewImages(np.zeros((3 * epoch, 28, 28), np.uint8), np.zeros(3 * epoch, np.int64), replace=True)

        def transform_batch(self, batch, generator):
            TwoRounds.sizes.append(len(batch))
            return batch

    train, val = _blobs(8, 0), _blobs(8, 1)
    config = TrainConfig(get_recipe("medmnist", 3, batch_size=64), precision="fp32", device="cpu")
    fit = train_classifier(train, val, val, 2, "binary-class", config, augmenter=TwoRounds())
    # epoch 1: 8 real; epoch 2: 8 + 3 from round 1; epoch 3: 8 + 6 from round 2 (round 1 replaced); no round after
    # the last epoch, which nothing would train on
    assert TwoRounds.sizes == [8, 11, 14] and fit.extra["n_train_synthetic"] == 6


@pytest.mark.slow
def test_tsynd_runs_end_to_end_with_robustness_and_cam_panels(tmp_path, cli):
    import json

    from conftest import write_breast_like

    write_breast_like(tmp_path / "data")
    out = tmp_path / "runs"
    args = [
        "run",
        "-d",
        "breastmnist",
        "--no-verify",
        "--protocol",
        "full",
        "-m",
        "tsynd",
        "--seeds",
        "0",
        "--epochs",
        "2",
        "--dropout",
        "0.2",
        "--robustness",
        "--attack-eps",
        "2",
        "-p",
        "epochs=2",
        "-p",
        "every=1",
        "-p",
        "steps=2",
        "-p",
        "mc_samples=4",
        "-p",
        "width=8",
        "--precision",
        "fp32",
        "--out",
        str(out),
    ]
    result = cli(*args, root=tmp_path / "data")  # in this process: no interpreter and torch start-up
    assert result.returncode == 0, result.stderr
    records = json.loads(cli("report", str(out), "--format", "records").stdout)
    by_method = {r["method"]: r for r in records}
    assert set(by_method) == {"tsynd"}
    for method in ("tsynd",):
        rounds = by_method[method]["metrics"]["rounds"]
        # one round, after epoch 1 of 2 (none after the last epoch: nothing would train on it); 25 % of 20 images
        assert [r["epoch"] for r in rounds] == [1] and all(r["n"] == 5 for r in rounds)
        assert by_method[method]["n_synthetic"] == 5
        fit = by_method[method]["metrics"]["generator_fit"]  # which networks it used: cache key and weights digest
        assert fit["key"].startswith("tsynd") and len(fit["digest"]) == 16 and fit["cached"] is False
    for r in records:
        rob = r["metrics"]["robustness"]
        assert {"clean", "perturbations", "attacks"} <= rob.keys() and r["config"]["dropout"] == 0.2
        # --attack-eps 2: FGSM and PGD at 2/255 only (and at 0, the clean images), not on the whole curve
        assert [[p["eps_255"] for p in rob["attacks"][a]] for a in ("fgsm", "pgd")] == [[0.0, 2.0], [0.0, 2.0]]
        with np.load(out / "runs" / r["run_id"] / "cam.npz") as cam:
            assert cam["eigengradcam"].shape == (8, 28, 28) and cam["images"].dtype == np.uint8
            assert cam["class_names"].tolist() == ["malignant", "normal, benign"]  # the panel's row labels
    report = (out / "report.md").read_text()
    assert "resnet18 dropout 0.2" in report and "Robustness and explanations" in report
    assert "FGSM and PGD (10 steps, no random start) on all of them." in report  # fewer than 300 test images
    assert "| clean ACC | ACC, perturbation suite (mean) | FGSM 2/255 ACC | PGD 2/255 ACC |" in report
    assert (out / "report_eigengradcam_0.png").exists() and (out / "report_robustness_0.png").exists()
