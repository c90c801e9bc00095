"""The Augmenter contract every method, from flips to diffusion, plugs into.

Modelled on scikit-learn's estimators: the constructor only stores hyper-parameters; ``fit`` learns
from the real training subset and returns ``self``; ``sample`` returns new labelled images in the real
data's uint8 layout. Two hooks cover methods that are not "generate once, then train":

- ``transform_batch`` alters each training batch on the fly (flips, rotations); identity by default;
- ``on_epoch_end`` is called by the trainer after every epoch with the classifier, and may return new
  labelled images to add to the training set (targeted synthesis such as TSynD); none by default.

Methods register under a name (``@register("cvae")``) and are built with ``create_augmenter``, so the
CLI and YAML refer to them by that name and adding a method is adding one module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from synthmed.errors import SynthmedError

_REGISTRY: dict[str, type[Augmenter]] = {}


class Augmenter:
    """Base class: no synthetic images, no batch transform."""

    name: ClassVar[str] = "none"
    #: True when ``sample`` produces images (so the runner asks for a sampling policy and audits them).
    generative: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.params = params

    def fit(self, images: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> Augmenter:
        """Learn from the real training subset (uint8 images, int64 labels)."""
        return self

    def sample(self, counts: dict[int, int], *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``counts[c]`` new images of class c, as (uint8 images, int64 labels)."""
        raise SynthmedError(f"method {self.name!r} does not generate images")

    def transform_batch(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Alter one training batch (float, N x C x H x W in [-1, 1]) on the fly."""
        return batch

    def on_epoch_end(self, classifier: torch.nn.Module, epoch: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Called by the trainer after every epoch; may return new training images and labels."""
        return None

    def config(self) -> dict:
        """Hyper-parameters, recorded with every run and folded into its config hash."""
        return {"method": self.name, **self.params}


def register(name: str) -> Callable[[type[Augmenter]], type[Augmenter]]:
    def decorate(cls: type[Augmenter]) -> type[Augmenter]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return decorate


register("none")(Augmenter)


def available() -> list[str]:
    return sorted(_REGISTRY)


def create_augmenter(name: str, **params: Any) -> Augmenter:
    if name not in _REGISTRY:
        raise SynthmedError(f"unknown method {name!r}; choose one of {', '.join(available())}")
    try:
        return _REGISTRY[name](**params)
    except TypeError as err:
        raise SynthmedError(f"bad parameters for method {name!r}: {err}") from None
