"""Protocols: which real images a run may train and select on.

Indices refer to the *pool*, the official train split followed by the official val split
(index ``i < n_train`` is ``train[i]``, otherwise ``val[i - n_train]``), followed, for unlabelled indices only, by
the dataset's own images without labels (``Dataset.unlabelled``; index ``i >= n_train + n_val`` is
``unlabelled[i - n_train - n_val]``, and a run that may draw them saves ``unlabelled_own_from``, that first index).
Every run saves them, and the same (dataset, protocol, parameters, seed) always yields the same indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from synthmed.data.dataset import Dataset, Split, check_classes_present
from synthmed.errors import SynthmedError

PROTOCOLS = ("lowdata", "fraction", "full")
#: Chaptoukaev 2021 (Table 1) kept BreastMNIST's whole official 546 / 78 split: it is already small.
LOWDATA_KEEPS_OFFICIAL = {"breastmnist"}
DEFAULT_PER_CLASS = 150


@dataclass
class Subset:
    """The training and validation images of one run, plus the official test split."""

    protocol: str
    params: dict
    train: Split
    val: Split
    test: Split
    train_indices: np.ndarray
    val_indices: np.ndarray
    #: images of the training split outside the labelled subset, then any of the dataset's own images without
    #: labels, all without their labels (``--unlabelled``)
    unlabelled: np.ndarray | None = None
    unlabelled_indices: np.ndarray | None = None
    #: the unlabelled images' true labels, -1 for the dataset's own (none known): only for auditing the class
    #: balance of what was used, never training
    unlabelled_audit: np.ndarray | None = None
    #: the first pool index of the dataset's own unlabelled images (n_train + n_val), where it has any
    unlabelled_own_from: int | None = None

    def indices(self) -> dict:
        out: dict = {
            "pool": "official train followed by official val",
            "train": self.train_indices.tolist(),
            "val": self.val_indices.tolist(),
        }
        if self.unlabelled_indices is not None:  # absent when off, so earlier subset files read the same
            out["unlabelled"] = self.unlabelled_indices.tolist()
        if self.unlabelled_own_from is not None:  # only with images of the dataset's own: the same files otherwise
            out["pool"] += ", then the dataset's own unlabelled images (unlabelled indices only)"
            out["unlabelled_own_from"] = self.unlabelled_own_from
        return out

    def _known(self) -> np.ndarray:
        labels = np.asarray(self.unlabelled_audit)
        return labels.min(1) >= 0 if labels.ndim == 2 else labels >= 0

    def unlabelled_balance(self, n_classes: int) -> list[int]:
        """Unlabelled images per true class (per label, multi-label), over those whose label is known
        (``unlabelled_unknown`` counts the rest): the audit of what a run used; no training code reads these
        labels."""
        if self.unlabelled_audit is None:
            return []
        labels = np.asarray(self.unlabelled_audit)[self._known()]
        if labels.ndim == 2:
            return labels.sum(0).astype(int).tolist()
        return np.bincount(labels, minlength=n_classes).tolist()

    @property
    def unlabelled_unknown(self) -> int:
        """Unlabelled images without a known label (the dataset's own), which the balance cannot count."""
        return 0 if self.unlabelled_audit is None else int((~self._known()).sum())


def water_fill(total: int, caps: np.ndarray) -> np.ndarray:
    """Split ``total`` over classes as evenly as their caps allow (a class short of its share gives the rest
    to the others); leftover units go to the classes with the most room."""
    alloc = np.zeros(len(caps), dtype=np.int64)
    remaining = min(int(total), int(caps.sum()))
    while remaining > 0:
        open_ = np.flatnonzero(alloc < caps)
        share = max(1, remaining // len(open_))
        for c in sorted(open_, key=lambda c: -(caps[c] - alloc[c])):
            take = min(share, caps[c] - alloc[c], remaining)
            alloc[c] += take
            remaining -= take
            if remaining == 0:
                break
    return alloc


def anchor_per_class(protocol: str, per_class: int | None, dataset: str) -> int | None:
    """The real images per class a run of ``protocol`` trains on where it draws an even count per class (the
    real-image curve's anchor: ``--real-per-class`` or the lowdata default), else None (BreastMNIST's official split,
    other protocols)."""
    if protocol != "lowdata":
        return None
    if per_class:
        return int(per_class)
    return None if dataset.lower() in LOWDATA_KEEPS_OFFICIAL else DEFAULT_PER_CLASS


def _lowdata(data: Dataset, per_class: int | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n_train = len(data.train)
    if per_class is None and data.name in LOWDATA_KEEPS_OFFICIAL:
        return np.arange(n_train), n_train + np.arange(len(data.val))
    if data.multi_label:
        raise SynthmedError(
            f"the lowdata protocol draws images per class and {data.name} is multi-label; "
            "use --protocol fraction or full"
        )
    k = per_class or DEFAULT_PER_CLASS
    pool_labels = np.concatenate([data.train.labels, data.val.labels])
    by_class = [rng.permutation(np.flatnonzero(pool_labels == c)) for c in range(data.n_classes)]
    avail = np.array([len(idx) for idx in by_class])
    train_total = k * data.n_classes
    val_total = math.ceil(train_total / 9)  # the paper's 9:1 ratio: 300 / 34, 600 / 67, 1050 / 117, ...
    n_tr = water_fill(train_total, np.maximum(avail - 1, 0) * 9 // 10 + (avail == 1))
    n_va = water_fill(val_total, avail - n_tr)
    train = np.concatenate([idx[:a] for idx, a in zip(by_class, n_tr)])
    val = np.concatenate([idx[a : a + b] for idx, a, b in zip(by_class, n_tr, n_va)])
    return np.sort(train), np.sort(val)


def _fraction(
    data: Dataset, fraction: float, stratified: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < fraction <= 1:
        raise SynthmedError(f"--fraction {fraction} is outside (0, 1]; give e.g. 0.05 for 5 % of the training split")
    n_train = len(data.train)
    if stratified and not data.multi_label:
        parts = [rng.permutation(np.flatnonzero(data.train.labels == c)) for c in range(data.n_classes)]
        train = np.concatenate([p[: max(1, round(len(p) * fraction))] for p in parts])
    else:
        train = rng.permutation(n_train)[: max(1, round(n_train * fraction))]
    return np.sort(train), n_train + np.arange(len(data.val))


def curve_subset(
    pool_labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    per_class: int,
    class_names: list[str],
    seed: int,
) -> np.ndarray:
    """``per_class`` training images of every class for a point of the real-image curve, nested: per class, the
    run's own training images first, then the rest of its real pool (never its validation images), each part in a
    seeded order, and the first ``per_class`` taken. So a larger point contains every smaller one, and the point at
    the protocol's own size is the run's training set."""
    if pool_labels.ndim != 1:
        raise SynthmedError("the real-image curve draws images per class and needs single-label data")
    rng = np.random.default_rng([seed, 20_21, 7])
    in_train = np.zeros(len(pool_labels), dtype=bool)
    in_train[train_idx] = True
    usable = np.ones(len(pool_labels), dtype=bool)
    usable[val_idx] = False
    picks = []
    for c, name in enumerate(class_names):
        own = rng.permutation(np.flatnonzero(in_train & (pool_labels == c)))
        rest = rng.permutation(np.flatnonzero(usable & ~in_train & (pool_labels == c)))
        order = np.concatenate([own, rest])
        if per_class > len(order):
            raise SynthmedError(
                f"--real-curve {per_class} is more than class {name!r} has outside the validation "
                f"split ({len(order)}); give at most {len(order)} per class"
            )
        picks.append(order[:per_class])
    return np.sort(np.concatenate(picks))


def unlabelled_subset(
    n_train: int,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    count: int | str,
    seed: int,
    dataset: str = "the dataset",
    n_val: int = 0,
    n_own: int = 0,
) -> np.ndarray:
    """Indices of ``count`` (or ``"all"``) images of the official training split that are neither training nor
    validation images of the run, followed by the dataset's own ``n_own`` unlabelled images (pool indices from
    ``n_train + n_val``), drawn without reading any label (so their labels cannot steer the draw), from a
    seeded stream of their own (the labelled draw is the same with or without them) and nested: a larger count
    contains a smaller one. Without images of its own the draw is the one it always was."""
    free = np.ones(n_train, dtype=bool)
    free[train_idx[train_idx < n_train]] = False
    free[val_idx[val_idx < n_train]] = False
    outside = np.flatnonzero(free)
    pool = np.concatenate([outside, n_train + n_val + np.arange(n_own)])
    if not len(pool):
        raise SynthmedError(
            f"--unlabelled: the run trains or selects on every training image of {dataset}, so none is left "
            "unlabelled; use --protocol lowdata or fraction, or give the dataset images without labels "
            "(unlabelled_images in its npz, an unlabelled/ sub-folder of its image folder)"
        )
    if count == "all":
        return pool
    if not isinstance(count, int) or count < 1:
        raise SynthmedError(f"--unlabelled {count!r}: give a number of images >= 1 or all")
    if count > len(pool):
        what = f"training images of {dataset} outside the labelled subset (seed {seed})"
        if n_own:
            what = f"unlabelled images of {dataset}: {len(outside)} {what} and {n_own} of its own"
        raise SynthmedError(
            f"--unlabelled {count} is more than the {len(pool)} {what}; give at most {len(pool)} or all"
        )
    order = np.random.default_rng([seed, 20_21, 29]).permutation(pool)
    return np.sort(order[:count])


def make_subset(
    data: Dataset,
    protocol: str = "full",
    seed: int = 0,
    per_class: int | None = None,
    fraction: float | None = None,
    stratified: bool = False,
    curve: int | None = None,
    unlabelled: int | str | None = None,
) -> Subset:
    """Draw the training / validation images of one run. Deterministic in ``seed``. ``curve``: instead of the
    protocol's training images, ``curve`` real images per class nested within the run's real pool (``curve_subset``),
    with the protocol's validation images. ``unlabelled``: also this many (or ``"all"``) images of the training
    split outside the run's training and validation images (``unlabelled_subset``), their labels kept apart."""
    rng = np.random.default_rng([seed, 20_21])
    if protocol == "lowdata":
        train_idx, val_idx = _lowdata(data, per_class, rng)
        params: dict = {"per_class": per_class}
    elif protocol == "fraction":
        if fraction is None:
            raise SynthmedError("the fraction protocol needs --fraction F (e.g. 0.05)")
        train_idx, val_idx = _fraction(data, fraction, stratified, rng)
        params = {"fraction": fraction, "stratified": stratified}
    elif protocol == "full":
        train_idx, val_idx = np.arange(len(data.train)), len(data.train) + np.arange(len(data.val))
        params = {}
    else:
        raise SynthmedError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    pool = Split(
        np.concatenate([data.train.images, data.val.images]), np.concatenate([data.train.labels, data.val.labels])
    )
    if curve is not None:
        train_idx = curve_subset(pool.labels, train_idx, val_idx, curve, data.class_names, seed)
        params = {**params, "curve_per_class": curve}
    train, val = pool.subset(train_idx), pool.subset(val_idx)
    try:
        check_classes_present(data.name, f"{protocol} training subset", train.labels, data.class_names)
    except SynthmedError as err:
        hint = " (try --stratified or a larger --fraction)" if protocol == "fraction" else ""
        raise SynthmedError(f"{err}{hint}") from None
    subset = Subset(protocol, params, train, val, data.test, train_idx, val_idx)
    if unlabelled is not None:
        own_from, n_own = len(data.train) + len(data.val), 0 if data.unlabelled is None else len(data.unlabelled)
        idx = unlabelled_subset(len(data.train), train_idx, val_idx, unlabelled, seed, data.name, len(data.val), n_own)
        subset.unlabelled_indices, subset.unlabelled_own_from = idx, own_from if n_own else None
        subset.unlabelled, subset.unlabelled_audit = _unlabelled_images(data, idx, own_from)
        subset.params = {**params, "unlabelled": unlabelled}
    return subset


def _unlabelled_images(data: Dataset, idx: np.ndarray, own_from: int) -> tuple[np.ndarray, np.ndarray]:
    """The images at sorted pool indices ``idx`` and their audit labels: the training split's true labels, then -1
    (every label -1, multi-label) for the dataset's own images, whose labels nobody knows."""
    outside, own = idx[idx < own_from], idx[idx >= own_from] - own_from
    images, labels = data.train.images[outside], data.train.labels[outside].copy()
    if not len(own):
        return images, labels
    assert data.unlabelled is not None  # unlabelled_subset numbers images of its own only where it has some
    unknown = np.full((len(own), *labels.shape[1:]), -1, dtype=labels.dtype)
    return np.concatenate([images, data.unlabelled[own]]), np.concatenate([labels, unknown])
