"""Robustness of a trained classifier: a fixed suite of test-time perturbations and L-inf FGSM / PGD attacks.

TSynD (Niemeijer et al. 2024) reports that targeted synthetic data makes a classifier more robust to test-time
augmentations and adversarial attacks; this module measures that the same way for every method and run, so curves
can be compared across runs. Everything is scored with ``classification_metrics`` (medmnist.Evaluator semantics), so the
clean numbers equal the benchmark's test numbers.

Units. The model sees float images in [-1, 1] (``to_tensor``: MedMNIST's Normalize(0.5, 0.5)); 1 grey level is
2/255 there. Perturbations work in that input space and every result is clamped back to [-1, 1]:

- ``rotation``: degrees, counter-clockwise about the centre, bilinear, corners filled with -1 (black);
- ``flip``: ``horizontal`` (left-right) or ``vertical`` (up-down);
- ``noise``: additive Gaussian noise, sigma in input units (0.1 = 12.75 grey levels), drawn from a
  ``torch.Generator`` seeded per batch, so a suite run is reproducible for a seed;
- ``blur``: Gaussian blur, sigma in pixels, kernel 2*ceil(3 sigma)+1, reflect padding (torchvision);
- ``contrast``: torchvision's ``adjust_contrast`` (blend with the image's mean grey value), factor 1 = identity;
- ``brightness``: additive shift in input units (0.1 = 12.75 grey levels).

Attack epsilons are given in **[0, 1] pixel units** (the convention of the adversarial literature: 8/255 means 8
grey levels) and converted to the model's input space by doubling (8/255 pixel = 16/255 input). Attacks maximise
the training loss (cross-entropy; BCE with logits for multi-label tasks) of the true label, in fp32, with the model
in eval mode; gradients are taken with ``torch.autograd.grad`` w.r.t. the input only, so no parameter ``.grad`` is
touched. PGD has no random start by default, so eps = 0 reproduces the clean numbers exactly.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from synthmed.data.dataset import MULTI_LABEL
from synthmed.errors import SynthmedError
from synthmed.metrics.classification import classification_metrics
from synthmed.nets.classifiers import predict
from synthmed.tensors import to_tensor

#: The perturbation suite: family -> strengths, in the units of the module docstring. Fixed so that results are
#: comparable across runs; change it only with a note in the results.
PERTURBATIONS: dict[str, tuple] = {
    "rotation": (5.0, 10.0, 20.0, 30.0),
    "flip": ("horizontal", "vertical"),
    "noise": (0.05, 0.1, 0.2),
    "blur": (0.5, 1.0, 1.5),
    "contrast": (0.5, 0.75, 1.5),
    "brightness": (-0.2, -0.1, 0.1, 0.2),
}

#: The strength of each family that leaves an image unchanged (where the clean score sits on a curve).
IDENTITY: dict[str, float | str] = {
    "rotation": 0.0,
    "flip": "none",
    "noise": 0.0,
    "blur": 0.0,
    "contrast": 1.0,
    "brightness": 0.0,
}

#: Default attack strengths, L-inf, in [0, 1] pixel units (x 2 in the model's [-1, 1] input space).
EPS: tuple[float, ...] = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255)
ATTACKS = ("fgsm", "pgd")
PGD_STEPS = 10
#: Test images a ``--robustness`` run attacks (a fixed stratified subset; perturbations use the whole split):
#: PGD costs 40 forward + backward passes per image, ~4 minutes per 300 images of ResNet-18 on one CPU thread.
RUN_ATTACK_IMAGES = 300
BATCH = 256
LOW, HIGH = -1.0, 1.0  # the valid model input range


def _gray_mean(x: torch.Tensor) -> torch.Tensor:
    grey = TF.rgb_to_grayscale(x) if x.shape[-3] == 3 else x
    return grey.mean(dim=(-3, -2, -1), keepdim=True)


def scoring_copy(model: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode copy of ``model`` for scoring only: every BatchNorm that follows a convolution folded into it
    (``torch.fx``, where the network traces), channels-last memory and no parameter gradients. A run's robustness
    scoring makes tens of thousands of forward passes (the MedMNIST-C benchmark) and PGD's input gradients; the copy
    makes both cheaper on a CPU (``bench/robustness.py``), while its outputs and input gradients equal the model's to
    float rounding (tested). The model itself is left untouched."""
    import copy

    from torch.fx.experimental.optimization import fuse

    scored = copy.deepcopy(model).eval()
    with contextlib.suppress(Exception):  # a network fx cannot trace is scored unfused: slower, same numbers
        scored = fuse(scored)
    scored = scored.to(memory_format=torch.channels_last)
    for parameter in scored.parameters():
        parameter.requires_grad_(False)
    return scored


def perturb(x: torch.Tensor, family: str, strength: float | str, seed: int = 0) -> torch.Tensor:
    """One perturbation of the suite applied to a whole batch ``x`` (float (N, C, H, W) in [-1, 1]).

    Returns a new tensor of the same shape, dtype and device; identity strengths (``IDENTITY``) return an exact
    copy. ``seed`` only matters for ``noise`` (the noise is drawn on the CPU, so it does not depend on the device).
    """
    if family == "rotation":
        out = TF.rotate(x, float(strength), interpolation=TF.InterpolationMode.BILINEAR, fill=LOW)
    elif family == "flip":
        if strength not in ("none", "horizontal", "vertical"):
            raise SynthmedError(f"unknown flip {strength!r}; choose none, horizontal or vertical")
        out = {"none": torch.clone, "horizontal": TF.horizontal_flip, "vertical": TF.vertical_flip}[strength](x)
    elif family == "noise":
        generator = torch.Generator().manual_seed(int(seed))
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)
        out = x + float(strength) * noise
    elif family == "blur":
        sigma = float(strength)
        if sigma <= 0:
            return x.clone()
        k = 2 * math.ceil(3 * sigma) + 1
        out = TF.gaussian_blur(x, [k, k], [sigma, sigma])
    elif family == "contrast":
        factor = float(strength)  # torchvision's _blend, written in the input space (an affine map of [0, 1])
        out = factor * x + (1.0 - factor) * _gray_mean(x)
    elif family == "brightness":
        out = x + float(strength)
    else:
        raise SynthmedError(f"unknown perturbation {family!r}; choose one of {', '.join(PERTURBATIONS)}")
    return out.clamp_(LOW, HIGH)


def _attack_loss(logits: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """The training loss of the true labels, summed (the sign of the gradient is all FGSM / PGD use)."""
    if task == MULTI_LABEL:
        return F.binary_cross_entropy_with_logits(logits, y.float(), reduction="sum")
    return F.cross_entropy(logits, y.long(), reduction="sum")


def _input_grad(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)  # the layout of scoring_copy
    with torch.enable_grad():
        loss = _attack_loss(model(x).float(), y, task)
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _check_eps(eps: float) -> float:
    if not 0 <= eps <= 1:
        raise SynthmedError(f"attack epsilon {eps} is outside [0, 1]; give it in [0, 1] pixel units, e.g. 8/255")
    return float(eps)


def fgsm(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, eps: float) -> torch.Tensor:
    """FGSM (Goodfellow et al. 2015): one signed-gradient step of ``eps`` ([0, 1] pixel units) on input ``x``.

    ``x``: float (N, C, H, W) in [-1, 1] on the model's device; ``y``: true labels. The model must be in eval mode.
    """
    step = 2.0 * _check_eps(eps)  # pixel units -> input units
    return (x + step * _input_grad(model, x, y, task).sign()).clamp_(LOW, HIGH).detach()


def pgd(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    task: str,
    eps: float,
    steps: int = PGD_STEPS,
    step_size: float | None = None,
    random_start: bool = False,
    seed: int = 0,
) -> torch.Tensor:
    """L-inf PGD (Madry et al. 2018): ``steps`` signed-gradient steps of ``step_size`` (default eps / 4), each
    projected back onto the eps-ball around ``x`` and the valid range [-1, 1].

    ``eps`` and ``step_size`` are in [0, 1] pixel units. Without ``random_start`` (the default) eps = 0 returns
    ``x`` exactly; with it the start is uniform in the ball, drawn from a generator seeded with ``seed``.
    """
    if steps < 1:
        raise SynthmedError(f"PGD needs at least one step, got {steps}; pass steps >= 1")
    radius = 2.0 * _check_eps(eps)
    alpha = 2.0 * (eps / 4 if step_size is None else _check_eps(step_size))
    adv = x.detach().clone()
    if random_start:
        generator = torch.Generator().manual_seed(int(seed))
        start = torch.rand(x.shape, generator=generator).to(x.device, x.dtype)
        adv = (adv + (2 * start - 1) * radius).clamp_(LOW, HIGH)
    for _ in range(steps):
        adv = adv + alpha * _input_grad(model, adv, y, task).sign()
        adv = (x + (adv - x).clamp_(-radius, radius)).clamp_(LOW, HIGH).detach()
    return adv


def shared_attack_eps(reports: Sequence[dict]) -> dict[str, list[float]]:
    """Per attack, the epsilons (``eps_255``, 0 included) that every one of ``reports`` measured, ascending: runs
    scored with ``--attack-eps`` and runs scored on the whole curve share a table and a figure on their common
    points. An attack with no common epsilon above 0 (runs at ``--attack-eps 2`` beside runs at 4) is left out."""
    if not reports:
        return {}
    names = [n for n in reports[0].get("attacks", {}) if all(n in r.get("attacks", {}) for r in reports)]
    common = {n: sorted(set.intersection(*({p["eps_255"] for p in r["attacks"][n]} for r in reports))) for n in names}
    return {n: strengths for n, strengths in common.items() if any(e > 0 for e in strengths)}


def _check_inputs(images: np.ndarray, labels: np.ndarray, task: str, precision: str) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise SynthmedError("robustness needs uint8 images shaped (N, H, W) or (N, H, W, 3); convert them first")
    if len(images) != len(labels) or not len(images):
        raise SynthmedError(f"{len(images)} images but {len(labels)} labels; pass one label per image")
    if task == MULTI_LABEL and labels.ndim != 2:
        raise SynthmedError("multi-label labels must be (N, L) 0/1 arrays; pass the split's labels unchanged")
    if precision not in ("fp32", "bf16"):
        raise SynthmedError(f"unknown precision {precision!r}; choose fp32 or bf16 (resolve 'auto' first)")


def _perturbed(x: torch.Tensor, y: torch.Tensor, b: int, family: str, strength: float | str, seed: int) -> torch.Tensor:
    """One batch under one perturbation (its noise seeded per batch)."""
    return perturb(x, family, strength, seed + b)


def _attacked(
    x: torch.Tensor,
    y: torch.Tensor,
    b: int,
    attack: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor],
    eps: float,
) -> torch.Tensor:
    return attack(x, y, eps)


def _score(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    task: str,
    precision: str,
    batch: int,
    transform: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
) -> dict:
    """AUC / ACC of the model on ``transform(x, y, batch_index)`` of every batch (same batches for every call)."""
    device = next(model.parameters()).device
    probs = []
    for b, i in enumerate(range(0, len(images), batch)):
        x = to_tensor(images[i : i + batch]).to(device)
        y = torch.from_numpy(labels[i : i + batch]).to(device)
        probs.append(predict(model, transform(x, y, b), task, precision, batch=batch)[0])
    metrics = classification_metrics(labels, torch.cat(probs).numpy(), task)
    return {"auc": metrics["auc"], "acc": metrics["acc"]}


def attack_subset(labels: np.ndarray, size: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a fixed subset of ``size`` images, stratified by class for single-label tasks (all
    images when ``size`` is None or not smaller): attacks cost ``pgd_steps`` backward passes per image and eps."""
    n = len(labels)
    if size is None or size >= n:
        return np.arange(n)
    if size < 2:
        raise SynthmedError(f"attack_images={size}: attack at least 2 images (or None for all)")
    from sklearn.model_selection import train_test_split

    single = np.asarray(labels).ndim == 1 or np.asarray(labels).shape[1] == 1
    strata = np.asarray(labels).reshape(n, -1)[:, 0] if single else None
    try:
        chosen, _ = train_test_split(np.arange(n), train_size=size, random_state=seed, stratify=strata)
    except ValueError:  # a class too small to stratify: a plain random draw
        chosen, _ = train_test_split(np.arange(n), train_size=size, random_state=seed)
    return np.sort(chosen)


def robustness_report(
    model: torch.nn.Module,
    images_uint8: np.ndarray,
    labels: np.ndarray,
    task: str,
    precision: str = "fp32",
    seed: int = 0,
    attacks: bool = True,
    eps: Sequence[float] = EPS,
    perturbations: dict[str, Sequence] | None = None,
    pgd_steps: int = PGD_STEPS,
    pgd_step_size: float | None = None,
    batch: int = BATCH,
    attack_images: int | None = None,
) -> dict:
    """Clean AUC / ACC, then AUC / ACC under every perturbation of the suite and every attack strength.

    ``labels`` as the dataset holds them (int (N,) or (N, L) 0/1). Returns plain Python values (JSON-ready)::

        {"clean": {"auc", "acc"}, "perturbations": {family: [{"strength", "auc", "acc"}, ...]},
         "attacks": {"fgsm" | "pgd": [{"eps", "eps_255", "auc", "acc"}, ...]}, "settings": {...}}

    Noise for batch b is seeded with ``seed + b``, so a report is reproducible for a seed and batch size.
    Attacks are computed in fp32; all predictions use ``precision`` as the benchmark's evaluation does. Cost: PGD
    takes ``pgd_steps`` forward + backward passes per eps > 0, so ``attack_images`` attacks only a fixed subset
    (``attack_subset``: stratified, drawn with ``seed``); the attack curves then start at that subset's clean
    score, and ``settings`` records the subset's indices.
    """
    labels = np.asarray(labels)
    _check_inputs(images_uint8, labels, task, precision)
    suite = PERTURBATIONS if perturbations is None else perturbations
    for family in suite:
        if family not in PERTURBATIONS:
            raise SynthmedError(f"unknown perturbation {family!r}; choose from {', '.join(PERTURBATIONS)}")
    eps = [_check_eps(e) for e in eps]
    model = scoring_copy(model)

    def score(transform: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> dict:
        return _score(model, images_uint8, labels, task, precision, batch, transform)

    attack_fns: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]]
    report: dict = {
        "n": len(labels),
        "task": task,
        "clean": score(lambda x, y, b: x),
        "perturbations": {},
        "attacks": {},
    }
    for family, strengths in suite.items():
        report["perturbations"][family] = [
            {"strength": s, **score(functools.partial(_perturbed, family=family, strength=s, seed=seed))}
            for s in strengths
        ]
    chosen = attack_subset(labels, attack_images, seed)
    attacked_images, attacked_labels = images_uint8[chosen], labels[chosen]
    if attacks:
        # eps = 0 is the clean input exactly (no random start), so it is not recomputed: it costs PGD's steps
        attack_fns = {
            "fgsm": lambda x, y, e: fgsm(model, x, y, task, e) if e else x,
            "pgd": lambda x, y, e: pgd(model, x, y, task, e, pgd_steps, pgd_step_size) if e else x,
        }
        for name, fn in attack_fns.items():
            report["attacks"][name] = [
                {
                    "eps": e,
                    "eps_255": round(e * 255, 3),
                    **_score(
                        model,
                        attacked_images,
                        attacked_labels,
                        task,
                        precision,
                        batch,
                        functools.partial(_attacked, attack=fn, eps=e),
                    ),
                }
                for e in eps
            ]
    report["settings"] = {
        "seed": seed,
        "precision": precision,
        "batch": batch,
        "units": "rotation: degrees; noise sigma and brightness shift: [-1, 1] input units; blur sigma: pixels; "
        "contrast: factor; attack eps: [0, 1] pixel units (x2 in input units), L-inf",
        "pgd": {
            "steps": pgd_steps,
            "step_size": "eps/4" if pgd_step_size is None else pgd_step_size,
            "random_start": False,
        },
        "attack_images": len(chosen),
        "attack_indices": chosen.tolist() if len(chosen) < len(labels) else "all",
    }
    return report


def medmnistc_report(
    model: torch.nn.Module,
    images_uint8: np.ndarray,
    labels: np.ndarray,
    task: str,
    dataset: str,
    precision: str = "fp32",
    seed: int = 0,
    batch: int = BATCH,
) -> dict:
    """AUC / ACC of a trained model on the test split under every MedMNIST-C corruption and severity of
    ``dataset``'s set (``corruptions.corruption_set``), with the summary the benchmark reports::

        {"set", "clean": {"auc", "acc"}, "corruptions": {name: [{"severity", "auc", "acc"}, ...]},
         "mean": {"auc", "acc"}, "worst": {"corruption", "auc", "acc"}, "drop": {"auc", "acc"}, "settings"}

    ``mean`` averages over the corruptions and severities that change an image (``no_effect`` lists corruptions that
    change none at this image size, left out of ``mean`` and ``worst``); ``worst`` is the corruption of lowest mean
    AUC over its severities; ``drop`` is the relative loss (clean - mean) / clean. Scoring only: the model was
    selected on the validation split before, and nothing here feeds back into training or selection.
    """
    from synthmed.metrics.corruptions import REFERENCE_SIZE, SEVERITIES, corrupt, corruption_set

    labels = np.asarray(labels)
    _check_inputs(images_uint8, labels, task, precision)
    set_name, table = corruption_set(dataset)
    model = scoring_copy(model)

    def score(images: np.ndarray) -> dict:
        return _score(model, images, labels, task, precision, batch, lambda x, y, b: x)

    clean = score(images_uint8)

    def point(name: str, severity: int) -> dict:
        corrupted = corrupt(images_uint8, name, severity, set_name, seed)
        changed = bool(np.any(corrupted != images_uint8))  # unchanged images score as the clean ones: not rescored
        return {"severity": severity, **(score(corrupted) if changed else clean), "changed": changed}

    curves = {name: [point(name, s) for s in SEVERITIES] for name in table}
    # A corruption that leaves every image as it is at this size (a blur scaled from 224 px down to a kernel of one
    # pixel) would count the clean score as a corrupted one: it is listed, not averaged.
    no_effect = sorted(name for name, curve in curves.items() if not any(p["changed"] for p in curve))
    effective = {name: curve for name, curve in curves.items() if name not in no_effect} or curves
    points = [p for curve in effective.values() for p in curve if p["changed"]] or [
        p for curve in effective.values() for p in curve
    ]
    mean = {m: float(np.mean([p[m] for p in points])) for m in ("auc", "acc")}
    per_corruption = {name: np.mean([p["auc"] for p in curve]) for name, curve in effective.items()}
    worst = min(per_corruption, key=lambda name: per_corruption[name])
    return {
        "set": set_name,
        "n": len(labels),
        "clean": clean,
        "corruptions": curves,
        "no_effect": no_effect,
        "mean": mean,
        "worst": {
            "corruption": worst,
            "auc": float(per_corruption[worst]),
            "acc": float(np.mean([p["acc"] for p in curves[worst]])),
        },
        "drop": {m: (clean[m] - mean[m]) / clean[m] if clean[m] else float("nan") for m in ("auc", "acc")},
        "settings": {
            "seed": seed,
            "precision": precision,
            "reference_size": REFERENCE_SIZE,
            "implementation": "synthmed's implementation of the published MedMNIST-C definitions",
        },
    }
