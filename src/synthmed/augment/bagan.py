"""Improved BAGAN / BAGAN-GP (Huang & Jafari 2021), Sharma et al. 2022's best method on its 5 % COVID split:
``bagan-gp``.

One ``fit`` runs three stages, both training stages through the shared epoch loop (``TorchGenerator._train``):

1. autoencoder pre-training (``ae_epochs``, MSE): a convolutional encoder to a ``latent_dim`` code and a
   label-conditioned decoder with the generator's architecture;
2. the per-class mean and covariance of the encoded training images: the generator's input for class c
   is z ~ N(mu_c, Sigma_c), so every class, however rare, starts from its own region of the code space;
3. the adversarial phase (``_ConditionalGAN.train_step`` -> ``adversarial_step``): the generator starts as
   the decoder, the critic's convolutional features as the encoder's; the critic loss is Sharma et al.'s
   equation 2 (BCE on real, fake, and real images with a wrong label) plus a gradient penalty, and the
   fakes' labels are drawn uniformly (y_f ~ U), which is BAGAN's balancing: minority classes get as many
   generator updates as the majority.

Where we differ from the BAGAN-GP code (github.com/GH920/improved-bagan-gp), and why: the autoencoder uses
MSE (the code compiles it with MAE); the decoder takes the label concatenated to z (the code multiplies z by a
learned label embedding) and z comes from the class Gaussian as the paper describes; interpolation weights are
U(0, 1) as in WGAN-GP (the code draws N(0, 1)); wrong labels are drawn among the other classes (equation 2's
y_s ~ U may hit the true label, which would call a correct pair fake); the critic's Dense(512) -> Dense(1)
with no activation between is one linear map, so we use one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthmed.augment.base import register
from synthmed.augment.gan import SMALL_DATA, ConditionalGAN
from synthmed.augment.gan_losses import BCEGanLoss, GanLoss, gradient_penalty
from synthmed.augment.generative import SAMPLE_BATCH
from synthmed.errors import SynthmedError
from synthmed.nets.generators import (
    ConvDecoder,
    ConvEncoder,
    dcgan_init,
    make_activation,
    one_hot,
    spectral_normalize,
)


class LabelCritic(nn.Module):
    """BAGAN-GP's critic: the encoder's convolutional features, gated by a label embedding, then one linear
    score (linear output, no BatchNorm, so the gradient penalty is per image)."""

    def __init__(self, channels: int, size: int, width: int, n_classes: int, activation: str) -> None:
        super().__init__()
        features = ConvEncoder(channels, size, 1, width, activation=activation)
        self.body = features.body  # same layers as the encoder's body, so its weights can be copied in
        dim = features.head.in_features
        self.embed = nn.Linear(n_classes, dim)
        self.act = make_activation(activation)
        self.head = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1) * self.act(self.embed(cond)))


class BaganLoss(BCEGanLoss):
    """Sharma et al.'s equations 2-3: BCE for real vs fake and the non-saturating generator loss; the critic
    also calls real images with a wrong label fake, and pays ``gp_weight`` times the gradient penalty."""

    def __init__(self, gp_weight: float) -> None:
        self.gp_weight = gp_weight

    def penalty(
        self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor
    ) -> torch.Tensor | None:
        terms = []
        n_classes = cond.shape[1]
        if n_classes > 1:
            shift = torch.randint(1, n_classes, (len(cond),), generator=self.generator).to(cond.device)
            wrong = one_hot((cond.argmax(1) + shift) % n_classes, n_classes)
            logits = critic(real, wrong)
            terms.append(F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits)))
        if self.gp_weight:
            terms.append(gradient_penalty(critic, real, fake, cond, self.gp_weight, self.generator))
        return torch.stack(terms).sum() if terms else None


def safe_cholesky(cov: torch.Tensor, jitter: float) -> torch.Tensor:
    """Lower Cholesky factor of ``cov + jitter * I``, raising the jitter tenfold until it factorises: the
    covariance of a few hundred codes in 128 dimensions is singular, and of one code it is zero."""
    eye = torch.eye(len(cov), dtype=cov.dtype)
    for _ in range(12):
        factor, info = torch.linalg.cholesky_ex(cov + jitter * eye)
        if int(info) == 0 and bool(torch.isfinite(factor).all()):
            return factor
        jitter *= 10
    raise SynthmedError(
        "bagan-gp: the class covariance of the encoded images is not finite; lower the learning "
        "rate or check the training images"
    )


#: Preset as in the BAGAN-GP paper and code unless Sharma et al. say otherwise: 100 epochs (Sharma et al.: Table 2's
#: results and Table 4's COVID row use 100; Table 5 tunes at 50); autoencoder pre-training 30 epochs; Adam lr 2e-4,
#: betas (0.5, 0.9) for the autoencoder and both players; batch 128; latent 128; 5 critic updates per generator
#: update; gp_weight 10; BatchNorm in the generator only; LeakyReLU(0.2) in both; no spectral normalisation (all
#: BAGAN-GP); N(0, 0.02) conv init (the code's).
PRESET: dict[str, Any] = {
    "arch": "conv",
    "loss": "bagan",
    "epochs": 100,
    "ae_epochs": 30,
    "lr": 2e-4,
    "betas": (0.5, 0.9),
    "batch_size": 128,
    "latent_dim": 128,
    "width": 64,
    "n_critic": 5,
    "gp_weight": 10.0,
    "sn_generator": False,
    "sn_discriminator": False,
    "g_activation": "leaky_relu",
    "d_activation": "leaky_relu",
    "optimizer": "adam",
}


@register("bagan-gp", {**PRESET, **SMALL_DATA})
class BaganGP(ConditionalGAN):
    """Improved BAGAN with gradient penalty (preset: ``PRESET``).

    Sharma et al.'s Table 5 axes are parameters: ``lr`` (2e-4, 1e-4, 2e-5, 1e-5), ``gp_weight`` (0, 0.1, 1),
    ``sn_generator`` / ``sn_discriminator`` (yes / no), ``g_activation`` / ``d_activation`` (relu, elu,
    leaky_relu). Spectral norm of the generator also applies to the decoder it is copied from, and of the
    critic to the encoder's convolutions, so the copies are exact. The autoencoder's per-epoch losses are
    in ``ae_history_`` (``ae_loss``), the adversarial phase's in ``history_``.
    """

    losses = ("bagan",)

    def make_loss(self) -> GanLoss:
        return BaganLoss(self.params["gp_weight"])

    def build(self, channels: int, size: int, n_classes: int) -> dict[str, nn.Module]:
        p = self.params
        z, width = p["latent_dim"], p["width"]
        nets: dict[str, nn.Module] = {
            "encoder": ConvEncoder(channels, size, z, width, activation=p["d_activation"]),
            "decoder": ConvDecoder(z, channels, size, width, n_classes, activation=p["g_activation"]),
            "generator": ConvDecoder(z, channels, size, width, n_classes, activation=p["g_activation"]),
            "discriminator": LabelCritic(channels, size, width, n_classes, p["d_activation"]),
        }
        for net in nets.values():
            dcgan_init(net)
        if p["sn_generator"]:
            spectral_normalize(nets["decoder"])
            spectral_normalize(nets["generator"])
        if p["sn_discriminator"]:
            spectral_normalize(nets["encoder"].get_submodule("body"))
            spectral_normalize(nets["discriminator"])
        return nets

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self.phase_ == "autoencoder":
            params = [*self.nets_["encoder"].parameters(), *self.nets_["decoder"].parameters()]
            return {"autoencoder": torch.optim.Adam(params, lr=self.params["lr"], betas=tuple(self.params["betas"]))}
        return super().optimizers()

    def fit(self, images: np.ndarray, labels: np.ndarray, *, seed: int = 0, monitor: Any = None) -> BaganGP:
        self.phase_ = "autoencoder"
        self.ae_history_: list[dict] = []
        super().fit(images, labels, seed=seed, monitor=monitor)
        return self

    def _train(
        self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator, epochs: int | None = None
    ) -> None:
        """Autoencoder phase, class statistics, weight transfer, adversarial phase: one loop, run twice."""
        super()._train(x, cond, generator, self.params["ae_epochs"])
        self.ae_history_ = self.history_
        self._fit_class_latents(x, cond)
        nets = self.nets_
        nets["generator"].load_state_dict(nets["decoder"].state_dict())
        if "ema_generator" in nets:  # the average starts from the transferred generator
            nets["ema_generator"].load_state_dict(nets["decoder"].state_dict())
        nets["discriminator"].get_submodule("body").load_state_dict(nets["encoder"].get_submodule("body").state_dict())
        self.phase_ = "adversarial"
        self.optimizers_ = self.optimizers()
        super()._train(x, cond, generator, epochs)

    def train_step(self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        if self.phase_ == "autoencoder":
            rec = self.nets_["decoder"](self.nets_["encoder"](x), cond)
            return {"ae_loss": self.optimize(self.optimizers_["autoencoder"], F.mse_loss(rec, x), "ae_loss")}
        return super().train_step(x, cond, generator)

    @torch.no_grad()
    def _fit_class_latents(self, x: torch.Tensor, cond: torch.Tensor) -> None:
        """Per-class mean and Cholesky factor of the covariance of the encoded images (float64 maths)."""
        encoder = self.nets_["encoder"].eval()
        codes = torch.cat([encoder(x[i : i + SAMPLE_BATCH]) for i in range(0, len(x), SAMPLE_BATCH)]).cpu().double()
        labels = cond.argmax(1).cpu()
        dim = codes.shape[1]
        spread = float(codes.var(0).mean()) if len(codes) > 1 else 0.0
        jitter = 1e-6 * (spread if spread > 0 else 1.0)
        means = torch.zeros(self.n_classes_, dim, dtype=torch.float64)
        chols = torch.zeros(self.n_classes_, dim, dim, dtype=torch.float64)
        for c in range(self.n_classes_):
            zc = codes[labels == c]
            if len(zc) == 0:  # never sampled: ``sample`` refuses classes without training images
                chols[c] = torch.eye(dim, dtype=torch.float64)
                continue
            means[c] = zc.mean(0)
            centred = zc - means[c]
            chols[c] = safe_cholesky(centred.T @ centred / max(len(zc) - 1, 1), jitter)
        self.class_means_, self.class_chol_ = means.float(), chols.float()

    def sample_inputs(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """z ~ N(mu_c, Sigma_c) for each requested label c, from the seeded generator."""
        eps = torch.randn(len(labels), self.params["latent_dim"], generator=generator)
        z = torch.empty_like(eps)
        for c in labels.unique().tolist():
            rows = labels == c
            z[rows] = self.class_means_[c] + eps[rows] @ self.class_chol_[c].T
        return z

    def fake_inputs(self, cond: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform labels over the classes seen in training, and their class-conditional latents."""
        seen = torch.tensor([c for c, n in enumerate(self.class_counts_) if n > 0])
        labels = seen[torch.randint(len(seen), (len(cond),), generator=generator)]
        z = self.sample_inputs(labels, generator).to(self.device_)
        return z, one_hot(labels, self.n_classes_).to(self.device_)

    def extra_state(self) -> dict[str, Any]:
        return {"class_means": self.class_means_, "class_chol": self.class_chol_, "ae_history": self.ae_history_}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.class_means_, self.class_chol_ = state["class_means"], state["class_chol"]
        self.ae_history_ = list(state["ae_history"])
