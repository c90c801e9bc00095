"""What the trainer needs from a method that changes training as it runs: the whole contract, declared here so the
training layer depends on nothing above it. ``augment.Augmenter`` implements it; so can any object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class NewImages:
    """Images an in-loop method adds after an epoch; ``replace`` drops the images of its previous round."""

    images: np.ndarray
    labels: np.ndarray
    replace: bool = False


class TrainingHooks(Protocol):
    """Called by the trainer: ``transform_batch`` on every training batch (float, N x C x H x W in [-1, 1]),
    ``on_epoch_end`` after every epoch (new training images, or None)."""

    def transform_batch(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...

    def on_epoch_end(self, classifier: torch.nn.Module, epoch: int) -> NewImages | None: ...


class NoHooks:
    """Training as it is: batches unchanged, nothing added."""

    def transform_batch(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return batch

    def on_epoch_end(self, classifier: torch.nn.Module, epoch: int) -> NewImages | None:
        return None
