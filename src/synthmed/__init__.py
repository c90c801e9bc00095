"""synthmed: does synthetic data from a generative model help a medical image classifier, and by how much?

The Python API mirrors the command line::

    from synthmed import load_dataset, make_subset, create_augmenter, train_classifier, TrainConfig, get_recipe

    data = load_dataset("breastmnist")
    subset = make_subset(data, "lowdata", seed=0)
    fit = train_classifier(subset.train, subset.val, subset.test, data.n_classes, data.task,
                           TrainConfig(get_recipe("medmnist", epochs=30)), seed=0,
                           augmenter=create_augmenter("flip"))
    print(fit.test["auc"], fit.best_epoch)

Names are imported lazily so that ``synthmed --help`` does not pay for importing torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "load_dataset": "synthmed.data",
    "make_subset": "synthmed.data",
    "Dataset": "synthmed.data",
    "create_augmenter": "synthmed.augment",
    "Augmenter": "synthmed.augment",
    "register": "synthmed.augment",
    "train_classifier": "synthmed.train.trainer",
    "TrainConfig": "synthmed.train.trainer",
    "get_recipe": "synthmed.train.recipes",
    "RECIPES": "synthmed.train.recipes",
    "classification_metrics": "synthmed.metrics.classification",
    "Runner": "synthmed.experiment.runner",
    "RunSpec": "synthmed.spec",
    "SyntheticLevers": "synthmed.spec",
    "Grid": "synthmed.experiment.grid",
    "load_grid": "synthmed.experiment.grid",
    "expand": "synthmed.experiment.grid",
    "run_grid": "synthmed.experiment.execute",
    "Execution": "synthmed.experiment.execution",
    "synthesise": "synthmed.experiment.synthetic_set",
    "ResultStore": "synthmed.store",
    "write_report": "synthmed.report",
    "SynthmedError": "synthmed.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'synthmed' has no attribute {name!r}")
