"""The in-memory dataset every other module consumes.

Images travel as uint8 arrays, (N, H, W) for grey and (N, H, W, 3) for colour; labels as int64 (N,)
(or (N, L) 0/1 for multi-label). Conversion to float happens once, at the network edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synthmed.errors import SynthmedError

SPLITS = ("train", "val", "test")
MULTI_LABEL = "multi-label, binary-class"


@dataclass
class Split:
    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> Split:
        return Split(self.images[indices], self.labels[indices])


@dataclass
class Dataset:
    """A labelled image dataset with official train / val / test splits, and optionally images of its own that
    have no labels (``unlabelled``: an npz's ``unlabelled_images``, a folder's ``unlabelled/``), which only
    ``--unlabelled`` draws from."""

    name: str
    task: str
    class_names: list[str]
    train: Split
    val: Split
    test: Split
    size: int = 28
    md5: str | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)
    unlabelled: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_channels(self) -> int:
        return 3 if self.train.images.ndim == 4 else 1

    @property
    def multi_label(self) -> bool:
        return self.task == MULTI_LABEL

    def split(self, name: str) -> Split:
        return getattr(self, name)

    def counts(self, split: str) -> list[int]:
        """Images per class in a split (positives per label for multi-label)."""
        labels = self.split(split).labels
        if self.multi_label:
            return [int(v) for v in labels.sum(axis=0)]
        return [int(v) for v in np.bincount(labels, minlength=self.n_classes)]


def check_split(name: str, split: str, images: np.ndarray, labels: np.ndarray, n_classes: int, task: str) -> Split:
    """Validate one split's arrays and return it with labels as int64; raise a one-line error otherwise."""
    where = f"{name} {split}"
    if images.dtype != np.uint8:
        raise SynthmedError(
            f"{where}_images has dtype {images.dtype}, expected uint8 (0-255 pixels); "
            "convert the file with images.astype('uint8')"
        )
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
        raise SynthmedError(f"{where}_images has shape {images.shape}, expected (N, H, W) or (N, H, W, 3)")
    if (
        images.ndim == 3
        and images.shape[1] != images.shape[2]
        or images.ndim == 4
        and images.shape[1] != images.shape[2]
    ):
        raise SynthmedError(f"{where}_images are {images.shape[1]}x{images.shape[2]}, expected square images")
    if labels.dtype.kind not in "iu":
        raise SynthmedError(f"{where}_labels has dtype {labels.dtype}, expected integer class indices")
    if task == MULTI_LABEL:
        if labels.ndim != 2 or labels.shape[1] != n_classes:
            raise SynthmedError(f"{where}_labels has shape {labels.shape}, expected (N, {n_classes}) 0/1 labels")
        if labels.size and (labels.min() < 0 or labels.max() > 1):
            raise SynthmedError(f"{where}_labels contain values outside 0/1 for a multi-label task")
        labels = labels.astype(np.int64)
    else:
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise SynthmedError(f"{where}_labels has shape {labels.shape}, expected (N,) or (N, 1)")
        labels = labels.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise SynthmedError(
                f"{where}_labels range over {labels.min()}..{labels.max()}, but the dataset "
                f"has {n_classes} classes (0..{n_classes - 1}); fix the labels or the class list"
            )
    if len(labels) != len(images):
        raise SynthmedError(f"{where}: {len(images)} images but {len(labels)} labels; the file is inconsistent")
    if len(labels) == 0:
        raise SynthmedError(f"{where} split is empty; every split needs images")
    return Split(images, labels)


def check_unlabelled(where: str, images: np.ndarray, train: np.ndarray, fix: str) -> np.ndarray:
    """Validate a dataset's own unlabelled images against its training images (same dtype and image shape, so the
    two can be drawn into one pool); raise a one-line error naming ``where`` and ``fix`` otherwise."""
    if images.dtype != train.dtype or images.shape[1:] != train.shape[1:]:
        raise SynthmedError(
            f"{where} are {images.dtype} {tuple(images.shape[1:])} but the training images are {train.dtype} "
            f"{tuple(train.shape[1:])}; {fix}"
        )
    if len(images) == 0:
        raise SynthmedError(f"{where} hold no images; {fix}")
    return images


def check_classes_present(name: str, split: str, labels: np.ndarray, class_names: list[str]) -> None:
    """Refuse a training split in which a class has no image: no classifier or generator can learn it."""
    counts = np.bincount(labels, minlength=len(class_names)) if labels.ndim == 1 else labels.sum(axis=0)
    empty = [class_names[i] for i, c in enumerate(counts) if c == 0]
    if empty:
        raise SynthmedError(
            f"{name} {split}: class {empty[0]!r} has no images; every class needs at least one "
            "(add images of that class or drop it from the dataset)"
        )
