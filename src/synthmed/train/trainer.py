"""The classifier trainer: in-memory tensors, batched augmentation, selection on validation only.

Model selection rule (documented in the README): after every epoch the model is scored on the
validation split; by default (``select="auc"``) the selected epoch maximises validation AUC, and among epochs
whose validation AUC ties (within 1e-9, common on tiny validation sets where AUC saturates at 1.0) the one with
the lowest validation loss wins; ``select="loss"`` takes the lowest validation loss, ``select="last"`` the last
epoch. With the recipe's ``ema``, the scored and selected network is the EMA of the weights; with ``swa``, the
result is the SWA average of the last epochs (no selection). With ``tta``, every score (validation and test)
averages the predictions over the dataset's label-preserving flips. The test split is evaluated once, on the
selected weights; with ``report_test_selected`` it is also scored every epoch, only to show how much test-set
selection would inflate results.
"""

from __future__ import annotations

import copy
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from synthmed.data.dataset import MULTI_LABEL, Split
from synthmed.errors import SynthmedError
from synthmed.metrics.classification import classification_metrics
from synthmed.nets.classifiers import build_classifier, predict
from synthmed.tensors import to_tensor
from synthmed.train.averaging import WeightEMA, WeightSWA, batches
from synthmed.train.device import resolve_device, resolve_precision
from synthmed.train.hooks import NoHooks, TrainingHooks
from synthmed.train.recipes import Recipe, check_recipe

TIE = 1e-9


@dataclass
class TrainConfig:
    recipe: Recipe
    classifier: str = "resnet18"
    patience: int | None = None
    report_test_selected: bool = False  # also score test every epoch (the optimistic figure, shown apart)
    device: str = "auto"
    precision: str = "auto"
    dropout: float = 0.0
    class_weight: str | None = None  # "balanced": inverse-frequency loss weights of the training labels
    flips: tuple[str, ...] = ()  # the dataset's label-preserving flips, averaged over when the recipe has tta


class Probe(Protocol):
    """Watches one training trajectory from outside (``bench/noise.py`` reads several ways of choosing and
    scoring the final weights out of the same run): called after every optimizer step and every epoch."""

    def step(self, model: torch.nn.Module) -> None: ...

    def epoch(self, model: torch.nn.Module, epoch: int) -> None: ...


@dataclass
class FitResult:
    model: torch.nn.Module
    best_epoch: int
    epochs_run: int
    history: list[dict]
    val: dict
    test: dict
    train_time: float
    precision: str
    device: str
    extra: dict = field(default_factory=dict)
    val_probs: np.ndarray | None = None  # the selected network's probabilities (an ensemble averages them)
    test_probs: np.ndarray | None = None


def better(candidate: tuple[float, float], best: tuple[float, float] | None) -> bool:
    """Is (val AUC, val loss) better than the best so far? Higher AUC; on an AUC tie, lower loss."""
    if best is None:
        return True
    auc, loss = candidate
    best_auc, best_loss = best
    auc = -math.inf if math.isnan(auc) else auc
    best_auc = -math.inf if math.isnan(best_auc) else best_auc
    if auc > best_auc + TIE:
        return True
    return auc >= best_auc - TIE and loss < best_loss


class _Loss:
    def __init__(self, task: str) -> None:
        self.multi_label = task == MULTI_LABEL

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-sample loss."""
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, targets.float(), reduction="none").mean(1)
        return F.cross_entropy(logits, targets, reduction="none")


def _optimizer(
    model: torch.nn.Module, recipe: Recipe
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.MultiStepLR | None]:
    opt: torch.optim.Optimizer
    if recipe.optimizer == "sgd":
        opt = torch.optim.SGD(
            model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
    elif recipe.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        raise SynthmedError(f"unknown optimizer {recipe.optimizer!r}; choose sgd or adam")
    milestones = sorted({max(1, round(f * recipe.epochs)) for f in recipe.milestones})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, recipe.gamma) if milestones else None
    return opt, sched


def improves(rule: str, candidate: tuple[float, float], best: tuple[float, float] | None) -> bool:
    """Does (val AUC, val loss) improve on the best so far under ``rule`` (auc | loss | last)?"""
    if rule == "last" or best is None:
        return True
    if rule == "loss":
        loss, best_loss = candidate[1], best[1]
        if loss < best_loss - TIE:
            return True
        return loss <= best_loss + TIE and better(candidate, best)
    return better(candidate, best)


def evaluate(
    model: torch.nn.Module, x: torch.Tensor, y: np.ndarray, task: str, precision: str, flips: tuple[str, ...] = ()
) -> dict:
    return evaluate_with_probs(model, x, y, task, precision, flips)[0]


def evaluate_with_probs(
    model: torch.nn.Module, x: torch.Tensor, y: np.ndarray, task: str, precision: str, flips: tuple[str, ...] = ()
) -> tuple[dict, np.ndarray]:
    """Metrics (with the mean loss) and the probabilities of ``model`` on ``x``, averaged over ``flips``."""
    probs, logits = predict(model, x, task, precision, flips=flips)
    metrics = classification_metrics(y, probs.numpy(), task)
    metrics["loss"] = float(_Loss(task)(logits, torch.from_numpy(y)).mean())
    return metrics, probs.numpy()


def train_classifier(
    train: Split,
    val: Split,
    test: Split,
    n_classes: int,
    task: str,
    config: TrainConfig,
    seed: int = 0,
    augmenter: TrainingHooks | None = None,
    synthetic: tuple[np.ndarray, np.ndarray] | None = None,
    synthetic_weight: float = 1.0,
    on_epoch: Callable[[dict], None] | None = None,
    init_state: dict | None = None,
    probe: Probe | None = None,
) -> FitResult:
    """Train a fresh classifier (or continue from ``init_state``) on ``train`` (+ ``synthetic``), select the
    epoch on ``val``, test once.

    On a GPU the training tensors live on the device for the whole run and the loss is read back once per epoch
    (no host synchronisation per batch); on a CPU each batch's loss is checked before its optimizer step."""
    recipe = config.recipe
    check_recipe(recipe, config.patience)
    flips = config.flips if recipe.tta else ()
    if recipe.tta and not flips:
        raise SynthmedError("--tta flips needs the dataset's label-preserving flips (none were given)")
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    on_gpu = device.type == "cuda"
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    augmenter = augmenter or NoHooks()

    soft = synthetic is not None and is_soft(synthetic[1], task, n_classes)
    x_parts, y_parts = [to_tensor(train.images)], [_targets(train.labels, soft, n_classes)]
    w_parts = [torch.ones(len(train))]
    if synthetic is not None and len(synthetic[1]):
        x_parts.append(to_tensor(synthetic[0]))
        y_parts.append(_targets(synthetic[1], soft, n_classes))
        w_parts.append(torch.full((len(synthetic[1]),), float(synthetic_weight)))
    store = device if on_gpu else torch.device("cpu")  # where the training set lives
    x_train, y_train, w_train = (
        torch.cat(x_parts).to(store),
        torch.cat(y_parts).to(store),
        torch.cat(w_parts).to(store),
    )
    x_val, x_test = to_tensor(val.images).to(store), to_tensor(test.images).to(store)
    per_class = None
    if config.class_weight == "balanced":
        weights = (
            weights_of_counts(y_train.sum(0).cpu().numpy(), n_classes)
            if soft
            else balanced_class_weights(y_train.cpu().numpy(), n_classes)
        )
        per_class = torch.from_numpy(weights).float().to(store)
        w_train = w_train * _class_weight(per_class, y_train, soft)

    in_channels = x_train.shape[1]
    model = build_classifier(config.classifier, in_channels, n_classes, x_train.shape[-1], config.dropout)
    if init_state is not None:
        model.load_state_dict(init_state)
    model = model.to(device).to(memory_format=torch.channels_last)
    opt, sched = _optimizer(model, recipe)
    loss_fn = _Loss(task)
    ema = WeightEMA(model, recipe.ema) if recipe.ema is not None else None
    swa = WeightSWA(model, recipe.swa, recipe.epochs) if recipe.swa is not None else None
    scored = ema.network() if ema is not None else model  # the network validation scores and selects

    n_fixed = len(y_train)  # real + pre-generated synthetic; images added during training come after
    history: list[dict] = []
    best_key, best_state, best_epoch, stale = None, None, 0, 0
    start = time.perf_counter()
    for epoch in range(1, recipe.epochs + 1):
        model.train()
        order = torch.randperm(len(y_train), generator=generator).to(store)
        # Drop a final batch of one image: BatchNorm cannot train on it.
        n_used = len(order) - 1 if len(order) % recipe.batch_size == 1 and len(order) > 1 else len(order)
        total = torch.zeros((), device=device)
        for i in range(0, n_used, recipe.batch_size):
            idx = order[i : min(i + recipe.batch_size, n_used)]
            xb = augmenter.transform_batch(x_train[idx], generator).to(device)
            xb = xb.contiguous(memory_format=torch.channels_last)
            yb, wb = y_train[idx].to(device), w_train[idx].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits = model(xb)
            loss = (loss_fn(logits.float(), yb) * wb).sum() / wb.sum()
            if not on_gpu and not torch.isfinite(loss):
                raise _nonfinite(loss, epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.step(model)
            if probe is not None:
                probe.step(model)
            total += loss.detach() * len(idx)
        if on_gpu and not torch.isfinite(total):
            raise _nonfinite(total, epoch)
        if sched is not None:
            sched.step()
        if swa is not None:
            swa.epoch_end(model, epoch)
        if probe is not None:
            probe.epoch(model, epoch)
        val_metrics = evaluate(scored, x_val, val.labels, task, precision, flips)
        row = {
            "epoch": epoch,
            "train_loss": float(total) / max(n_used, 1),
            "val_loss": val_metrics["loss"],
            "val_auc": val_metrics["auc"],
            "val_acc": val_metrics["acc"],
        }
        if config.report_test_selected:
            test_metrics = evaluate(scored, x_test, test.labels, task, precision, flips)
            row.update(test_auc=test_metrics["auc"], test_acc=test_metrics["acc"])
        key = (val_metrics["auc"], val_metrics["loss"])
        improved = improves(recipe.select, key, best_key)
        if improved:
            best_key, best_epoch, stale = key, epoch, 0
            if recipe.select != "last":  # the last epoch's weights are the network itself
                best_state = copy.deepcopy(scored.state_dict())
        else:
            stale += 1
        row["selected"] = improved
        history.append(row)
        if on_epoch:
            on_epoch(row)
        # no round after the last epoch: nothing would train on its images
        new = augmenter.on_epoch_end(model, epoch) if epoch < recipe.epochs else None
        if new is not None and len(new.labels):
            if new.replace:  # drop the previous round's images
                x_train, y_train, w_train = x_train[:n_fixed], y_train[:n_fixed], w_train[:n_fixed]
            x_train = torch.cat([x_train, to_tensor(new.images).to(store)])
            new_targets = _targets(new.labels, soft, n_classes).to(store)
            y_train = torch.cat([y_train, new_targets])
            added = torch.full((len(new.labels),), float(synthetic_weight), device=store)
            if per_class is not None:
                added = added * _class_weight(per_class, new_targets, soft)
            w_train = torch.cat([w_train, added])
        if config.patience is not None and stale >= config.patience:
            break
    train_time = time.perf_counter() - start

    if swa is not None:  # the average of the last epochs, with BatchNorm statistics of the training images
        scored = swa.finish(batches(x_train.to(device), recipe.batch_size), device)
    elif best_state is not None:
        scored.load_state_dict(best_state)
    val_best, val_probs = evaluate_with_probs(scored, x_val, val.labels, task, precision, flips)
    test_best, test_probs = evaluate_with_probs(scored, x_test, test.labels, task, precision, flips)
    extra = {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "n_train_real": len(train),
        "n_train_synthetic": len(y_train) - len(train),
    }
    if swa is not None:
        extra["swa_epochs"] = swa.averaged
    return FitResult(
        scored,
        best_epoch,
        len(history),
        history,
        val_best,
        test_best,
        train_time,
        precision,
        str(device),
        extra,
        val_probs,
        test_probs,
    )


def member_seed(seed: int, k: int) -> int:
    """The seed of ensemble member ``k`` of a run with ``seed``: the run's own for member 0 (an ensemble of one is
    the plain run), a seed drawn from (seed, k) for the others, never another run's small seed."""
    if k == 0:
        return seed
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0] & 0x7FFFFFFF)


def ensemble_fit(members: list[FitResult], val: Split, test: Split, task: str) -> FitResult:
    """The ensemble of ``members`` (trained on the same data): validation and test scored on the mean of their
    probabilities; the model, history and selected epoch are the first member's, and ``extra["members"]`` keeps
    every member's own figures."""
    val_probs = np.mean(np.stack([_probs(m.val_probs) for m in members]), axis=0)
    test_probs = np.mean(np.stack([_probs(m.test_probs) for m in members]), axis=0)
    first = members[0]
    extra = {
        **first.extra,
        "members": [
            {
                "best_epoch": m.best_epoch,
                "epochs_run": m.epochs_run,
                "val_auc": m.val["auc"],
                "val_acc": m.val["acc"],
                "test_auc": m.test["auc"],
                "test_acc": m.test["acc"],
            }
            for m in members
        ],
    }
    return FitResult(
        first.model,
        first.best_epoch,
        first.epochs_run,
        first.history,
        _scored(val.labels, val_probs, task),
        _scored(test.labels, test_probs, task),
        sum(m.train_time for m in members),
        first.precision,
        first.device,
        extra,
        val_probs,
        test_probs,
    )


def _probs(probs: np.ndarray | None) -> np.ndarray:
    if probs is None:
        raise SynthmedError("an ensemble member has no probabilities to average")
    return probs


def _scored(labels: np.ndarray, probs: np.ndarray, task: str) -> dict:
    """Metrics of probabilities, with the mean negative log-likelihood as the loss."""
    metrics = classification_metrics(labels, probs, task)
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    if task == MULTI_LABEL:
        nll = -(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean(1)
    else:
        nll = -np.log(p[np.arange(len(labels)), labels.reshape(-1)])
    metrics["loss"] = float(nll.mean())
    return metrics


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """scikit-learn's "balanced" weights, ``n_samples / (n_classes * count_c)``, for single-label training labels;
    a class with no image is refused (it cannot be weighted, nor learned)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise SynthmedError("--class-weight balanced needs single-label classes, not a multi-label task")
    return weights_of_counts(np.bincount(labels, minlength=n_classes), n_classes)


def weights_of_counts(counts: np.ndarray, n_classes: int) -> np.ndarray:
    """``balanced_class_weights`` from the images per class, where soft targets count their probabilities."""
    counts = np.asarray(counts, dtype=np.float64)
    if (counts <= 0).any():
        raise SynthmedError(f"--class-weight balanced: class {int(np.argmin(counts))} has no training image")
    return counts.sum() / (n_classes * counts)


def is_soft(labels: np.ndarray, task: str, n_classes: int) -> bool:
    """Whether synthetic labels are class probabilities (N x C, e.g. a teacher's) rather than class indices; a
    single-label task only (multi-label targets are N x C already)."""
    labels = np.asarray(labels)
    if task == MULTI_LABEL or labels.ndim != 2 or labels.shape[1] == 1:
        return False
    if labels.shape[1] != n_classes or not np.issubdtype(labels.dtype, np.floating):
        raise SynthmedError(
            f"soft synthetic labels must be float probabilities of shape (N, {n_classes}), got {labels.dtype} "
            f"{labels.shape}"
        )
    return True


def _targets(labels: np.ndarray, soft: bool, n_classes: int) -> torch.Tensor:
    """Training targets: class indices as they are, or with ``soft`` every set as probabilities (one-hot for hard
    labels), so real and teacher-labelled images share one cross-entropy with probability targets."""
    labels = np.asarray(labels)
    if not soft:
        return torch.from_numpy(labels)
    if labels.ndim == 2 and labels.shape[1] == n_classes:
        return torch.from_numpy(labels.astype(np.float32))
    return F.one_hot(torch.from_numpy(labels.reshape(-1)).long(), n_classes).float()


def _class_weight(per_class: torch.Tensor, targets: torch.Tensor, soft: bool) -> torch.Tensor:
    """Each image's class weight: its class's, or for probability targets the probability-weighted mean."""
    return targets @ per_class if soft else per_class[targets]


def pretrain_then_train(
    pretrained: FitResult,
    train: Split,
    val: Split,
    test: Split,
    n_classes: int,
    task: str,
    config: TrainConfig,
    seed: int = 0,
    augmenter: TrainingHooks | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """The "pretrain on synthetic, then train on real" lever: continue from the selected weights of
    ``pretrained`` (trained on the synthetic set alone) on the real images with the full recipe, selected on
    validation. The history keeps both phases (``phase``: pretrain, real); the selected epoch is of the real phase,
    so the model ends on weights trained on real images."""
    fit = train_classifier(
        train,
        val,
        test,
        n_classes,
        task,
        config,
        seed=seed,
        augmenter=augmenter,
        on_epoch=on_epoch,
        init_state=pretrained.model.state_dict(),
    )
    offset = pretrained.epochs_run
    history = [{**row, "phase": "pretrain"} for row in pretrained.history] + [
        {**row, "epoch": offset + row["epoch"], "phase": "real"} for row in fit.history
    ]
    extra = {
        **fit.extra,
        "pretrain": {
            "epochs": pretrained.epochs_run,
            "best_epoch": pretrained.best_epoch,
            "val_auc": pretrained.val["auc"],
        },
    }
    return FitResult(
        fit.model,
        offset + fit.best_epoch,
        offset + fit.epochs_run,
        history,
        fit.val,
        fit.test,
        pretrained.train_time + fit.train_time,
        fit.precision,
        fit.device,
        extra,
        fit.val_probs,
        fit.test_probs,
    )


def _nonfinite(loss: torch.Tensor, epoch: int) -> SynthmedError:
    return SynthmedError(
        f"classifier loss became {loss.item()} at epoch {epoch}; lower the learning rate or check "
        "the training images for NaN"
    )


#: Fine-tuning on real images continues at this fraction of the recipe's learning rate.
FINETUNE_LR_FACTOR = 0.1


def fine_tune_on_real(
    fit: FitResult,
    train: Split,
    val: Split,
    test: Split,
    n_classes: int,
    task: str,
    config: TrainConfig,
    epochs: int,
    seed: int = 0,
    on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """The "train on real + synthetic, then fine-tune on real only" lever: continue from the selected weights
    of ``fit`` on the real images for ``epochs`` at a tenth of the learning rate (constant), and keep whichever
    of the two selected models is better on validation (same rule as epoch selection)."""
    recipe = replace(config.recipe, epochs=epochs, lr=config.recipe.lr * FINETUNE_LR_FACTOR, milestones=())
    tuned = train_classifier(
        train,
        val,
        test,
        n_classes,
        task,
        replace(config, recipe=recipe),
        seed=seed,
        on_epoch=on_epoch,
        init_state=fit.model.state_dict(),
    )
    history = fit.history + [
        {**row, "epoch": fit.epochs_run + row["epoch"], "phase": "finetune"} for row in tuned.history
    ]
    take = better((tuned.val["auc"], tuned.val["loss"]), (fit.val["auc"], fit.val["loss"]))
    chosen = tuned if take else fit
    extra = {
        **fit.extra,
        "finetune": {
            "epochs": tuned.epochs_run,
            "selected": take,
            "val_auc": tuned.val["auc"],
            "best_epoch": tuned.best_epoch,
        },
    }
    return FitResult(
        chosen.model,
        fit.epochs_run + tuned.best_epoch if take else fit.best_epoch,
        fit.epochs_run + tuned.epochs_run,
        history,
        chosen.val,
        chosen.test,
        fit.train_time + tuned.train_time,
        fit.precision,
        fit.device,
        extra,
        chosen.val_probs,
        chosen.test_probs,
    )
