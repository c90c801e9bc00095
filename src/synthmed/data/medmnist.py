"""Official MedMNIST 2D files: locate, download, verify and load them safely.

Metadata (URLs, MD5s, class names, tasks) comes from the ``medmnist`` package's ``INFO`` so it stays
in step with the official release. Files are read with pickling disabled: a data file is data, never
code, whatever ``--no-verify`` says.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
from medmnist.info import INFO

from synthmed.data.dataset import SPLITS, Dataset, check_split
from synthmed.errors import SynthmedError

#: The twelve 2D flags of medmnist.INFO (the 3D sets are out of scope).
FLAGS_2D = [flag for flag, info in INFO.items() if not flag.endswith("3d")]
SIZES = (28, 64, 128, 224)
KEYS = [f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels")]
#: The first bytes of a zip archive (an npz), with or without members.
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """--data-root, else $SYNTHMED_DATA, else ~/.medmnist (the medmnist package's default)."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("SYNTHMED_DATA")
    return Path(env).expanduser() if env else Path.home() / ".medmnist"


def check_flag(name: str) -> str:
    flag = name.lower()
    if flag not in FLAGS_2D:
        hint = f" (for your own npz file, give npz:{name})" if name.endswith(".npz") else ""
        raise SynthmedError(
            f"unknown dataset {name!r}{hint}; choose one of {', '.join(FLAGS_2D)}, npz:PATH or folder:PATH"
        )
    return flag


def medmnist_class_names(flag: str) -> list[str]:
    """The class names ``medmnist.INFO`` gives a flag, in label order; [] for anything else (an image folder)."""
    labels = INFO.get(flag, {}).get("label", {})
    return [labels[str(i)] for i in range(len(labels))]


def file_name(flag: str, size: int) -> str:
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def expected_md5(flag: str, size: int) -> str:
    return INFO[flag]["MD5" if size == 28 else f"MD5_{size}"]


def url_of(flag: str, size: int) -> str:
    return INFO[flag]["url" if size == 28 else f"url_{size}"]


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def locate(flag: str, size: int = 28, root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the path of the npz file, downloading it (MD5-checked) when missing and the network allows."""
    flag = check_flag(flag)
    if size not in SIZES:
        raise SynthmedError(f"size {size} is not a MedMNIST size; choose one of {', '.join(map(str, SIZES))}")
    folder = data_root(root)
    path = folder / file_name(flag, size)
    if path.exists():
        return path
    md5, url = expected_md5(flag, size), url_of(flag, size)
    hint = (
        f"put the official file (MD5 {md5}, from {url}) at {path}, "
        "or point --data-root / SYNTHMED_DATA at the folder holding it"
    )
    if size != 28:  # upsampled 28-px images would carry less detail than MedMNIST+'s own files
        hint += f"; synthmed does not upsample {file_name(flag, 28)} (or run at --size 28)"
    if not download or os.environ.get("SYNTHMED_OFFLINE"):
        raise SynthmedError(f"{path.name} not found in {folder}: {hint}")
    try:
        _download(url, path, md5)
    except (OSError, ValueError) as err:
        raise SynthmedError(f"{path.name} not found in {folder} and the download failed ({err}): {hint}") from None
    return path


def _download(url: str, path: Path, md5: str) -> None:
    """Download to a temporary file beside the target and rename only after the MD5 matches."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
            shutil.copyfileobj(response, out)
        if md5sum(Path(tmp)) != md5:
            raise ValueError("downloaded file has the wrong MD5")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an npz with pickling disabled; any defect becomes a one-line error."""
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic not in ZIP_MAGIC:  # numpy would try the bytes as a pickle and blame an "object array"
        raise SynthmedError(
            f"{path} is not a valid npz/zip file (it does not start as a zip archive does); "
            "give a file written by numpy.savez, or download it again"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as err:
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise SynthmedError(
                f"{path} holds an object (pickled) array, which synthmed refuses to load "
                "because it could run code; store plain numeric arrays"
            ) from None
        raise SynthmedError(f"{path} is not a readable npz file ({err}); download it again") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as err:
        raise SynthmedError(
            f"{path} is truncated or corrupt ({type(err).__name__}: {err}); download it again"
        ) from None


def load_medmnist(
    name: str, size: int = 28, root: str | os.PathLike | None = None, verify: bool = True, download: bool = True
) -> Dataset:
    """Load one MedMNIST 2D dataset with all three official splits, checked for keys, dtypes, shapes, labels.

    A size whose official file is absent (and cannot be downloaded) is refused rather than made by upsampling
    the 28-px file: such a run would record ``size: 64`` for images that never had 64 px of detail."""
    flag = check_flag(name)
    info = INFO[flag]
    path = locate(flag, size, root, download)
    md5 = md5sum(path)
    if verify and md5 != expected_md5(flag, size):
        raise SynthmedError(
            f"{path} has MD5 {md5}, expected {expected_md5(flag, size)} for the official "
            f"{file_name(flag, size)}; download it again (or pass --no-verify for a file you trust)"
        )
    arrays = read_npz(path)
    missing = [key for key in KEYS if key not in arrays]
    if missing:
        raise SynthmedError(f"{path} lacks {', '.join(missing)}; a MedMNIST npz holds {', '.join(KEYS)}")
    class_names = medmnist_class_names(flag)
    splits = {
        s: check_split(flag, s, arrays[f"{s}_images"], arrays[f"{s}_labels"], len(class_names), info["task"])
        for s in SPLITS
    }
    side = splits["train"].images.shape[1]
    channels = 3 if splits["train"].images.ndim == 4 else 1
    for s, split in splits.items():
        if split.images.shape[1:] != splits["train"].images.shape[1:]:
            raise SynthmedError(
                f"{flag} {s}_images are {split.images.shape[1:]} but train images are "
                f"{splits['train'].images.shape[1:]}; all splits must share one shape"
            )
    if side != size:
        raise SynthmedError(
            f"{path} holds {side}x{side} images but size {size} was asked for; "
            f"pass --size {side} or use {file_name(flag, size)}"
        )
    if channels != info["n_channels"]:
        raise SynthmedError(f"{path} holds {channels}-channel images but {flag} has {info['n_channels']}")
    return Dataset(
        name=flag,
        task=info["task"],
        class_names=class_names,
        size=size,
        md5=md5,
        source=str(path),
        extra={"md5_ok": md5 == expected_md5(flag, size)},
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
    )
