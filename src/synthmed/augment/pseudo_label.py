"""The honest control for generators that learn from unlabelled images (issue 29; Geng et al. 2024 found images
retrieved from a generator's own training data matching or beating its samples): ``pseudo-label`` adds the run's
unlabelled **real** images, labelled by the same teacher, at the same threshold and label type as a teacher-labelled
generative row.

The experiment layer trains the teacher and fits this method on the teacher-labelled pool (``fit(images, labels)``
with the kept unlabelled images and their hard classes or soft probabilities); ``sample`` then draws each class's
count from the images the teacher put in that class, in the same seeded way ``oversample`` copies real images. With
``-p count=policy`` (the default) a run asks for the counts of the synthetic-set policy, as a generator would; with
``-p count=all`` it asks for every kept image once.
"""

from __future__ import annotations

import numpy as np

from synthmed.augment.base import Augmenter, Kind, register
from synthmed.augment.oversample import copies_per_class
from synthmed.errors import SynthmedError

#: ``-p count``: the synthetic-set policy's per-class counts, or every unlabelled image the teacher kept
COUNTS = ("policy", "all")


@register("pseudo-label", {"count": "policy"})
class PseudoLabel(Augmenter):
    """Unlabelled real images with teacher labels, in the counts a generator would add (or all of them)."""

    kind = Kind.SET

    @classmethod
    def reads_unlabelled(cls, params: dict) -> bool:
        """Always: the unlabelled real images are what it adds."""
        return True

    def check(self) -> None:
        if self.params["count"] not in COUNTS:
            raise SynthmedError(f"pseudo-label -p count={self.params['count']!r}: choose one of {', '.join(COUNTS)}")

    def fit(self, images: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> PseudoLabel:
        """``labels``: the teacher's classes (N,) or probabilities (N x C) of the kept unlabelled images."""
        self.check()
        images, labels = np.asarray(images), np.asarray(labels)
        if len(labels) != len(images) or labels.ndim not in (1, 2):
            raise SynthmedError(
                f"pseudo-label needs one teacher label per image, got {images.shape} and {labels.shape}"
            )
        self.images_, self.labels_ = images, labels
        self.classes_ = labels.argmax(1) if labels.ndim == 2 else labels.astype(np.int64)
        return self

    def pool_counts(self) -> dict[int, int]:
        """The kept images per teacher class: the counts ``-p count=all`` asks for."""
        return {int(c): int(n) for c, n in enumerate(np.bincount(self.classes_)) if n}

    def sample(self, counts: dict[int, int], *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``counts[c]`` images the teacher put in class c, each used once before any is reused, with their teacher
        labels (classes, or probabilities when fitted with them)."""
        if not hasattr(self, "images_"):
            raise SynthmedError("pseudo-label: call fit before sample")
        index = copies_per_class(
            self.classes_,
            counts,
            seed,
            lambda c: (
                f"pseudo-label: the teacher put no unlabelled image in class {c}; train it longer "
                "(--fidelity-epochs), lower --teacher-threshold or use -p count=all"
            ),
        )
        return self.images_[index].copy(), self.labels_[index].copy()
