"""Teacher labels in a run (issue 29): the teacher classifier of a run's labelled real images, cached like the
reference classifier, and what it does to the images a synthetic-set method adds.

The teacher is trained by ``synthmed.train.teacher.fit_teacher`` (the labelled training images, selected on
validation; never a test or unlabelled image) with the reference classifier's recipe and epochs, and cached under
``cache_dir`` per dataset, subset, seed and epochs, so the generative rows and the ``pseudo-label`` control of one
seed share one teacher and a lever sweep trains it once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from synthmed.audit.reference import REFERENCE_CLASSIFIER, REFERENCE_RECIPE, reference_key
from synthmed.data.dataset import MULTI_LABEL, Dataset
from synthmed.data.protocol import Subset
from synthmed.errors import SynthmedError
from synthmed.io import file_lock, load_checkpoint, save_checkpoint
from synthmed.nets.classifiers import build_classifier
from synthmed.record import SyntheticAudit
from synthmed.spec import SyntheticLevers
from synthmed.train.device import resolve_device
from synthmed.train.recipes import get_recipe
from synthmed.train.teacher import TeacherLabels, fit_teacher, teacher_labels
from synthmed.train.trainer import TrainConfig

#: the control method's registered name
PSEUDO_LABEL = "pseudo-label"


def teacher_classifier(
    data: Dataset, subset: Subset, seed: int, cache_dir: str | Path, epochs: int, device: str, precision: str
) -> torch.nn.Module:
    """The cached teacher of (data, subset, seed, epochs), trained on the labelled subset if absent."""
    key = reference_key(data, subset, seed, epochs) | {"role": "teacher"}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"teacher_{digest}.pt"
    with file_lock(Path(cache_dir) / ".locks" / f"{path.stem}.lock"):
        if path.exists():
            payload = load_checkpoint(path)
            if isinstance(payload, dict) and payload.get("meta", {}).get("key") == key:
                model = build_classifier(REFERENCE_CLASSIFIER, data.n_channels, data.n_classes, data.size)
                model.load_state_dict(payload["state_dict"])
                return model.to(resolve_device(device)).eval()
        recipe = get_recipe(REFERENCE_RECIPE, epochs)
        recipe = dataclasses.replace(recipe, batch_size=key.get("batch_size", recipe.batch_size))
        config = TrainConfig(recipe, REFERENCE_CLASSIFIER, device=device, precision=precision)
        fit = fit_teacher(subset.train, subset.val, data.n_classes, data.task, config, seed=seed)
        save_checkpoint(path, fit.model, {"key": key, "best_epoch": fit.best_epoch, "val": fit.val})
        return fit.model.eval()


def check_teacher(method: str, levers: SyntheticLevers, unlabelled: int | str | None, task: str) -> None:
    """Refuse, before anything runs, a teacher where it has nothing to label and a ``pseudo-label`` run without
    its teacher, its unlabelled images or with a second filter."""
    from synthmed.augment import method_class, takes_teacher

    if levers.teacher is not None and not takes_teacher(method):
        what = "copies labelled real images" if method_class(method).labels_known else "adds no synthetic set"
        raise SynthmedError(f"--teacher labels the images a generator or pseudo-label adds; {method} {what}")
    if levers.teacher is not None and task == MULTI_LABEL:
        raise SynthmedError("--teacher needs single-label classes, not a multi-label task")
    if method != PSEUDO_LABEL:
        return
    if unlabelled is None:
        raise SynthmedError("pseudo-label adds the run's unlabelled images: give --unlabelled N or all")
    if levers.teacher is None:
        raise SynthmedError("pseudo-label labels the unlabelled images with a teacher: give --teacher hard or soft")
    if levers.min_confidence is not None:
        raise SynthmedError("pseudo-label keeps images by --teacher-threshold: drop --min-confidence")


def label_with_teacher(
    model: torch.nn.Module,
    images: np.ndarray,
    task: str,
    teacher: str,
    threshold: float | None,
    intended: np.ndarray | None = None,
) -> TeacherLabels:
    """The teacher's labels of ``images`` (``teacher``: hard or soft), refusing a threshold that keeps none."""
    labelled = teacher_labels(model, images, task, soft=teacher == "soft", threshold=threshold, intended=intended)
    if not len(labelled.kept):
        raise SynthmedError(
            f"no image reached --teacher-threshold {threshold}: lower it or train the teacher longer "
            "(--fidelity-epochs)"
        )
    return labelled


def teacher_classes(labelled: TeacherLabels) -> np.ndarray:
    """The teacher's class of each kept image (the top probability for soft labels)."""
    labels = labelled.labels
    return labels.argmax(1) if labels.ndim == 2 else labels


#: Candidates a teacher-labelled generative row samples per image it adds: the threshold drops some and the teacher
#: puts others in another class, and the set still adds the policy's count per teacher class, as its pseudo-label
#: control does (count-matched, so the two differ in where their images come from, not in how many they add)
TEACHER_OVERSAMPLE = 2


def pick_per_teacher_class(labelled: TeacherLabels, counts: dict[int, int], seed: int) -> np.ndarray:
    """Indices into the kept images: ``counts[c]`` of those the teacher put in class c, each used once before any
    is reused, drawn as pseudo-label draws its unlabelled images (``copies_per_class``); none of a class the
    teacher gave no candidate (the audit's ``teacher_class`` shows it), so the run goes on with what it has."""
    from synthmed.augment.oversample import copies_per_class

    classes = teacher_classes(labelled)
    present = {c: n if (classes == c).any() else 0 for c, n in counts.items()}
    return copies_per_class(classes, present, seed, lambda c: "")  # every class asked for has candidates


def with_teacher(
    audit: SyntheticAudit,
    teacher: str,
    labelled: TeacherLabels,
    given: int,
    intended: np.ndarray | None,
    picked: np.ndarray | None = None,
) -> SyntheticAudit:
    """``audit`` with the teacher's figures: agreement with the intended classes (of all ``given`` images and of
    the kept ones), the share kept, and per kept image its intended class (``intended``; None for unlabelled real
    images), teacher class and confidence; ``picked``: which kept images the set adds, in its order, where it
    draws its count per teacher class from them (the full audit, audit.json)."""
    details = dict(audit.details or {})
    details["teacher"] = {
        "labels": teacher,
        "kept": labelled.kept.tolist(),
        "picked": None if picked is None else picked.tolist(),
        "intended_class": None if intended is None else np.asarray(intended).tolist(),
        "teacher_class": teacher_classes(labelled).tolist(),
        "confidence": [round(float(c), 4) for c in labelled.confidence],
        "agreement": labelled.agreement,
        "agreement_kept": labelled.agreement_kept,
    }
    return dataclasses.replace(
        audit,
        teacher=teacher,
        teacher_agreement=labelled.agreement,
        teacher_agreement_kept=labelled.agreement_kept,
        teacher_kept_share=len(labelled.kept) / given if given else None,
        details=details,
    )


def kept_truth(subset: Subset, audit: SyntheticAudit, class_names: list[str]) -> dict | None:
    """The audit, after training, of the unlabelled real images a teacher kept (``pseudo-label``): their true classes
    and the share the teacher labelled right. Reads the hidden labels (``Subset.unlabelled_audit``) that no training
    code reads; None where the set holds no unlabelled real images, or none of the kept has a known class."""
    teacher = (audit.details or {}).get("teacher")
    if teacher is None or teacher.get("intended_class") is not None or subset.unlabelled_audit is None:
        return None  # a generator's images (intended classes, no true ones) or no unlabelled images
    truth = np.asarray(subset.unlabelled_audit)[np.asarray(teacher["kept"], dtype=np.int64)]
    given = np.asarray(teacher["teacher_class"])
    known = truth >= 0  # -1: a dataset's own unlabelled image, class unknown
    if truth.ndim != 1 or not known.any():
        return None
    counts = np.bincount(truth[known], minlength=len(class_names))
    return {
        "images": int(known.sum()),
        "per_class": {name: int(n) for name, n in zip(class_names, counts)},
        "teacher_right": float(np.mean(given[known] == truth[known])),
    }
