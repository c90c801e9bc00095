"""The conditional GAN every adversarial method is (``ConditionalGAN``), its one training step
(``adversarial_step``), and Chaptoukaev 2021's presets: ``cgan`` (Mirza & Osindero 2014, fully connected) and a
conditional DCGAN (``conv-cgan``). Sharma et al. 2022's family (``gan_family``) and BAGAN-GP (``bagan``) are
presets or a subclass of the same class.

Both players see the label: the generator as a one-hot vector concatenated to z, the discriminator as a
one-hot vector concatenated to the flattened image (``arch="fc"``) or as constant extra input channels
(``arch="conv"``). The objective is the ``GanLoss`` the preset names (``synthmed.augment.gan_losses``).

Schedule: per batch of real images, ``n_critic`` critic updates (fresh noise each) and then one generator
update, as in Sharma et al.'s code and the BAGAN-GP code; so an epoch is one generator step per batch for
every member of the family, and epoch counts compare across methods.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from synthmed.augment.base import register
from synthmed.augment.diffaugment import DiffAugment, parse_policy
from synthmed.augment.gan_losses import LOSSES, GanLoss, make_loss
from synthmed.augment.generative import TorchGenerator
from synthmed.errors import SynthmedError
from synthmed.nets.generators import ConvDecoder, ConvEncoder, FCDecoder, FCEncoder, dcgan_init, spectral_normalize


def adversarial_step(
    method: TorchGenerator,
    loss: GanLoss,
    real: torch.Tensor,
    cond: torch.Tensor,
    z: torch.Tensor,
    train_generator: bool = True,
    fake_cond: torch.Tensor | None = None,
    augment: DiffAugment | None = None,
) -> dict[str, float]:
    """One critic update and (optionally) one generator update on a batch.

    The fakes share the real labels unless ``fake_cond`` gives theirs (BAGAN draws them uniformly, so
    minority classes get as many generator updates as the majority). ``method`` holds networks
    "generator" / "discriminator" and optimizers of the same names; its ``optimize`` refuses NaN or
    infinite losses. With ``augment`` (DiffAugment), the critic sees augmented images in both steps: in the critic
    step the real and the fake batch get the same random transform, in the generator step the fakes a fresh one;
    penalties are taken on the images themselves.
    """
    gen, critic = method.nets_["generator"], method.nets_["discriminator"]
    fake_cond = cond if fake_cond is None else fake_cond
    fake = gen(z, fake_cond)
    n = len(real)
    real_in, fake_in = real, fake.detach()
    if augment is not None:
        shared = augment.sample(real, loss.generator or torch.Generator())
        real_in, fake_in = augment.apply(real, shared), augment.apply(fake_in, shared)
    scores = critic(torch.cat([real_in, fake_in]), torch.cat([cond, fake_cond]))
    d_loss = loss.d_loss(scores[:n], scores[n:])
    penalty = loss.penalty(critic, real, fake.detach(), cond)
    if penalty is not None:
        d_loss = d_loss + penalty
    out = {"d_loss": method.optimize(method.optimizers_["discriminator"], d_loss, "d_loss")}
    loss.after_critic_step(critic)
    if train_generator:
        critic.requires_grad_(False)  # the generator step needs gradients through the critic, not for it
        try:
            seen = fake if augment is None else augment(fake, loss.generator or torch.Generator())
            out["g_loss"] = method.optimize(
                method.optimizers_["generator"], loss.g_loss(critic(seen, fake_cond)), "g_loss"
            )
        finally:
            critic.requires_grad_(True)
    return out


def conv_gan_nets(params: dict, channels: int, size: int, n_classes: int) -> dict[str, nn.Module]:
    """The conditional DCGAN pair with N(0, 0.02) init, the critic spectrally normalised when
    ``params["sn_discriminator"]`` (after the init, so the norm is estimated on the final weights)."""
    nets = {
        "generator": ConvDecoder(params["latent_dim"], channels, size, params["width"], n_classes),
        "discriminator": ConvEncoder(channels, size, 1, params["width"], n_classes),
    }
    for net in nets.values():
        dcgan_init(net)
    if params.get("sn_discriminator"):
        spectral_normalize(nets["discriminator"])
    return nets


class ConditionalGAN(TorchGenerator):
    """A class-conditional GAN: fully connected (``arch="fc"``: ``g_hidden``, ``d_hidden``, ``dropout`` in D) or
    the DCGAN pair (``arch="conv"``: ``width``, optional spectral norm of the critic), trained on the loss the
    preset names with ``n_critic`` critic updates per generator update. Two options for small data, off in the
    papers' presets: ``diffaugment`` (Zhao et al. 2020's policies, e.g. "color,translation,cutout", applied to
    everything the critic sees) and ``ema`` (sample from an exponential moving average of the generator)."""

    #: The loss names this class builds (a subclass with its own objective adds its name).
    losses: ClassVar[tuple[str, ...]] = tuple(LOSSES)
    ema_nets = ("generator",)
    comma_params = frozenset({"diffaugment"})

    def check(self) -> None:
        super().check()
        parse_policy(self.params.get("diffaugment") or "none")  # an unknown policy: one line, before training
        if self.params.get("loss") not in self.losses:
            raise SynthmedError(
                f"{self.name}: loss={self.params.get('loss')!r} is invalid; expected one of {', '.join(self.losses)}"
            )

    def make_loss(self) -> GanLoss:
        """The adversarial objective the preset names (``loss``)."""
        return make_loss(self.params)

    def build(self, channels: int, size: int, n_classes: int) -> dict[str, nn.Module]:
        p = self.params
        if p["arch"] == "conv":
            return conv_gan_nets(p, channels, size, n_classes)
        return {
            "generator": FCDecoder(p["latent_dim"], channels, size, tuple(p["g_hidden"]), n_classes, batchnorm=True),
            "discriminator": FCEncoder(channels, size, 1, tuple(p["d_hidden"]), n_classes, p["dropout"]),
        }

    def spectral_layers(self) -> list[nn.Module]:
        """The critic's spectrally normalised layers (empty without ``sn_discriminator``)."""
        return [m for m in self._fitted()["discriminator"].modules() if parametrize.is_parametrized(m, "weight")]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One optimizer per player: Adam (lr, betas) or, with ``optimizer="rmsprop"``, RMSprop (lr) as WGAN."""
        lr = self.params["lr"]
        if self.params.get("optimizer", "adam") == "rmsprop":
            return {
                name: torch.optim.RMSprop(self.nets_[name].parameters(), lr=lr)
                for name in ("generator", "discriminator")
            }
        return {
            name: torch.optim.Adam(self.nets_[name].parameters(), lr=lr, betas=tuple(self.params["betas"]))
            for name in ("generator", "discriminator")
        }

    def fit(self, images: np.ndarray, labels: np.ndarray, *, seed: int = 0, monitor: Any = None) -> ConditionalGAN:
        self.loss_ = self.make_loss()
        policy = parse_policy(self.params.get("diffaugment") or "none")
        self.diffaugment_ = DiffAugment(policy) if policy else None
        super().fit(images, labels, seed=seed, monitor=monitor)
        return self

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
            out = adversarial_step(
                self, self.loss_, x, cond, z, i == n_critic - 1, fake_cond, getattr(self, "diffaugment_", None)
            )
            d_losses.append(out["d_loss"])
        out["d_loss"] = sum(d_losses) / n_critic
        return out

    def decode(self, inputs: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.sampling_net("generator")(inputs, cond)


#: Options for small data every GAN takes, off in the papers' presets (ours):
#: ``-p diffaugment=color,translation,cutout`` and ``-p ema=0.999``.
SMALL_DATA: dict[str, Any] = {"diffaugment": "none", "ema": None}

#: Chaptoukaev 2021, section 3.2: ``cgan`` has 3 hidden layers in G and in D, lr 1e-4, batch 128, 1000 epochs;
#: its widths, BatchNorm in G and dropout 0.3 in D (as Mirza & Osindero) are ours, since the paper gives none.
#: ``conv-cgan``: a conditional DCGAN (Radford et al.: lr 2e-4, betas (0.5, 0.999), N(0, 0.02) init). Chaptoukaev
#: names convolutional models as future work and gives them no schedule; 300 epochs (1,500 generator steps on
#: BreastMNIST's 546 images) is ours: the FC cGAN's 1,000 would cost ~40 minutes per fit on 2 CPU cores.

PRESETS: dict[str, dict[str, Any]] = {
    "cgan": {
        "arch": "fc",
        "loss": "bce",
        "epochs": 1000,
        "lr": 1e-4,
        "betas": (0.5, 0.999),
        "batch_size": 128,
        "latent_dim": 100,
        "g_hidden": (128, 256, 512),
        "d_hidden": (512, 256, 128),
        "dropout": 0.3,
        "n_critic": 1,
        "optimizer": "adam",
    },
    "conv-cgan": {
        "arch": "conv",
        "loss": "bce",
        "epochs": 300,
        "lr": 2e-4,
        "betas": (0.5, 0.999),
        "batch_size": 128,
        "latent_dim": 100,
        "width": 64,
        "n_critic": 1,
        "optimizer": "adam",
        "sn_discriminator": False,
    },
}

for _name, _preset in PRESETS.items():
    register(_name, {**_preset, **SMALL_DATA})(ConditionalGAN)
