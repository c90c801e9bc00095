"""One run = (dataset, protocol, method, classifier, recipe, seed); a benchmark is a list of runs.

The runner skips runs already in the store, writes each run's artifacts atomically and inserts its
record last, so Ctrl-C or a kill at any point loses at most the run in progress and never leaves a
partial record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from synthmed.augment import create_augmenter
from synthmed.augment.generative import TorchGenerator
from synthmed.data import Dataset, load_dataset, make_subset
from synthmed.errors import SynthmedError
from synthmed.experiment.files import atomic_write_bytes, atomic_write_json
from synthmed.experiment.store import ResultStore
from synthmed.experiment.synthesis import SynthesisPlan, fit_generator, synthesise, write_artifacts
from synthmed.nets.classifiers import check_classifier
from synthmed.train.checkpoint import save_checkpoint
from synthmed.train.device import cpu_model
from synthmed.train.recipes import get_recipe
from synthmed.train.trainer import TrainConfig, fine_tune_on_real, train_classifier


@dataclass
class RunSpec:
    """Everything that determines a run's result (hashed into its id)."""

    dataset: str
    protocol: str = "lowdata"
    method: str = "none"
    seed: int = 0
    classifier: str = "resnet18"
    recipe: str = "medmnist"
    epochs: int | None = None
    patience: int | None = None
    paper_style: bool = False
    size: int = 28
    per_class: int | None = None
    fraction: float | None = None
    stratified: bool = False
    precision: str = "auto"
    method_params: dict = field(default_factory=dict)
    dropout: float = 0.0  # before the classifier head; TSynD's MC dropout needs it (use it for baselines too)
    # levers for generative methods (see experiment/synthesis.py)
    synthetic_per_class: int | None = None
    synthetic_ratio: float | None = None
    balance: bool = False
    synthetic_weight: float = 1.0
    min_confidence: float | None = None
    finetune_epochs: int = 0
    generator_seed: int | None = None
    fidelity: bool = True
    fidelity_epochs: int = 30
    track_fid_every: int | None = None
    robustness: bool = False  # test-time perturbations, FGSM / PGD and CAM maps of fixed test images

    def plan(self) -> SynthesisPlan:
        return SynthesisPlan(self.method, dict(self.method_params), self.synthetic_per_class, self.synthetic_ratio,
                             self.balance, self.min_confidence, self.fidelity, self.fidelity_epochs,
                             self.generator_seed, self.track_fid_every)

    def key(self, dataset_md5: str | None) -> tuple[str, dict]:
        """The run id (a hash of the config and the data file's MD5) and the config it hashes."""
        config = dataclasses.asdict(self) | {"dataset_md5": dataset_md5}
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
        return digest, config


def versions() -> dict:
    import sklearn
    import torch
    import torchvision

    from synthmed import __version__

    return {"synthmed": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__, "sklearn": sklearn.__version__,
            "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "cpu": cpu_model(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "machine": platform.machine(), "processor": platform.processor() or platform.machine()}



class Runner:
    """Executes RunSpecs into ``out/results.sqlite`` and ``out/runs/RUN_ID/``."""

    def __init__(self, out: str | Path, data_root: str | None = None, verify: bool = True, device: str = "auto",
                 download: bool = True, save_model: bool = False, cache_dir: str | Path | None = None) -> None:
        self.out = Path(out)
        #: trained generators and reference classifiers; share it between run folders with --generator-cache
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.out / "cache"
        self.save_model = save_model
        self.data_root, self.verify, self.device, self.download = data_root, verify, device, download
        self._datasets: dict[tuple, Dataset] = {}

    def dataset(self, spec: RunSpec) -> Dataset:
        key = (spec.dataset, spec.size, spec.seed if spec.dataset.startswith("folder:") else 0)
        if key not in self._datasets:
            self._datasets[key] = load_dataset(spec.dataset, size=spec.size, data_root=self.data_root,
                                               verify=self.verify, download=self.download, seed=key[2])
        return self._datasets[key]

    def validate(self, specs: list[RunSpec]) -> None:
        """Fail on unknown datasets, methods, recipes or protocols, or an unusable subset, before anything
        runs or is written."""
        for spec in specs:
            get_recipe(spec.recipe, spec.epochs)
            check_classifier(spec.classifier)
            augmenter = create_augmenter(spec.method, **spec.method_params)
            if getattr(augmenter, "needs_dropout", False) and not spec.dropout:
                raise SynthmedError(f"{spec.method} measures uncertainty by MC dropout: give --dropout P (e.g. 0.2), "
                                    "and the same for the methods it is compared with")
            if not 0 <= spec.dropout < 1:
                raise SynthmedError(f"--dropout {spec.dropout} must be in [0, 1)")
            if augmenter.generative:
                spec.plan().check()
            elif spec.min_confidence is not None or spec.finetune_epochs or spec.synthetic_weight != 1.0:
                raise SynthmedError(f"--min-confidence, --finetune-epochs and --synthetic-weight apply to generative "
                                    f"methods, not {spec.method!r}")
            if spec.finetune_epochs < 0 or not spec.synthetic_weight > 0:
                raise SynthmedError("--finetune-epochs must be >= 0 and --synthetic-weight > 0")
            make_subset(self.dataset(spec), spec.protocol, seed=spec.seed, per_class=spec.per_class,
                        fraction=spec.fraction, stratified=spec.stratified)

    def pending(self, specs: list[RunSpec]) -> list[RunSpec]:
        with ResultStore(self.out / "results.sqlite") as store:
            return [s for s in specs if not store.has(s.key(self.dataset(s).md5)[0])]

    def run(self, spec: RunSpec, on_epoch: Callable[[dict], None] | None = None,
            on_status: Callable[[str], None] | None = None) -> dict:
        """Execute one run (unless already stored), insert its record and return it."""
        run_id = spec.key(self.dataset(spec).md5)[0]
        with ResultStore(self.out / "results.sqlite") as store:
            if store.has(run_id):
                return next(r for r in store.records() if r["run_id"] == run_id)
        record = self.compute(spec, on_epoch, on_status)
        with ResultStore(self.out / "results.sqlite") as store:
            store.add(record)
        return record

    def compute(self, spec: RunSpec, on_epoch: Callable[[dict], None] | None = None,
                on_status: Callable[[str], None] | None = None) -> dict:
        """Train and evaluate one run, write its artifacts and return its record without storing it (so a
        remote worker can compute and the driver alone writes the store).

        A run that fails with a SynthmedError (a generator whose loss became NaN, a filter that kept nothing)
        leaves ``runs/RUN_ID/error.json`` with the message and traceback, no record, and re-raises, so the
        caller can go on with the grid and the same command retries the run later."""
        data = self.dataset(spec)
        run_id, config = spec.key(data.md5)
        try:
            record = self._execute(spec, data, run_id, config, on_epoch, on_status)
        except SynthmedError as err:
            atomic_write_json(self.out / "runs" / run_id / "error.json",
                              {"run_id": run_id, "config": config, "error": str(err),
                               "traceback": traceback.format_exc(),
                               "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
            raise
        (self.out / "runs" / run_id / "error.json").unlink(missing_ok=True)  # an earlier failure, now retried
        return record

    def _robustness(self, fit: object, subset: object, data: Dataset, run_dir: Path, seed: int,
                    on_status: Callable[[str], None] | None) -> dict:
        """Accuracy under the fixed perturbation suite and FGSM / PGD on the test split, and CAM maps of fixed
        test images (``cam.npz``, composed side by side across methods by the report)."""
        import io

        from synthmed.metrics.explain import cam_maps
        from synthmed.metrics.robustness import RUN_ATTACK_IMAGES, robustness_report
        from synthmed.train.trainer import predict, to_tensor

        if on_status:
            on_status("robustness: perturbations and attacks on the test split")
        test = subset.test
        report = robustness_report(fit.model, test.images, test.labels, data.task, fit.precision, seed=seed,
                                   attack_images=RUN_ATTACK_IMAGES)
        index = explain_indices(test.labels)
        x = to_tensor(test.images[index])
        targets = test.labels[index] if test.labels.ndim == 1 else test.labels[index].argmax(1)
        probs, _ = predict(fit.model, x, data.task, fit.precision)
        arrays = {"index": index, "images": test.images[index], "targets": targets,
                  "probs": probs.numpy()[np.arange(len(index)), targets], "class_names": np.array(data.class_names)}
        for method in ("gradcam", "eigengradcam"):
            arrays[method] = cam_maps(fit.model, x, targets, method).astype(np.float16)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(run_dir / "cam.npz", buffer.getvalue())
        return report

    def _execute(self, spec: RunSpec, data: Dataset, run_id: str, config: dict,
                 on_epoch: Callable[[dict], None] | None, on_status: Callable[[str], None] | None) -> dict:
        started = time.perf_counter()
        subset = make_subset(data, spec.protocol, seed=spec.seed, per_class=spec.per_class,
                             fraction=spec.fraction, stratified=spec.stratified)
        run_dir = self.out / "runs" / run_id
        augmenter, synthesis, synthetic = create_augmenter(spec.method, **spec.method_params), None, None
        if augmenter.generative:
            synthesis = synthesise(data, subset, spec.plan(), spec.seed, self.cache_dir, self.device, spec.precision,
                                   on_status=on_status)
            augmenter, synthetic = synthesis.augmenter, (synthesis.images, synthesis.labels)
            write_artifacts(run_dir / "synthetic", synthesis, data, subset, spec.seed,
                            f"{data.name} {spec.protocol} · {spec.method} · seed {spec.seed}")
        elif isinstance(augmenter, TorchGenerator):  # trained in the loop (TSynD): its autoencoder is cached
            if on_status:
                on_status(f"fitting {spec.method}'s autoencoder")
            augmenter = fit_generator(augmenter, data, subset, spec.seed, self.cache_dir)[0]
        else:
            augmenter.fit(subset.train.images, subset.train.labels, seed=spec.seed)
        recipe = get_recipe(spec.recipe, spec.epochs)
        train_config = TrainConfig(recipe, spec.classifier, spec.patience, spec.paper_style, self.device,
                                   spec.precision, dropout=spec.dropout)
        if on_status:
            on_status("classifier")
        fit = train_classifier(subset.train, subset.val, subset.test, data.n_classes, data.task, train_config,
                               seed=spec.seed, augmenter=augmenter, synthetic=synthetic,
                               synthetic_weight=spec.synthetic_weight, on_epoch=on_epoch)
        if spec.finetune_epochs and synthetic is not None:
            if on_status:
                on_status("fine-tuning on real images")
            fit = fine_tune_on_real(fit, subset.train, subset.val, subset.test, data.n_classes, data.task,
                                    train_config, spec.finetune_epochs, seed=spec.seed, on_epoch=on_epoch)
        robustness = self._robustness(fit, subset, data, run_dir, spec.seed, on_status) if spec.robustness else None
        atomic_write_json(run_dir / "subset.json", subset.indices())
        atomic_write_json(run_dir / "history.json", fit.history)
        atomic_write_json(run_dir / "config.json", config)
        if self.save_model:
            save_checkpoint(run_dir / "model.pt", fit.model, {"config": config, "best_epoch": fit.best_epoch,
                                                             "class_names": data.class_names})
        paper = {}
        if spec.paper_style:
            paper = {"paper_test_auc": max(h["test_auc"] for h in fit.history),
                     "paper_test_acc": max(h["test_acc"] for h in fit.history)}
        record = {
            "run_id": run_id, "dataset": data.name, "protocol": spec.protocol, "method": spec.method,
            "classifier": spec.classifier, "recipe": spec.recipe, "seed": spec.seed, "config_hash": run_id,
            "config": config, "val_auc": fit.val["auc"], "val_acc": fit.val["acc"], "test_auc": fit.test["auc"],
            "test_acc": fit.test["acc"], "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run,
            "train_time": fit.train_time, "total_time": time.perf_counter() - started,
            "peak_rss_mb": fit.extra["peak_rss_mb"], "device": fit.device, "precision": fit.precision,
            "n_train": len(subset.train), "n_val": len(subset.val), "n_test": len(subset.test),
            "n_synthetic": fit.extra["n_train_synthetic"],
            "metrics": {"val": fit.val, "test": fit.test, "history": fit.history,
                        **({"synthetic": synthesis.summary()} if synthesis else {}),
                        **({"finetune": fit.extra["finetune"]} if "finetune" in fit.extra else {}),
                        **({"rounds": augmenter.rounds_} if getattr(augmenter, "rounds_", None) else {}),
                        **({"robustness": robustness} if robustness else {})},
            "versions": versions(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **paper,
        }
        return record


def _product(grid: dict[str, list] | None) -> list[dict]:
    """Every combination of a {key: [values]} grid, as dicts ({} for an empty grid)."""
    grid = grid or {}
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


#: Test images per class whose GradCAM / EigenGradCAM maps every --robustness run saves.
CAM_PER_CLASS = 4


def explain_indices(labels: np.ndarray, per_class: int = CAM_PER_CLASS) -> np.ndarray:
    """The test images every run explains: the first ``per_class`` of each class, so panels compare like with
    like across methods and seeds."""
    labels = labels if labels.ndim == 1 else labels.argmax(1)
    return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])


def expand(datasets: list[str], methods: list[str], seeds: list[int], levers: dict[str, list] | None = None,
           method_grid: dict[str, list] | None = None, **common) -> list[RunSpec]:
    """The grid dataset x fraction x method x method parameters x lever setting x seed. ``levers`` maps a
    RunSpec lever field to its values (None = the default), ``method_grid`` a generator hyper-parameter to its
    values (e.g. seed 002's Table 5 sweep). Levers multiply only generative methods, which alone use them;
    hyper-parameters apply to every trained method (generators and TSynD's autoencoder)."""
    fractions = common.pop("fractions", None) or [common.pop("fraction", None)]
    settings = [{k: v for k, v in s.items() if v is not None} for s in _product(levers)]
    param_sets = _product(method_grid)
    specs = []
    for dataset in datasets:
        for fraction in fractions:
            for method in methods:
                augmenter = create_augmenter(method)
                generative, trainable = augmenter.generative, isinstance(augmenter, TorchGenerator)
                extra = common if generative else {k: v for k, v in common.items() if k not in GENERATOR_ONLY}
                for params in (param_sets if trainable else [{}]):
                    for setting in (settings if generative else [{}]):
                        for seed in seeds:
                            specs.append(RunSpec(dataset=dataset, method=method, seed=seed, fraction=fraction,
                                                 method_params=params, **extra, **setting))
    if not specs:
        raise SynthmedError("the run grid is empty; give at least one dataset, method and seed")
    return specs


#: RunSpec fields that only generative methods use (kept at their defaults for the others, so a lever sweep
#: does not rerun or duplicate the none / flip baselines).
GENERATOR_ONLY = ("balance", "generator_seed", "fidelity", "fidelity_epochs", "track_fid_every")
