"""Seed 000's conditional GAN (``cgan``, Mirza & Osindero 2014) and a conditional DCGAN (``conv-cgan``).

Both players see the label: the generator as a one-hot vector concatenated to z, the discriminator as a
one-hot vector concatenated to the flattened image (FC) or as constant extra input channels (conv).

The adversarial objective is a ``GanLoss`` object, kept apart from the one training step that both
methods share (``adversarial_step``), so Wasserstein, least-squares, hinge or gradient-penalty variants
are a new loss class (and ``n_critic``) on a subclass, not a new loop (``gan_family``, ``bagan``).

Schedule: per batch of real images, ``n_critic`` critic updates (fresh noise each) and then one generator
update, as in seed 002's code and the BAGAN-GP code; so an epoch is one generator step per batch for
every member of the family, and epoch counts compare across methods.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthmed.augment.base import register
from synthmed.augment.generative import TorchGenerator
from synthmed.nets.generators import ConvDecoder, ConvEncoder, FCDecoder, FCEncoder, dcgan_init, spectral_normalize


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

    def penalty(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                cond: torch.Tensor) -> torch.Tensor | None:
        """A regulariser added to the critic loss (e.g. a gradient penalty); none by default."""
        return None

    def after_critic_step(self, critic: nn.Module) -> None:
        """Hook after each critic update (e.g. WGAN's weight clipping)."""


class BCEGanLoss(GanLoss):
    """Goodfellow et al.'s game with binary cross-entropy on logits and the non-saturating generator loss."""

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def adversarial_step(method: TorchGenerator, loss: GanLoss, real: torch.Tensor, cond: torch.Tensor,
                     z: torch.Tensor, train_generator: bool = True,
                     fake_cond: torch.Tensor | None = None) -> dict[str, float]:
    """One critic update and (optionally) one generator update on a batch.

    The fakes share the real labels unless ``fake_cond`` gives theirs (BAGAN draws them uniformly, so
    minority classes get as many generator updates as the majority). ``method`` holds networks
    "generator" / "discriminator" and optimizers of the same names; its ``optimize`` refuses NaN or
    infinite losses.
    """
    gen, critic = method.nets_["generator"], method.nets_["discriminator"]
    fake_cond = cond if fake_cond is None else fake_cond
    fake = gen(z, fake_cond)
    n = len(real)
    scores = critic(torch.cat([real, fake.detach()]), torch.cat([cond, fake_cond]))
    d_loss = loss.d_loss(scores[:n], scores[n:])
    penalty = loss.penalty(critic, real, fake.detach(), cond)
    if penalty is not None:
        d_loss = d_loss + penalty
    out = {"d_loss": method.optimize(method.optimizers_["discriminator"], d_loss, "d_loss")}
    loss.after_critic_step(critic)
    if train_generator:
        critic.requires_grad_(False)  # the generator step needs gradients through the critic, not for it
        try:
            out["g_loss"] = method.optimize(method.optimizers_["generator"], loss.g_loss(critic(fake, fake_cond)),
                                            "g_loss")
        finally:
            critic.requires_grad_(True)
    return out


def conv_gan_nets(params: dict, channels: int, size: int, n_classes: int) -> dict[str, nn.Module]:
    """The conditional DCGAN pair with N(0, 0.02) init, the critic spectrally normalised when
    ``params["sn_discriminator"]`` (after the init, so the norm is estimated on the final weights)."""
    nets = {"generator": ConvDecoder(params["latent_dim"], channels, size, params["width"], n_classes),
            "discriminator": ConvEncoder(channels, size, 1, params["width"], n_classes)}
    for net in nets.values():
        dcgan_init(net)
    if params.get("sn_discriminator"):
        spectral_normalize(nets["discriminator"])
    return nets


class _ConditionalGAN(TorchGenerator):
    arch: ClassVar[str] = "fc"

    def make_loss(self) -> GanLoss:
        """The adversarial objective; variants (WGAN-GP, LSGAN, ...) override this and ``n_critic``."""
        return BCEGanLoss()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One optimizer per player: Adam (lr, betas) or, with ``optimizer="rmsprop"``, RMSprop (lr) as WGAN."""
        lr = self.params["lr"]
        if self.params.get("optimizer", "adam") == "rmsprop":
            return {name: torch.optim.RMSprop(self.nets_[name].parameters(), lr=lr)
                    for name in ("generator", "discriminator")}
        return {name: torch.optim.Adam(self.nets_[name].parameters(), lr=lr, betas=self.params["betas"])
                for name in ("generator", "discriminator")}

    def fit(self, images: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> _ConditionalGAN:
        self.loss_ = self.make_loss()
        return super().fit(images, labels, seed=seed)

    def fake_inputs(self, cond: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Generator inputs for one critic update: latent codes, and the fakes' labels (None: the real ones)."""
        return self.noise(len(cond), generator), None

    def train_step(self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """``n_critic`` critic updates on this batch (fresh fakes each), the last one followed by the
        generator update; the batch's d_loss is their mean."""
        self.loss_.generator = generator
        n_critic = self.params.get("n_critic", 1)
        d_losses = []
        for i in range(n_critic):
            z, fake_cond = self.fake_inputs(cond, generator)
            out = adversarial_step(self, self.loss_, x, cond, z, i == n_critic - 1, fake_cond)
            d_losses.append(out["d_loss"])
        out["d_loss"] = sum(d_losses) / n_critic
        return out

    def decode(self, inputs: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.nets_["generator"](inputs, cond)


@register("cgan")
class ConditionalGAN(_ConditionalGAN):
    """Fully connected, 3 hidden layers in G and in D (seed 000, section 3.2; lr 1e-4, batch 128, 1000
    epochs). Widths, BatchNorm in G and dropout in D (as Mirza & Osindero) are ours: the paper gives none."""

    arch = "fc"

    def __init__(self, epochs: int = 1000, lr: float = 1e-4, betas: tuple[float, float] = (0.5, 0.999),
                 batch_size: int = 128, latent_dim: int = 100, g_hidden: tuple[int, ...] = (128, 256, 512),
                 d_hidden: tuple[int, ...] = (512, 256, 128), dropout: float = 0.3, device: str = "auto") -> None:
        super().__init__(epochs=epochs, lr=lr, betas=betas, batch_size=batch_size, latent_dim=latent_dim,
                         g_hidden=g_hidden, d_hidden=d_hidden, dropout=dropout, device=device)

    def build(self, channels: int, size: int, n_classes: int) -> dict[str, nn.Module]:
        p = self.params
        return {"generator": FCDecoder(p["latent_dim"], channels, size, p["g_hidden"], n_classes, batchnorm=True),
                "discriminator": FCEncoder(channels, size, 1, p["d_hidden"], n_classes, p["dropout"])}


@register("conv-cgan")
class ConvConditionalGAN(_ConditionalGAN):
    """Conditional DCGAN (Radford et al.: lr 2e-4, betas (0.5, 0.999), N(0, 0.02) init). Seed 000 names
    convolutional models as future work and gives them no schedule; 300 epochs (1,500 generator steps on
    BreastMNIST's 546 images) is ours: the FC cGAN's 1,000 would cost ~40 minutes per fit on 2 CPU cores."""

    arch = "conv"

    def __init__(self, epochs: int = 300, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999),
                 batch_size: int = 128, latent_dim: int = 100, width: int = 64, device: str = "auto") -> None:
        super().__init__(epochs=epochs, lr=lr, betas=betas, batch_size=batch_size, latent_dim=latent_dim,
                         width=width, device=device)

    def build(self, channels: int, size: int, n_classes: int) -> dict[str, nn.Module]:
        return conv_gan_nets(self.params, channels, size, n_classes)
