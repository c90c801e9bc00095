"""Seed 002's GAN family as class-conditional convolutional GANs: ``dcgan``, ``wgan``, ``wgan-gp``, ``lsgan``,
``sngan`` (Sharma et al., *Exploring class imbalance using GANs in medical imaging*, section 3.1).

All five are one network pair (the DCGAN generator and critic of ``synthmed.nets.generators``, labels
concatenated to z and given to the critic as constant input maps) trained by the one loop of ``gan.py``
(``TorchGenerator._train`` -> ``_ConditionalGAN.train_step`` -> ``adversarial_step``). What differs is
configuration: the ``GanLoss`` (its ``penalty`` and ``after_critic_step`` hooks), ``n_critic``, spectral
normalisation of the critic and the optimizer.

Hyper-parameters. Seed 002's text states none for these four GANs (its Table 2 reports its Improved BAGAN
after 100 epochs; Table 5 tunes only BAGAN). So each preset takes its optimizer, learning rate, betas,
batch size and critic schedule from the method's original paper, and from seed 002 only what it gives:
100 epochs (Table 2). The latent size 128 is seed 002's code (``run_train.sh``: ``--z_dim 128``), which
also equals WGAN-GP's and SNGAN's. The critic has no BatchNorm (``ConvEncoder``), which WGAN-GP requires.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from synthmed.augment.base import register
from synthmed.augment.gan import BCEGanLoss, GanLoss, _ConditionalGAN, conv_gan_nets

# ---- losses ---------------------------------------------------------------------------------------------


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


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor | None,
                     weight: float, generator: torch.Generator | None = None) -> torch.Tensor:
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

    def penalty(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                cond: torch.Tensor) -> torch.Tensor | None:
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


# ---- the one network pair -------------------------------------------------------------------------------


class _ConvGAN(_ConditionalGAN):
    """Conditional DCGAN pair with N(0, 0.02) init; the critic optionally spectrally normalised."""

    arch = "conv"

    def build(self, channels: int, size: int, n_classes: int) -> dict[str, nn.Module]:
        return conv_gan_nets(self.params, channels, size, n_classes)

    def spectral_layers(self) -> list[nn.Module]:
        """The critic's spectrally normalised layers (empty without ``sn_discriminator``)."""
        return [m for m in self._fitted()["discriminator"].modules() if parametrize.is_parametrized(m, "weight")]


@register("dcgan")
class DCGAN(_ConvGAN):
    """Conditional DCGAN with the non-saturating BCE loss (Radford et al.).

    Preset: 100 epochs (seed 002, Table 2); Adam lr 2e-4, betas (0.5, 0.999), batch 128, N(0, 0.02) init
    (Radford et al.; seed 002's code used lr 2e-3, which its paper does not state); latent 128 (seed 002's
    code). Unlike ``conv-cgan`` (seed 000's schedule) it follows seed 002's preset.
    """

    def __init__(self, epochs: int = 100, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999),
                 batch_size: int = 128, latent_dim: int = 128, width: int = 64, n_critic: int = 1,
                 optimizer: str = "adam", sn_discriminator: bool = False, device: str = "auto") -> None:
        super().__init__(epochs=epochs, lr=lr, betas=betas, batch_size=batch_size, latent_dim=latent_dim,
                         width=width, n_critic=n_critic, optimizer=optimizer, sn_discriminator=sn_discriminator,
                         device=device)

    def make_loss(self) -> GanLoss:
        return BCEGanLoss()


@register("wgan")
class WGAN(_ConvGAN):
    """Conditional WGAN with weight clipping (Arjovsky et al.), as seed 002 describes its WGAN (section 3.1).

    Preset: 100 epochs (seed 002, Table 2); RMSprop lr 5e-5, clip c = 0.01, n_critic 5, batch 64
    (Arjovsky et al., Algorithm 1); latent 128 (seed 002's code). ``betas`` only applies with ``optimizer="adam"``.
    """

    def __init__(self, epochs: int = 100, lr: float = 5e-5, batch_size: int = 64, latent_dim: int = 128,
                 width: int = 64, n_critic: int = 5, clip: float = 0.01, optimizer: str = "rmsprop",
                 betas: tuple[float, float] = (0.5, 0.999), sn_discriminator: bool = False,
                 device: str = "auto") -> None:
        super().__init__(epochs=epochs, lr=lr, batch_size=batch_size, latent_dim=latent_dim, width=width,
                         n_critic=n_critic, clip=clip, optimizer=optimizer, betas=betas,
                         sn_discriminator=sn_discriminator, device=device)

    def make_loss(self) -> GanLoss:
        return ClippedWassersteinLoss(self.params["clip"])


@register("wgan-gp")
class WGANGP(_ConvGAN):
    """Conditional WGAN-GP (Gulrajani et al.): Wasserstein loss + gradient penalty on labelled interpolates.

    Seed 002's code trains its "WGAN" this way (``DCGAN_GP_conditional.py``, 5 critic repeats, lambda 10).
    Preset: 100 epochs (seed 002, Table 2); Adam lr 1e-4, betas (0.5, 0.9) (Gulrajani et al.'s DCGAN-critic
    runs; their Algorithm 1 states (0, 0.9)), gp_weight 10, n_critic 5, batch 64 (Gulrajani et al.); latent 128.
    """

    def __init__(self, epochs: int = 100, lr: float = 1e-4, betas: tuple[float, float] = (0.5, 0.9),
                 batch_size: int = 64, latent_dim: int = 128, width: int = 64, n_critic: int = 5,
                 gp_weight: float = 10.0, optimizer: str = "adam", sn_discriminator: bool = False,
                 device: str = "auto") -> None:
        super().__init__(epochs=epochs, lr=lr, betas=betas, batch_size=batch_size, latent_dim=latent_dim,
                         width=width, n_critic=n_critic, gp_weight=gp_weight, optimizer=optimizer,
                         sn_discriminator=sn_discriminator, device=device)

    def make_loss(self) -> GanLoss:
        return GradientPenaltyWassersteinLoss(self.params["gp_weight"])


@register("lsgan")
class LSGAN(_ConvGAN):
    """Conditional least-squares GAN (Mao et al., a = 0, b = 1, c = 1).

    Preset: 100 epochs (seed 002, Table 2); Adam lr 2e-4, betas (0.5, 0.999), batch 64 (after Mao et al.,
    who follow DCGAN's Adam; lr 2e-4 is also seed 002's code); latent 128 (seed 002's code).
    """

    def __init__(self, epochs: int = 100, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999),
                 batch_size: int = 64, latent_dim: int = 128, width: int = 64, n_critic: int = 1,
                 optimizer: str = "adam", sn_discriminator: bool = False, device: str = "auto") -> None:
        super().__init__(epochs=epochs, lr=lr, betas=betas, batch_size=batch_size, latent_dim=latent_dim,
                         width=width, n_critic=n_critic, optimizer=optimizer, sn_discriminator=sn_discriminator,
                         device=device)

    def make_loss(self) -> GanLoss:
        return LeastSquaresLoss(0.0, 1.0, 1.0)


@register("sngan")
class SNGAN(_ConvGAN):
    """Conditional SNGAN (Miyato et al.): spectral normalisation on every conv / linear layer of the critic,
    hinge loss.

    Preset: 100 epochs (seed 002, Table 2); Adam lr 2e-4, betas (0.5, 0.999), n_critic 1, batch 64
    (Miyato et al.'s setting C; lr 2e-4 is also seed 002's code); latent 128 (seed 002's code and Miyato et al.).
    """

    def __init__(self, epochs: int = 100, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999),
                 batch_size: int = 64, latent_dim: int = 128, width: int = 64, n_critic: int = 1,
                 optimizer: str = "adam", sn_discriminator: bool = True, device: str = "auto") -> None:
        super().__init__(epochs=epochs, lr=lr, betas=betas, batch_size=batch_size, latent_dim=latent_dim,
                         width=width, n_critic=n_critic, optimizer=optimizer, sn_discriminator=sn_discriminator,
                         device=device)

    def make_loss(self) -> GanLoss:
        return HingeLoss()
