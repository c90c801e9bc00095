"""From a real training subset to an audited synthetic set: the one path ``synthmed run`` and
``synthmed generate`` share.

fit the generator (or reload it from the generator cache) -> sample the requested counts (over-sampling
and keeping only images the reference classifier assigns to their intended class, when a confidence
filter is set) -> audit (``synthmed.audit.synthetic.audit_set``: memorisation, collapse, losses, class fidelity,
FID / KID) -> artifacts (npz + side-car, image grid, loss curves, closest pairs, audit JSON).

Generators are cached by everything that defines their weights (method and hyper-parameters, dataset
MD5 and size, the subset's indices, the generator seed), so a lever sweep (loss weight, filter,
fine-tuning, classifier) over one subset trains each generator once. Fixing ``generator_seed`` shares one
generator across classifier seeds when the subset is the same (BreastMNIST's lowdata subset is the
official split for every seed); by default each run seed trains its own, so the spread over seeds includes
the generator's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synthmed.audit.features import DomainFeatures
from synthmed.audit.fid_tracking import FidTracker
from synthmed.audit.reference import ReferenceClassifier
from synthmed.audit.synthetic import FILTER_OVERSAMPLE, audit_set, filter_by_reference
from synthmed.augment import Kind, create_augmenter, method_class
from synthmed.augment.base import Augmenter
from synthmed.augment.export import export_synthetic
from synthmed.augment.generative import TorchGenerator, fit_progress
from synthmed.augment.pseudo_label import PseudoLabel
from synthmed.data.dataset import Dataset
from synthmed.data.protocol import Subset
from synthmed.errors import SynthmedError
from synthmed.experiment.teacher import (
    TEACHER_OVERSAMPLE,
    check_teacher,
    label_with_teacher,
    pick_per_teacher_class,
    teacher_classifier,
    with_teacher,
)
from synthmed.io import atomic_write_bytes, atomic_write_json, file_lock
from synthmed.record import SyntheticAudit
from synthmed.spec import SyntheticLevers
from synthmed.train.teacher import TeacherLabels

#: Chaptoukaev 2021 adds 150 generated images per class.
DEFAULT_SYNTHETIC_PER_CLASS = 150


@dataclass
class SyntheticSet:
    """A sampled, vetted and audited synthetic set, with the fitted method that made it."""

    images: np.ndarray
    labels: np.ndarray
    augmenter: Augmenter
    counts: dict[int, int]
    audit: SyntheticAudit  # the figures a run record keeps, the full audit (audit.json) and the features (t-SNE)
    generator_path: Path | None
    teacher_labels: np.ndarray | None = None  # with --teacher: its classes or probabilities, which training uses

    @property
    def targets(self) -> np.ndarray:
        """The labels the classifier trains on: the teacher's where it relabelled the set, else ``labels``."""
        return self.labels if self.teacher_labels is None else self.teacher_labels


def generator_seed(seed: int, levers: SyntheticLevers) -> int:
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
    augmenter: TorchGenerator,
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
    used = seen_unlabelled(augmenter, subset)
    seen = [subset.train_indices]
    if used is not None and subset.unlabelled_indices is not None:  # a generator that saw them: part of its weights
        seen.append(subset.unlabelled_indices)
    indices = json.dumps([part.tolist() for part in seen])
    params = augmenter.fit_config()
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
        | ({"unlabelled_batches": "share"} if used is not None else {})  # fits before the share batched otherwise
        | ({"track_fid_every": track_fid_every} if track_fid_every else {})
        | ({"select_generator": "fid"} if select else {})
        | ({"feature_space": feature_space} if track_fid_every and feature_space else {})
    )


def generator_path(
    augmenter: TorchGenerator,
    data: Dataset,
    subset: Subset,
    seed: int,
    cache_dir: str | Path,
    monitor: FidTracker | None = None,
) -> Path:
    """Where the cache keeps the fit of ``augmenter`` on ``subset`` with ``seed`` (``generator_key``'s digest)."""
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
    return Path(cache_dir) / "generators" / f"{augmenter.fit_family or augmenter.name}_{digest}.pt"


def fit_generator(
    augmenter: Augmenter,
    data: Dataset,
    subset: Subset,
    seed: int,
    cache_dir: str | Path,
    monitor: FidTracker | None = None,
    on_fit: Callable[[], None] | None = None,
    on_wait: Callable[[], None] | None = None,
) -> tuple[Augmenter, bool, float, Path | None]:
    """Fit ``augmenter`` on the real training subset, or reload the cached fit when the method declares that it
    trains networks. ``on_fit`` is called as a fit starts (not when one is loaded), ``on_wait`` when another process
    is making this fit and the run waits to load it. Returns (augmenter, cached, fit seconds, cache path)."""
    if not augmenter.trains:
        if on_fit is not None:
            on_fit()
        return augmenter.fit(subset.train.images, subset.train.labels, seed=seed), False, 0.0, None
    assert isinstance(augmenter, TorchGenerator)  # ``trains`` declares the saved-weights contract of TorchGenerator
    path = generator_path(augmenter, data, subset, seed, cache_dir, monitor)
    lock = Path(cache_dir) / ".locks" / f"{path.stem}.lock"
    with file_lock(lock, on_wait):  # one fit when several runs need this generator at once
        if path.exists():
            loaded = TorchGenerator.load(path, device=augmenter.params.get("device", "auto"))
            if augmenter.fit_params is not None:  # a variant's fit: this run's own settings for what follows it
                loaded.name, loaded.params = augmenter.name, dict(augmenter.params)
            return loaded, True, 0.0, path
        if on_fit is not None:
            on_fit()
        start = time.perf_counter()
        unlabelled = seen_unlabelled(augmenter, subset)
        if unlabelled is not None:
            augmenter.fit_with_unlabelled(
                subset.train.images, subset.train.labels, unlabelled, seed=seed, monitor=monitor
            )
        else:
            augmenter.fit(subset.train.images, subset.train.labels, seed=seed, monitor=monitor)
        seconds = time.perf_counter() - start
        augmenter.save(path)
    return augmenter, False, seconds, path


def fit_identity(augmenter: Augmenter, path: Path | None) -> tuple[str, str] | None:
    """(cache key, weights digest) of a cached fit: which fit a run used, and whether the weights it got are the ones
    every other run of that key got (a fit made again on another machine may differ); None for a method that trains
    nothing."""
    if path is None or not isinstance(augmenter, TorchGenerator):
        return None
    return path.stem, augmenter.weights_digest()


def create_generator(method: str, params: dict, device: str = "auto", precision: str = "auto") -> Augmenter:
    """``method``'s augmenter for a run on ``device``; a generator whose own ``precision`` is ``auto`` (ddpm) fits
    and samples at the run's precision where the run pins one. Its ``auto`` resolves by CPU (bf16 on AVX512-BF16
    and AMX, fp32 elsewhere), so a study pinned to bf16 would fit its ddpm at fp32 on an AVX2 machine and at bf16
    on the others: one row, two precisions. The pinned precision is in the fit's cache key."""
    augmenter = create_augmenter(method, **({"device": device, **params} if method_class(method).trains else params))
    if augmenter.params.get("precision") == "auto" and precision in ("bf16", "fp32"):
        augmenter.params["precision"] = precision
    return augmenter


def synthesise(
    data: Dataset,
    subset: Subset,
    method: str,
    params: dict,
    levers: SyntheticLevers,
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
    augmenter = create_generator(method, params, device, precision)
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
    made_reference: dict = {}  # whether the run loaded its reference and how long training it took: a budget's cost
    if levers.needs_reference:
        from synthmed.audit.reference import reference_classifier

        status("reference classifier (cached after the first time)")
        started = time.perf_counter()
        reference = reference_classifier(
            data, subset, gen_seed, cache_dir, levers.fidelity_epochs, device, precision, on_epoch=on_reference_epoch
        )
        made_reference = {"reference_cached": reference.cached}
        if not reference.cached:
            made_reference["reference_seconds"] = time.perf_counter() - started
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
    check_teacher(method, levers, subset.params.get("unlabelled"), data.task)
    teacher = None
    if levers.teacher is not None:
        status("teacher classifier (cached after the first time)")
        teacher = teacher_classifier(data, subset, seed, cache_dir, levers.fidelity_epochs, device, precision)
    if isinstance(augmenter, PseudoLabel):
        assert teacher is not None and levers.teacher is not None  # check_teacher refuses pseudo-label without one
        augmenter, labelled, counts = fit_pseudo_label(augmenter, subset, teacher, levers, data.task, counts)
        images, targets = augmenter.sample(counts, seed=gen_seed)
        labels = targets.argmax(1) if targets.ndim == 2 else targets
        audit = _audit(images, labels, counts, subset, augmenter, levers, reference, extractor, data, None, gen_seed)
        audit = dataclasses.replace(audit, **made_reference)
        pool = 0 if subset.unlabelled is None else len(subset.unlabelled)
        audit = with_teacher(audit, levers.teacher, labelled, pool, None)
        return SyntheticSet(images, labels, augmenter, counts, audit, None, targets)
    with fit_progress(lambda line: status(f"fitting {method}: {line}")):
        augmenter, cached, seconds, path = fit_generator(
            augmenter,
            data,
            subset,
            gen_seed,
            cache_dir,
            monitor,
            on_fit=lambda: status(f"fitting {method} ({_fit_length(augmenter.params)})"),
            on_wait=lambda: status(f"{method}: waiting for its fit, which another run is making"),
        )
    if cached:
        status(f"{method}: its fit loaded from the cache")
    # a teacher-labelled set draws its counts per teacher class from more candidates (pick_per_teacher_class)
    wanted = {c: n * (TEACHER_OVERSAMPLE if teacher is not None else 1) for c, n in counts.items()}
    factor = FILTER_OVERSAMPLE if levers.min_confidence is not None else 1
    images, labels = augmenter.sample({c: n * factor for c, n in wanted.items()}, seed=gen_seed)
    filter_info = None
    if levers.min_confidence is not None:
        assert reference is not None  # trained above whenever a confidence filter is set
        images, labels, filter_info = filter_by_reference(
            reference, images, labels, wanted, levers.min_confidence, data.task
        )
        if len(labels) == 0:
            raise SynthmedError(
                f"{method}: no synthetic image reached --min-confidence {levers.min_confidence}; "
                "lower the threshold or train the generator longer"
            )
    given, relabelled, intended, picked = len(images), None, None, None
    if teacher is not None and levers.teacher is not None:
        status("teacher labels")
        relabelled = label_with_teacher(teacher, images, data.task, levers.teacher, levers.teacher_threshold, labels)
        intended = labels[relabelled.kept]
        picked = pick_per_teacher_class(relabelled, counts, gen_seed)
        images, labels = images[relabelled.kept][picked], intended[picked]
    status("auditing: memorisation, collapse, losses" + (", class fidelity, FID, KID" if levers.fidelity else ""))
    report = _audit(
        images, labels, counts, subset, augmenter, levers, reference, extractor, data, filter_info, gen_seed
    )
    key, digest = fit_identity(augmenter, path) or (None, None)
    report = dataclasses.replace(
        report,
        generator_cached=cached,
        generator_seconds=seconds,
        generator_key=key,
        generator_digest=digest,
        **made_reference,
    )
    if relabelled is None:
        return SyntheticSet(images, labels, augmenter, counts, report, path)
    report = with_teacher(report, str(levers.teacher), relabelled, given, intended, picked)
    return SyntheticSet(images, labels, augmenter, counts, report, path, relabelled.labels[picked])


def fit_pseudo_label(
    augmenter: PseudoLabel,
    subset: Subset,
    teacher: torch.nn.Module,
    levers: SyntheticLevers,
    task: str,
    counts: dict[int, int],
) -> tuple[PseudoLabel, TeacherLabels, dict[int, int]]:
    """Fit the control on the run's unlabelled images as the teacher labels and keeps them; returns it, the
    teacher's labels, and the counts it adds (the policy's, or with ``-p count=all`` every kept image once)."""
    assert subset.unlabelled is not None and levers.teacher is not None  # check_teacher refuses runs without them
    labelled = label_with_teacher(teacher, subset.unlabelled, task, levers.teacher, levers.teacher_threshold)
    augmenter.fit(subset.unlabelled[labelled.kept], labelled.labels)
    return augmenter, labelled, augmenter.pool_counts() if augmenter.params["count"] == "all" else counts


def _audit(
    images: np.ndarray,
    labels: np.ndarray,
    counts: dict[int, int],
    subset: Subset,
    augmenter: Augmenter,
    levers: SyntheticLevers,
    reference: ReferenceClassifier | None,
    extractor: DomainFeatures | None,
    data: Dataset,
    filter_info: dict | None,
    seed: int,
) -> SyntheticAudit:
    """The audit of the set a run adds (``audit_set``), with the reference and features where fidelity is on;
    memorisation is measured against the unlabelled images too where the method read them (a generator that learnt
    from them, or pseudo-label, which adds them)."""
    return audit_set(
        images,
        labels,
        subset.train,
        counts=counts,
        held_out=subset.val,
        history=getattr(augmenter, "history_", []),
        reconstructions=augmenter.reconstructs,
        reference=reference if levers.fidelity else None,
        extractor=extractor if levers.fidelity else None,
        class_names=data.class_names,
        task=data.task,
        filter_info=filter_info,
        diagnostics=augmenter.diagnostics(),  # e.g. fid_over_epochs
        seed=seed,
        also_seen=seen_unlabelled(augmenter, subset),
    )


def seen_images(augmenter: Augmenter, subset: Subset) -> np.ndarray:
    """The real images memorisation was measured against, in the audit's order: the training images, then the
    unlabelled images the method read."""
    unlabelled = seen_unlabelled(augmenter, subset)
    return subset.train.images if unlabelled is None else np.concatenate([subset.train.images, unlabelled])


def seen_pool_indices(augmenter: Augmenter, subset: Subset) -> np.ndarray:
    """The pool indices of ``seen_images``, in its order."""
    if seen_unlabelled(augmenter, subset) is None:
        return subset.train_indices
    assert subset.unlabelled_indices is not None  # drawn with the images
    return np.concatenate([subset.train_indices, subset.unlabelled_indices])


def seen_unlabelled(augmenter: Augmenter, subset: Subset) -> np.ndarray | None:
    """The unlabelled images a run's method reads (``reads_unlabelled``: a generator with ``-p use_unlabelled=true``
    learns from them, pseudo-label adds them), else None: the images only, never their labels."""
    if subset.unlabelled is None or not type(augmenter).reads_unlabelled(augmenter.params):
        return None
    return subset.unlabelled


def synthetic_only_set(
    synthesis: SyntheticSet, train_labels: np.ndarray, n_classes: int, levers: SyntheticLevers, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The images TSTR and ``--pretrain-on-synthetic`` train on alone: the run's synthetic set, or with
    ``--balance`` (which fills only the minority classes, so a classifier trained on it would see one class)
    every class drawn at the majority count from the same fitted generator, the synthetic twin of a balanced
    training set. Drawn with a seed of its own, so the images the run adds stay what they are. The labels are the
    ones the run trains on (``targets``): the teacher's where ``--teacher`` relabelled the set (``SyntheticLevers``
    refuses a teacher with ``--balance`` here, whose fresh draw it never labelled)."""
    if not levers.balance:
        return synthesis.images, synthesis.targets
    majority = int(np.bincount(train_labels, minlength=n_classes).max())
    return synthesis.augmenter.sample({c: majority for c in range(n_classes)}, seed=generator_seed(seed, levers) + 1)


def write_artifacts(
    stem: str | Path, synthesis: SyntheticSet, data: Dataset, subset: Subset, seed: int, title: str
) -> list[Path]:
    """``STEM.npz`` (MedMNIST layout) + ``STEM.json`` (provenance), ``STEM_grid.png``, ``STEM_losses.png``,
    ``STEM_closest.png`` and ``STEM_audit.json``, each written atomically."""
    from synthmed.report.figures import closest_pairs, image_grid, loss_curves

    stem = Path(stem)
    audit = synthesis.audit
    report = audit.details or {}
    method = synthesis.augmenter.name
    labels = synthesis.labels  # the classes the classifier trained on: the teacher's where it relabelled the set
    relabelled = {}
    if synthesis.teacher_labels is not None:
        targets = synthesis.teacher_labels
        labels = targets.argmax(1) if targets.ndim == 2 else targets
        relabelled = {"labels": f"teacher {audit.teacher} (its top class)", "intended": synthesis.labels.tolist()}
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
        "audit_flags": audit.flags,
        "reconstructions_by_design": audit.reconstructions_by_design,
        "generator_cache": str(synthesis.generator_path) if synthesis.generator_path else None,
        "audit": f"{stem.name}_audit.json",
    }
    provenance |= relabelled
    written = [export_synthetic(stem.with_suffix(".npz"), synthesis.images, labels, provenance)]
    train = subset.train
    pngs = {
        "grid": image_grid(
            train.images, train.labels, synthesis.images, labels, data.class_names, title=title, seed=seed
        ),
        "losses": loss_curves(getattr(synthesis.augmenter, "history_", []), f"{method} losses · {title}"),
        "closest": closest_pairs(
            synthesis.images, seen_images(synthesis.augmenter, subset), report["memorisation"]["closest"]
        ),
    }
    if audit.real_features is not None and audit.synthetic_features is not None:
        from synthmed.report.figures import tsne_plot

        pngs["tsne"] = tsne_plot(
            audit.real_features,
            train.labels,
            audit.synthetic_features,
            labels,
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
    seen = seen_pool_indices(synthesis.augmenter, subset)
    for pair in report["memorisation"]["closest"]:
        pair["train_pool_index"] = int(seen[pair["train"]])
    report["indices"] = (
        "memorisation 'nearest' and 'train' index the images it was measured against: the training subset "
        "(side-car subset.train), then the unlabelled images the method read (subset.unlabelled); 'synthetic' "
        "indexes the npz's train_images; 'train_pool_index' is the pool index"
    )
    audit_path = Path(f"{stem}_audit.json")
    atomic_write_json(audit_path, {"method": method, "dataset": data.name, "seed": seed, **report})
    written.append(audit_path)
    return written


def _fit_length(params: dict) -> str:
    """A fit's length for the log: diffusion presets count steps, and ``epochs`` is None unless given."""
    if params.get("epochs") is not None:
        return f"{params['epochs']} epochs"
    if params.get("steps") is not None:
        return f"{params['steps']} steps"
    return "the preset's length"
