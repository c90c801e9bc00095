"""Augmenters: every method behind one fit / sample / transform_batch contract."""

from synthmed.augment import (  # noqa: F401  (imported to register their methods)
    autoencoder,  # ae, conv-ae
    bagan,  # bagan-gp
    classic,  # flip, classic
    gan,  # cgan, conv-cgan
    gan_family,  # dcgan, wgan, wgan-gp, lsgan, sngan
    tsynd,  # tsynd, random-latent
    vae,  # cvae, conv-cvae
)
from synthmed.augment.base import Augmenter, available, create_augmenter, register

__all__ = ["Augmenter", "available", "create_augmenter", "register"]
