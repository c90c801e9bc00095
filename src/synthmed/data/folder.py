"""Image-folder datasets: one sub-folder per class, PNG/JPEG of any size (e.g. the chest X-ray sets of
Sharma et al. 2022). Decoding and resizing happen once, at load; training only ever sees uint8 arrays.

Images without labels may sit in ``PATH/unlabelled/`` (at any depth below it, as in a class folder), beside the
class folders or beside ``train/``, ``val/`` and ``test/``: they join no split, and ``--unlabelled`` draws from
them beside the training images outside a run's labelled subset. So ``unlabelled`` is never a class name at the
top level.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from synthmed.data.dataset import SPLITS, Dataset, Split, check_classes_present
from synthmed.errors import SynthmedError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
#: Sharma et al. 2022 split their chest X-ray sets 75:5:20 (train:val:test).
SPLIT_RATIOS = (0.75, 0.05, 0.20)
#: The fewest images of a class the split leaves one of in each of train, val and test.
MIN_PER_CLASS = 3
#: The sub-folder of images without labels.
UNLABELLED = "unlabelled"


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS)


def _read(paths: list[Path], size: int, rgb: bool) -> np.ndarray:
    mode = "RGB" if rgb else "L"
    out = np.empty((len(paths), size, size, 3) if rgb else (len(paths), size, size), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                out[i] = np.asarray(image.convert(mode).resize((size, size), Image.Resampling.BICUBIC))
        except (UnidentifiedImageError, OSError) as err:
            raise SynthmedError(f"{path} is not a readable image ({err}); remove or replace it") from None
    return out


def _is_rgb(paths: list[Path]) -> bool:
    """Colour if any of the first images is colour; medical greyscale sets are often stored as RGB PNGs
    with three equal channels, which count as grey."""
    for path in paths[:32]:
        try:
            with Image.open(path) as image:
                if image.mode in ("L", "I", "I;16", "1", "LA"):
                    continue
                rgb = np.asarray(image.convert("RGB").resize((32, 32)), dtype=np.int16)
        except (UnidentifiedImageError, OSError):
            continue  # reported with its path when the images are read
        if np.abs(rgb[..., 0] - rgb[..., 1]).max() > 2 or np.abs(rgb[..., 1] - rgb[..., 2]).max() > 2:
            return True
    return False


def _stratified_split(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """75:5:20 per class, so every class is in every split."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = max(1, round(len(idx) * SPLIT_RATIOS[1]))
        n_test = max(1, round(len(idx) * SPLIT_RATIOS[2]))
        parts["val"].append(idx[:n_val])
        parts["test"].append(idx[n_val : n_val + n_test])
        parts["train"].append(idx[n_val + n_test :])
    return {s: np.sort(np.concatenate(v)) for s, v in parts.items()}


def _check_enough_per_class(root: Path, labels: np.ndarray, classes: list[str]) -> None:
    """Refuse before decoding anything a class too small for every split to get one of its images (else
    the error would be a train split with none of that class, which hides the cause)."""
    counts = np.bincount(labels, minlength=len(classes))
    small = [f"{name!r} ({n})" for name, n in zip(classes, counts) if n < MIN_PER_CLASS]
    if small:
        raise SynthmedError(
            f"{root} has too few images per class for a train/val/test split: {', '.join(small)}; the "
            f"75:5:20 split needs at least {MIN_PER_CLASS} images per class (add images, or give fixed "
            "splits as PATH/train, PATH/val, PATH/test with one sub-folder per class each)"
        )


def load_folder(path: str, size: int = 28, seed: int = 0, channels: int | None = None) -> Dataset:
    """Load ``folder:PATH``: PATH/CLASS/*.png, or PATH/{train,val,test}/CLASS/*.png for fixed splits; optionally
    PATH/unlabelled/*.png, images without labels."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise SynthmedError(f"image folder {root} does not exist; pass folder:PATH with one sub-folder per class")
    if size not in (28, 64, 128, 224):
        raise SynthmedError(f"size {size} is not supported for image folders; choose 28, 64, 128 or 224")
    presplit = all((root / s).is_dir() for s in SPLITS)
    class_root = root / "train" if presplit else root
    classes = [d.name for d in _class_dirs(class_root) if presplit or d.name != UNLABELLED]
    if len(classes) < 2:
        raise SynthmedError(
            f"{class_root} has {len(classes)} class sub-folder(s); a classification set needs two "
            "or more (one sub-folder per class)"
        )
    groups = {s: root / s for s in SPLITS} if presplit else {"all": root}
    files: dict[str, list[Path]] = {}
    labels: dict[str, np.ndarray] = {}
    for group, folder in groups.items():
        paths, ys = [], []
        for c, name in enumerate(classes):
            found = _files(folder / name) if (folder / name).is_dir() else []
            paths += found
            ys += [c] * len(found)
        files[group], labels[group] = paths, np.asarray(ys, dtype=np.int64)
    every = [p for group in files.values() for p in group]
    if not every:
        raise SynthmedError(f"{root} holds no PNG/JPEG images under its class sub-folders")
    rgb = _is_rgb(every) if channels is None else channels == 3
    unlabelled = _files(root / UNLABELLED) if (root / UNLABELLED).is_dir() else []
    if (root / UNLABELLED).is_dir() and not unlabelled:
        raise SynthmedError(f"{root / UNLABELLED} holds no PNG/JPEG images; add images without labels or remove it")
    digest = hashlib.md5("\n".join(str(p.relative_to(root)) for p in every + unlabelled).encode()).hexdigest()
    if presplit:
        splits = {s: Split(_read(files[s], size, rgb), labels[s]) for s in SPLITS}
    else:
        check_classes_present(root.name, "folder", labels["all"], classes)
        _check_enough_per_class(root, labels["all"], classes)
        images = _read(files["all"], size, rgb)
        splits = {s: Split(images[i], labels["all"][i]) for s, i in _stratified_split(labels["all"], seed).items()}
    for s, split in splits.items():
        if len(split) == 0:
            raise SynthmedError(f"{root} {s} split is empty; put images in {root / s}")
    check_classes_present(root.name, "train", splits["train"].labels, classes)
    return Dataset(
        name=f"folder:{root}",
        task="binary-class" if len(classes) == 2 else "multi-class",
        class_names=classes,
        size=size,
        md5=digest,
        source=str(root),
        extra={"split_seed": None if presplit else seed, "md5_ok": None},
        unlabelled=_read(unlabelled, size, rgb) if unlabelled else None,
        **splits,
    )
