"""Issue 29: an npz (``unlabelled_images``) or an image folder (``unlabelled/``) names images without labels, which
``--unlabelled`` draws from after the training images outside a run's labelled subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthmed.data import load_dataset, make_subset
from synthmed.data.dataset import Dataset, Split
from synthmed.errors import SynthmedError


def _split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), (np.arange(n) % 2).astype(np.uint8)


def write_npz(path: Path, unlabelled: np.ndarray | None = None, sizes=(40, 10, 10)) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = _split(n, rng)
    if unlabelled is not None:
        arrays["unlabelled_images"] = unlabelled
    np.savez(path, **arrays)
    return path


def toy(n_own: int | None = 30, n_train: int = 80, n_val: int = 20) -> Dataset:
    """Two classes; the dataset's own unlabelled images are all-white, told apart from every labelled image."""
    rng = np.random.default_rng(1)

    def split(n: int) -> Split:
        images, labels = _split(n, rng)
        return Split(images % 250, labels.astype(np.int64))

    own = None if n_own is None else np.full((n_own, 28, 28), 255, np.uint8)
    return Dataset("toy", "multi-class", ["a", "b"], split(n_train), split(n_val), split(10), unlabelled=own)


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (33, 40), value).save(path)


# ------------------------------------------------------------------------------------------------- loading


def test_an_npz_names_its_unlabelled_images(tmp_path):
    own = np.full((7, 28, 28), 9, np.uint8)
    data = load_dataset(f"npz:{write_npz(tmp_path / 'mine.npz', own)}")
    assert data.unlabelled is not None and np.array_equal(data.unlabelled, own)
    assert load_dataset(f"npz:{write_npz(tmp_path / 'plain.npz')}").unlabelled is None


@pytest.mark.parametrize(
    ("own", "phrase"),
    [
        (np.zeros((5, 28, 28), np.float32), "float32 (28, 28) but the training images are uint8 (28, 28)"),
        (np.zeros((5, 32, 32), np.uint8), "uint8 (32, 32) but the training images are uint8 (28, 28)"),
        (np.zeros((5, 28, 28, 3), np.uint8), "(28, 28, 3) but the training images"),
        (np.zeros((0, 28, 28), np.uint8), "hold no images"),
    ],
)
def test_bad_unlabelled_images_are_a_one_line_error_naming_the_file_and_the_fix(tmp_path, own, phrase):
    path = write_npz(tmp_path / "mine.npz", own)
    with pytest.raises(SynthmedError) as err:
        load_dataset(f"npz:{path}")
    message = str(err.value)
    assert phrase in message and f"{path} unlabelled_images" in message and "drop the key" in message
    assert "\n" not in message


@pytest.mark.parametrize("presplit", [False, True])
def test_a_folder_names_its_unlabelled_images(tmp_path, presplit):
    for c, name in enumerate(["a", "b"]):
        for split, n in (("train", 8), ("val", 2), ("test", 2)) if presplit else (("", 12),):
            for i in range(n):
                _png(tmp_path / split / name / f"{i}.png", 20 + 100 * c + i)
    _png(tmp_path / "unlabelled" / "0.png", 250)
    _png(tmp_path / "unlabelled" / "more" / "1.png", 251)  # at any depth, as in a class folder
    data = load_dataset(f"folder:{tmp_path}", size=28)
    assert data.class_names == ["a", "b"]  # unlabelled/ is no class
    assert data.unlabelled is not None and data.unlabelled.shape == (2, 28, 28) and data.unlabelled.dtype == np.uint8
    assert data.unlabelled.min() >= 249 and len(data.train) + len(data.val) + len(data.test) == 24
    without = tmp_path / "unlabelled"
    for path in sorted(without.rglob("*.png")):
        path.unlink()
    with pytest.raises(SynthmedError, match="unlabelled holds no PNG/JPEG images"):
        load_dataset(f"folder:{tmp_path}", size=28)
    (without / "more").rmdir()
    without.rmdir()
    plain = load_dataset(f"folder:{tmp_path}", size=28)
    assert plain.unlabelled is None and plain.md5 != data.md5  # the run ids of a dataset that gained images move


# ------------------------------------------------------------------------------------------------ the draw


@pytest.mark.parametrize("protocol", ["lowdata", "fraction", "full"])
def test_the_pool_is_the_training_images_outside_the_run_then_the_datasets_own(protocol):
    data = toy()
    kwargs = {"lowdata": {"per_class": 20}, "fraction": {"fraction": 0.5}, "full": {}}[protocol]
    plain = make_subset(data, protocol, seed=1, **kwargs)
    whole = make_subset(data, protocol, seed=1, unlabelled="all", **kwargs)
    own_from = len(data.train) + len(data.val)
    outside = set(range(len(data.train))) - set(plain.train_indices) - set(plain.val_indices)
    assert set(whole.unlabelled_indices) == outside | set(range(own_from, own_from + 30))
    assert np.array_equal(whole.train_indices, plain.train_indices)  # the labelled draw does not move
    assert np.array_equal(whole.val_indices, plain.val_indices)
    some = make_subset(data, protocol, seed=1, unlabelled=25, **kwargs)
    idx = some.unlabelled_indices
    assert len(idx) == 25 and not set(idx) & (set(some.train_indices) | set(some.val_indices))
    assert set(idx) <= set(whole.unlabelled_indices)  # nested
    mine = idx < own_from
    assert not set(idx[mine]) & set(range(len(data.train), own_from))  # never a validation image
    assert np.array_equal(some.unlabelled[: mine.sum()], data.train.images[idx[mine]])
    assert (some.unlabelled[mine.sum() :] == 255).all() and len(some.unlabelled) == 25
    assert np.array_equal(some.unlabelled_audit[: mine.sum()], data.train.labels[idx[mine]])
    assert (some.unlabelled_audit[mine.sum() :] == -1).all()
    assert some.unlabelled_unknown == (~mine).sum()
    known = np.bincount(data.train.labels[idx[mine]], minlength=2).tolist()
    assert some.unlabelled_balance(2) == known and sum(known) + some.unlabelled_unknown == 25
    saved = json.loads(json.dumps(some.indices()))
    assert saved["unlabelled"] == idx.tolist() and saved["unlabelled_own_from"] == own_from
    assert "own unlabelled images" in saved["pool"] and "unlabelled_own_from" not in plain.indices()


def test_a_full_run_uses_the_datasets_own_images_and_refuses_beyond_them():
    data = toy(n_own=30)
    whole = make_subset(data, "full", seed=0, unlabelled="all")
    assert len(whole.unlabelled) == 30 and whole.unlabelled_balance(2) == [0, 0] and whole.unlabelled_unknown == 30
    with pytest.raises(SynthmedError) as err:
        make_subset(data, "full", seed=0, unlabelled=31)
    message = str(err.value)
    assert "--unlabelled 31 is more than the 30 unlabelled images of toy" in message and "30 of its own" in message
    assert "give at most 30" in message and "\n" not in message
    with pytest.raises(SynthmedError, match="none is left unlabelled"):
        make_subset(toy(n_own=None), "full", unlabelled="all")


def test_without_images_of_its_own_nothing_changes():
    with_own, without = toy(n_own=30), toy(n_own=None)
    for count in (10, "all"):
        a = make_subset(with_own, "lowdata", seed=2, per_class=20, unlabelled=count)
        b = make_subset(without, "lowdata", seed=2, per_class=20, unlabelled=count)
        assert b.unlabelled_own_from is None and set(b.indices()) == {"pool", "train", "val", "unlabelled"}
        assert b.indices()["pool"] == "official train followed by official val" and b.unlabelled_unknown == 0
        assert np.array_equal(b.unlabelled, without.train.images[b.unlabelled_indices])
        free = sorted(set(range(len(without.train))) - set(b.train_indices) - set(b.val_indices))
        order = np.random.default_rng([2, 20_21, 29]).permutation(np.array(free))  # the draw as it always was
        assert np.array_equal(b.unlabelled_indices, np.sort(order if count == "all" else order[:count]))
        if count == "all":  # the dataset's own images only add to the pool
            assert set(b.unlabelled_indices) == {i for i in a.unlabelled_indices if i < a.unlabelled_own_from}


def test_multi_label_audit_rows_of_the_datasets_own_images_are_minus_one():
    base = toy(n_own=4)
    train, val = (Split(s.images, np.stack([s.labels, 1 - s.labels], 1)) for s in (base.train, base.val))
    data = Dataset("ml", "multi-label, binary-class", ["x", "y"], train, val, base.test, unlabelled=base.unlabelled)
    sub = make_subset(data, "fraction", seed=0, fraction=0.5, unlabelled="all")
    assert (sub.unlabelled_audit[-4:] == -1).all() and sub.unlabelled_unknown == 4
    assert sum(sub.unlabelled_balance(2)) == len(sub.unlabelled) - 4


def test_data_info_says_how_many_unlabelled_images_a_dataset_brings(tmp_path, cli):
    own = np.full((7, 28, 28), 9, dtype=np.uint8)
    shown = cli("data", "info", f"npz:{write_npz(tmp_path / 'mine.npz', own)}")
    assert shown.returncode == 0 and "unlabelled images of its own: 7" in shown.stdout
    plain = cli("data", "info", f"npz:{write_npz(tmp_path / 'plain.npz')}")
    assert plain.returncode == 0 and "unlabelled" not in plain.stdout
