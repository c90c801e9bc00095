"""From a real training subset to an audited synthetic set: the one path ``synthmed run`` and
``synthmed generate`` share.

fit the generator (or reload it from the generator cache) -> sample the requested counts (over-sampling
and keeping only images the reference classifier assigns to their intended class, when a confidence
filter is set) -> audit (memorisation, collapse, losses) -> class fidelity -> artifacts (npz + side-car,
image grid, loss curves, closest pairs, audit JSON).

Generators are cached by everything that defines their weights (method and hyper-parameters, dataset
MD5 and size, the subset's indices, the generator seed), so a lever sweep (loss weight, filter,
fine-tuning, classifier) over one subset trains each generator once. Fixing ``generator_seed`` shares one
generator across classifier seeds when the subset is the same (BreastMNIST's lowdata subset is the
official split for every seed); by default each run seed trains its own, so the spread over seeds includes
the generator's.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthmed.audit.features import DomainFeatures
from synthmed.augment import Kind, create_augmenter, method_class
from synthmed.augment.base import Augmenter
from synthmed.augment.export import export_synthetic
from synthmed.augment.generative import TorchGenerator
from synthmed.data.dataset import Dataset
from synthmed.data.protocol import Subset
from synthmed.errors import SynthmedError
from synthmed.io import atomic_write_bytes, atomic_write_json, file_lock
from synthmed.metrics.memorisation import audit
from synthmed.spec import Synthesis

#: Chaptoukaev 2021 adds 150 generated images per class.
DEFAULT_SYNTHETIC_PER_CLASS = 150
#: With a confidence filter, this many candidates per requested image are drawn before filtering.
FILTER_OVERSAMPLE = 4


@dataclass
class SyntheticSet:
    """A sampled, vetted and audited synthetic set, with the fitted method that made it."""

    images: np.ndarray
    labels: np.ndarray
    augmenter: Augmenter
    counts: dict[int, int]
    audit: dict  # memorisation, collapse, losses, flags, optional fidelity and filter
    generator_cached: bool
    generator_seconds: float
    generator_path: Path | None
    real_features: np.ndarray | None = None  # in-domain features of the real training subset (t-SNE)
    synthetic_features: np.ndarray | None = None

    def _reference_recall(self) -> float | None:
        """The reference's recall on real validation images of the classes synthesised, weighted by the synthetic
        counts: what class fidelity would be if the synthetic images were real ones (a majority-biased reference
        sees few minority images, real or synthetic, as their class)."""
        reference = (self.audit.get("fidelity") or {}).get("reference") or {}
        recall = (reference.get("val") or {}).get("recall")
        if not recall:
            return None
        pairs = [(recall[int(c)], n) for c, n in self.counts.items() if n and recall[int(c)] is not None]
        total = sum(n for _, n in pairs)
        return sum(r * n for r, n in pairs) / total if total else None

    def summary(self) -> dict:
        """The figures a run record keeps (the full audit goes to audit.json)."""
        mem, col = self.audit["memorisation"], self.audit["collapse"]
        fid = self.audit.get("fidelity") or {}
        dist = (self.audit.get("distribution") or {}).get("overall") or {}
        return {
            "fid": dist.get("fid"),
            "kid": dist.get("kid_mean"),
            "precision": dist.get("precision"),
            "recall": dist.get("recall"),
            "coverage": dist.get("coverage"),
            "fid_over_epochs": self.audit.get("fid_over_epochs"),
            "n": int(len(self.labels)),
            "counts": {str(c): n for c, n in self.counts.items()},
            "fidelity": fid.get("accuracy"),
            "fidelity_candidates": (self.audit.get("filter") or {}).get("candidate_fidelity"),
            "reference_test_acc": (fid.get("reference") or {}).get("test", {}).get("acc"),
            "reference_val_recall": self._reference_recall(),
            "near_copy_share": mem["near_copy_share"],
            "held_out_near_copy_share": mem["held_out_near_copy_share"],
            "memorised_share": (mem.get("memorised") or {}).get("share"),
            "held_out_memorised_share": (mem.get("memorised") or {}).get("held_out_share"),
            "memorised_share_features": (mem.get("memorised_features") or {}).get("share"),
            "held_out_memorised_share_features": (mem.get("memorised_features") or {}).get("held_out_share"),
            "min_diversity": col["min_diversity"],
            "flags": self.audit["flags"],
            "reconstructions_by_design": self.audit["reconstructions_by_design"],
            "kept_share": (self.audit.get("filter") or {}).get("kept_share"),
            "generator_cached": self.generator_cached,
            "generator_seconds": self.generator_seconds,
        }


def generator_seed(seed: int, levers: Synthesis) -> int:
    """The seed a run's generator trains and samples with: ``--generator-seed`` for every run, the run seed modulo
    ``--generator-seeds`` (cycling K generators over the classifier seeds), else the run seed."""
    if levers.generator_seed is not None:
        return levers.generator_seed
    if levers.generator_seeds is not None:
        return seed % levers.generator_seeds
    return seed


def synthetic_counts(
    labels: np.ndarray, n_classes: int, per_class: int | None = None, balance: bool = False, ratio: float | None = None
) -> dict[int, int]:
    """Images to synthesise per class: a fixed number (150 by default), a multiple of the real count, or up to
    the majority count."""
    real = np.bincount(labels, minlength=n_classes)
    if balance:
        return {c: int(real.max() - real[c]) for c in range(n_classes)}
    if ratio is not None:
        return {c: int(round(ratio * real[c])) for c in range(n_classes)}
    return {c: int(DEFAULT_SYNTHETIC_PER_CLASS if per_class is None else per_class) for c in range(n_classes)}


def generator_key(
    augmenter: Augmenter,
    data: Dataset,
    subset: Subset,
    seed: int,
    track_fid_every: int | None = None,
    select: bool = False,
    feature_space: str | None = None,
) -> dict:
    """What determines a generator's weights (not the device it trained on), its FID tracking, whose history is
    saved with it, and the checkpoint selection that may replace the last weights; ``feature_space`` names the
    features that tracking measures in (the reference classifier, whose ``fidelity_epochs`` shape them), since
    the checkpoint ``--select-generator fid`` keeps depends on them."""
    indices = json.dumps([subset.train_indices.tolist()])
    params = {k: v for k, v in augmenter.config().items() if k != "device"}
    key = {
        "params": params,
        "dataset": data.name,
        "dataset_md5": data.md5,
        "size": data.size,
        "protocol": subset.protocol,
        "train_sha256": hashlib.sha256(indices.encode()).hexdigest(),
        "seed": seed,
    }
    return (
        key
        | ({"track_fid_every": track_fid_every} if track_fid_every else {})
        | ({"select_generator": "fid"} if select else {})
        | ({"feature_space": feature_space} if track_fid_every and feature_space else {})
    )


class FidTracker:
    """A ``TorchGenerator.fit`` monitor: every ``every`` epochs (and at the last), FID and KID of ``per_class``
    samples per class in the in-domain feature space, against the real training subset (Sharma et al. 2022,
    Table 4) and against the real validation split. With ``select``, it keeps the weights of the checkpoint with
    the lowest validation FID and restores them when training ends (never the test split)."""

    def __init__(
        self,
        extractor: DomainFeatures,
        real_images: np.ndarray,
        real_labels: np.ndarray,
        every: int,
        per_class: int = 100,
        seed: int = 0,
        val_images: np.ndarray | None = None,
        select: bool = False,
    ) -> None:
        self.extractor, self.every, self.seed, self.select = extractor, every, seed, select
        self.real = extractor.features(real_images)
        self.val = extractor.features(val_images) if val_images is not None and len(val_images) > 1 else None
        self.counts = {int(c): per_class for c in np.unique(real_labels)}
        self.best: tuple[float, int, dict] | None = None  # (validation FID, epoch, weights)

    def __call__(self, model: TorchGenerator, epoch: int, last: bool = False) -> dict | None:
        if epoch % self.every and not last:
            return None
        from synthmed.metrics.distribution import distribution_metrics, fid

        images, _ = model.sample(self.counts, seed=self.seed)
        synth = self.extractor.features(images)
        m = distribution_metrics(self.real, synth, kid_subsets=20, seed=self.seed)
        row = {"fid": m["fid"], "kid": m["kid_mean"], "kid_std": m["kid_std"]}
        if self.val is not None:
            row["val_fid"] = fid(self.val, synth)
            if self.select and (self.best is None or row["val_fid"] < self.best[0]):
                self.best = (row["val_fid"], epoch, copy.deepcopy(model.nets_.state_dict()))
        return row

    def finish(self, model: TorchGenerator) -> None:
        """Restore the selected checkpoint's weights and mark it in the model's FID history."""
        if not self.select or self.best is None:
            return
        _, epoch, state = self.best
        model.nets_.load_state_dict(state)
        for row in model.monitor_history_:
            row["selected"] = row["epoch"] == epoch


def fit_generator(
    augmenter: Augmenter,
    data: Dataset,
    subset: Subset,
    seed: int,
    cache_dir: str | Path,
    monitor: FidTracker | None = None,
) -> tuple[Augmenter, bool, float, Path | None]:
    """Fit ``augmenter`` on the real training subset, or reload the cached fit when the method declares that it
    trains networks. Returns (augmenter, cached, fit seconds, cache path)."""
    if not augmenter.trains:
        return augmenter.fit(subset.train.images, subset.train.labels, seed=seed), False, 0.0, None
    assert isinstance(augmenter, TorchGenerator)  # ``trains`` declares the saved-weights contract of TorchGenerator
    key = generator_key(
        augmenter,
        data,
        subset,
        seed,
        monitor.every if monitor else None,
        monitor.select if monitor else False,
        monitor.extractor.name if monitor else None,
    )
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "generators" / f"{augmenter.name}_{digest}.pt"
    with file_lock(
        Path(cache_dir) / ".locks" / f"{path.stem}.lock"
    ):  # one fit when several runs need this generator at once
        if path.exists():
            return TorchGenerator.load(path, device=augmenter.params.get("device", "auto")), True, 0.0, path
        start = time.perf_counter()
        augmenter.fit(subset.train.images, subset.train.labels, seed=seed, monitor=monitor)
        seconds = time.perf_counter() - start
        augmenter.save(path)
    return augmenter, False, seconds, path


def _confidence_filter(
    images: np.ndarray, labels: np.ndarray, counts: dict[int, int], confidence: np.ndarray, threshold: float
) -> tuple[np.ndarray, dict]:
    """Indices of the first ``counts[c]`` candidates of each class whose confidence in their class reaches the
    threshold (first in sampling order, so the kept images are not biased towards the easiest ones)."""
    keep, kept = [], {}
    for c, n in counts.items():
        passing = np.flatnonzero((labels == c) & (confidence >= threshold))[:n]
        keep.append(passing)
        kept[str(c)] = int(len(passing))
    index = np.sort(np.concatenate(keep)) if keep else np.empty(0, dtype=np.int64)
    requested = sum(counts.values())
    return index, {
        "threshold": threshold,
        "oversample": FILTER_OVERSAMPLE,
        "candidates": int(len(labels)),
        "requested": requested,
        "kept": kept,
        "kept_share": len(index) / requested if requested else None,
    }


def synthesise(
    data: Dataset,
    subset: Subset,
    method: str,
    params: dict,
    levers: Synthesis,
    seed: int,
    cache_dir: str | Path,
    device: str = "auto",
    precision: str = "auto",
    on_status: Callable[[str], None] | None = None,
    on_reference_epoch: Callable[[dict], None] | None = None,
) -> SyntheticSet:
    """Fit (or reload) ``method`` on ``subset.train``, sample the counts ``levers`` ask for, filter and audit the
    result. Generators and reference classifiers are cached under ``cache_dir``. Everything here is seeded by the
    generator seed (``levers.generator_seed``, else ``seed``), so runs that share a generator share its audit and
    its reference classifier too."""
    levers.check()
    status = on_status or (lambda text: None)
    augmenter = create_augmenter(method, **({"device": device, **params} if method_class(method).trains else params))
    if augmenter.kind is not Kind.SET:
        raise SynthmedError(f"method {method!r} does not generate a synthetic set ({augmenter.kind.value})")
    gen_seed = generator_seed(seed, levers)
    train = subset.train
    counts = synthetic_counts(
        train.labels, data.n_classes, levers.synthetic_per_class, levers.balance, levers.synthetic_ratio
    )
    if sum(counts.values()) == 0:
        raise SynthmedError(
            "nothing to generate: "
            + (
                "the training subset is already balanced; give --synthetic-per-class N"
                if levers.balance
                else "every class would get 0 images"
            )
        )
    reference = extractor = monitor = None
    if levers.fidelity or levers.min_confidence is not None or levers.track_fid_every:
        from synthmed.audit.reference import reference_classifier

        status("reference classifier (cached after the first time)")
        reference = reference_classifier(
            data, subset, gen_seed, cache_dir, levers.fidelity_epochs, device, precision, on_epoch=on_reference_epoch
        )
        extractor = DomainFeatures(
            reference.model,
            name=f"domain:{data.name} reference ResNet-18 trained on this "
            f"run's real subset ({len(train)} images, {reference.path.stem})",
        )
        if levers.track_fid_every:
            monitor = FidTracker(
                extractor,
                train.images,
                train.labels,
                levers.track_fid_every,
                seed=gen_seed,
                val_images=subset.val.images,
                select=levers.select_generator == "fid",
            )
    status(f"fitting {method} ({augmenter.params.get('epochs', '?')} epochs)")
    augmenter, cached, seconds, path = fit_generator(augmenter, data, subset, gen_seed, cache_dir, monitor)
    factor = FILTER_OVERSAMPLE if levers.min_confidence is not None else 1
    images, labels = augmenter.sample({c: n * factor for c, n in counts.items()}, seed=gen_seed)
    filter_info = None
    if levers.min_confidence is not None:
        from synthmed.audit.reference import class_fidelity, intended_confidence

        assert reference is not None  # trained above whenever a confidence filter is set
        confidence = intended_confidence(reference.model, images, labels, data.task, reference.meta["precision"])
        candidate_fidelity = class_fidelity(reference.model, images, labels, data.task, reference.meta["precision"])[
            "accuracy"
        ]
        index, filter_info = _confidence_filter(images, labels, counts, confidence, levers.min_confidence)
        filter_info["candidate_fidelity"] = candidate_fidelity
        images, labels = images[index], labels[index]
        if len(labels) == 0:
            raise SynthmedError(
                f"{method}: no synthetic image reached --min-confidence {levers.min_confidence}; "
                "lower the threshold or train the generator longer"
            )
    status("auditing: memorisation, collapse, losses")
    report = audit(
        images,
        labels,
        train.images,
        train.labels,
        getattr(augmenter, "history_", []),
        held_out=subset.val.images,
        reconstructions=augmenter.reconstructs,
        seed=gen_seed,
    )
    if filter_info is not None:
        report["filter"] = filter_info
    real_feats = synth_feats = None
    if levers.fidelity and reference is not None and extractor is not None:
        from synthmed.audit.reference import class_fidelity
        from synthmed.metrics.distribution import fidelity_from_features

        report["fidelity"] = {
            **class_fidelity(reference.model, images, labels, data.task, reference.meta["precision"]),
            "reference": {**reference.meta, "path": str(reference.path), "cached": reference.cached},
        }
        status("FID, KID, precision / recall in the reference's feature space")
        real_feats, synth_feats = extractor.features(train.images), extractor.features(images)
        report["distribution"] = fidelity_from_features(
            real_feats, train.labels, synth_feats, labels, extractor.name, data.class_names, seed=gen_seed
        )
        from synthmed.metrics.memorisation import memorised_share

        features = memorised_share(synth_feats, real_feats, extractor.features(subset.val.images))
        report["memorisation"]["memorised_features"] = {k: v for k, v in features.items() if k != "nearest"}
    report.update(augmenter.diagnostics())  # e.g. fid_over_epochs
    return SyntheticSet(images, labels, augmenter, counts, report, cached, seconds, path, real_feats, synth_feats)


def synthetic_only_set(
    synthesis: SyntheticSet, train_labels: np.ndarray, n_classes: int, levers: Synthesis, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The images TSTR and ``--pretrain-on-synthetic`` train on alone: the run's synthetic set, or with
    ``--balance`` (which fills only the minority classes, so a classifier trained on it would see one class)
    every class drawn at the majority count from the same fitted generator, the synthetic twin of a balanced
    training set. Drawn with a seed of its own, so the images the run adds stay what they are."""
    if not levers.balance:
        return synthesis.images, synthesis.labels
    majority = int(np.bincount(train_labels, minlength=n_classes).max())
    return synthesis.augmenter.sample({c: majority for c in range(n_classes)}, seed=generator_seed(seed, levers) + 1)


def write_artifacts(
    stem: str | Path, synthesis: SyntheticSet, data: Dataset, subset: Subset, seed: int, title: str
) -> list[Path]:
    """``STEM.npz`` (MedMNIST layout) + ``STEM.json`` (provenance), ``STEM_grid.png``, ``STEM_losses.png``,
    ``STEM_closest.png`` and ``STEM_audit.json``, each written atomically."""
    from synthmed.report.figures import closest_pairs, image_grid, loss_curves

    stem = Path(stem)
    report = synthesis.audit
    method = synthesis.augmenter.name
    provenance = {
        "method": method,
        "config": synthesis.augmenter.config(),
        "seed": seed,
        "dataset": data.name,
        "dataset_md5": data.md5,
        "size": data.size,
        "class_names": data.class_names,
        "n_classes": data.n_classes,
        "protocol": subset.protocol,
        "subset_params": subset.params,
        "subset": subset.indices(),
        "requested_per_class": synthesis.counts,
        "audit_flags": report["flags"],
        "reconstructions_by_design": report["reconstructions_by_design"],
        "generator_cache": str(synthesis.generator_path) if synthesis.generator_path else None,
        "audit": f"{stem.name}_audit.json",
    }
    written = [export_synthetic(stem.with_suffix(".npz"), synthesis.images, synthesis.labels, provenance)]
    train = subset.train
    pngs = {
        "grid": image_grid(
            train.images, train.labels, synthesis.images, synthesis.labels, data.class_names, title=title, seed=seed
        ),
        "losses": loss_curves(getattr(synthesis.augmenter, "history_", []), f"{method} losses · {title}"),
        "closest": closest_pairs(synthesis.images, train.images, report["memorisation"]["closest"]),
    }
    if synthesis.real_features is not None and synthesis.synthetic_features is not None:
        from synthmed.report.figures import tsne_plot

        pngs["tsne"] = tsne_plot(
            synthesis.real_features,
            train.labels,
            synthesis.synthetic_features,
            synthesis.labels,
            data.class_names,
            seed=seed,
            title=f"t-SNE · {title}",
        )
    if report.get("fid_over_epochs"):
        pngs["fid"] = loss_curves(report["fid_over_epochs"], f"{method}: FID / KID over training · {title}")
    for name, png in pngs.items():
        path = Path(f"{stem}_{name}.png")
        atomic_write_bytes(path, png)
        written.append(path)
    for pair in report["memorisation"]["closest"]:
        pair["train_pool_index"] = int(subset.train_indices[pair["train"]])
    report["indices"] = (
        "memorisation 'nearest' and 'train' index the training subset (side-car subset.train); "
        "'synthetic' indexes the npz's train_images; 'train_pool_index' is the pool index"
    )
    audit_path = Path(f"{stem}_audit.json")
    atomic_write_json(audit_path, {"method": method, "dataset": data.name, "seed": seed, **report})
    written.append(audit_path)
    return written
