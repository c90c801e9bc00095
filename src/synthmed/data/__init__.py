"""Datasets: MedMNIST npz files and image folders, and the protocols that subsample them."""

from __future__ import annotations

import os

from synthmed.data.dataset import Dataset, Split
from synthmed.data.folder import load_folder
from synthmed.data.medmnist import FLAGS_2D, load_medmnist
from synthmed.data.protocol import Subset, make_subset


def load_dataset(name: str, size: int = 28, data_root: str | os.PathLike | None = None, verify: bool = True,
                 download: bool = True, seed: int = 0) -> Dataset:
    """``breastmnist`` (any of the 12 MedMNIST 2D flags) or ``folder:PATH``."""
    if name.startswith("folder:"):
        return load_folder(name.removeprefix("folder:"), size=size, seed=seed)
    return load_medmnist(name, size=size, root=data_root, verify=verify, download=download)


__all__ = ["FLAGS_2D", "Dataset", "Split", "Subset", "load_dataset", "make_subset"]
