"""One run = one ``RunSpec`` (dataset, protocol, method + levers, classifier, recipe, seed) trained and scored.

The runner dispatches on what the method declares (``Augmenter.kind``, ``needs``, ``trains``), writes each run's
artifacts atomically and returns its record; ``synthmed.experiment.execute`` inserts records into the store as
they arrive, so Ctrl-C or a kill at any point loses at most the runs in progress and never leaves a partial
record.
"""

from __future__ import annotations

import dataclasses
import io
import os
import platform
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from synthmed.audit.synthetic import with_tstr
from synthmed.augment import Kind, create_augmenter, method_class
from synthmed.augment.generative import fit_progress
from synthmed.data import Dataset, Subset, load_dataset, make_subset
from synthmed.data.flips import label_preserving_flips
from synthmed.errors import SynthmedError
from synthmed.experiment.execution import Execution
from synthmed.experiment.synthetic_set import (
    fit_generator,
    fit_identity,
    synthesise,
    synthetic_only_set,
    write_artifacts,
)
from synthmed.experiment.teacher import check_teacher, kept_truth
from synthmed.io import atomic_write_bytes, atomic_write_json, lock_wait_seconds, remove_temporaries, save_checkpoint
from synthmed.nets.classifiers import check_classifier
from synthmed.record import RunRecord
from synthmed.spec import RunSpec
from synthmed.store import ResultStore
from synthmed.train.device import bf16_kernels, cpu_model, resolve_device
from synthmed.train.recipes import Recipe, get_recipe
from synthmed.train.trainer import (
    FitResult,
    TrainConfig,
    ensemble_fit,
    fine_tune_on_real,
    member_seed,
    pretrain_then_train,
    train_classifier,
)

OnEpoch = Callable[[dict], None]
OnStatus = Callable[[str], None]


def recipe_of(spec: RunSpec) -> Recipe:
    """The run's recipe: the named preset with the run's overrides (epochs, averaging, selection, TTA, ensemble)."""
    return get_recipe(
        spec.recipe,
        spec.epochs,
        spec.patience,
        ema=spec.ema,
        swa=spec.swa,
        select=spec.select,
        tta=spec.tta,
        ensemble=spec.ensemble,
    )


def epochs_of(spec: RunSpec) -> int:
    """Epochs a run trains in all (every ensemble member), for progress bars."""
    recipe = recipe_of(spec)
    return recipe.epochs * recipe.ensemble


def versions() -> dict:
    import sklearn
    import torch
    import torchvision

    from synthmed import __version__

    return {
        "synthmed": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        # the kernels torch dispatches to (AVX2, AVX512, ...): bf16 results are bit-identical for a seed only on
        # the same capability, and differ in the seed-to-seed way between capabilities
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }


#: Test images per class whose GradCAM / EigenGradCAM maps every --robustness run saves.
CAM_PER_CLASS = 4


def subset_of(spec: RunSpec, data: Dataset) -> Subset:
    """The run's train / val / test subset, as its protocol fields and seed draw it (the same in validation and in
    the run)."""
    return make_subset(
        data,
        spec.protocol,
        seed=spec.seed,
        per_class=spec.real_per_class,
        fraction=spec.fraction,
        stratified=spec.stratified,
        curve=spec.curve_per_class,
        unlabelled=spec.unlabelled,
    )


def explain_indices(labels: np.ndarray, per_class: int = CAM_PER_CLASS) -> np.ndarray:
    """The test images every run explains: the first ``per_class`` of each class, so panels compare like with
    like across methods and seeds."""
    labels = labels if labels.ndim == 1 else labels.argmax(1)
    return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])


class Runner:
    """Computes RunSpecs into records, with artifacts in ``out/runs/RUN_ID/``; the store is ``out/results.sqlite``."""

    def __init__(
        self, out: str | Path, execution: Execution | None = None, *, download: bool = True, **settings: Any
    ) -> None:
        """``settings``: ``Execution`` fields over ``execution`` (``Runner(out, device="cpu")``); a runner reads
        data_root, verify, device, classes, cache_dir and save_model."""
        self.out = Path(out)
        self.execution = dataclasses.replace(execution or Execution(), **settings)
        self.download = download
        #: trained generators and reference classifiers; share it between run folders with --generator-cache
        self.cache_dir = Path(self.execution.cache_dir or self.out / "cache")
        self.device = self.execution.device
        self._datasets: dict[tuple, Dataset] = {}

    @property
    def store_path(self) -> Path:
        return self.out / "results.sqlite"

    def settings(self) -> dict:
        """The constructor's arguments, for a worker process to build the same runner."""
        return {"out": str(self.out), "execution": self.execution, "download": self.download}

    def dataset(self, spec: RunSpec) -> Dataset:
        key = (spec.dataset, spec.size, spec.seed if spec.dataset.startswith("folder:") else 0)
        if key not in self._datasets:
            self._datasets[key] = load_dataset(
                spec.dataset,
                size=spec.size,
                data_root=self.execution.data_root,
                verify=self.execution.verify,
                download=self.download,
                seed=key[2],
                classes=self.execution.classes,
            )
        return self._datasets[key]

    def run_id(self, spec: RunSpec) -> str:
        return spec.key(self.dataset(spec).md5)[0]

    def fit_path(self, spec: RunSpec) -> Path | None:
        """Where the cache keeps the generator ``spec`` trains (as ``synthesise`` and ``fit_generator`` name it);
        None where the method trains nothing, or its fit's key depends on FID tracking, known only once the run has
        begun."""
        from synthmed.augment.generative import TorchGenerator
        from synthmed.experiment.synthetic_set import create_generator, generator_path, generator_seed

        augmenter = create_generator(spec.method, spec.method_params, precision=spec.precision)
        if not augmenter.trains or spec.synthesis.track_fid_every:
            return None
        assert isinstance(augmenter, TorchGenerator)  # ``trains`` declares the saved-weights contract
        data = self.dataset(spec)
        seed = generator_seed(spec.seed, spec.synthesis) if augmenter.kind is Kind.SET else spec.seed
        return generator_path(augmenter, data, subset_of(spec, data), seed, self.cache_dir)

    def fit_cached(self, spec: RunSpec) -> bool | None:
        """Whether the generator ``spec`` trains is already in the cache (it will only be loaded); None where
        ``fit_path`` cannot tell. A time budget costs a run that will make the fit as one that fits."""
        path = self.fit_path(spec)
        return None if path is None else path.exists()

    def reference_path(self, spec: RunSpec) -> Path | None:
        """Where the cache keeps the reference classifier ``spec``'s synthetic set is audited with (as
        ``synthesise`` names it); None where the run trains none (no synthetic set, or no audit that reads one)."""
        from synthmed.audit.reference import reference_path
        from synthmed.experiment.synthetic_set import generator_seed

        if not spec.synthesis.needs_reference or method_class(spec.method).kind is not Kind.SET:
            return None
        data = self.dataset(spec)
        seed = generator_seed(spec.seed, spec.synthesis)
        return reference_path(data, subset_of(spec, data), seed, self.cache_dir, spec.synthesis.fidelity_epochs)

    def reference_cached(self, spec: RunSpec) -> bool | None:
        """Whether ``spec``'s reference classifier is already in the cache; None where it needs none. A time budget
        costs a run that will train it with the reference's stored training time on top: a new machine trains
        one per generator seed (11-21 min on a 2-core AVX2 CPU for BreastMNIST), which runs stored elsewhere had
        loaded."""
        path = self.reference_path(spec)
        return None if path is None else path.exists()

    def validate(self, specs: list[RunSpec]) -> None:
        """Refuse an unusable device, unknown datasets, methods, parameters, recipes or classifiers, a method's
        unmet needs and unusable subsets, before anything runs or is written."""
        resolve_device(self.device)
        checked: set[str] = set()
        for spec in specs:
            recipe = recipe_of(spec)
            check_classifier(spec.classifier)
            augmenter = create_augmenter(spec.method, **spec.method_params)
            augmenter.check()
            spec.synthesis.check()
            if "dropout" in augmenter.needs and not spec.dropout:
                raise SynthmedError(
                    f"{spec.method} measures uncertainty by MC dropout: give --dropout P (e.g. "
                    f"{augmenter.needs['dropout']:g}) to it and the methods it is compared with"
                )
            data = self.dataset(spec)
            check_teacher(spec.method, spec.synthesis, spec.unlabelled, data.task)
            if spec.unlabelled is None and type(augmenter).reads_unlabelled(augmenter.params):
                raise SynthmedError(
                    f"{spec.method} -p use_unlabelled=true learns from the run's unlabelled images: give "
                    "--unlabelled N or all"
                )
            if recipe.tta:
                label_preserving_flips(data.name)
            if recipe.ensemble > 1 and spec.robustness:
                raise SynthmedError(
                    "--robustness attacks one network and --ensemble averages several: drop one of them"
                )
            if recipe.ensemble > 1 and augmenter.kind is Kind.IN_LOOP:
                raise SynthmedError(
                    f"{spec.method} makes its images with the classifier during training, so --ensemble "
                    "members would not share one synthetic set: drop --ensemble"
                )
            key = repr((spec.method, sorted(spec.method_params.items()), data.size, data.n_channels, data.n_classes))
            if key not in checked:  # builds the networks once per method, parameters and data shape
                augmenter.check_data(data.size, data.n_channels, data.n_classes)
                checked.add(key)
            subset = subset_of(spec, data)
            if not data.task.startswith("multi-label"):  # a class absent from validation: a constant val AUC
                counts = np.bincount(subset.val.labels.reshape(-1), minlength=data.n_classes)
                if (counts == 0).any():
                    missing = ", ".join(repr(str(data.class_names[c])) for c in np.flatnonzero(counts == 0))
                    raise SynthmedError(
                        f"{data.name} {spec.protocol} seed {spec.seed}: the validation split holds no image of class "
                        f"{missing}, so every epoch would score the same validation AUC; give validation images of "
                        "every class"
                    )

    def done(self) -> set[str]:
        """Run ids already in the store (none when there is no store yet; nothing is created)."""
        if not self.store_path.exists():
            return set()
        with ResultStore(self.store_path) as store:
            return store.run_ids()

    def pending(self, specs: list[RunSpec], done: set[str] | None = None) -> list[RunSpec]:
        done = self.done() if done is None else done
        return [s for s in specs if self.run_id(s) not in done]

    def run(self, spec: RunSpec, on_epoch: OnEpoch | None = None, on_status: OnStatus | None = None) -> dict:
        """Execute one run (unless already stored), insert its record and return it."""
        run_id = self.run_id(spec)
        with ResultStore(self.store_path) as store:
            if store.has(run_id):
                return store.record(run_id)
        record = self.compute(spec, on_epoch, on_status)
        with ResultStore(self.store_path) as store:
            store.add(record)
        return record

    def compute(self, spec: RunSpec, on_epoch: OnEpoch | None = None, on_status: OnStatus | None = None) -> dict:
        """Train and evaluate one run, write its artifacts and return its record without storing it (so a
        worker can compute and the driver alone writes the store).

        A run that fails with a SynthmedError (a generator whose loss became NaN, a filter that kept nothing)
        leaves ``runs/RUN_ID/error.json`` with the message and traceback, no record, and re-raises, so the
        caller can go on with the grid and the same command retries the run later."""
        data = self.dataset(spec)
        run_id, config = spec.key(data.md5)
        remove_temporaries(self.out / "runs" / run_id)  # left by an earlier attempt that was killed mid-write
        try:
            with bf16_kernels(resolve_device(self.device)) as kernels:
                record = self._fit_and_score(spec, data, run_id, config, on_epoch, on_status or (lambda text: None))
            if kernels is not None:
                record["versions"]["bf16_kernels"] = kernels
        except SynthmedError as err:
            atomic_write_json(
                self.out / "runs" / run_id / "error.json",
                {
                    "run_id": run_id,
                    "config": config,
                    "error": str(err),
                    "traceback": traceback.format_exc(),
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                },
            )
            raise
        (self.out / "runs" / run_id / "error.json").unlink(missing_ok=True)  # an earlier failure, now retried
        return record

    def _robustness(self, fit: FitResult, subset: Subset, data: Dataset, run_dir: Path, spec: RunSpec) -> dict:
        """Accuracy under the fixed perturbation suite and FGSM / PGD on the test split (with ``--robustness
        medmnistc`` also under the MedMNIST-C corruptions), and CAM maps of fixed test images (``cam.npz``, composed
        side by side across methods by the report). Runs after selection: the test split never selects anything."""
        from synthmed.metrics.explain import cam_maps
        from synthmed.metrics.robustness import EPS, RUN_ATTACK_IMAGES, medmnistc_report, robustness_report
        from synthmed.nets.classifiers import predict
        from synthmed.spec import MEDMNISTC
        from synthmed.tensors import to_tensor

        test, seed = subset.test, spec.seed
        eps = EPS if spec.attack_eps is None else (0.0, spec.attack_eps / 255)
        report = robustness_report(
            fit.model,
            test.images,
            test.labels,
            data.task,
            fit.precision,
            seed=seed,
            eps=eps,
            attack_images=RUN_ATTACK_IMAGES,
        )
        if spec.robustness == MEDMNISTC:
            report[MEDMNISTC] = medmnistc_report(
                fit.model, test.images, test.labels, data.task, data.name, fit.precision, seed=seed
            )
        index = explain_indices(test.labels)
        x = to_tensor(test.images[index])
        targets = test.labels[index] if test.labels.ndim == 1 else test.labels[index].argmax(1)
        probs, _ = predict(fit.model, x, data.task, fit.precision)
        arrays = {
            "index": index,
            "images": test.images[index],
            "targets": targets,
            "probs": probs.numpy()[np.arange(len(index)), targets],
            "class_names": np.array(data.class_names),
        }
        for method in ("gradcam", "eigengradcam"):
            arrays[method] = cam_maps(fit.model, x, targets, method).astype(np.float16)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(run_dir / "cam.npz", buffer.getvalue())
        return report

    def _fit_and_score(
        self, spec: RunSpec, data: Dataset, run_id: str, config: dict, on_epoch: OnEpoch | None, status: OnStatus
    ) -> dict:
        started, waited = time.perf_counter(), lock_wait_seconds()
        subset = subset_of(spec, data)
        run_dir = self.out / "runs" / run_id
        augmenter = create_augmenter(spec.method, **spec.method_params)
        synthesis = synthetic = generator_fit = None
        if augmenter.kind is Kind.SET:
            synthesis = synthesise(
                data,
                subset,
                spec.method,
                spec.method_params,
                spec.synthesis,
                spec.seed,
                self.cache_dir,
                self.device,
                spec.precision,
                on_status=status,
            )
            augmenter, synthetic = synthesis.augmenter, (synthesis.images, synthesis.targets)
            write_artifacts(
                run_dir / "synthetic",
                synthesis,
                data,
                subset,
                spec.seed,
                f"{data.name} {spec.protocol} · {spec.method} · seed {spec.seed}",
            )
        else:
            fitting = f"fitting {spec.method}'s networks (cached after the first time)"
            with fit_progress(lambda line: status(f"fitting {spec.method}: {line}")):
                augmenter, cached, seconds, path = fit_generator(
                    augmenter,
                    data,
                    subset,
                    spec.seed,
                    self.cache_dir,
                    on_fit=(lambda: status(fitting)) if augmenter.trains else None,
                    on_wait=lambda: status(f"{spec.method}: waiting for its networks, which another run is fitting"),
                )
            if cached:
                status(f"{spec.method}: its networks loaded from the cache")
            if augmenter.trains:  # as a synthetic set's audit records it: what a time budget costs a fit by
                key, digest = fit_identity(augmenter, path) or (None, None)
                generator_fit = {"cached": cached, "seconds": round(seconds, 1), "key": key, "digest": digest}
        recipe = recipe_of(spec)
        train_config = TrainConfig(
            recipe,
            spec.classifier,
            spec.patience,
            spec.report_test_selected,
            self.device,
            spec.precision,
            dropout=spec.dropout,
            class_weight=spec.class_weight,
            flips=label_preserving_flips(data.name) if recipe.tta else (),
        )
        synthetic_only = None  # the classifier trained on the synthetic set alone (TSTR, and the pretraining)
        alone = None
        scored_on = (subset.val, subset.test, data.n_classes, data.task, train_config)  # every phase's selection

        def train_alone(images_labels: tuple[np.ndarray, np.ndarray], seed: int) -> FitResult:
            """A classifier of the synthetic images alone: no real training image, the synthetic set passed as
            such, so a teacher's soft labels train as they do beside real images."""
            nothing_real = subset.train.subset(np.arange(0))
            return train_classifier(nothing_real, *scored_on, seed=seed, synthetic=images_labels)

        if synthesis is not None and (spec.synthesis.tstr or spec.synthesis.pretrain_on_synthetic):
            status("classifier on the synthetic images alone")
            levers = spec.synthesis
            alone = synthetic_only_set(synthesis, subset.train.labels, data.n_classes, levers, spec.seed)
            synthetic_only = train_alone(alone, seed=spec.seed)

        def member(k: int) -> FitResult:
            """One classifier of the run (member 0 trains on the run's seed itself, so one member is the plain run)."""
            seed = member_seed(spec.seed, k)
            shift = k * recipe.epochs
            on_member_epoch = on_epoch and (lambda row: on_epoch({**row, "epoch": row["epoch"] + shift}))
            status("classifier" if recipe.ensemble == 1 else f"classifier {k + 1} of {recipe.ensemble}")
            if alone is not None and synthetic_only is not None and spec.synthesis.pretrain_on_synthetic:
                pretrained = synthetic_only if k == 0 else train_alone(alone, seed=seed)
                fit = pretrain_then_train(pretrained, subset.train, *scored_on, seed=seed, on_epoch=on_member_epoch)
            else:
                fit = train_classifier(
                    subset.train,
                    *scored_on,
                    seed=seed,
                    augmenter=augmenter,
                    synthetic=synthetic,
                    synthetic_weight=spec.synthesis.synthetic_weight,
                    on_epoch=on_member_epoch,
                )
            if spec.synthesis.finetune_epochs and synthetic is not None:
                status("fine-tuning on real images")
                epochs = spec.synthesis.finetune_epochs
                fit = fine_tune_on_real(fit, subset.train, *scored_on, epochs, seed=seed, on_epoch=on_member_epoch)
            return fit

        members = [member(k) for k in range(recipe.ensemble)]
        fit = members[0] if len(members) == 1 else ensemble_fit(members, subset.val, subset.test, data.task)
        robustness = None
        if spec.robustness:
            status("robustness: perturbations and attacks on the test split")
            robustness = self._robustness(fit, subset, data, run_dir, spec)
        atomic_write_json(run_dir / "subset.json", subset.indices())
        atomic_write_json(run_dir / "history.json", fit.history)
        atomic_write_json(run_dir / "config.json", config)
        if self.execution.save_model:
            save_checkpoint(
                run_dir / "model.pt",
                fit.model,
                {"config": config, "best_epoch": fit.best_epoch, "class_names": data.class_names},
            )
        metrics: dict[str, Any] = {"val": fit.val, "test": fit.test, "history": fit.history}
        if synthesis is not None:
            audit = synthesis.audit
            if synthetic_only is not None and alone is not None:
                audit = with_tstr(audit, synthetic_only, alone[1], data.n_classes)
            metrics["synthetic"] = audit.to_json()
        else:
            metrics.update(augmenter.diagnostics())  # e.g. TSynD's rounds
            if generator_fit is not None:
                metrics["generator_fit"] = generator_fit
        for phase in ("finetune", "pretrain", "members", "swa_epochs"):
            if phase in fit.extra:
                metrics[phase] = fit.extra[phase]
        if robustness:
            metrics["robustness"] = robustness
        if subset.unlabelled is not None:  # the audit of what --unlabelled drew: true classes no training code read
            balance = subset.unlabelled_balance(data.n_classes)
            metrics["unlabelled"] = {
                "images": len(subset.unlabelled),
                "per_class": {name: n for name, n in zip(data.class_names, balance)},
            } | ({"unknown": subset.unlabelled_unknown} if subset.unlabelled_unknown else {})
            kept = kept_truth(subset, synthesis.audit, data.class_names) if synthesis is not None else None
            if kept is not None:  # pseudo-label: what its teacher kept, and how often its label was the true class
                metrics["unlabelled"]["teacher_kept"] = kept
        if (waited := lock_wait_seconds() - waited) >= 1:  # for a fit another worker was making: not this run's cost
            metrics["lock_wait_s"] = round(waited, 1)
        selected = spec.report_test_selected
        return RunRecord(
            run_id=run_id,
            dataset=data.name,
            protocol=spec.protocol,
            method=spec.method,
            classifier=spec.classifier,
            recipe=spec.recipe,
            seed=spec.seed,
            config_hash=run_id,
            config=config,
            val_auc=fit.val["auc"],
            val_acc=fit.val["acc"],
            test_auc=fit.test["auc"],
            test_acc=fit.test["acc"],
            test_selected_auc=max(h["test_auc"] for h in fit.history) if selected else None,
            test_selected_acc=max(h["test_acc"] for h in fit.history) if selected else None,
            best_epoch=fit.best_epoch,
            epochs_run=fit.epochs_run,
            train_time=fit.train_time,
            total_time=time.perf_counter() - started,
            peak_rss_mb=fit.extra["peak_rss_mb"],
            device=fit.device,
            precision=fit.precision,
            n_train=len(subset.train),
            n_val=len(subset.val),
            n_test=len(subset.test),
            n_synthetic=fit.extra["n_train_synthetic"],
            metrics=metrics,
            versions=versions(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        ).to_json()
