"""The audit of a synthetic set, assembled once for ``synthmed run``, ``synthmed generate``, TSTR and
``synthmed fidelity``: the confidence filter, memorisation / collapse / losses, class fidelity, FID / KID /
precision-recall in a feature space, and the memorisation check in that space, summed up as a ``SyntheticAudit``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from synthmed.audit.features import FeatureExtractor, feature_fidelity
from synthmed.audit.reference import ReferenceClassifier, class_fidelity, intended_confidence
from synthmed.data.dataset import Split
from synthmed.metrics.memorisation import audit, memorised_share
from synthmed.record import SyntheticAudit
from synthmed.train.trainer import FitResult

#: With a confidence filter, this many candidates per requested image are drawn before filtering.
FILTER_OVERSAMPLE = 4


def confidence_filter(
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


def filter_by_reference(
    reference: ReferenceClassifier,
    images: np.ndarray,
    labels: np.ndarray,
    counts: dict[int, int],
    threshold: float,
    task: str,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The candidates the reference classifier gives at least ``threshold`` confidence in their intended class
    (``confidence_filter``), with what the filter did and the candidates' class fidelity."""
    precision = reference.meta["precision"]
    confidence = intended_confidence(reference.model, images, labels, task, precision)
    candidate_fidelity = class_fidelity(reference.model, images, labels, task, precision)["accuracy"]
    index, info = confidence_filter(images, labels, counts, confidence, threshold)
    return images[index], labels[index], {**info, "candidate_fidelity": candidate_fidelity}


def reference_recall(details: dict, counts: dict[int, int]) -> float | None:
    """The reference's recall on real validation images of the classes synthesised, weighted by the synthetic
    counts: what class fidelity would be if the synthetic images were real ones (a majority-biased reference
    sees few minority images, real or synthetic, as their class)."""
    reference = (details.get("fidelity") or {}).get("reference") or {}
    recall = (reference.get("val") or {}).get("recall")
    if not recall:
        return None
    pairs = [(recall[int(c)], n) for c, n in counts.items() if n and recall[int(c)] is not None]
    total = sum(n for _, n in pairs)
    return sum(r * n for r, n in pairs) / total if total else None


def summarise(details: dict, labels: np.ndarray, counts: dict[int, int]) -> SyntheticAudit:
    """The figures a run record keeps of a full audit (``details``, which audit.json holds)."""
    mem, collapse = details.get("memorisation") or {}, details.get("collapse") or {}
    fidelity = details.get("fidelity") or {}
    overall = (details.get("distribution") or {}).get("overall") or {}
    kept = details.get("filter") or {}
    return SyntheticAudit(
        n=int(len(labels)),
        fidelity=fidelity.get("accuracy"),
        reference_test_acc=(fidelity.get("reference") or {}).get("test", {}).get("acc"),
        reference_val_recall=reference_recall(details, counts),
        near_copy_share=mem.get("near_copy_share"),
        held_out_near_copy_share=mem.get("held_out_near_copy_share"),
        min_diversity=collapse.get("min_diversity"),
        kept_share=kept.get("kept_share"),
        fid=overall.get("fid"),
        kid=overall.get("kid_mean"),
        precision=overall.get("precision"),
        recall=overall.get("recall"),
        coverage=overall.get("coverage"),
        flags=details.get("flags", []),
        fid_over_epochs=details.get("fid_over_epochs"),
        counts={str(c): n for c, n in counts.items()},
        fidelity_candidates=kept.get("candidate_fidelity"),
        memorised_share=(mem.get("memorised") or {}).get("share"),
        held_out_memorised_share=(mem.get("memorised") or {}).get("held_out_share"),
        memorised_share_features=(mem.get("memorised_features") or {}).get("share"),
        held_out_memorised_share_features=(mem.get("memorised_features") or {}).get("held_out_share"),
        reconstructions_by_design=details.get("reconstructions_by_design", False),
        details=details,
    )


def audit_set(
    images: np.ndarray,
    labels: np.ndarray,
    real: Split,
    *,
    counts: dict[int, int] | None = None,
    held_out: Split | None = None,
    history: list[dict] | None = None,
    reconstructions: bool = False,
    memorisation: bool = True,
    reference: ReferenceClassifier | None = None,
    extractor: FeatureExtractor | None = None,
    class_names: list[str] | None = None,
    task: str = "multi-class",
    filter_info: dict | None = None,
    diagnostics: dict | None = None,
    seed: int = 0,
    also_seen: np.ndarray | None = None,
) -> SyntheticAudit:
    """Audit a synthetic set against the real images ``real`` (and ``held_out``, real images the generator never
    saw): memorisation, collapse and losses unless ``memorisation`` is false; class fidelity with a ``reference``
    classifier; FID / KID / precision-recall, and memorisation in feature space, with an ``extractor``.
    ``counts``: the images requested per class (default: those in ``labels``); ``filter_info``: what a confidence
    filter did; ``diagnostics``: the generator's own (e.g. FID over its epochs); ``also_seen``: unlabelled images
    the set's method learnt from or adds, which memorisation (pixels and features) is measured against too."""
    if counts is None:
        counts = {int(c): int(n) for c, n in enumerate(np.bincount(labels)) if n}
    details: dict = {}
    if memorisation:
        held = held_out.images if held_out is not None else None
        details = audit(
            images,
            labels,
            real.images,
            real.labels,
            history or [],
            held,
            reconstructions=reconstructions,
            seed=seed,
            also_seen=also_seen,
        )
    if filter_info is not None:
        details["filter"] = filter_info
    if reference is not None:
        details["fidelity"] = {
            **class_fidelity(reference.model, images, labels, task, reference.meta["precision"]),
            "reference": {**reference.meta, "path": str(reference.path), "cached": reference.cached},
        }
    real_feats = synth_feats = None
    if extractor is not None:
        details["distribution"], real_feats, synth_feats = feature_fidelity(
            real.images, real.labels, images, labels, extractor, class_names, seed=seed
        )
        if memorisation and held_out is not None:
            seen = real_feats
            if also_seen is not None and len(also_seen):
                seen = np.concatenate([real_feats, extractor.features(also_seen)])
            share = memorised_share(synth_feats, seen, extractor.features(held_out.images))
            details["memorisation"]["memorised_features"] = {k: v for k, v in share.items() if k != "nearest"}
    details.update(diagnostics or {})
    summary = summarise(details, labels, counts)
    return dataclasses.replace(summary, real_features=real_feats, synthetic_features=synth_feats)


def with_tstr(audit: SyntheticAudit, fit: FitResult, labels: np.ndarray, n_classes: int) -> SyntheticAudit:
    """``audit`` with the scores of a classifier trained on the synthetic images alone (``labels``: the images it
    trained on: classes, or a teacher's probabilities, counted by their top class), tested on the real test split
    (TSTR)."""
    labels = np.asarray(labels)
    counts = np.bincount(labels.argmax(1) if labels.ndim == 2 else labels, minlength=n_classes)
    return dataclasses.replace(
        audit,
        tstr_auc=fit.test["auc"],
        tstr_acc=fit.test["acc"],
        tstr_val_auc=fit.val["auc"],
        tstr_best_epoch=fit.best_epoch,
        tstr_counts={str(c): int(n) for c, n in enumerate(counts)},
    )
