"""Chaptoukaev 2021's conditional VAE (``cvae``, Sohn et al. 2015) and its convolutional variant (``conv-cvae``).

The label's one-hot vector is concatenated to the encoder's and the decoder's input, so Q(z | x, c) and
P(x | z, c); the prior is N(0, I) for every class, so sampling a class is decoding z ~ N(0, I) with its
label. The loss is the negative ELBO per image: a Bernoulli reconstruction term (binary cross-entropy on
pixels rescaled to [0, 1], summed over pixels, as Kingma & Welling's MNIST model) plus the KL divergence.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from synthmed.augment.base import register
from synthmed.augment.generative import UNLABELLED_PARAMS, TorchGenerator
from synthmed.nets.generators import build_decoder, build_encoder


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


#: Chaptoukaev 2021, section 3.2: 300 epochs, Adam lr 1e-3, batch 128; the FC model has 2 hidden layers each side.
#: Widths and the latent size are ours. ``conv-cvae`` (ours): DCGAN-style convolutional encoder / decoder, label
#: maps as extra encoder input channels, on the same schedule.
PRESETS: dict[str, dict[str, Any]] = {
    "cvae": {
        "arch": "fc",
        "epochs": 300,
        "lr": 1e-3,
        "batch_size": 128,
        "latent_dim": 32,
        "hidden": (512, 256),
        **UNLABELLED_PARAMS,
    },
    "conv-cvae": {
        "arch": "conv",
        "epochs": 300,
        "lr": 1e-3,
        "batch_size": 128,
        "latent_dim": 32,
        "width": 32,
        **UNLABELLED_PARAMS,
    },
}


class ConditionalVAE(TorchGenerator):
    """Q(z | x, c) and P(x | z, c) with a standard normal prior; the negative ELBO per image as the loss.

    With ``-p use_unlabelled=true`` unlabelled images train with an all-zero label input (no class): the encoder and
    decoder learn the images' structure from every image, the label pathway from the labelled ones only; an epoch
    is then one pass over the labelled images, ``unlabelled_share`` of every batch unlabelled."""

    takes_unlabelled = True
    late_params = UNLABELLED_PARAMS

    def build(self, channels: int, size: int, n_classes: int) -> dict[str, nn.Module]:
        p, z = self.params, self.params["latent_dim"]
        hidden, width = tuple(p.get("hidden", ())), p.get("width", 64)
        return {
            "encoder": build_encoder(p["arch"], channels, size, 2 * z, n_classes, hidden=hidden, width=width),
            "decoder": build_decoder(p["arch"], z, channels, size, n_classes, hidden=hidden[::-1], width=width),
        }

    def train_step(self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        mu, logvar = self.nets_["encoder"](x, cond).chunk(2, 1)
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)
        z = mu + eps * torch.exp(0.5 * logvar)
        # The decoder's image is tanh(a) = 2 sigmoid(2a) - 1, so 2a are the Bernoulli logits of (x + 1) / 2.
        logits = 2 * self.nets_["decoder"].logits(z, cond)  # type: ignore[operator]  # FCDecoder / ConvDecoder.logits
        recon = F.binary_cross_entropy_with_logits(logits, (x + 1) / 2, reduction="none").flatten(1).sum(1).mean()
        kl = kl_to_standard_normal(mu, logvar).mean()
        loss = self.optimize(self.optimizers_["all"], recon + kl)
        return {"loss": loss, "recon": recon.item(), "kl": kl.item()}

    def decode(self, inputs: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.nets_["decoder"](inputs, cond)


for _name, _preset in PRESETS.items():
    register(_name, _preset)(ConditionalVAE)
