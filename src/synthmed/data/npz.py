"""Any MedMNIST-layout npz as a dataset, whatever its file name: ``npz:PATH`` (``train_images``, ``train_labels``,
``val_*``, ``test_*``, as the official files and as ``synthmed generate`` writes them), and optionally
``unlabelled_images``: images of the same dtype and shape without labels, which ``--unlabelled`` draws from
beside the training images outside a run's labelled subset.

Classes come from the labels (0 .. max), named by a JSON side-car ``PATH.json`` (``{"class_names": [...]}``) or
by ``classes`` (``--classes a,b,c``), else "0", "1", ...; the task is multi-class unless the side-car says
otherwise (``{"task": "multi-label, binary-class"}``). The same structure checks, safe loading (no pickles) and
one-line errors as the official files apply; there is no official MD5 to verify.
"""

from __future__ import annotations

import json
from pathlib import Path

from synthmed.data.dataset import (
    MULTI_LABEL,
    SPLITS,
    Dataset,
    check_classes_present,
    check_split,
    check_unlabelled,
)
from synthmed.data.medmnist import KEYS, md5sum, read_npz
from synthmed.errors import SynthmedError

TASKS = ("binary-class", "multi-class", "ordinal-regression", MULTI_LABEL)
#: The optional key of images without labels.
UNLABELLED_KEY = "unlabelled_images"


def _sidecar(path: Path) -> dict:
    side = path.with_suffix(".json")
    if not side.exists():
        return {}
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SynthmedError(f"{side} is not valid JSON ({err}); fix or remove it") from None
    if not isinstance(meta, dict):
        raise SynthmedError(f'{side} must hold a JSON object such as {{"class_names": ["benign", "malignant"]}}')
    return meta


def load_npz(path: str | Path, size: int | None = None, classes: list[str] | None = None) -> Dataset:
    """Load a MedMNIST-layout npz; ``size`` (if given) must match its images, ``classes`` names its labels."""
    path = Path(path).expanduser()
    if path.suffix != ".npz" or not path.is_file():
        raise SynthmedError(
            f"{path} is not an npz file; give npz:PATH to a MedMNIST-layout file holding {', '.join(KEYS)}"
        )
    arrays = read_npz(path)
    missing = [key for key in KEYS if key not in arrays]
    if missing:
        raise SynthmedError(f"{path} lacks {', '.join(missing)}; a MedMNIST-layout npz holds {', '.join(KEYS)}")
    meta = _sidecar(path)
    task = meta.get("task", "multi-class")
    if task not in TASKS:
        raise SynthmedError(f"{path.with_suffix('.json')}: task {task!r} is unknown; choose one of {', '.join(TASKS)}")
    labels = [arrays[f"{s}_labels"] for s in SPLITS]
    if task == MULTI_LABEL:
        n_classes = int(labels[0].shape[1]) if labels[0].ndim == 2 else 0
    else:
        if any(y.ndim == 2 and y.shape[1] > 1 for y in labels):
            raise SynthmedError(
                f"{path} has (N, L) labels; for a multi-label set say so in "
                f'{path.with_suffix(".json").name}: {{"task": "{MULTI_LABEL}"}}'
            )
        if any(y.dtype.kind not in "iu" for y in labels):
            raise SynthmedError(f"{path} labels must be integer class indices, got {labels[0].dtype}")
        n_classes = int(max(int(y.max()) for y in labels if y.size)) + 1 if any(y.size for y in labels) else 0
    names = list(classes or meta.get("class_names") or [str(c) for c in range(n_classes)])
    if len(names) != n_classes:
        source = "--classes" if classes else f"{path.with_suffix('.json').name} class_names"
        raise SynthmedError(
            f"{source} names {len(names)} classes but the labels of {path.name} have {n_classes}; "
            "give one name per class"
        )
    if n_classes < 2:
        raise SynthmedError(f"{path} has {n_classes} class(es); a classification set needs two or more")
    splits = {
        s: check_split(path.stem, s, arrays[f"{s}_images"], arrays[f"{s}_labels"], n_classes, task) for s in SPLITS
    }
    shape = splits["train"].images.shape[1:]
    for s, split in splits.items():
        if split.images.shape[1:] != shape:
            raise SynthmedError(
                f"{path} {s}_images are {split.images.shape[1:]} but train images are {shape}; all "
                "splits must share one shape"
            )
    side = shape[0]
    if size is not None and size != side:
        raise SynthmedError(f"{path} holds {side}x{side} images but size {size} was asked for; pass --size {side}")
    check_classes_present(path.stem, "train", splits["train"].labels, names)
    unlabelled = None
    if UNLABELLED_KEY in arrays:
        train = splits["train"].images
        dims = ", ".join(map(str, ("N", *shape)))
        fix = f"store {UNLABELLED_KEY} as {train.dtype} ({dims}) like train_images, or drop the key"
        unlabelled = check_unlabelled(f"{path} {UNLABELLED_KEY}", arrays[UNLABELLED_KEY], train, fix)
    return Dataset(
        name=path.stem,
        task="binary-class" if task == "binary-class" else task,
        class_names=names,
        size=side,
        md5=md5sum(path),
        source=str(path),
        extra={"md5_ok": None, "format": "npz"},
        unlabelled=unlabelled,
        **splits,
    )
