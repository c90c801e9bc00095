"""Robustness suite, FGSM / PGD and GradCAM / EigenGradCAM: exactness at strength 0, monotone attacks on a toy
problem, a hand-computed GradCAM, and the PNG figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from synthmed.errors import SynthmedError
from synthmed.metrics.explain import cam_maps, perturbation_difference
from synthmed.metrics.robustness import (
    EPS,
    IDENTITY,
    PERTURBATIONS,
    attack_subset,
    fgsm,
    perturb,
    pgd,
    robustness_report,
    scoring_copy,
)
from synthmed.nets.classifiers import build_classifier
from synthmed.report.figures import gradcam_panel, robustness_plot
from synthmed.tensors import to_tensor

PNG = b"\x89PNG\r\n\x1a\n"


def toy_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of 28x28 grey images: a 10x10 centre square slightly brighter (1) or darker (0) than the
    background, under noise. The class signal (7.65 grey levels = 0.06 input units) is smaller than the largest
    attack (8/255 pixel = 0.063 input units), so a strong enough attack can flip every image."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.int64)
    images = 127.5 + rng.normal(0, 19.0, (n, 28, 28))
    images[:, 9:19, 9:19] += np.where(labels == 1, 7.65, -7.65)[:, None, None]
    return np.clip(np.round(images), 0, 255).astype(np.uint8), labels


def tiny_cnn(in_channels: int = 1, n_out: int = 2) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(4), nn.Flatten(), nn.Linear(4 * 7 * 7, n_out)
    )


@pytest.fixture(scope="module")
def toy_model() -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """A tiny CNN trained with Adam for a few hundred small steps to high accuracy on the toy problem."""
    torch.manual_seed(0)
    images, labels = toy_images(512, seed=1)
    x, y = to_tensor(images), torch.from_numpy(labels)
    model = tiny_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        idx = torch.randint(0, len(y), (64,), generator=generator)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    test_images, test_labels = toy_images(200, seed=2)
    return model, test_images, test_labels


@pytest.fixture(scope="module")
def toy_report(toy_model) -> dict:
    model, images, labels = toy_model
    return robustness_report(model, images, labels, "binary-class", seed=0, pgd_steps=10)


def test_toy_model_is_accurate_and_attacks_at_eps_zero_equal_clean(toy_model, toy_report):
    model, images, labels = toy_model
    assert toy_report["clean"]["acc"] > 0.95
    for name in ("fgsm", "pgd"):
        first = toy_report["attacks"][name][0]
        assert first["eps"] == 0.0
        assert first["acc"] == toy_report["clean"]["acc"]
        assert first["auc"] == toy_report["clean"]["auc"]
    x, y = to_tensor(images), torch.from_numpy(labels)
    assert torch.equal(fgsm(model, x, y, "binary-class", 0.0), x)
    assert torch.equal(pgd(model, x, y, "binary-class", 0.0), x)
    assert all(p.grad is None for p in model.parameters())  # attacks take gradients w.r.t. the input only


def test_pgd_accuracy_does_not_increase_with_eps_and_drops_at_the_largest(toy_report):
    pgd_acc = [row["acc"] for row in toy_report["attacks"]["pgd"]]
    fgsm_acc = [row["acc"] for row in toy_report["attacks"]["fgsm"]]
    assert [row["eps"] for row in toy_report["attacks"]["pgd"]] == list(EPS)
    assert all(b <= a for a, b in zip(pgd_acc, pgd_acc[1:])), pgd_acc
    assert pgd_acc[-1] < toy_report["clean"]["acc"] - 0.3, pgd_acc
    assert pgd_acc[-1] <= fgsm_acc[-1] + 1e-9  # the iterated attack is at least as strong as one step


def test_attack_stays_in_the_eps_ball_and_valid_range(toy_model):
    model, images, labels = toy_model
    x, y = to_tensor(images[:32]), torch.from_numpy(labels[:32])
    eps = 4 / 255
    for adv in (
        fgsm(model, x, y, "binary-class", eps),
        pgd(model, x, y, "binary-class", eps, steps=3),
        pgd(model, x, y, "binary-class", eps, steps=3, random_start=True, seed=1),
    ):
        assert adv.shape == x.shape and adv.dtype == x.dtype
        assert (adv - x).abs().max() <= 2 * eps + 1e-6  # pixel units -> input units
        assert adv.min() >= -1 and adv.max() <= 1
    with pytest.raises(SynthmedError, match="pixel units"):
        fgsm(model, x, y, "binary-class", 8.0)


def test_report_is_json_ready_and_covers_the_suite(toy_report):
    text = json.dumps(toy_report)
    assert json.loads(text)["n"] == 200
    assert set(toy_report["perturbations"]) == set(PERTURBATIONS)
    for family, strengths in PERTURBATIONS.items():
        assert [row["strength"] for row in toy_report["perturbations"][family]] == list(strengths)
        assert all(0 <= row["acc"] <= 1 for row in toy_report["perturbations"][family])
    # a 30 degree rotation (black corners) hurts this low-contrast toy problem more than a 5 degree one
    rotation = toy_report["perturbations"]["rotation"]
    assert rotation[-1]["acc"] < rotation[0]["acc"]


@pytest.mark.parametrize("channels", [1, 3])
def test_each_perturbation_keeps_shape_and_dtype_and_identity_is_exact(channels):
    x = torch.rand(5, channels, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for family, strengths in PERTURBATIONS.items():
        for strength in strengths:
            out = perturb(x, family, strength, seed=3)
            assert out.shape == x.shape and out.dtype == x.dtype, (family, strength)
            assert out.min() >= -1 and out.max() <= 1
            assert not torch.equal(out, x), (family, strength)
        assert torch.equal(perturb(x, family, IDENTITY[family]), x), family
    assert torch.equal(perturb(perturb(x, "flip", "horizontal"), "flip", "horizontal"), x)
    assert perturb(x, "brightness", 0.1).mean() > x.mean()
    assert perturb(x, "contrast", 0.5).std() < x.std()
    with pytest.raises(SynthmedError, match="unknown perturbation"):
        perturb(x, "sepia", 1.0)


def test_attacks_on_a_fixed_stratified_subset(toy_model, toy_report):
    model, images, labels = toy_model
    chosen = attack_subset(labels, 50, seed=3)
    assert len(chosen) == 50 and np.array_equal(chosen, attack_subset(labels, 50, seed=3))
    assert abs(labels[chosen].mean() - labels.mean()) < 0.03  # class shares kept
    assert len(attack_subset(labels, None)) == len(attack_subset(labels, 10_000)) == len(labels)
    report = robustness_report(
        model,
        images,
        labels,
        "binary-class",
        seed=3,
        eps=(0.0, 8 / 255),
        perturbations={},
        pgd_steps=3,
        attack_images=50,
    )
    subset_clean = robustness_report(
        model, images[chosen], labels[chosen], "binary-class", attacks=False, perturbations={}
    )["clean"]
    assert report["settings"]["attack_images"] == 50 and report["settings"]["attack_indices"] == chosen.tolist()
    assert report["attacks"]["pgd"][0]["acc"] == subset_clean["acc"]  # curves start at the subset's clean score
    assert report["clean"] == toy_report["clean"]  # clean and perturbation scores still use every image


def test_suite_is_deterministic_for_a_seed(toy_model):
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    assert torch.equal(perturb(x, "noise", 0.1, seed=5), perturb(x, "noise", 0.1, seed=5))
    assert not torch.equal(perturb(x, "noise", 0.1, seed=5), perturb(x, "noise", 0.1, seed=6))
    model, images, labels = toy_model
    suite = {"noise": (0.2,), "rotation": (20.0,)}
    first = robustness_report(
        model, images, labels, "binary-class", seed=4, attacks=False, perturbations=suite, batch=64
    )
    second = robustness_report(
        model, images, labels, "binary-class", seed=4, attacks=False, perturbations=suite, batch=64
    )
    assert first["perturbations"] == second["perturbations"] and first["attacks"] == {}


def test_multilabel_attack_uses_bce_and_bad_inputs_are_explained():
    torch.manual_seed(0)
    model = tiny_cnn(3, 4).eval()
    images = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 3), dtype=np.uint8)
    labels = np.random.default_rng(1).integers(0, 2, (16, 4))
    report = robustness_report(
        model,
        images,
        labels,
        "multi-label, binary-class",
        eps=(0.0, 4 / 255),
        perturbations={"blur": (1.0,)},
        pgd_steps=2,
    )
    assert report["attacks"]["pgd"][0]["acc"] == report["clean"]["acc"]
    assert report["attacks"]["pgd"][1]["acc"] <= report["clean"]["acc"]
    x, y = to_tensor(images), torch.from_numpy(labels)
    assert torch.equal(pgd(model, x, y, "multi-label, binary-class", 0.0, steps=2), x)
    assert not torch.equal(fgsm(model, x, y, "multi-label, binary-class", 4 / 255), x)
    with pytest.raises(SynthmedError, match="uint8"):
        robustness_report(model, images.astype(np.float32), labels, "multi-label, binary-class")
    with pytest.raises(SynthmedError, match="one label per image"):
        robustness_report(model, images, labels[:3], "multi-label, binary-class")


class GapHead(nn.Module):
    """conv (the target layer) -> global average pool -> linear: d score_c / d A_k(i, j) = W[c, k] / (h w)."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, stride=stride, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def hand_gradcam(model: GapHead, x: torch.Tensor, target: int) -> torch.Tensor:
    with torch.no_grad():
        acts = model.conv(x)
    h, w = acts.shape[-2:]
    weights = model.fc.weight[target].detach() / (h * w)
    return torch.relu(torch.einsum("k,nkhw->nhw", weights, acts))


def normalise(cam: torch.Tensor) -> torch.Tensor:
    low, high = cam.amin(dim=(1, 2), keepdim=True), cam.amax(dim=(1, 2), keepdim=True)
    return (cam - low) / (high - low + 1e-7)


@pytest.mark.parametrize("stride", [1, 2])
def test_gradcam_matches_a_hand_computation(stride):
    torch.manual_seed(stride)
    model = GapHead(stride)
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    targets = np.array([0, 1, 2])
    maps = cam_maps(model, x, targets, "gradcam", layer=model.conv)
    expected = torch.cat([hand_gradcam(model, x[i : i + 1], int(t)) for i, t in enumerate(targets)])
    if stride > 1:
        expected = nn.functional.interpolate(expected[:, None], size=(28, 28), mode="bilinear", align_corners=False)[
            :, 0
        ]
    assert maps.shape == (3, 28, 28) and maps.dtype == np.float32
    np.testing.assert_allclose(maps, normalise(expected).numpy(), atol=1e-5)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("channels", [1, 3])
def test_eigengradcam_on_resnet18_gives_input_sized_maps_in_unit_range(channels):
    torch.manual_seed(0)
    model = build_classifier("resnet18", channels, 3, 28)
    x = torch.rand(2, channels, 28, 28) * 2 - 1
    for method in ("eigengradcam", "gradcam"):
        maps = cam_maps(model, x, [0, 2], method)  # default target layer: model.layer4[-1]
        assert maps.shape == (2, 28, 28)
        assert maps.min() >= 0 and maps.max() <= 1
        assert np.isfinite(maps).all() and maps.max() > 0.99  # normalised per image
    assert model.training  # the model's mode is restored
    with pytest.raises(SynthmedError, match="CAM method"):
        cam_maps(model, x, None, "scorecam")


def test_perturbation_difference_lowers_the_class_probability():
    torch.manual_seed(0)
    model = tiny_cnn().eval()
    image = toy_images(2, seed=0)[0][1]
    diff = perturbation_difference(model, image, target_class=1, steps=5, eps=2 / 255)
    assert diff.shape == image.shape and diff.dtype == np.float32
    assert np.abs(diff).max() <= 5 * 2 / 255 + 1e-6 and np.abs(diff).max() > 0
    x = to_tensor(image[None])
    with torch.no_grad():
        before = torch.softmax(model(x), 1)[0, 1]
        after = torch.softmax(model(x + 2 * torch.from_numpy(diff)[None, None]), 1)[0, 1]
    assert after < before


def test_figures_are_png(toy_report):
    other = json.loads(json.dumps(toy_report))
    other["clean"]["acc"] -= 0.05
    assert robustness_plot({"none": toy_report, "tsynd": [toy_report, other]}, "toy").startswith(PNG)
    torch.manual_seed(0)
    models = {"baseline": build_classifier("resnet18", 1, 2, 28), "tsynd": build_classifier("resnet18", 1, 2, 28)}
    images, labels = toy_images(3, seed=3)
    assert gradcam_panel(models, images, labels, ["dark", "bright"]).startswith(PNG)
    png = gradcam_panel(
        {"tiny": tiny_cnn()}, images, labels, ["dark", "bright"], method="gradcam", layer="0", difference=True
    )
    assert png.startswith(PNG)
    with pytest.raises(SynthmedError, match="at least one report"):
        robustness_plot({}, "empty")


@pytest.mark.slow
def test_real_breastmnist_report_and_panel(real_root):
    from synthmed.data import load_dataset

    data = load_dataset("breastmnist", data_root=real_root, download=False)
    torch.manual_seed(0)
    model = tiny_cnn()
    x, y = to_tensor(data.train.images), torch.from_numpy(data.train.labels)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        idx = torch.randint(0, len(y), (64,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    report = robustness_report(model, data.test.images, data.test.labels, data.task, eps=(0.0, 8 / 255), pgd_steps=3)
    assert report["n"] == len(data.test.labels) and np.isfinite(report["clean"]["auc"])
    assert report["attacks"]["pgd"][0]["acc"] == report["clean"]["acc"]
    assert report["attacks"]["pgd"][1]["acc"] <= report["clean"]["acc"]
    json.dumps(report)
    png = gradcam_panel(
        {"tiny": model}, data.test.images[:4], data.test.labels[:4], data.class_names, layer="0", difference=True
    )
    assert png.startswith(PNG)


def test_robustness_table_summarises_each_method_over_seeds(toy_report):
    from synthmed.report.summary import robustness_table

    other = json.loads(json.dumps(toy_report))
    other["clean"]["acc"] = toy_report["clean"]["acc"] - 0.1
    runs = {
        "none": [{"seed": 0, "metrics": {"robustness": toy_report}}],
        "tsynd": [{"seed": s, "metrics": {"robustness": r}} for s, r in ((0, toy_report), (1, other))],
    }
    table = robustness_table(runs)
    header, rows = table.columns, table.rows
    strengths = [p["eps_255"] for p in toy_report["attacks"]["pgd"] if p["eps"] > 0]
    assert header[:4] == ["method", "seeds", "clean ACC", "ACC, perturbation suite (mean)"]
    assert header[4:] == [f"{a} {e:g}/255 ACC" for a in ("FGSM", "PGD") for e in strengths]
    suite = np.mean([p["acc"] for points in toy_report["perturbations"].values() for p in points])
    assert rows[0][:4] == ["none", "0", f"{toy_report['clean']['acc']:.3f}", f"{suite:.3f}"]
    assert rows[1][2] == f"{toy_report['clean']['acc'] - 0.05:.3f} ± {0.1 / np.sqrt(2):.3f}"
    pgd_max = toy_report["attacks"]["pgd"][-1]["acc"]
    assert rows[1][-1] == f"{pgd_max:.3f} ± 0.000" and len(rows[1]) == len(header)


def test_runs_attacked_at_one_eps_share_the_table_and_figure_with_whole_curves(toy_model, toy_report):
    """``--attack-eps 2`` runs beside runs scored on the whole curve: the table and the figure keep the strengths
    every run measured (0 and 2/255) instead of failing on the missing ones."""
    from synthmed.metrics.robustness import shared_attack_eps
    from synthmed.report.summary import robustness_table

    model, images, labels = toy_model
    one = robustness_report(model, images, labels, "binary-class", seed=0, eps=(0.0, 2 / 255), pgd_steps=10)
    assert [p["eps_255"] for p in one["attacks"]["pgd"]] == [0.0, 2.0]
    assert one["attacks"]["pgd"][1] == next(p for p in toy_report["attacks"]["pgd"] if p["eps_255"] == 2.0)
    assert shared_attack_eps([toy_report, one]) == {"fgsm": [0.0, 2.0], "pgd": [0.0, 2.0]}
    assert shared_attack_eps([toy_report]) == {a: [round(e * 255, 3) for e in EPS] for a in ("fgsm", "pgd")}
    table = robustness_table(
        {
            "none": [{"seed": 0, "metrics": {"robustness": toy_report}}],
            "tsynd": [{"seed": 0, "metrics": {"robustness": one}}],
        }
    )
    assert table.columns[4:] == ["FGSM 2/255 ACC", "PGD 2/255 ACC"]
    assert table.rows[0][4:] == table.rows[1][4:]  # the same model attacked the same way
    assert robustness_plot({"none": toy_report, "tsynd": one}, "mixed").startswith(PNG)
    four = json.loads(json.dumps(one))  # --attack-eps 4 beside --attack-eps 2: nothing in common above 0
    for points in four["attacks"].values():
        points[1]["eps_255"] = 4.0
    assert shared_attack_eps([one, four]) == {}
    assert robustness_table({"a": [{"seed": 0, "metrics": {"robustness": r}} for r in (one, four)]}).columns[4:] == []
    assert robustness_plot({"a": [one, four]}, "no common attack").startswith(PNG)


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_the_scoring_copy_predicts_as_the_model_and_leaves_it_untouched(name):
    """Folded BatchNorms and channels-last memory change outputs and input gradients by float rounding only, and
    the trained model keeps its mode and gradients."""
    torch.manual_seed(0)
    model = build_classifier(name, 1, 2, 28)
    for module in model.modules():  # statistics unlike a fresh BatchNorm's, so folding them matters
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    x, y = torch.rand(8, 1, 28, 28) * 2 - 1, torch.tensor([0, 1] * 4)
    copy = scoring_copy(model)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert not any(p.requires_grad for p in copy.parameters())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(copy(x), model(x), rtol=1e-4, atol=1e-5)
    if name == "resnet18":
        assert not any(isinstance(m, nn.BatchNorm2d) for m in copy.modules())  # folded into the convolutions
    grads = []
    for net in (model, copy):
        x_grad = x.clone().requires_grad_(True)
        nn.functional.cross_entropy(net(x_grad), y, reduction="sum").backward()
        grads.append(x_grad.grad)
    assert float((grads[1] - grads[0]).norm() / grads[0].norm()) < 1e-2  # 2e-6 (ResNet-18), 2e-3 (DenseNet-121)
    # PGD steps by the gradient's sign: only components at rounding distance from 0 may step the other way
    same = pgd(copy, x, y, "binary-class", 2 / 255, steps=1) == pgd(model, x, y, "binary-class", 2 / 255, steps=1)
    assert same.float().mean() > 0.99
