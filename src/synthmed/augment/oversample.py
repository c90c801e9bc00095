"""The count-matched control every generator must beat: ``oversample`` adds copies of the real training images.

It is a method that adds a synthetic set (``Kind.SET``), so it takes exactly the counts any generator would get
under the same sampling policy (``--synthetic-per-class``, ``--synthetic-ratio``, ``--balance``) and the same
``--synthetic-weight``, and its set goes through the same audit. A generator that cannot beat repeating the real
images adds nothing (Pink et al. 2026 found no synthetic setting that did on tuberculosis X-rays); Sharma et al.
2022 compared their GANs with no augmentation and flips only, never with plain oversampling.

Copies are drawn per class from the seeded permutation of that class's images, each image used once before any is
reused (as many whole rounds as the count needs), so the copies are spread evenly over the real images.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from synthmed.augment.base import Augmenter, Kind, register
from synthmed.errors import SynthmedError


@register("oversample")
class Oversample(Augmenter):
    """Random copies of real training images, in the counts a generator would add."""

    kind = Kind.SET
    reconstructs = True  # its images are the training images themselves: the audit says so instead of flagging
    labels_known = True  # copies keep their real labels: a teacher has nothing to relabel

    def fit(self, images: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> Oversample:
        images, labels = np.asarray(images), np.asarray(labels)
        if labels.ndim != 1 or len(labels) != len(images) or not len(labels):
            raise SynthmedError(
                f"oversample needs single-label training images, got {images.shape} images and {labels.shape} labels"
            )
        self.images_, self.labels_ = images, labels.astype(np.int64)
        return self

    def sample(self, counts: dict[int, int], *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "images_"):
            raise SynthmedError("oversample: call fit before sample")
        index = copies_per_class(
            self.labels_, counts, seed, lambda c: f"oversample: cannot copy class {c}: the training images have none"
        )
        return self.images_[index].copy(), self.labels_[index].copy()


def copies_per_class(
    classes: np.ndarray, counts: dict[int, int], seed: int, no_image: Callable[[int], str]
) -> np.ndarray:
    """Indices of ``counts[c]`` images of each class c (``classes``: one class per image), drawn from a seeded
    permutation of the class's images, each used once before any is reused; a class asked for but without images
    is refused with the one-line ``no_image(c)``."""
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for c, n in sorted((int(c), int(n)) for c, n in counts.items()):
        pool = np.flatnonzero(classes == c)
        if n and not len(pool):
            raise SynthmedError(no_image(c))
        if not n:
            continue
        rounds = -(-n // len(pool))
        order = torch.cat([torch.randperm(len(pool), generator=generator) for _ in range(rounds)])[:n].numpy()
        picks.append(pool[order])
    return np.concatenate(picks) if picks else np.empty(0, dtype=np.int64)
