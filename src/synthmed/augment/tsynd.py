"""TSynD (Niemeijer et al. 2024): targeted synthesis by latent optimisation, and its random-latent baseline.

A convolutional autoencoder with a *spatial* latent (``latent_channels`` x 7 x 7 at 28 px) is trained on the
real training subset (and cached like every generator). During classifier training, every ``every`` epochs
(from epoch ``every`` on), ``budget`` training images are encoded; their latents are moved by ``steps`` steps
of gradient ascent (step size ``eta``) on the classifier's epistemic uncertainty of the decoded images
(``uncertainty`` = ``mi``, the BALD mutual information under MC dropout, or ``entropy``), while a projection
onto the ball ``||z - z0|| <= radius * ||z0||`` (``constraint="ball"``) or an L2 penalty
``lam * ||z - z0||^2 / ||z0||^2`` (``constraint="l2"``, proximal steps) keeps each latent near its start;
the decoded images join the training set with the label of their source image (``mode="accumulate"``) or
replace the previous round's (``mode="replace"``).

``random-latent`` runs the same pipeline but moves each latent in a uniformly random direction by exactly
the distance TSynD's optimisation moved it, the paper's baseline: any gain of TSynD over it comes from the
direction, not from the amount of perturbation.

The paper gives the method but not these numbers; every default below is ours (documented in the README)
and configurable: autoencoder 8 x 7 x 7 latent, 100 epochs, Adam 1e-3; every 5 epochs, budget 25 % of the
training images, 20 ascent steps of 0.05 x the latent's norm along the gradient normalised per image,
within a ball of radius 0.25 x that norm, 20 MC dropout samples of the classifier head (the same 20 masks
for every step of a round).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthmed.augment.base import Kind, NewImages, register
from synthmed.augment.generative import TorchGenerator
from synthmed.errors import SynthmedError
from synthmed.metrics.uncertainty import mc_dropout_samples, uncertainty
from synthmed.nets.generators import conv_plan
from synthmed.tensors import to_tensor, to_uint8


class SpatialEncoder(nn.Module):
    """Stride-2 convolutions down to the smallest even-halving map (7x7 at 28 px), ``latent_channels`` deep."""

    def __init__(self, channels: int, size: int, width: int, latent_channels: int) -> None:
        super().__init__()
        stages, _ = conv_plan(size)
        layers: list[nn.Module] = []
        prev = channels
        for i in range(stages):
            w = width * 2**i
            layers += [
                nn.Conv2d(prev, w, 4, 2, 1),
                nn.BatchNorm2d(w),
                nn.LeakyReLU(0.2),
                nn.Conv2d(w, w, 3, 1, 1),
                nn.BatchNorm2d(w),
                nn.LeakyReLU(0.2),
            ]
            prev = w
        layers.append(nn.Conv2d(prev, latent_channels, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SpatialDecoder(nn.Module):
    """The encoder's mirror: transposed stride-2 convolutions back to the image, tanh output."""

    def __init__(self, channels: int, size: int, width: int, latent_channels: int) -> None:
        super().__init__()
        stages, _ = conv_plan(size)
        widths = [width * 2**i for i in range(stages)][::-1]
        layers: list[nn.Module] = [nn.Conv2d(latent_channels, widths[0], 3, 1, 1), nn.BatchNorm2d(widths[0]), nn.ReLU()]
        for i, w in enumerate(widths):
            out = widths[i + 1] if i + 1 < len(widths) else width
            layers += [nn.ConvTranspose2d(w, out, 4, 2, 1), nn.BatchNorm2d(out), nn.ReLU()]
        layers.append(nn.Conv2d(width, channels, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(z))


#: Every value is ours (the paper gives the method, not these numbers; see the module docstring). ``random-latent``
#: is the same pipeline with each latent moved by TSynD's distance in a uniformly random direction.
_TSYND: dict[str, Any] = {
    "epochs": 100,
    "lr": 1e-3,
    "batch_size": 128,
    "width": 32,
    "latent_channels": 8,
    "every": 5,
    "budget": 0.25,
    "steps": 20,
    "eta": 0.05,
    "lam": 1.0,
    "constraint": "ball",
    "radius": 0.25,
    "uncertainty": "mi",
    "mc_samples": 20,
    "mode": "accumulate",
    "direction": "targeted",
}
PRESETS: dict[str, dict[str, Any]] = {"tsynd": _TSYND, "random-latent": {**_TSYND, "direction": "random"}}
#: MC-dropout rate before the classifier head (ours): a grid holding tsynd gives it to every method it compares.
DROPOUT = 0.2


class TSynD(TorchGenerator):
    """Targeted synthesis in the classifier loop (see the module docstring for the algorithm and defaults)."""

    kind = Kind.IN_LOOP
    needs = {"dropout": DROPOUT}
    #: the autoencoder's: tsynd, its entropy variant and random-latent of one seed share one fit
    fit_params = ("epochs", "lr", "batch_size", "width", "latent_channels", "precision")
    fit_family = "tsynd-autoencoder"

    def check(self) -> None:
        super().check()
        p = self.params
        for key, choices in (
            ("uncertainty", ("mi", "entropy")),
            ("constraint", ("l2", "ball")),
            ("mode", ("accumulate", "replace")),
            ("direction", ("targeted", "random")),
        ):
            if p[key] not in choices:
                raise SynthmedError(f"{self.name}: {key}={p[key]!r}; choose {' or '.join(choices)}")
        if not (
            0 < p["budget"] <= 1
            and p["steps"] >= 1
            and p["every"] >= 1
            and p["eta"] > 0
            and p["lam"] >= 0
            and p["radius"] > 0
            and p["mc_samples"] >= 2
        ):
            raise SynthmedError(
                f"{self.name}: need 0 < budget <= 1, steps >= 1, every >= 1, eta > 0, lam >= 0, "
                "radius > 0 and mc_samples >= 2"
            )

    def step_budget(self, n_images: int) -> int | None:
        """None: the autoencoder trains for ``epochs``. TSynD's ``steps`` are the latent ascent's steps per round,
        not the shared loop's optimisation-step budget (read as one, they cut the 100 epochs to 20 steps)."""
        return None

    def diagnostics(self) -> dict[str, Any]:
        rounds = getattr(self, "rounds_", None)
        return {"rounds": rounds} if rounds else {}

    # ---- the autoencoder, through the shared TorchGenerator loop -----------------------------------

    def build(self, channels: int, size: int, n_classes: int) -> dict[str, nn.Module]:
        p = self.params
        return {
            "encoder": SpatialEncoder(channels, size, p["width"], p["latent_channels"]),
            "decoder": SpatialDecoder(channels, size, p["width"], p["latent_channels"]),
        }

    def train_step(self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        loss = F.mse_loss(self.nets_["decoder"](self.nets_["encoder"](x)), x)
        return {"loss": self.optimize(self.optimizers_["all"], loss)}

    def fit(self, images: np.ndarray, labels: np.ndarray, *, seed: int = 0, monitor: Any = None) -> TSynD:
        super().fit(images, labels, seed=seed, monitor=monitor)
        self._set_sources(images, labels, seed)
        return self

    def _set_sources(self, images: np.ndarray, labels: np.ndarray, seed: int) -> None:
        """The images rounds draw from, and the seeded generator of the draws (a cached, reloaded model
        makes the same draws as a freshly fitted one)."""
        self.source_images_ = np.array(images, dtype=np.uint8)
        self.source_labels_ = np.asarray(labels).astype(np.int64)
        self.seed_ = int(seed)
        self.round_generator_ = torch.Generator().manual_seed(self.seed_ + 1)
        # random-latent's directions draw from their own generator, so every round picks the same images as tsynd's
        self.direction_generator_ = torch.Generator().manual_seed(self.seed_ + 2)
        self.rounds_: list[dict] = []

    def extra_state(self) -> dict[str, Any]:
        return {
            "images": torch.from_numpy(self.source_images_),
            "labels": torch.from_numpy(self.source_labels_),
            "seed": torch.tensor(self.seed_),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._set_sources(state["images"].numpy(), state["labels"].numpy(), int(state["seed"]))

    def sample(self, counts: dict[int, int], *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        raise SynthmedError(
            f"{self.name} synthesises during classifier training (it needs the classifier); "
            "use it in synthmed run, not synthmed generate"
        )

    def decode(self, inputs: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.nets_["decoder"](inputs)

    # ---- targeted synthesis --------------------------------------------------------------------------

    def _score(self, classifier: nn.Module, z: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Per-image uncertainty of the decoded latents under a fixed set of dropout masks (common random
        numbers: every step and the before/after comparison see the same T masks, so a rise is real)."""
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            torch.manual_seed(self.seed_)
            samples = mc_dropout_samples(classifier, self.nets_["decoder"](z).to(device), self.params["mc_samples"])
        return uncertainty(samples, self.params["uncertainty"])

    def optimise_latents(self, classifier: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Latents of ``x`` (images in [-1, 1]) moved to raise the classifier's uncertainty; returns (z0, z, stats).

        Each step moves every latent by ``eta`` times its starting norm along its normalised uncertainty gradient
        (so the step does not depend on the scale of the uncertainty), then either projects onto the ball or
        takes the gradient step of the penalty ``lam ||z - z0||^2 / ||z0||^2`` at the same rate (a proximal
        step: the shift shrinks by 1 - 2 eta lam), so a steady ascent settles about ``||z0|| / (2 lam)`` away."""
        p = self.params
        nets = self._fitted()
        nets.eval()
        classifier.eval()
        device = next(classifier.parameters()).device
        with torch.no_grad():
            z0 = nets["encoder"](x.to(self.device_))
        shape = (-1, *[1] * (z0.ndim - 1))
        start_norm = z0.flatten(1).norm(dim=1).clamp_min(1e-8)
        with torch.no_grad():
            start = self._score(classifier, z0, device).mean().item()
        z = z0.clone()
        for _ in range(p["steps"]):
            z.requires_grad_(True)
            (grad,) = torch.autograd.grad(self._score(classifier, z, device).sum(), z)
            with torch.no_grad():
                step = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(shape)
                z = z + p["eta"] * start_norm.view(shape) * step
                if p["constraint"] == "l2":  # the penalty's gradient step: shrink the shift towards z0
                    z = z0 + (z - z0) * (1 - 2 * p["eta"] * p["lam"])
                else:  # project onto the ball
                    delta = z - z0
                    scale = (p["radius"] * start_norm / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)
                    z = z0 + delta * scale.view(shape)
        z = z.detach()
        with torch.no_grad():
            end = self._score(classifier, z, device).mean().item()
        return z0, z, {"uncertainty_start": start, "uncertainty_end": end}

    def on_epoch_end(self, classifier: nn.Module, epoch: int) -> NewImages | None:
        p = self.params
        if epoch % p["every"] != 0:
            return None
        n = len(self.source_labels_)
        pick = torch.randperm(n, generator=self.round_generator_)[: max(1, math.ceil(p["budget"] * n))].numpy()
        x = to_tensor(self.source_images_[pick])
        out = []
        stats: dict[str, float] = {}
        for i in range(0, len(x), 256):  # bounded memory: the ascent keeps activations for the backward pass
            z0, z, s = self.optimise_latents(classifier, x[i : i + 256])
            moved = self.move(z0, z)
            with torch.no_grad():
                if moved is not z:  # random-latent: the uncertainty of what is decoded, not of the optimised z
                    s["uncertainty_end"] = (
                        self._score(classifier, moved, next(classifier.parameters()).device).mean().item()
                    )
                z = moved
                out.append(self.nets_["decoder"](z).cpu())
            for k, v in s.items():
                stats[k] = stats.get(k, 0.0) + v * len(z0) / len(x)
            stats["latent_shift"] = stats.get("latent_shift", 0.0) + float(
                ((z - z0).flatten(1).norm(dim=1) / z0.flatten(1).norm(dim=1).clamp_min(1e-8)).sum()
            ) / len(x)
        self.rounds_.append({"epoch": epoch, "n": len(pick), **stats})
        classifier.train()
        return NewImages(to_uint8(torch.cat(out)), self.source_labels_[pick], replace=p["mode"] == "replace")

    def move(self, z0: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The latents to decode, given the start ``z0`` and the optimised ``z``: TSynD keeps ``z``; the
        random-latent baseline moves each latent by the same distance in a uniformly random direction."""
        if self.params["direction"] == "targeted":
            return z
        distance = (z - z0).flatten(1).norm(dim=1)
        noise = torch.randn(z0.shape, generator=self.direction_generator_).to(z0.device)
        noise = noise / noise.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (z0.ndim - 1))
        return z0 + noise * distance.view(-1, *[1] * (z0.ndim - 1))


for _name, _preset in PRESETS.items():
    register(_name, _preset)(TSynD)
