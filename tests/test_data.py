"""Loading MedMNIST files and image folders, and refusing bad ones with one clear line."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_breast_like
from PIL import Image

from synthmed.data import load_dataset
from synthmed.data.medmnist import FLAGS_2D, expected_md5
from synthmed.errors import SynthmedError


def test_twelve_2d_flags_known():
    assert len(FLAGS_2D) == 12 and "breastmnist" in FLAGS_2D and "chestmnist" in FLAGS_2D


@pytest.mark.parametrize(
    "name,train,val,test,counts",
    [
        ("breastmnist", 546, 78, 156, [147, 399]),
        ("pneumoniamnist", 4708, 524, 624, [1214, 3494]),
    ],
)
def test_official_files_load(real_root, name, train, val, test, counts):
    data = load_dataset(name, data_root=real_root)
    assert (len(data.train), len(data.val), len(data.test)) == (train, val, test)
    assert data.counts("train") == counts
    assert data.train.images.dtype == np.uint8 and data.train.images.shape[1:] == (28, 28)
    assert data.train.labels.dtype == np.int64 and data.train.labels.ndim == 1
    assert data.md5 == expected_md5(name, 28) and data.extra["md5_ok"]


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_file_offline_names_file_md5_and_place(tmp_path):
    with pytest.raises(SynthmedError) as err:
        load_dataset("breastmnist", data_root=tmp_path)
    message = _one_line(err)
    assert "breastmnist.npz" in message and expected_md5("breastmnist", 28) in message
    assert str(tmp_path / "breastmnist.npz") in message


def test_missing_size_file_names_sized_file(tmp_path):
    with pytest.raises(SynthmedError, match="breastmnist_64.npz not found"):
        load_dataset("breastmnist", size=64, data_root=tmp_path)


def test_size_64_without_the_64px_file_is_refused_not_upsampled(breast_copy):
    with pytest.raises(SynthmedError, match="breastmnist_64.npz not found.*does not upsample breastmnist.npz"):
        load_dataset("breastmnist", size=64, data_root=breast_copy)


def test_unknown_dataset():
    with pytest.raises(SynthmedError, match="unknown dataset 'cifar10'"):
        load_dataset("cifar10")


def test_truncated_file_refused(breast_copy):
    path = breast_copy / "breastmnist.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SynthmedError, match="truncated or corrupt"):
        load_dataset("breastmnist", data_root=breast_copy, verify=False)
    with pytest.raises(SynthmedError, match="MD5"):
        load_dataset("breastmnist", data_root=breast_copy)


def test_wrong_md5_refused_unless_no_verify(tmp_path):
    write_breast_like(tmp_path)
    with pytest.raises(SynthmedError) as err:
        load_dataset("breastmnist", data_root=tmp_path)
    assert "--no-verify" in _one_line(err) and expected_md5("breastmnist", 28) in str(err.value)
    data = load_dataset("breastmnist", data_root=tmp_path, verify=False)
    assert len(data.train) == 20 and not data.extra["md5_ok"]


@pytest.mark.parametrize(
    "override,pattern",
    [
        ({"train_labels": np.full((20, 1), 5, dtype=np.uint8)}, "range over 5..5"),
        ({"train_images": np.zeros((20, 28, 27), dtype=np.uint8)}, "square"),
        ({"train_images": np.zeros((20, 28), dtype=np.uint8)}, "shape"),
        ({"train_images": np.zeros((20, 28, 28), dtype=np.float32)}, "dtype float32"),
        ({"train_labels": np.zeros((20, 1), dtype=np.float64)}, "integer class indices"),
        ({"train_labels": np.zeros((19, 1), dtype=np.uint8)}, "20 images but 19 labels"),
        ({"val_images": np.zeros((6, 32, 32), dtype=np.uint8)}, "share one shape"),
    ],
)
def test_bad_arrays_refused(tmp_path, override, pattern):
    write_breast_like(tmp_path, **override)
    with pytest.raises(SynthmedError, match=pattern) as err:
        load_dataset("breastmnist", data_root=tmp_path, verify=False)
    _one_line(err)


def test_missing_key_refused(tmp_path):
    np.savez(tmp_path / "breastmnist.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(SynthmedError, match="lacks"):
        load_dataset("breastmnist", data_root=tmp_path, verify=False)


class _Exploit:
    """Unpickling this would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_array_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = _Exploit(marker)
    write_breast_like(tmp_path, train_labels=payload)
    assert not marker.exists()
    with pytest.raises(SynthmedError, match="pickled"):
        load_dataset("breastmnist", data_root=tmp_path, verify=False)
    assert not marker.exists()


def _png(path, value, size=40, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size + 7), value).save(path)


def test_image_folder_split_75_5_20(tmp_path):
    for c, name in enumerate(["normal", "covid"]):
        for i in range(40):
            _png(tmp_path / name / f"{i}.png", 20 + 100 * c + i)
    data = load_dataset(f"folder:{tmp_path}", size=28, seed=3)
    assert data.class_names == ["covid", "normal"]
    assert (len(data.train), len(data.val), len(data.test)) == (60, 4, 16)
    assert data.train.images.shape == (60, 28, 28) and data.train.images.dtype == np.uint8
    again = load_dataset(f"folder:{tmp_path}", size=28, seed=3)
    assert np.array_equal(data.train.images, again.train.images)


def test_image_folder_presplit_and_rgb(tmp_path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for name, colour in (("a", (200, 10, 10)), ("b", (10, 200, 10))):
            for i in range(n):
                _png(tmp_path / split / name / f"{i}.jpg", colour, mode="RGB")
    data = load_dataset(f"folder:{tmp_path}", size=64)
    assert data.train.images.shape == (12, 64, 64, 3) and len(data.val) == 4 and len(data.test) == 6


def test_image_folder_empty_class_refused(tmp_path):
    _png(tmp_path / "a" / "0.png", 1)
    _png(tmp_path / "a" / "1.png", 2)
    (tmp_path / "b").mkdir()
    with pytest.raises(SynthmedError, match="class 'b' has no images"):
        load_dataset(f"folder:{tmp_path}")


def test_image_folder_corrupt_image_refused(tmp_path):
    for name in ("a", "b"):
        for i in range(3):
            _png(tmp_path / name / f"{i}.png", 9)
    (tmp_path / "b" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(SynthmedError, match="bad.png is not a readable image"):
        load_dataset(f"folder:{tmp_path}")


def test_any_medmnist_layout_npz_is_a_dataset_whatever_its_name(breast_copy, tmp_path):
    renamed = tmp_path / "my_ultrasound.npz"
    (breast_copy / "breastmnist.npz").rename(renamed)
    data = load_dataset(f"npz:{renamed}")
    assert data.name == "my_ultrasound" and data.task == "multi-class" and data.class_names == ["0", "1"]
    assert (len(data.train), len(data.val), len(data.test)) == (546, 78, 156) and data.extra["md5_ok"] is None
    assert load_dataset(f"npz:{renamed}", classes=["malignant", "benign"]).class_names == ["malignant", "benign"]
    (tmp_path / "my_ultrasound.json").write_text('{"class_names": ["m", "b"], "task": "binary-class"}')
    named = load_dataset(f"npz:{renamed}")
    assert named.class_names == ["m", "b"] and named.task == "binary-class"
    with pytest.raises(SynthmedError, match="--classes names 3 classes but the labels of my_ultrasound.npz have 2"):
        load_dataset(f"npz:{renamed}", classes=["a", "b", "c"])
    with pytest.raises(SynthmedError, match="holds 28x28 images but size 64 was asked for; pass --size 28"):
        load_dataset(f"npz:{renamed}", size=64)


@pytest.mark.parametrize(
    "override, pattern",
    [
        ({"val_labels": np.zeros((6, 3), dtype=np.uint8)}, "has \\(N, L\\) labels; for a multi-label set say so"),
        ({"train_labels": np.zeros((20, 1), dtype=np.uint8)}, "mine train: class '1' has no images"),
        (
            {f"{s}_labels": np.zeros((n, 1), dtype=np.uint8) for s, n in (("train", 20), ("val", 6), ("test", 8))},
            "1 class\\(es\\); a classification set needs two",
        ),
        ({"test_images": np.zeros((8, 32, 32), dtype=np.uint8)}, "test_images are \\(32, 32\\) but train images are"),
        ({"train_images": np.zeros((20, 28, 28), dtype=np.float32)}, "dtype float32, expected uint8"),
    ],
)
def test_bad_npz_datasets_are_one_line_errors(tmp_path, override, pattern):
    path = write_breast_like(tmp_path, **override).rename(tmp_path / "mine.npz")
    with pytest.raises(SynthmedError, match=pattern) as err:
        load_dataset(f"npz:{path}")
    assert "\n" not in str(err.value)


def test_npz_without_the_medmnist_keys_or_with_pickles_is_refused(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(SynthmedError, match="lacks train_images"):
        load_dataset(f"npz:{tmp_path / 'a.npz'}")
    np.savez(tmp_path / "b.npz", train_images=np.array([object()], dtype=object))
    with pytest.raises(SynthmedError, match="pickled"):
        load_dataset(f"npz:{tmp_path / 'b.npz'}")
