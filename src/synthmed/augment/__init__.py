"""Augmenters: every method behind one contract (``base``), each family in one module with its presets as data."""

from synthmed.augment import (  # noqa: F401  (imported to register their methods)
    autoencoder,  # ae, conv-ae
    bagan,  # bagan-gp
    classic,  # flip, classic
    diffusion,  # ddpm, ddpm-gpu
    gan,  # cgan, conv-cgan
    gan_family,  # dcgan, wgan, wgan-gp, lsgan, sngan
    oversample,  # oversample (count-matched copies of real images)
    pseudo_label,  # pseudo-label (unlabelled real images with teacher labels)
    tsynd,  # tsynd, random-latent
    vae,  # cvae, conv-cvae
)
from synthmed.augment.base import (
    Augmenter,
    Kind,
    NewImages,
    available,
    create_augmenter,
    method_class,
    preset,
    reads_unlabelled,
    register,
    takes_teacher,
)

__all__ = [
    "Augmenter",
    "Kind",
    "NewImages",
    "available",
    "create_augmenter",
    "method_class",
    "preset",
    "register",
    "reads_unlabelled",
    "takes_teacher",
]
