"""TSynD (seed 001, Niemeijer et al. 2024): targeted synthesis by latent optimisation, and its random-latent
baseline.

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

from synthmed.augment.base import register
from synthmed.augment.generative import TorchGenerator, to_tensor
from synthmed.errors import SynthmedError
from synthmed.metrics.uncertainty import mc_dropout_samples, uncertainty
from synthmed.nets.generators import conv_plan, to_uint8


class SpatialEncoder(nn.Module):
    """Stride-2 convolutions down to the smallest even-halving map (7x7 at 28 px), ``latent_channels`` deep."""

    def __init__(self, channels: int, size: int, width: int, latent_channels: int) -> None:
        super().__init__()
        stages, _ = conv_plan(size)
        layers: list[nn.Module] = []
        prev = channels
        for i in range(stages):
            w = width * 2**i
            layers += [nn.Conv2d(prev, w, 4, 2, 1), nn.BatchNorm2d(w), nn.LeakyReLU(0.2),
                       nn.Conv2d(w, w, 3, 1, 1), nn.BatchNorm2d(w), nn.LeakyReLU(0.2)]
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
        layers: list[nn.Module] = [nn.Conv2d(latent_channels, widths[0], 3, 1, 1), nn.BatchNorm2d(widths[0]),
                                   nn.ReLU()]
        for i, w in enumerate(widths):
            out = widths[i + 1] if i + 1 < len(widths) else width
            layers += [nn.ConvTranspose2d(w, out, 4, 2, 1), nn.BatchNorm2d(out), nn.ReLU()]
        layers.append(nn.Conv2d(width, channels, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(z))


@register("tsynd")
class TSynD(TorchGenerator):
    """Targeted synthesis in the classifier loop (see the module docstring for the algorithm and defaults)."""

    #: Not a "generate once before training" method: images come from ``on_epoch_end``.
    generative = False
    #: The classifier needs dropout for MC-dropout uncertainty.
    needs_dropout = True

    def __init__(self, epochs: int = 100, lr: float = 1e-3, batch_size: int = 128, width: int = 32,
                 latent_channels: int = 8, every: int = 5, budget: float = 0.25, steps: int = 20,
                 eta: float = 0.05, lam: float = 1.0, constraint: str = "ball", radius: float = 0.25,
                 uncertainty: str = "mi", mc_samples: int = 20, mode: str = "accumulate",
                 device: str = "auto") -> None:
        if uncertainty not in ("mi", "entropy"):
            raise SynthmedError(f"tsynd: uncertainty={uncertainty!r}; choose mi or entropy")
        if constraint not in ("l2", "ball"):
            raise SynthmedError(f"tsynd: constraint={constraint!r}; choose l2 (penalty) or ball (projection)")
        if mode not in ("accumulate", "replace"):
            raise SynthmedError(f"tsynd: mode={mode!r}; choose accumulate or replace")
        if not 0 < budget <= 1 or steps < 1 or every < 1 or eta <= 0 or lam < 0 or radius <= 0 or mc_samples < 2:
            raise SynthmedError("tsynd: need 0 < budget <= 1, steps >= 1, every >= 1, eta > 0, lam >= 0, "
                                "radius > 0 and mc_samples >= 2")
        super().__init__(epochs=epochs, lr=lr, batch_size=batch_size, width=width, latent_channels=latent_channels,
                         every=every, budget=budget, steps=steps, eta=eta, lam=lam, constraint=constraint,
                         radius=radius, uncertainty=uncertainty, mc_samples=mc_samples, mode=mode, device=device)
        self.rounds_: list[dict] = []

    @property
    def replace_synthetic(self) -> bool:
        return self.params["mode"] == "replace"

    # ---- the autoencoder, through the shared TorchGenerator loop -----------------------------------

    def build(self, channels: int, size: int, n_classes: int) -> dict[str, nn.Module]:
        p = self.params
        return {"encoder": SpatialEncoder(channels, size, p["width"], p["latent_channels"]),
                "decoder": SpatialDecoder(channels, size, p["width"], p["latent_channels"])}

    def train_step(self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        loss = F.mse_loss(self.nets_["decoder"](self.nets_["encoder"](x)), x)
        return {"loss": self.optimize(self.optimizers_["all"], loss)}

    def fit(self, images: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> TSynD:
        super().fit(images, labels, seed=seed)
        self._set_sources(images, labels, seed)
        return self

    def _set_sources(self, images: np.ndarray, labels: np.ndarray, seed: int) -> None:
        """The images rounds draw from, and the seeded generator of the draws (a cached, reloaded model
        makes the same draws as a freshly fitted one)."""
        self.source_images_ = np.array(images, dtype=np.uint8)
        self.source_labels_ = np.asarray(labels).astype(np.int64)
        self.seed_ = int(seed)
        self.round_generator_ = torch.Generator().manual_seed(self.seed_ + 1)
        self.rounds_ = []

    def extra_state(self) -> dict[str, Any]:
        return {"images": torch.from_numpy(self.source_images_), "labels": torch.from_numpy(self.source_labels_),
                "seed": torch.tensor(self.seed_)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._set_sources(state["images"].numpy(), state["labels"].numpy(), int(state["seed"]))

    def sample(self, counts: dict[int, int], *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        raise SynthmedError(f"{self.name} synthesises during classifier training (it needs the classifier); "
                            "use it in synthmed run, not synthmed generate")

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

    def on_epoch_end(self, classifier: nn.Module, epoch: int) -> tuple[np.ndarray, np.ndarray] | None:
        p = self.params
        if epoch % p["every"] != 0:
            return None
        n = len(self.source_labels_)
        pick = torch.randperm(n, generator=self.round_generator_)[:max(1, math.ceil(p["budget"] * n))].numpy()
        x = to_tensor(self.source_images_[pick])
        out = []
        stats: dict[str, float] = {}
        for i in range(0, len(x), 256):  # bounded memory: the ascent keeps activations for the backward pass
            z0, z, s = self.optimise_latents(classifier, x[i:i + 256])
            moved = self.move(z0, z)
            with torch.no_grad():
                if moved is not z:  # random-latent: the uncertainty of what is decoded, not of the optimised z
                    s["uncertainty_end"] = self._score(classifier, moved, next(classifier.parameters()).device
                                                       ).mean().item()
                z = moved
                out.append(self.nets_["decoder"](z).cpu())
            for k, v in s.items():
                stats[k] = stats.get(k, 0.0) + v * len(z0) / len(x)
            stats["latent_shift"] = stats.get("latent_shift", 0.0) + float(
                ((z - z0).flatten(1).norm(dim=1) / z0.flatten(1).norm(dim=1).clamp_min(1e-8)).sum()) / len(x)
        self.rounds_.append({"epoch": epoch, "n": len(pick), **stats})
        classifier.train()
        return to_uint8(torch.cat(out)), self.source_labels_[pick]

    def move(self, z0: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The latents to decode, given the start ``z0`` and the optimised ``z``: TSynD keeps ``z``."""
        return z


@register("random-latent")
class RandomLatent(TSynD):
    """TSynD's baseline: same autoencoder, schedule and budget; each latent moves by TSynD's distance in a
    uniformly random direction."""

    def move(self, z0: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Each latent moved by the same distance as the optimised one, in a uniformly random direction."""
        distance = (z - z0).flatten(1).norm(dim=1)
        noise = torch.randn(z0.shape, generator=self.round_generator_).to(z0.device)
        noise = noise / noise.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (z0.ndim - 1))
        return z0 + noise * distance.view(-1, *[1] * (z0.ndim - 1))
