"""Our AUC / ACC agree with medmnist.Evaluator's functions."""

from __future__ import annotations

import numpy as np
import pytest
from medmnist.evaluator import getACC, getAUC

from synthmed.metrics.classification import classification_metrics


@pytest.mark.parametrize(
    "task,n", [("binary-class", 2), ("multi-class", 5), ("ordinal-regression", 4), ("multi-label, binary-class", 6)]
)
def test_matches_medmnist_evaluator(task, n):
    rng = np.random.default_rng(n)
    if task.startswith("multi-label"):
        y = rng.integers(0, 2, (200, n))
        probs = rng.random((200, n))
    else:
        y = rng.integers(0, n, 200)
        probs = rng.dirichlet(np.ones(n), 200)
    ours = classification_metrics(y, probs, task)
    assert ours["auc"] == pytest.approx(getAUC(y, probs, task))
    assert ours["acc"] == pytest.approx(getACC(y, probs, task))


def test_recall_and_confusion():
    y = np.array([0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9], [0.3, 0.7], [0.6, 0.4]])
    out = classification_metrics(y, probs, "binary-class")
    assert out["confusion"] == [[1, 1], [1, 2]]
    assert out["recall"] == pytest.approx([0.5, 2 / 3])


def test_class_missing_from_tiny_validation_set_does_not_crash():
    y = np.array([0, 0, 1, 1])
    probs = np.tile([0.2, 0.3, 0.5], (4, 1))
    out = classification_metrics(y, probs, "multi-class")
    assert out["auc"] == pytest.approx(0.5) and out["acc"] == 0.0
