"""Adversarial objectives of the GAN family, as objects on critic outputs, apart from the one training step that
all GANs share (``synthmed.augment.gan.adversarial_step``): Wasserstein, least-squares, hinge or gradient-penalty
variants are a loss here plus preset values, not a new loop.

``make_loss(params)`` builds the loss a preset names (``params["loss"]``): ``bce`` (Goodfellow et al., the
non-saturating generator loss), ``wasserstein`` (WGAN, weight clipping at ``clip``), ``wasserstein-gp`` (WGAN-GP,
gradient penalty ``gp_weight``), ``least-squares`` (LSGAN, 0-1-1 coding) or ``hinge`` (SNGAN).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class GanLoss:
    """An adversarial objective on critic outputs (logits / scores, shape (N, 1)).

    Per batch, ``adversarial_step`` minimises ``d_loss(real, fake) + penalty(...)`` for the critic, calls
    ``after_critic_step`` (e.g. weight clipping), then minimises ``g_loss(fake)`` for the generator.
    """

    #: The fit's seeded CPU generator, set by the training step before each batch, so losses that draw
    #: random numbers (interpolation weights, wrong labels) reproduce with the seed.
    generator: torch.Generator | None = None

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(
        self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor
    ) -> torch.Tensor | None:
        """A regulariser added to the critic loss (e.g. a gradient penalty); none by default."""
        return None

    def after_critic_step(self, critic: nn.Module) -> None:
        """Hook after each critic update (e.g. WGAN's weight clipping)."""


class BCEGanLoss(GanLoss):
    """Goodfellow et al.'s game with binary cross-entropy on logits and the non-saturating generator loss."""

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


class WassersteinLoss(GanLoss):
    """The critic estimates the Wasserstein-1 distance: maximise E[D(real)] - E[D(fake)] (Arjovsky et al.)."""

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.mean()


class ClippedWassersteinLoss(WassersteinLoss):
    """WGAN: the critic stays K-Lipschitz by clipping every parameter to [-clip, clip] after each update."""

    def __init__(self, clip: float) -> None:
        self.clip = clip

    def after_critic_step(self, critic: nn.Module) -> None:
        with torch.no_grad():
            for p in critic.parameters():
                p.clamp_(-self.clip, self.clip)


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    cond: torch.Tensor | None,
    weight: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gulrajani et al.'s penalty ``weight * E[(||grad_x D(x_hat, y)||_2 - 1)^2]``.

    x_hat = a * real + (1 - a) * fake with a ~ U(0, 1) per image, drawn from ``generator`` (CPU) so runs
    reproduce; the critic sees each interpolate with the label ``cond`` of its real image, so the
    constraint holds for the conditional critic that is actually trained. ``create_graph`` lets the
    penalty's own gradient reach the critic's weights.
    """
    alpha = torch.rand(len(real), *([1] * (real.dim() - 1)), generator=generator).to(real.device, real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat) if cond is None else critic(x_hat, cond)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return weight * (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


class GradientPenaltyWassersteinLoss(WassersteinLoss):
    """WGAN-GP: the Lipschitz constraint as a gradient penalty on real/fake interpolates."""

    def __init__(self, weight: float) -> None:
        self.weight = weight

    def penalty(
        self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor
    ) -> torch.Tensor | None:
        if self.weight == 0:
            return None
        return gradient_penalty(critic, real, fake, cond, self.weight, self.generator)


class LeastSquaresLoss(GanLoss):
    """LSGAN (Mao et al.): D pushes fakes to ``a`` and reals to ``b``; G pushes fakes to ``c`` (0-1-1 coding)."""

    def __init__(self, a: float = 0.0, b: float = 1.0, c: float = 1.0) -> None:
        self.a, self.b, self.c = a, b, c

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((real_logits - self.b).pow(2).mean() + (fake_logits - self.a).pow(2).mean())

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return 0.5 * (fake_logits - self.c).pow(2).mean()


class HingeLoss(GanLoss):
    """The hinge loss SNGAN uses (Miyato et al.): E[relu(1 - D(real))] + E[relu(1 + D(fake))]; G: -E[D(fake)]."""

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.mean()


#: Loss name -> builder from the method's hyper-parameters.
LOSSES: dict[str, Callable[[dict[str, Any]], GanLoss]] = {
    "bce": lambda p: BCEGanLoss(),
    "wasserstein": lambda p: ClippedWassersteinLoss(p["clip"]),
    "wasserstein-gp": lambda p: GradientPenaltyWassersteinLoss(p["gp_weight"]),
    "least-squares": lambda p: LeastSquaresLoss(0.0, 1.0, 1.0),
    "hinge": lambda p: HingeLoss(),
}


def make_loss(params: dict[str, Any]) -> GanLoss:
    return LOSSES[params["loss"]](params)
