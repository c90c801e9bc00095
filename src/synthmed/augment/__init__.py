"""Augmenters: every method behind one fit / sample / transform_batch contract."""

from synthmed.augment import classic  # noqa: F401  (registers flip, classic)
from synthmed.augment.base import Augmenter, available, create_augmenter, register

__all__ = ["Augmenter", "available", "create_augmenter", "register"]
