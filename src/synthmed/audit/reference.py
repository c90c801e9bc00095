"""Class fidelity (Chaptoukaev 2021's evaluation): does a classifier trained on real images see the intended class
in a synthetic image?

The reference classifier is a ResNet-18 (28-px stem) trained with the ``medmnist`` recipe on the *real*
training subset of the run and selected on its validation split, exactly as the benchmark trains its models.
Training it takes minutes on a CPU, so its weights are cached under ``cache_dir``, keyed by everything that
defines it (dataset name and MD5, protocol, the subset's train and validation indices, seed, epochs, recipe,
classifier), and reused on the next call. The cache does not key on thread count or precision: a model
retrained under other settings would differ in the last digits, which does not matter for an audit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from synthmed.data.dataset import MULTI_LABEL, Dataset
from synthmed.data.protocol import Subset
from synthmed.errors import SynthmedError
from synthmed.io import file_lock, load_checkpoint, save_checkpoint
from synthmed.metrics.classification import classification_metrics
from synthmed.nets.classifiers import build_classifier, predict
from synthmed.tensors import to_tensor
from synthmed.train.device import resolve_device
from synthmed.train.recipes import get_recipe
from synthmed.train.trainer import TrainConfig, train_classifier

REFERENCE_EPOCHS = 30
REFERENCE_RECIPE = "medmnist"
REFERENCE_CLASSIFIER = "resnet18"
#: fewest optimiser steps per epoch the reference takes: the medmnist recipe's batch of 128 gave PneumoniaMNIST's
#: 5 % subset (236 images) two steps an epoch, 40 in all, and a reference that called every test image pneumonia
MIN_STEPS_PER_EPOCH = 4


@dataclass
class ReferenceClassifier:
    model: torch.nn.Module
    meta: dict  # the cache key's fields, best epoch, validation and test metrics
    path: Path
    cached: bool  # True when the weights were read from the cache instead of trained


def _probabilities(
    model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, task: str, precision: str
) -> tuple[np.ndarray, np.ndarray]:
    if task == MULTI_LABEL:
        raise SynthmedError(
            "class fidelity needs single-label classes; conditional generators do not support multi-label datasets"
        )
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise SynthmedError("class fidelity needs at least one synthetic image")
    probs, _ = predict(model, to_tensor(images), task, precision)
    return probs.numpy(), labels


def intended_confidence(
    reference_model: torch.nn.Module,
    synthetic_images: np.ndarray,
    labels: np.ndarray,
    task: str,
    precision: str = "fp32",
) -> np.ndarray:
    """The reference classifier's probability of each synthetic image's intended class (for filtering)."""
    probs, labels = _probabilities(reference_model, synthetic_images, labels, task, precision)
    return probs[np.arange(len(labels)), labels]


def class_fidelity(
    reference_model: torch.nn.Module,
    synthetic_images: np.ndarray,
    labels: np.ndarray,
    task: str,
    precision: str = "fp32",
) -> dict:
    """Accuracy of ``reference_model`` on synthetic images scored against their intended labels, overall and
    per class (the recall of each intended class), and its mean confidence in the intended class.

    The decision rule is the benchmark's (``classification_metrics``), so on real images this is exactly the
    classifier's accuracy."""
    probs, labels = _probabilities(reference_model, synthetic_images, labels, task, precision)
    metrics = classification_metrics(labels, probs, task)
    n_classes = probs.shape[1]
    return {
        "accuracy": metrics["acc"],
        "per_class": [None if np.isnan(r) else r for r in metrics["recall"]],
        "counts": [int(n) for n in np.bincount(labels, minlength=n_classes)],
        "mean_confidence": float(probs[np.arange(len(labels)), labels].mean()),
        "chance": 1.0 / n_classes,
    }


def reference_batch_size(n_train: int, recipe_batch: int) -> int:
    """The recipe's batch, halved (not below 8) until an epoch of ``n_train`` images takes
    ``MIN_STEPS_PER_EPOCH`` steps: the same images per epoch, enough updates on a small subset."""
    batch = recipe_batch
    while batch > 8 and n_train < MIN_STEPS_PER_EPOCH * batch:
        batch //= 2
    return batch


def reference_key(data: Dataset, subset: Subset, seed: int, epochs: int) -> dict:
    """What defines a reference classifier; its hash names the cache file. The batch size enters only where
    ``reference_batch_size`` changes it, so references trained before it keep their cache entries."""
    indices = json.dumps([subset.train_indices.tolist(), subset.val_indices.tolist()])
    recipe_batch = get_recipe(REFERENCE_RECIPE, epochs).batch_size
    batch = reference_batch_size(len(subset.train_indices), recipe_batch)
    return {
        "dataset": data.name,
        "dataset_md5": data.md5,
        "size": data.size,
        "protocol": subset.protocol,
        # what --unlabelled draws never reaches a reference or teacher (labelled images only), so runs with and
        # without it share them
        "subset_params": {k: v for k, v in subset.params.items() if k != "unlabelled"},
        "subset_sha256": hashlib.sha256(indices.encode()).hexdigest(),
        "seed": seed,
        "epochs": epochs,
        "recipe": REFERENCE_RECIPE,
        "classifier": REFERENCE_CLASSIFIER,
    } | ({"batch_size": batch} if batch != recipe_batch else {})


def reference_path(data: Dataset, subset: Subset, seed: int, cache_dir: str | Path, epochs: int) -> Path:
    """Where the cache keeps the reference classifier of (data, subset, seed, epochs): a time budget asks whether a
    run will train it."""
    digest = hashlib.sha256(json.dumps(reference_key(data, subset, seed, epochs), sort_keys=True).encode())
    return Path(cache_dir) / f"reference_{digest.hexdigest()[:16]}.pt"


def reference_classifier(
    data: Dataset,
    subset: Subset,
    seed: int,
    cache_dir: str | Path,
    epochs: int = REFERENCE_EPOCHS,
    device: str = "auto",
    precision: str = "auto",
    on_epoch: Callable[[dict], None] | None = None,
) -> ReferenceClassifier:
    """The cached reference classifier of (data, subset, seed, epochs), trained on the real subset if absent."""
    key = reference_key(data, subset, seed, epochs)
    path = reference_path(data, subset, seed, cache_dir, epochs)
    channels = data.n_channels
    with file_lock(Path(cache_dir) / ".locks" / f"{path.stem}.lock"):  # trained once when several runs need it at once
        if path.exists():
            payload = load_checkpoint(path)
            meta = payload.get("meta", {}) if isinstance(payload, dict) else {}
            if meta.get("key") == key:
                model = build_classifier(REFERENCE_CLASSIFIER, channels, data.n_classes, data.size)
                model.load_state_dict(payload["state_dict"])
                return ReferenceClassifier(model.to(resolve_device(device)).eval(), meta, path, cached=True)
        recipe = get_recipe(REFERENCE_RECIPE, epochs)
        recipe = replace(recipe, batch_size=key.get("batch_size", recipe.batch_size))
        config = TrainConfig(recipe, REFERENCE_CLASSIFIER, device=device, precision=precision)
        fit = train_classifier(
            subset.train, subset.val, subset.test, data.n_classes, data.task, config, seed=seed, on_epoch=on_epoch
        )
        meta = {
            "key": key,
            "best_epoch": fit.best_epoch,
            "precision": fit.precision,
            # per-class recall on real validation images: the level class fidelity is read against
            "val": {"auc": fit.val["auc"], "acc": fit.val["acc"], "recall": fit.val.get("recall")},
            "test": {"auc": fit.test["auc"], "acc": fit.test["acc"]},
        }
        save_checkpoint(path, fit.model, meta)
        return ReferenceClassifier(fit.model.eval(), meta, path, cached=False)
