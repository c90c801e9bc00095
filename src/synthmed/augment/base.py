"""The Augmenter contract every method, from flips to diffusion, plugs into, and the registry of methods.

Modelled on scikit-learn's estimators: the constructor only stores hyper-parameters (``params``); ``check``
validates them (so a grid can refuse a bad value before anything runs); ``fit`` learns from the real training
subset, sets every fitted attribute (names ending in ``_``) and returns ``self``. What a method is, the runner
reads from class-level declarations only, never from duck-typed attributes:

- ``kind``: ``TRANSFORM`` alters each training batch on the fly (``transform_batch``: flips, rotations);
  ``SET`` adds a synthetic set made once before training (``sample``: generators); ``IN_LOOP`` adds images during
  training, made with the classifier (``on_epoch_end``: TSynD);
- ``needs``: what the classifier must provide, e.g. ``{"dropout": 0.2}`` for MC-dropout uncertainty (the value is
  the method's default rate);
- ``trains``: ``fit`` trains networks, so the runner caches the fitted method;
- ``reconstructs``: ``sample`` returns reconstructions of training images by design (Chaptoukaev 2021's
  autoencoder), which the memorisation audit reports instead of flagging;
- ``labels_known``: its images are labelled real images (``oversample``), so ``--teacher`` has nothing to relabel;
- ``diagnostics()``: what the runner records with the run besides its scores (TSynD's rounds, FID over epochs).

Methods register under a name with their preset, a table of hyper-parameters (``register("dcgan", {...})``): a
family is one class and one table of presets, as timm's registry. ``create_augmenter(name, **overrides)`` builds
one; an unknown hyper-parameter is refused with the preset's keys in the message.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from synthmed.errors import SynthmedError
from synthmed.train.hooks import NewImages

__all__ = ["Augmenter", "Kind", "NewImages", "register"]


class Kind(str, enum.Enum):
    TRANSFORM = "batch transform"
    SET = "pre-generated set"
    IN_LOOP = "in-loop"


class Augmenter:
    """Base class, and the ``none`` method: no synthetic images, no batch transform."""

    kind: ClassVar[Kind] = Kind.TRANSFORM
    needs: ClassVar[dict[str, float]] = {}
    trains: ClassVar[bool] = False
    reconstructs: ClassVar[bool] = False
    labels_known: ClassVar[bool] = False
    #: Hyper-parameters whose one value is itself a comma list (DiffAugment's "color,translation,cutout"), so
    #: ``-p KEY=a,b`` sets it instead of sweeping a and b.
    comma_params: ClassVar[frozenset[str]] = frozenset()
    #: Hyper-parameters added after runs and generators were recorded, with their default: ``config`` leaves them
    #: out at it, so the recorded configs and the caches' keys of runs that do not use them stay as they were.
    late_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, name: str = "none", **params: Any) -> None:
        self.name = name
        self.params = params

    @classmethod
    def reads_unlabelled(cls, params: dict[str, Any]) -> bool:
        """Whether a run of this method with ``params`` (preset merged) reads the run's unlabelled images; only
        such runs draw them (``--unlabelled``), so the others stay the plain runs they are."""
        return False

    def check(self) -> None:
        """Refuse invalid hyper-parameters with a one-line error; called before a grid runs and by ``fit``."""

    def check_data(self, size: int, channels: int, n_classes: int) -> None:
        """Refuse data the method cannot take (an image size its networks do not fit), before anything runs."""
        self.check()

    def fit(self, images: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> Augmenter:
        """Learn from the real training subset (uint8 images, int64 labels)."""
        self.check()
        return self

    def sample(self, counts: dict[int, int], *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``counts[c]`` new images of class c, as (uint8 images, int64 labels)."""
        raise SynthmedError(f"method {self.name!r} does not generate images")

    def transform_batch(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Alter one training batch (float, N x C x H x W in [-1, 1]) on the fly."""
        return batch

    def on_epoch_end(self, classifier: torch.nn.Module, epoch: int) -> NewImages | None:
        """Called by the trainer after every epoch; may return new training images."""
        return None

    def diagnostics(self) -> dict[str, Any]:
        """What the runner records with the run besides its scores (JSON values); nothing by default."""
        return {}

    def config(self) -> dict:
        """Hyper-parameters, recorded with every run and folded into caches' keys."""
        late = self.late_params
        return {"method": self.name, **{k: v for k, v in self.params.items() if not (k in late and v == late[k])}}


_REGISTRY: dict[str, tuple[type[Augmenter], dict[str, Any]]] = {}


def register(name: str, preset: dict[str, Any] | None = None) -> Callable[[type[Augmenter]], type[Augmenter]]:
    """Register ``cls`` under ``name`` with its preset hyper-parameters (usable as a class decorator)."""

    def decorate(cls: type[Augmenter]) -> type[Augmenter]:
        _REGISTRY[name] = (cls, dict(preset or {}))
        return cls

    return decorate


register("none")(Augmenter)


def available(kind: Kind | None = None) -> list[str]:
    """Registered method names (of one ``kind`` if given)."""
    return sorted(name for name, (cls, _) in _REGISTRY.items() if kind is None or cls.kind is kind)


def method_class(name: str) -> type[Augmenter]:
    """The class of a registered method (its declarations), without building one."""
    if name not in _REGISTRY:
        raise SynthmedError(f"unknown method {name!r}; choose one of {', '.join(available())}")
    return _REGISTRY[name][0]


def takes_teacher(name: str) -> bool:
    """Whether ``--teacher`` can label what the method adds: a synthetic set whose labels are not already known."""
    cls = method_class(name)
    return cls.kind is Kind.SET and not cls.labels_known


def reads_unlabelled(name: str, params: dict[str, Any] | None = None) -> bool:
    """Whether a run of ``name`` with ``params`` over its preset reads unlabelled images (``pseudo-label``, or a
    generator with ``-p use_unlabelled=true``)."""
    cls = method_class(name)
    return cls.reads_unlabelled({**_REGISTRY[name][1], **(params or {})})


def comma_params() -> frozenset[str]:
    """Every registered method's hyper-parameters whose value is a comma list (see ``Augmenter.comma_params``)."""
    return frozenset().union(*(cls.comma_params for cls, _ in _REGISTRY.values()))


def preset(name: str) -> dict[str, Any]:
    """A copy of the method's preset hyper-parameters."""
    method_class(name)
    return dict(_REGISTRY[name][1])


#: Hyper-parameters every method accepts besides its preset's.
COMMON_PARAMS = ("device",)


def create_augmenter(name: str, **params: Any) -> Augmenter:
    """The method ``name`` with its preset, overridden by ``params``; unknown keys are refused."""
    cls, defaults = method_class(name), preset(name)
    unknown = sorted(set(params) - set(defaults) - set(COMMON_PARAMS if cls.trains else ()))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise SynthmedError(f"{name} has no parameter {unknown[0]!r}; its parameters: {known}")
    return cls(name, **{**defaults, **params})
