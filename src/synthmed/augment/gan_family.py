"""Sharma et al. 2022's GAN family as class-conditional convolutional GANs: ``dcgan``, ``wgan``, ``wgan-gp``,
``lsgan``, ``sngan`` (*Exploring class imbalance using GANs in medical imaging*, section 3.1).

All five are presets of one class (``synthmed.augment.gan.ConditionalGAN`` with ``arch="conv"``: the DCGAN
generator and critic of ``synthmed.nets.generators``, labels concatenated to z and given to the critic as
constant input maps) trained by its one loop (``TorchGenerator._train`` -> ``ConditionalGAN.train_step`` ->
``adversarial_step``). What differs is data: the loss (``synthmed.augment.gan_losses``), ``n_critic``, spectral
normalisation of the critic and the optimizer.

Hyper-parameters. Sharma et al.'s text states none for these four GANs (its Table 2 reports its Improved BAGAN
after 100 epochs; Table 5 tunes only BAGAN). So each preset takes its optimizer, learning rate, betas, batch
size and critic schedule from the method's original paper, and from Sharma et al. only what they give: 100
epochs (Table 2). The latent size 128 is Sharma et al.'s code (``run_train.sh``: ``--z_dim 128``), which also
equals WGAN-GP's and SNGAN's. The critic has no BatchNorm (``ConvEncoder``), which WGAN-GP requires.
"""

from __future__ import annotations

from typing import Any

from synthmed.augment.base import register
from synthmed.augment.gan import SMALL_DATA, ConditionalGAN

_CONV = {"arch": "conv", "epochs": 100, "latent_dim": 128, "width": 64, "sn_discriminator": False}

PRESETS: dict[str, dict[str, Any]] = {
    # Radford et al.: Adam lr 2e-4, betas (0.5, 0.999), batch 128, N(0, 0.02) init, non-saturating BCE loss
    # (Sharma et al.'s code used lr 2e-3, which their paper does not state).
    "dcgan": {
        **_CONV,
        "loss": "bce",
        "lr": 2e-4,
        "betas": (0.5, 0.999),
        "batch_size": 128,
        "n_critic": 1,
        "optimizer": "adam",
    },
    # Arjovsky et al., Algorithm 1: RMSprop lr 5e-5, clip 0.01, n_critic 5, batch 64 (Sharma et al. describe
    # their WGAN with weight clipping, section 3.1); ``betas`` only applies with optimizer "adam".
    "wgan": {
        **_CONV,
        "loss": "wasserstein",
        "lr": 5e-5,
        "clip": 0.01,
        "batch_size": 64,
        "n_critic": 5,
        "optimizer": "rmsprop",
        "betas": (0.5, 0.999),
    },
    # Gulrajani et al.: Adam lr 1e-4, betas (0.5, 0.9) (their DCGAN-critic runs; Algorithm 1 states (0, 0.9)),
    # gp_weight 10, n_critic 5, batch 64. Sharma et al.'s code trains its "WGAN" this way
    # (DCGAN_GP_conditional.py, 5 critic repeats, lambda 10).
    "wgan-gp": {
        **_CONV,
        "loss": "wasserstein-gp",
        "lr": 1e-4,
        "betas": (0.5, 0.9),
        "gp_weight": 10.0,
        "batch_size": 64,
        "n_critic": 5,
        "optimizer": "adam",
    },
    # Mao et al. (a = 0, b = 1, c = 1), following DCGAN's Adam: lr 2e-4 (also Sharma et al.'s code), batch 64.
    "lsgan": {
        **_CONV,
        "loss": "least-squares",
        "lr": 2e-4,
        "betas": (0.5, 0.999),
        "batch_size": 64,
        "n_critic": 1,
        "optimizer": "adam",
    },
    # Miyato et al.'s setting C: spectral norm on every critic layer, hinge loss, Adam lr 2e-4, betas (0.5, 0.999),
    # n_critic 1, batch 64 (lr 2e-4 is also Sharma et al.'s code).
    "sngan": {
        **_CONV,
        "loss": "hinge",
        "lr": 2e-4,
        "betas": (0.5, 0.999),
        "batch_size": 64,
        "n_critic": 1,
        "optimizer": "adam",
        "sn_discriminator": True,
    },
}

for _name, _preset in PRESETS.items():
    register(_name, {**_preset, **SMALL_DATA})(ConditionalGAN)
