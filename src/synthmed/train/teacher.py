"""Teacher labels: a classifier trained on the labelled real images labels other images (a generator's samples, or
unlabelled real images for the ``pseudo-label`` control), as hard labels above a confidence threshold or as soft
labels (class probabilities).

What the teacher may see is fixed by the signatures: ``fit_teacher`` takes the labelled training and validation
images only (it selects on validation and is never scored on test), and ``teacher_labels`` takes images and, for
synthetic images, the class the generator was asked for; neither takes a test split or an unlabelled image's true
label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from synthmed.data.dataset import MULTI_LABEL, Split
from synthmed.errors import SynthmedError
from synthmed.nets.classifiers import predict
from synthmed.tensors import to_tensor
from synthmed.train.trainer import FitResult, TrainConfig, train_classifier


@dataclass(frozen=True)
class TeacherLabels:
    """What the teacher kept of the images it was given, and how it labelled them."""

    kept: np.ndarray  # indices into the images given, ascending
    labels: np.ndarray  # (K,) class indices, or (K, C) probabilities with ``soft``
    confidence: np.ndarray  # (K,) the teacher's top probability of each kept image
    agreement: float | None  # share of all given images whose teacher class is the intended one (None: unknown)
    agreement_kept: float | None  # the same among the kept images


def fit_teacher(train: Split, val: Split, n_classes: int, task: str, config: TrainConfig, seed: int = 0) -> FitResult:
    """Train the teacher on the labelled real images of a run, selected on validation. The validation split stands
    in for the test split ``train_classifier`` scores once, so the teacher never reads a test image."""
    _single_label(task)
    return train_classifier(train, val, val, n_classes, task, config, seed=seed)


def teacher_labels(
    model: torch.nn.Module,
    images: np.ndarray,
    task: str,
    *,
    soft: bool = False,
    threshold: float | None = None,
    intended: np.ndarray | None = None,
    precision: str = "fp32",
) -> TeacherLabels:
    """Label ``images`` with ``model``: the teacher's class (or, ``soft``, its probabilities) for every image whose
    top probability is at least ``threshold`` (all images without one). ``intended``: the class each image was
    generated for, to measure how often the teacher agrees with the generator."""
    _single_label(task)
    if threshold is not None and not 0 < threshold < 1:
        raise SynthmedError(f"teacher threshold {threshold!r} must be a probability in (0, 1)")
    probs = predict(model, to_tensor(images), task, precision)[0].numpy()
    top, confidence = probs.argmax(1), probs.max(1)
    kept = np.flatnonzero(confidence >= threshold) if threshold is not None else np.arange(len(probs))
    agreement = agreement_kept = None
    if intended is not None:
        matches = top == np.asarray(intended).reshape(-1)
        agreement = float(matches.mean()) if len(matches) else None
        agreement_kept = float(matches[kept].mean()) if len(kept) else None
    labels = probs[kept].astype(np.float32) if soft else top[kept].astype(np.int64)
    return TeacherLabels(kept, labels, confidence[kept], agreement, agreement_kept)


def _single_label(task: str) -> None:
    if task == MULTI_LABEL:
        raise SynthmedError("teacher labels need single-label classes, not a multi-label task")
