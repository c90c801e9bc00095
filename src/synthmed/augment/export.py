"""Synthetic sets as files: a MedMNIST-layout npz plus a JSON provenance side-car.

The npz has the official keys and dtypes (``train_images`` uint8 (N, H, W[, 3]), ``train_labels`` uint8 (N, 1))
so any MedMNIST-style reader loads it with ``np.load(..., allow_pickle=False)``. The synthetic set is the
training split; ``val_*`` and ``test_*`` are present but empty (0 images of the same shape), because a synthetic
set must never stand in for real validation or test data. synthmed's own dataset loader refuses empty splits
(``check_split``), on purpose: read a synthetic file with ``read_synthetic``, which checks the training split
only.

The side-car ``FILE.json`` (beside ``FILE.npz``) holds the caller's provenance (method, config, seed, source
dataset and MD5, subset indices) plus the counts per class, the npz's SHA-256, the creation time and the
synthmed version. The npz is written first and the side-car last, each atomically: a side-car whose SHA-256
matches proves the pair complete.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from synthmed import __version__
from synthmed.data.dataset import SPLITS, check_split
from synthmed.data.medmnist import read_npz
from synthmed.errors import SynthmedError
from synthmed.io import atomic_write_bytes, atomic_write_json

FORMAT = "synthmed-synthetic/1"


def sidecar_path(path: str | Path) -> Path:
    """``out.npz`` -> ``out.json``."""
    return Path(path).with_suffix(".json")


def _check_npz_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".npz":
        raise SynthmedError(f"{path}: a synthetic set is written as an .npz file; give a path ending in .npz")
    return path


def export_synthetic(path: str | Path, images: np.ndarray, labels: np.ndarray, provenance: dict) -> Path:
    """Write the synthetic set to ``path`` (.npz) and its side-car; return the side-car's path."""
    path = _check_npz_path(path)
    labels = np.asarray(labels)
    n_classes = int(provenance.get("n_classes") or (labels.max() + 1 if labels.size else 1))
    checked = check_split("synthetic", "train", np.asarray(images), labels, n_classes, "multi-class")
    images, labels = checked.images, checked.labels
    if labels.max() > 255:
        raise SynthmedError(f"{path}: MedMNIST-layout labels are uint8, but the synthetic set has class {labels.max()}")
    arrays = {"train_images": images, "train_labels": labels.astype(np.uint8).reshape(-1, 1)}
    for split in SPLITS[1:]:
        arrays[f"{split}_images"] = np.zeros((0, *images.shape[1:]), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.zeros((0, 1), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    sidecar = {
        **provenance,
        "format": FORMAT,
        "file": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "n_images": len(labels),
        "image_shape": list(images.shape[1:]),
        "counts_per_class": [int(n) for n in np.bincount(labels, minlength=n_classes)],
        "splits": "the synthetic set is train_*; val_* and test_* are empty by design",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "synthmed_version": __version__,
    }
    atomic_write_json(sidecar_path(path), sidecar)
    return sidecar_path(path)


def read_synthetic(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(uint8 images, int64 labels, side-car) of a file written by ``export_synthetic``, checked: pickles are
    never loaded, the side-car's SHA-256 must match the npz."""
    path = _check_npz_path(path)
    meta_path = sidecar_path(path)
    if not path.exists() or not meta_path.exists():
        raise SynthmedError(
            f"{path} or its side-car {meta_path.name} is missing; write both with "
            "`synthmed generate` / export_synthetic"
        )
    meta = json.loads(meta_path.read_text())
    if hashlib.sha256(path.read_bytes()).hexdigest() != meta.get("sha256"):
        raise SynthmedError(
            f"{path} does not match the SHA-256 in {meta_path.name}; the pair is incomplete or was modified"
        )
    arrays = read_npz(path)
    if "train_images" not in arrays or "train_labels" not in arrays:
        raise SynthmedError(f"{path} lacks train_images / train_labels")
    n_classes = len(meta.get("counts_per_class", [])) or int(arrays["train_labels"].max()) + 1
    split = check_split(path.name, "train", arrays["train_images"], arrays["train_labels"], n_classes, "multi-class")
    return split.images, split.labels, meta
