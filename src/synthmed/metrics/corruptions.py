"""MedMNIST-C (Di Salvo, Doerrich and Ledig 2024): modality-specific image corruptions at five severities.

Our implementation of the published definitions (``medmnistc`` package, ``corruptions/*.py`` and the per-dataset
table ``corruptions/registry.py``), written in numpy / PIL / scipy / torch so the core needs neither OpenCV nor
ImageMagick; ``tests/test_corruptions.py`` checks it against outputs of the package computed once.

Every function takes a uint8 batch (N, H, W) or (N, H, W, 3) and returns a new uint8 batch of the same shape.
Rounding follows the package: its float pipelines truncate (``astype(uint8)``), PIL's enhancers truncate, the
resamplers and torchvision's blur round.

Scale. The package defines its severities on 224-px images. Spatial parameters (blur kernels and radii) are in
224-px units and scaled by ``H / REFERENCE_SIZE``, so a corruption covers the same share of the anatomy at any
size; the rest (pixelation factor, JPEG quality, noise, intensity) have no scale. At 28 px the mild blurs are
therefore close to the identity, as a 224-px blur seen at 28 px is.

Randomness (noise, the motion-blur angle) is drawn from ``numpy.random.default_rng`` seeded with (seed, corruption,
severity), so a benchmark run is reproducible for a seed and independent of the batch size.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torchvision.transforms.v2 import functional as TF

from synthmed.errors import SynthmedError

REFERENCE_SIZE = 224
SEVERITIES = (1, 2, 3, 4, 5)

Params = tuple  # the five severity parameters of one corruption


def _unit(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float64) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """The package's ``(np.clip(x, 0, 1) * 255).astype(np.uint8)``: truncation, not rounding."""
    return (np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def gaussian_noise(images: np.ndarray, c: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Additive Gaussian noise of std ``c`` (in [0, 1] units)."""
    x = _unit(images)
    return _to_uint8(x + rng.normal(scale=c, size=x.shape))


def speckle_noise(images: np.ndarray, c: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Multiplicative Gaussian noise (ultrasound speckle): x + x * N(0, c)."""
    x = _unit(images)
    return _to_uint8(x + x * rng.normal(scale=c, size=x.shape))


def impulse_noise(images: np.ndarray, amount: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Salt and pepper on a share ``amount`` of the values, half each (scikit-image's ``s&p``)."""
    x = _unit(images)
    flipped = rng.random(x.shape) < amount
    salted = rng.random(x.shape) < 0.5
    x[flipped & salted] = 1.0
    x[flipped & ~salted] = 0.0
    return _to_uint8(x)


def shot_noise(images: np.ndarray, mult: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Poisson noise: ``mult`` photons at full intensity (fewer photons = more noise)."""
    return _to_uint8(rng.poisson(_unit(images) * mult) / mult)


def _box_weights(n_in: int, n_out: int) -> np.ndarray:
    """PIL's BOX resampling as an (n_out, n_in) matrix (``precompute_coeffs`` with a box of support 0.5)."""
    scale = n_in / n_out
    support = 0.5 * max(scale, 1.0)
    weights = np.zeros((n_out, n_in))
    for j in range(n_out):
        center = (j + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
        taps = (np.arange(lo, hi) - center + 0.5) / max(scale, 1.0)
        weights[j, lo:hi] = (taps > -0.5) & (taps <= 0.5)
    return weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)


def _resize_box(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """PIL ``resize(..., Image.BOX)`` of the whole batch: horizontal then vertical pass, each rounded to uint8."""
    x = images.astype(np.float64)
    x = np.einsum("ow,nhw...->nho...", _box_weights(images.shape[2], width), x)
    x = np.clip(np.floor(x + 0.5), 0, 255)
    x = np.einsum("oh,nhw...->now...", _box_weights(images.shape[1], height), x)
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def pixelate(images: np.ndarray, factor: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Down to ``factor`` of the size and back up, both with a box filter."""
    h, w = images.shape[1:3]
    small = _resize_box(images, max(int(h * factor), 1), max(int(w * factor), 1))
    return _resize_box(small, h, w)


def jpeg_compression(images: np.ndarray, quality: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    """A JPEG round trip at ``quality`` (PIL's encoder; one image at a time, as a codec works)."""
    out = np.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=int(quality))
        out[i] = np.asarray(Image.open(buffer))
    return out


def _channels_first(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images)
    return x.unsqueeze(1) if images.ndim == 3 else x.permute(0, 3, 1, 2)


def _channels_back(x: torch.Tensor, ndim: int) -> np.ndarray:
    return (x.squeeze(1) if ndim == 3 else x.permute(0, 2, 3, 1)).contiguous().numpy()


def gaussian_blur(images: np.ndarray, kernel: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    """torchvision's Gaussian blur of kernel size ``kernel`` (its default sigma), reflect padding, rounded."""
    sigma = (0.3 * ((kernel - 1) * 0.5 - 1) + 0.8) * scale
    size = max(3, 2 * round((kernel * scale - 1) / 2) + 1)
    blurred = TF.gaussian_blur(_channels_first(images), [size, size], [sigma, sigma])
    return _channels_back(blurred, images.ndim)


def _correlate(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D correlation of every image and channel with ``kernel``, border mirrored (OpenCV's BORDER_REFLECT_101)."""
    full = kernel[None, :, :, None] if images.ndim == 4 else kernel[None]
    return ndimage.correlate(_unit(images), full, mode="mirror")


def _gauss_1d(size: int, sigma: float) -> np.ndarray:
    """OpenCV's ``getGaussianKernel`` for sigma > 0."""
    taps = np.exp(-((np.arange(size) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    return taps / taps.sum()


def defocus_blur(images: np.ndarray, param: tuple, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Convolution with a disk of ``radius`` (its edge softened by a 3x3 Gaussian of sigma ``alias``)."""
    radius, alias = param[0] * scale, param[1]
    half = 8 if radius <= 8 else math.ceil(radius)
    grid = np.arange(-half, half + 1)
    disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = _gauss_1d(3 if half <= 8 else 5, alias)
    disk = ndimage.correlate(disk, np.outer(g, g), mode="mirror")
    return _to_uint8(_correlate(images, disk))


def motion_blur(images: np.ndarray, param: tuple, rng: np.random.Generator, scale: float) -> np.ndarray:
    """ImageMagick's motion blur: a one-sided Gaussian (``radius``, ``sigma``) along a line at an angle drawn
    uniformly in [-45, 45] degrees per image; edges replicated."""
    radius, sigma = param[0] * scale, param[1] * scale
    width = int(2 * math.ceil(radius) + 1)
    taps = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    angles = np.deg2rad(rng.uniform(-45, 45, size=len(images)))
    n, h, w = images.shape[:3]
    rows, cols = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    x = _unit(images)
    out = np.zeros_like(x)
    for i, weight in enumerate(taps):
        dx = np.ceil(i * np.cos(angles) - 0.5).astype(int)[:, None, None]
        dy = np.ceil(i * np.sin(angles) - 0.5).astype(int)[:, None, None]
        out += weight * x[np.arange(n)[:, None, None], np.clip(rows + dy, 0, h - 1), np.clip(cols + dx, 0, w - 1)]
    return np.clip(np.floor(out * 255 + 0.5), 0, 255).astype(np.uint8)


def brightness(images: np.ndarray, factor: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    """PIL's ``ImageEnhance.Brightness``: a blend with black, truncated."""
    return np.clip(images.astype(np.float32) * np.float32(factor), 0, 255).astype(np.uint8)


def _grey_mean(images: np.ndarray) -> np.ndarray:
    """PIL's ``int(ImageStat.Stat(image.convert("L")).mean[0] + 0.5)`` per image."""
    if images.ndim == 4:
        rgb = images.astype(np.int64)
        grey = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
    else:
        grey = images
    mean = np.floor(grey.reshape(len(images), -1).mean(axis=1) + 0.5)
    return mean.reshape((-1,) + (1,) * (images.ndim - 1)).astype(np.float32)


def contrast(images: np.ndarray, factor: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    """PIL's ``ImageEnhance.Contrast``: a blend with the image's mean grey, truncated."""
    mean = _grey_mean(images)
    return np.clip(mean + np.float32(factor) * (images.astype(np.float32) - mean), 0, 255).astype(np.uint8)


def gamma_correction(images: np.ndarray, gamma: float, rng: np.random.Generator, scale: float) -> np.ndarray:
    """torchvision's ``adjust_gamma`` on a PIL image (gain 1): a lookup table, truncated."""
    table = (255.999 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8)
    return table[images]


Corruption = Callable[[np.ndarray, Any, np.random.Generator, float], np.ndarray]

KINDS: dict[str, Corruption] = {
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    "gaussian_noise": gaussian_noise,
    "speckle_noise": speckle_noise,
    "impulse_noise": impulse_noise,
    "shot_noise": shot_noise,
    "gaussian_blur": gaussian_blur,
    "defocus_blur": defocus_blur,
    "motion_blur": motion_blur,
    "brightness": brightness,
    "contrast": contrast,
    "gamma_correction": gamma_correction,
}

#: Corruption name -> the kind that computes it (``brightness_up`` and ``brightness_down`` are one kind).
KIND_OF = {
    "brightness_up": "brightness",
    "brightness_down": "brightness",
    "contrast_up": "contrast",
    "contrast_down": "contrast",
    "gamma_corr_up": "gamma_correction",
    "gamma_corr_down": "gamma_correction",
}

_GREY_XRAY: dict[str, Params] = {
    "pixelate": (0.30, 0.25, 0.20, 0.15, 0.10),
    "jpeg_compression": (50, 30, 15, 10, 7),
    "gaussian_noise": (0.04, 0.08, 0.12, 0.18, 0.26),
    "speckle_noise": (0.05, 0.15, 0.2, 0.35, 0.45),
    "impulse_noise": (0.01, 0.03, 0.06, 0.09, 0.17),
    "shot_noise": (60, 25, 18, 10, 5),
    "gaussian_blur": (3, 5, 7, 9, 11),
    "brightness_up": (1.1, 1.2, 1.3, 1.4, 1.5),
    "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
    "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
    "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    "gamma_corr_up": (1.1, 1.2, 1.3, 1.4, 1.6),
    "gamma_corr_down": (0.9, 0.8, 0.7, 0.6, 0.4),
}

_ORGAN: dict[str, Params] = {
    "pixelate": (0.7, 0.6, 0.5, 0.40, 0.35),
    "jpeg_compression": (50, 30, 15, 10, 7),
    "gaussian_noise": (0.04, 0.08, 0.12, 0.16, 0.20),
    "speckle_noise": (0.05, 0.10, 0.20, 0.30, 0.40),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.08),
    "shot_noise": (200, 100, 50, 25, 15),
    "gaussian_blur": (11, 13, 15, 17, 21),
    "brightness_up": (1.2, 1.3, 1.4, 1.5, 1.6),
    "brightness_down": (0.8, 0.75, 0.7, 0.65, 0.60),
    "contrast_up": (1.3, 1.4, 1.6, 1.7, 1.8),
    "contrast_down": (0.8, 0.7, 0.6, 0.55, 0.5),
    "gamma_corr_up": (1.3, 1.4, 1.6, 1.8, 2.0),
    "gamma_corr_down": (0.9, 0.8, 0.7, 0.6, 0.4),
}

#: The published per-dataset table (severity 1..5 parameters), for the datasets whose corruptions we implement.
#: Path-, Blood- and DermaMNIST also use microscopy / dermoscopy corruptions (stain, bubbles, ink characters,
#: black corners, saturation, zoom blur) that we do not implement: they, and non-MedMNIST data, get ``GENERIC``.
MEDMNISTC: dict[str, dict[str, Params]] = {
    "breastmnist": {
        "pixelate": (0.30, 0.25, 0.20, 0.15, 0.10),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "speckle_noise": (0.10, 0.15, 0.20, 0.25, 0.30),
        "motion_blur": ((5, 5), (9, 7), (9, 10), (13, 10), (17, 12)),
        "brightness_up": (1.4, 1.5, 1.6, 1.8, 2.0),
        "brightness_down": (0.55, 0.5, 0.45, 0.4, 0.3),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
    "pneumoniamnist": {
        "pixelate": (0.8, 0.7, 0.6, 0.5, 0.40),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "gaussian_noise": (0.04, 0.05, 0.06, 0.07, 0.08),
        "speckle_noise": (0.05, 0.07, 0.10, 0.15, 0.20),
        "impulse_noise": (0.005, 0.01, 0.013, 0.017, 0.02),
        "shot_noise": (300, 200, 150, 100, 80),
        "gaussian_blur": (3, 5, 7, 9, 11),
        "brightness_up": (1.1, 1.2, 1.3, 1.4, 1.5),
        "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
        "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
        "gamma_corr_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "gamma_corr_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
    "chestmnist": _GREY_XRAY,
    "octmnist": {
        "pixelate": (0.30, 0.25, 0.20, 0.15, 0.10),
        "jpeg_compression": (30, 15, 10, 7, 5),
        "speckle_noise": (0.15, 0.30, 0.40, 0.50, 0.60),
        "defocus_blur": ((0.5, 0.6), (1, 0.5), (1.5, 0.1), (2.0, 0.5), (2.5, 0.1)),
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "contrast_down": (0.6, 0.4, 0.3, 0.2, 0.15),
    },
    "tissuemnist": {
        "pixelate": (0.40, 0.30, 0.20, 0.15, 0.10),
        "jpeg_compression": (25, 20, 15, 10, 7),
        "impulse_noise": (0.01, 0.015, 0.02, 0.025, 0.03),
        "gaussian_blur": (13, 15, 17, 21, 25),
        "brightness_up": (1.3, 1.4, 1.5, 1.6, 1.7),
        "brightness_down": (0.8, 0.7, 0.6, 0.5, 0.4),
        "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
    "retinamnist": {
        "pixelate": (0.8, 0.60, 0.50, 0.40, 0.35),
        "jpeg_compression": (30, 25, 20, 10, 5),
        "gaussian_noise": (0.04, 0.08, 0.12, 0.16, 0.20),
        "speckle_noise": (0.10, 0.15, 0.20, 0.25, 0.30),
        "defocus_blur": ((4, 0.1), (5, 0.2), (6, 0.3), (7, 0.4), (8, 0.5)),
        "motion_blur": ((8, 5), (15, 5), (15, 8), (15, 12), (20, 15)),
        "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
    "organamnist": _ORGAN,
    "organcmnist": _ORGAN,
    "organsmnist": _ORGAN,
}

#: The generic set (ChestMNIST's: digital, noise, blur and intensity corruptions that apply to any modality).
GENERIC = "generic"
GENERIC_SET: dict[str, Params] = {k: v for k, v in _GREY_XRAY.items() if not k.startswith("gamma")}


def corruption_set(dataset: str) -> tuple[str, dict[str, Params]]:
    """(the set's name: the dataset or ``generic``, corruption -> severity parameters) for ``dataset``."""
    key = dataset.lower()
    return (key, MEDMNISTC[key]) if key in MEDMNISTC else (GENERIC, GENERIC_SET)


def _rng(seed: int, name: str, severity: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), int(severity)])


def corrupt(images: np.ndarray, name: str, severity: int, dataset: str = GENERIC, seed: int = 0) -> np.ndarray:
    """``images`` (uint8 (N, H, W) or (N, H, W, 3)) under corruption ``name`` at ``severity`` (1..5) with the
    parameters of ``dataset``'s set (``corruption_set``); deterministic for ``seed``."""
    set_name, table = corruption_set(dataset)
    if name not in table:
        raise SynthmedError(f"unknown corruption {name!r} for the {set_name} set; choose one of {', '.join(table)}")
    if severity not in SEVERITIES:
        raise SynthmedError(f"severity {severity!r} is not one of 1..5; MedMNIST-C defines five severities")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise SynthmedError("corruptions need uint8 images shaped (N, H, W) or (N, H, W, 3); convert them first")
    kind = KINDS[KIND_OF.get(name, name)]
    scale = images.shape[1] / REFERENCE_SIZE
    if images.ndim == 3 and kind in PER_CHANNEL_NOISE:  # the package corrupts a grey image as RGB, then greys it
        noisy = kind(
            np.repeat(images[..., None], 3, axis=-1), table[name][severity - 1], _rng(seed, name, severity), scale
        )
        return _pil_grey(noisy)
    return kind(images, table[name][severity - 1], _rng(seed, name, severity), scale)


#: The corruptions that draw noise per value: the package converts a grey image to RGB, corrupts it and converts it
#: back (``dataset_manager.py``), so each grey pixel is the luma of three independent draws, not one draw (about
#: two thirds of the noise's spread; salt and pepper becomes partial changes of more pixels).
PER_CHANNEL_NOISE = (gaussian_noise, speckle_noise, impulse_noise, shot_noise)


def _pil_grey(rgb: np.ndarray) -> np.ndarray:
    """PIL's ``convert("L")`` of uint8 RGB: ITU-R 601-2 luma in its 16-bit fixed point, rounded."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)
