"""AUC and ACC with medmnist.Evaluator's semantics, plus per-class recall and the confusion matrix.

- binary: AUC of the positive-class score; ACC thresholds that score at 0.5 (= argmax for softmax);
- multi-class (and ordinal): mean one-vs-rest AUC over classes; ACC by argmax;
- multi-label: mean AUC over labels; ACC is the mean per-label accuracy at threshold 0.5.

A class absent from ``y_true`` (possible on tiny validation sets) is left out of the AUC average
instead of crashing; if no class can be scored the AUC is NaN.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score

from synthmed.data.dataset import MULTI_LABEL


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    if y.min() == y.max():
        return None
    return float(roc_auc_score(y, score))


def auc_score(y_true: np.ndarray, probs: np.ndarray, task: str) -> float:
    if task == "binary-class":
        value = _auc(y_true, probs[:, -1])
        return float("nan") if value is None else value
    if task == MULTI_LABEL:
        columns = [_auc(y_true[:, i], probs[:, i]) for i in range(probs.shape[1])]
    else:
        columns = [_auc((y_true == i).astype(int), probs[:, i]) for i in range(probs.shape[1])]
    scored = [c for c in columns if c is not None]
    return float(np.mean(scored)) if scored else float("nan")


def acc_score(y_true: np.ndarray, probs: np.ndarray, task: str) -> float:
    if task == MULTI_LABEL:
        return float(((probs > 0.5) == y_true.astype(bool)).mean())
    if task == "binary-class":
        return float(((probs[:, -1] > 0.5).astype(int) == y_true).mean())
    return float((probs.argmax(axis=1) == y_true).mean())


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, task: str) -> dict:
    """AUC, ACC, per-class recall and the confusion matrix (rows: true class) as plain Python values."""
    out: dict = {"auc": auc_score(y_true, probs, task), "acc": acc_score(y_true, probs, task)}
    if task != MULTI_LABEL:
        n = probs.shape[1]
        pred = (probs[:, -1] > 0.5).astype(int) if task == "binary-class" else probs.argmax(axis=1)
        cm = confusion_matrix(y_true, pred, labels=list(range(n)))
        support = cm.sum(axis=1)
        out["recall"] = [float(cm[i, i] / support[i]) if support[i] else float("nan") for i in range(n)]
        out["confusion"] = cm.tolist()
    return out
