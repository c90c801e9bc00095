"""Datasets: official MedMNIST files, any MedMNIST-layout npz, image folders, and the protocols that subsample
them."""

from __future__ import annotations

import os

from synthmed.data.dataset import Dataset, Split
from synthmed.data.folder import load_folder
from synthmed.data.medmnist import FLAGS_2D, load_medmnist
from synthmed.data.npz import load_npz
from synthmed.data.protocol import Subset, make_subset

#: The prefixes that name a dataset by path rather than by MedMNIST flag.
PATH_PREFIXES = ("npz:", "folder:")


def load_dataset(
    name: str,
    size: int = 28,
    data_root: str | os.PathLike | None = None,
    verify: bool = True,
    download: bool = True,
    seed: int = 0,
    classes: list[str] | None = None,
) -> Dataset:
    """``breastmnist`` (any of the 12 MedMNIST 2D flags), ``npz:PATH`` (any MedMNIST-layout npz; ``classes`` names
    its labels) or ``folder:PATH`` (one sub-folder per class)."""
    if name.startswith("folder:"):
        return load_folder(name.removeprefix("folder:"), size=size, seed=seed)
    if name.startswith("npz:"):
        return load_npz(name.removeprefix("npz:"), size=size, classes=classes)
    return load_medmnist(name, size=size, root=data_root, verify=verify, download=download)


__all__ = ["FLAGS_2D", "PATH_PREFIXES", "Dataset", "Split", "Subset", "load_dataset", "load_npz", "make_subset"]
