"""The ``synthmed`` command line: a thin layer over the Python API."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from synthmed.errors import SynthmedError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Does synthetic data help a medical image classifier? Train, augment, evaluate, report.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect and verify datasets.")
app.add_typer(data_app, name="data")
experiment_app = typer.Typer(no_args_is_help=True, help="Run and inspect YAML experiment files (see configs/).")
app.add_typer(experiment_app, name="experiment")
console = Console(stderr=True)

DATA_ROOT = typer.Option(None, "--data-root", help="Folder holding the MedMNIST npz files "
                         "[default: $SYNTHMED_DATA, else ~/.medmnist].")
NO_VERIFY = typer.Option(False, "--no-verify", help="Skip the MD5 check (other checks still apply).")
STRATIFIED = typer.Option(False, "--stratified", help="fraction: draw the same share of every class.")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda.")
SIZE = typer.Option(28, "--size", help="Image size: 28, or 64/128/224 when that MedMNIST file is present.")


_TYPES = {"epochs": int, "patience": int, "per_class": int, "size": int, "stratified": bool, "paper_style": bool,
          "no_verify": bool, "report": bool, "save_model": bool, "balance": bool, "generator_epochs": int,
          "generator_seed": int, "fidelity": bool, "fidelity_epochs": int, "method_param": dict, "dropout": float,
          "track_fid_every": int, "robustness": bool, "workers": int, "cpus_per_run": int}
GENERATOR_CACHE = typer.Option(None, "--generator-cache", "--cache-dir", help="Folder of cached trained generators "
                               "and reference classifiers, reused when method, data subset and seed match "
                               "[run: OUT/cache; generate: $XDG_CACHE_HOME/synthmed, else ~/.cache/synthmed].")
MIN_CONFIDENCE_HELP = ("Keep only synthetic images to which the reference classifier gives at least this probability "
                       "of their intended class (drawn from {}x as many candidates).")
WORKERS = typer.Option(1, "--workers", help="local: run this many runs at once in worker processes (bounded by "
                       "cores / --cpus-per-run and by free memory).")
CPUS_PER_RUN = typer.Option(1, "--cpus-per-run", help="CPUs (torch threads) each run uses with --workers or "
                            "the ray backend.")
MLFLOW = typer.Option(None, "--mlflow", help="Also log every run to this MLflow tracking URI (e.g. file:./mlruns "
                      "or http://host:5000); needs pip install mlflow.")
FIDELITY_EPOCHS = typer.Option(30, "--fidelity-epochs", help="Epochs of the reference classifier (class fidelity, "
                               "confidence filter).")


def _split(text: str, kind: type = str) -> list:
    return [kind(part.strip()) for part in text.split(",") if part.strip()]


def _method_grid(params: list[str] | dict | None, generator_epochs: int | None) -> dict[str, list]:
    """``["lr=1e-4,2e-4", "sn_generator=true"]`` (command line) or ``{lr: [1e-4, 2e-4]}`` (YAML) -> values to
    sweep per key, each value parsed as YAML (numbers, booleans, strings)."""
    import yaml

    def value(v: object) -> object:
        """YAML scalars, plus numbers YAML 1.1 leaves as strings (``1e-4``)."""
        if not isinstance(v, str):
            return v
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return yaml.safe_load(v)

    grid: dict[str, list] = {}
    if isinstance(params, dict):
        grid = {str(k): [value(x) for x in (v if isinstance(v, list) else [v])] for k, v in params.items()}
    else:
        for item in params or []:
            key, sep, text = item.partition("=")
            if not sep or not key.strip() or not text.strip():
                raise SynthmedError(f"--method-param {item!r} must look like KEY=VALUE (e.g. lr=2e-4 or lr=1e-4,2e-4)")
            grid[key.strip()] = [value(v.strip()) for v in text.split(",")]
    if generator_epochs is not None:
        grid["epochs"] = [generator_epochs]
    return grid


def _levers(text: str | None, kind: type) -> list:
    """A lever option's values: [None] when absent, else the comma-separated list."""
    if text is None or str(text).strip() == "":
        return [None]
    try:
        return _split(str(text), kind)
    except ValueError:
        raise SynthmedError(f"{text!r} is not a comma-separated list of {kind.__name__} values") from None


@app.command()
def run(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", "-c", help="YAML file with any of these options as keys "
                                "(see configs/); command-line options override it."),
    dataset: str = typer.Option(None, "--dataset", "-d", help="MedMNIST flag(s), comma-separated, or folder:PATH."),
    methods: str = typer.Option("none", "--methods", "-m", help="Comma-separated methods (see `synthmed list`)."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds."),
    out: Path = typer.Option(None, "--out", "-o", help="Run folder (holds results.sqlite)."),
    protocol: str = typer.Option("lowdata", "--protocol", help="lowdata | fraction | full."),
    recipe: str = typer.Option("medmnist", "--recipe", help="chaptoukaev | medmnist | sharma."),
    classifier: str = typer.Option("resnet18", "--classifier", help="resnet18 | densenet121."),
    epochs: int = typer.Option(None, "--epochs", help="Override the recipe's number of epochs."),
    patience: int = typer.Option(None, "--patience", help="Stop after this many epochs without a better "
                                 "validation score."),
    per_class: int = typer.Option(None, "--per-class", help="lowdata: training images per class [150]."),
    fraction: str = typer.Option(None, "--fraction", "--fractions", help="fraction: share(s) of the training "
                                 "split, comma-separated (e.g. 0.05,0.5)."),
    stratified: bool = STRATIFIED,
    dropout: float = typer.Option(0.0, "--dropout", help="Dropout before the classifier head (TSynD's MC dropout "
                                  "needs it; give the baselines the same)."),
    robustness: bool = typer.Option(False, "--robustness", help="Also score the test split under a fixed suite of "
                                    "perturbations and FGSM / PGD attacks, and save GradCAM / EigenGradCAM maps."),
    paper_style: bool = typer.Option(False, "--paper-style", help="Also record test scores every epoch to show "
                                     "the optimistic max-over-epochs figure seed 000 reported."),
    synthetic_per_class: str = typer.Option(None, "--synthetic-per-class", help="Generative methods: new images "
                                            "per class [150, as seed 000]; a comma list sweeps."),
    synthetic_ratio: str = typer.Option(None, "--synthetic-ratio", help="... or this multiple of each class's real "
                                        "count (e.g. 0.5); a comma list sweeps."),
    balance: bool = typer.Option(False, "--balance", help="... or fill every class up to the majority count "
                                 "(seed 002)."),
    synthetic_weight: str = typer.Option("1", "--synthetic-weight", help="Loss weight of synthetic images relative "
                                         "to real ones; a comma list sweeps."),
    min_confidence: str = typer.Option(None, "--min-confidence", help=MIN_CONFIDENCE_HELP.format(4)
                                       + " A comma list sweeps."),
    finetune_epochs: str = typer.Option("0", "--finetune-epochs", help="After training on real + synthetic, "
                                        "fine-tune on real only for this many epochs at lr/10, kept only if better "
                                        "on validation; a comma list sweeps."),
    generator_epochs: int = typer.Option(None, "--generator-epochs", help="Override the generators' epochs "
                                         "(paper presets: ae/cvae 300, cgan 1000)."),
    method_param: list[str] = typer.Option(None, "--method-param", "-p", help="KEY=VALUE hyper-parameter of the "
                                           "generative methods, repeatable; VALUE may be a comma list to sweep "
                                           "(-p lr=1e-4,2e-4 -p gp_weight=5,10 runs the 4 combinations)."),
    generator_seed: int = typer.Option(None, "--generator-seed", help="One generator seed for every run seed, so "
                                       "a subset shared by all seeds (BreastMNIST lowdata) trains one generator."),
    fidelity: bool = typer.Option(True, "--fidelity/--no-fidelity", help="Measure class fidelity of generated sets "
                                  "(trains a cached reference classifier per dataset, subset and seed)."),
    fidelity_epochs: int = FIDELITY_EPOCHS,
    track_fid_every: int = typer.Option(None, "--track-fid-every", help="Record the generator's FID and KID "
                                        "(in-domain features) every K epochs of its training."),
    generator_cache: Path = GENERATOR_CACHE,
    device: str = DEVICE,
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 where fast) | fp32 | bf16."),
    size: int = SIZE,
    data_root: str = DATA_ROOT,
    no_verify: bool = NO_VERIFY,
    report: bool = typer.Option(True, "--report/--no-report", help="Write report.md and report.html at the end."),
    save_model: bool = typer.Option(False, "--save-model", help="Keep each run's selected weights (model.pt)."),
    workers: int = WORKERS,
    cpus_per_run: int = CPUS_PER_RUN,
    mlflow: str = MLFLOW,
) -> None:
    """Run dataset x method x seed, skipping runs already in OUT/results.sqlite, then report."""
    opts = dict(ctx.params)
    if config is not None:
        from synthmed.config import load_run_config

        types = {name: _TYPES.get(name, str) for name in opts if name != "config"}
        for name, value in load_run_config(config, types).items():
            source = ctx.get_parameter_source(name)
            if source is None or source.name != "COMMANDLINE":  # the command line wins over the file
                opts[name] = value
    _run(opts)


def _run(o: dict) -> None:
    from synthmed.experiment.runner import Runner, expand

    if not o["dataset"] or not o["out"]:
        raise SynthmedError("give --dataset and --out (on the command line or as keys of --config)")
    out = Path(o["out"])
    specs = expand(_split(o["dataset"]), _split(o["methods"]), _split(o["seeds"], int), protocol=o["protocol"],
                   recipe=o["recipe"], classifier=o["classifier"], epochs=o["epochs"], patience=o["patience"],
                   per_class=o["per_class"], fractions=_split(o["fraction"], float) if o["fraction"] else None,
                   stratified=o["stratified"], paper_style=o["paper_style"], size=o["size"], dropout=o["dropout"],
                   robustness=o["robustness"],
                   precision=o["precision"], balance=o["balance"],
                   method_grid=_method_grid(o["method_param"], o["generator_epochs"]),
                   generator_seed=o["generator_seed"], fidelity=o["fidelity"], fidelity_epochs=o["fidelity_epochs"],
                   track_fid_every=o["track_fid_every"],
                   levers={"synthetic_per_class": _levers(o["synthetic_per_class"], int),
                           "synthetic_ratio": _levers(o["synthetic_ratio"], float),
                           "synthetic_weight": _levers(o["synthetic_weight"], float),
                           "min_confidence": _levers(o["min_confidence"], float),
                           "finetune_epochs": _levers(o["finetune_epochs"], int)})
    runner = Runner(out, data_root=o["data_root"], verify=not o["no_verify"], device=o["device"],
                    save_model=o["save_model"], cache_dir=o["generator_cache"])
    runner.validate(specs)
    _execute(runner, specs, o["report"], workers=o["workers"], cpus_per_run=o["cpus_per_run"],
             mlflow=o["mlflow"], name=out.name)


def _label(spec) -> str:
    return f"{spec.dataset} {spec.method} seed {spec.seed}"


def _done_line(label: str, record: dict) -> str:
    return (f"{label}: test AUC {record['test_auc']:.3f} ACC {record['test_acc']:.3f} "
            f"(epoch {record['best_epoch']} of {record['epochs_run']}, {record['total_time']:.0f} s)")


def _execute(runner, specs: list, report: bool, backend: str = "local", address: str | None = None,
             cpus_per_run: int = 1, workers: int = 1, mlflow: str | None = None, name: str = "synthmed") -> None:
    """Run the pending specs with progress bars (in this process, a pool of workers, or as Ray tasks); a failed
    run is reported and the grid goes on; then the table, the report and the MLflow mirror. Exit code 1 when any
    run failed."""
    from synthmed.experiment.report import load_records, print_table, write_report
    from synthmed.train.recipes import get_recipe

    out = runner.out
    logger = None
    if mlflow:
        from synthmed.experiment.tracking import MlflowLogger

        logger = MlflowLogger(mlflow, name)  # fails before any run when mlflow is missing
    todo = runner.pending(specs)
    pooled = "ray" if backend == "ray" else "pool" if workers > 1 else None
    if pooled == "pool":
        from synthmed.experiment.backends import pool_size

        workers = pool_size(workers, cpus_per_run)
    where = {"ray": f" (ray backend, {cpus_per_run} CPU per run)",
             "pool": f" ({workers} worker processes, {cpus_per_run} CPU each)"}
    console.print(f"{len(specs)} runs, {len(specs) - len(todo)} already in {out / 'results.sqlite'}, "
                  f"{len(todo)} to do" + where.get(pooled, ""))
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    failed: list[str] = []

    def fail(label: str, message: str) -> None:  # this run failed (error.json written); the grid goes on
        failed.append(f"{label}: {message}")
        console.print(f"[bold red]failed:[/] {label}: {message}", highlight=False, soft_wrap=True)

    with Progress(*columns, console=console, transient=False) as progress:
        total = progress.add_task("runs", total=len(todo))
        if pooled:
            from synthmed.experiment.backends import run_on_pool, run_on_ray
            from synthmed.experiment.store import ResultStore

            def on_result(spec, status: str, payload) -> None:
                if status == "ok":
                    with ResultStore(out / "results.sqlite") as store:  # the driver alone writes the store
                        store.add(payload)
                    console.print(_done_line(_label(spec), payload))
                else:
                    fail(_label(spec), payload)
                progress.advance(total)

            if todo and pooled == "ray":
                run_on_ray(runner, todo, on_result, address=address, cpus_per_run=cpus_per_run)
            elif todo:
                run_on_pool(runner, todo, on_result, workers=workers, threads=cpus_per_run)
            todo = []
        for spec in todo:
            label = _label(spec)
            epochs_task = progress.add_task(f"  {label}", total=get_recipe(spec.recipe, spec.epochs).epochs)

            def on_epoch(row: dict, task=epochs_task, label=label) -> None:
                progress.update(task, advance=1, description=f"  {label} val AUC {row['val_auc']:.3f}")

            def on_status(text: str, task=epochs_task, label=label) -> None:
                progress.update(task, description=f"  {label}: {text}")

            try:
                record = runner.run(spec, on_epoch=on_epoch, on_status=on_status)
                console.print(_done_line(label, record))
            except SynthmedError as err:
                fail(label, str(err))
            progress.update(epochs_task, visible=False)
            progress.advance(total)
    if not (out / "results.sqlite").exists() or len(failed) == len(specs):
        raise SynthmedError(f"every run failed; the first: {failed[0]}" if failed else "no run finished")
    print_table(out, console)
    if report:
        paths = write_report(out)
        console.print("report: " + ", ".join(str(p) for p in paths))
    if logger is not None:
        console.print(f"mlflow: {logger.sync(out, load_records(out))} run(s) logged to {mlflow}")
    if failed:
        console.print(f"[bold red]{len(failed)} run(s) failed[/] (runs/RUN_ID/error.json holds each traceback; "
                      "running the same command again retries them)", highlight=False)
        raise typer.Exit(1)


def _cache_root() -> Path:
    """$XDG_CACHE_HOME/synthmed, else ~/.cache/synthmed: reference classifiers are reused across output folders."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "synthmed"


@app.command()
def generate(
    dataset: str = typer.Option(..., "--dataset", "-d", help="MedMNIST flag or folder:PATH."),
    method: str = typer.Option(..., "--method", "-m", help="Generative method (ae, cvae, cgan, conv-*, dcgan, "
                                "wgan, wgan-gp, lsgan, sngan, bagan-gp)."),
    out: Path = typer.Option(..., "--out", "-o", help="The synthetic set FILE.npz; FILE.json (provenance), "
                             "FILE_grid.png, FILE_losses.png, FILE_closest.png and FILE_audit.json go beside it."),
    protocol: str = typer.Option("lowdata", "--protocol", help="lowdata | fraction | full: the real training "
                                 "subset the generator learns from."),
    per_class: int = typer.Option(None, "--per-class", "--synthetic-per-class", help="New images per class "
                                  "[150, as seed 000]."),
    ratio: float = typer.Option(None, "--synthetic-ratio", help="... or this multiple of each class's real count."),
    balance: bool = typer.Option(False, "--balance", help="... or fill every class up to the majority count "
                                 "(seed 002)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subset draw, the generator's training and sampling."),
    epochs: int = typer.Option(None, "--epochs", help="Override the method's number of training epochs."),
    per_class_train: int = typer.Option(None, "--per-class-train", help="lowdata: real training images per "
                                        "class [150]."),
    fraction: float = typer.Option(None, "--fraction", help="fraction: share of the training split (e.g. 0.05)."),
    stratified: bool = STRATIFIED,
    fidelity: bool = typer.Option(False, "--fidelity", help="Also measure class fidelity with a reference "
                                  "ResNet-18 trained on the real subset (cached, minutes on a CPU)."),
    min_confidence: float = typer.Option(None, "--min-confidence", help=MIN_CONFIDENCE_HELP.format(4)),
    fidelity_epochs: int = FIDELITY_EPOCHS,
    track_fid_every: int = typer.Option(None, "--track-fid-every", help="Record FID and KID every K epochs."),
    cache_dir: Path = GENERATOR_CACHE,
    device: str = DEVICE,
    precision: str = typer.Option("auto", "--precision", help="Reference classifier: auto | fp32 | bf16."),
    size: int = SIZE,
    data_root: str = DATA_ROOT,
    no_verify: bool = NO_VERIFY,
) -> None:
    """Fit a generative method on a real training subset, sample a synthetic set and audit it."""
    from synthmed.augment import create_augmenter
    from synthmed.data import load_dataset, make_subset
    from synthmed.experiment.synthesis import SynthesisPlan, synthesise, write_artifacts

    if out.suffix != ".npz":
        raise SynthmedError(f"--out {out} must end in .npz (the synthetic set is a MedMNIST-layout npz file)")
    if not create_augmenter(method).generative:
        from synthmed.augment import available

        choices = ", ".join(m for m in available() if create_augmenter(m).generative)
        raise SynthmedError(f"method {method!r} does not generate images on its own; choose one of {choices}")
    plan = SynthesisPlan(method, {"epochs": epochs} if epochs is not None else {}, per_class, ratio, balance,
                         min_confidence, fidelity, fidelity_epochs, track_fid_every=track_fid_every)
    plan.check()
    data = load_dataset(dataset, size=size, data_root=data_root, verify=not no_verify, seed=seed)
    subset = make_subset(data, protocol, seed=seed, per_class=per_class_train, fraction=fraction,
                         stratified=stratified)
    console.print(f"{data.name} {protocol}: {len(subset.train)} real training images, {len(subset.val)} validation")
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("", total=fidelity_epochs)
        result = synthesise(data, subset, plan, seed, cache_dir or _cache_root(), device, precision,
                            on_status=lambda text: progress.update(task, description=text),
                            on_reference_epoch=lambda row: progress.advance(task))
    write_artifacts(out.with_suffix(""), result, data, subset, seed, f"{data.name} {protocol} · {method} · seed {seed}")
    report = result.audit
    mem, col = report["memorisation"], report["collapse"]
    console.print(f"{len(result.labels)} synthetic images -> {out} (+ .json, _grid.png, _losses.png, _closest.png, "
                  f"_audit.json)" + (" · generator reloaded from the cache" if result.generator_cached else ""),
                  soft_wrap=True)
    console.print(f"near-copies (ratio < {mem['threshold']}): {mem['near_copy_share']:.1%} "
                  f"(real validation images: {mem['held_out_near_copy_share'] or 0:.1%})"
                  + (" - reconstructions by design" if report["reconstructions_by_design"] else "")
                  + "; diversity vs real (min over classes): "
                  + ("n/a" if col["min_diversity"] is None else f"{col['min_diversity']:.2f}"), soft_wrap=True)
    if "filter" in report:
        console.print(f"confidence filter >= {min_confidence}: kept {report['filter']['kept_share']:.0%} of the "
                      f"requested images from {report['filter']['candidates']} candidates", soft_wrap=True)
    if "fidelity" in report:
        overall = report["distribution"]["overall"]
        console.print(f"class fidelity: {report['fidelity']['accuracy']:.3f} "
                      f"(reference test ACC {report['fidelity']['reference']['test']['acc']:.3f}); in-domain FID "
                      f"{overall['fid']:.2f}, KID {overall['kid_mean']:.4f}, precision {overall['precision']:.2f}, "
                      f"recall {overall['recall']:.2f}", soft_wrap=True)
    if report["flags"]:
        console.print(f"[bold yellow]warning:[/] failed checks: {', '.join(report['flags'])}; see "
                      f"{out.with_suffix('').name}_audit.json before using this set", highlight=False, soft_wrap=True)


def _load_real(real: str, size: int, data_root: str | None, verify: bool):
    """REAL as a dataset name (MedMNIST flag or folder:PATH) or the path of a MedMNIST npz file."""
    from synthmed.data import load_dataset

    if real.endswith(".npz"):
        path = Path(real)
        flag = path.stem.rsplit("_", 1)[0] if path.stem.rsplit("_", 1)[-1].isdigit() else path.stem
        size = int(path.stem.rsplit("_", 1)[1]) if flag != path.stem else 28
        return load_dataset(flag, size=size, data_root=str(path.parent), verify=verify, download=False)
    return load_dataset(real, size=size, data_root=data_root, verify=verify)


def _load_synthetic(path: Path):
    """A synthetic set from `synthmed generate` (npz + side-car), or any npz with train_images / train_labels."""
    from synthmed.augment.export import read_synthetic, sidecar_path
    from synthmed.data.dataset import check_split
    from synthmed.data.medmnist import read_npz

    if sidecar_path(path).exists():
        return read_synthetic(path)[:2]
    if not path.exists():
        raise SynthmedError(f"{path} does not exist")
    arrays = read_npz(path)
    if "train_images" not in arrays or "train_labels" not in arrays:
        raise SynthmedError(f"{path} lacks train_images / train_labels (the MedMNIST layout synthmed generate writes)")
    labels = arrays["train_labels"]
    split = check_split(path.name, "train", arrays["train_images"], labels, int(labels.max()) + 1, "multi-class")
    return split.images, split.labels


@app.command()
def fidelity(
    real: str = typer.Argument(..., help="Real data: a MedMNIST flag (breastmnist), folder:PATH, or a MedMNIST npz."),
    synthetic: Path = typer.Argument(..., help="Synthetic set: an npz with train_images / train_labels."),
    features: str = typer.Option("domain", "--features", help="domain (a ResNet-18 trained on the real training "
                                 "split, cached) | inception (standard FID Inception from --inception-weights)."),
    inception_weights: Path = typer.Option(None, "--inception-weights", help="Local pt_inception-2015-12-05 "
                                           "weights file (never downloaded)."),
    split: str = typer.Option("train", "--split", help="Real split to compare with: train | val | test."),
    domain_epochs: int = typer.Option(30, "--domain-epochs", help="Epochs of the in-domain extractor."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(None, "--out", "-o", help="Write the full report as JSON here."),
    tsne: Path = typer.Option(None, "--tsne", help="Write a t-SNE PNG of real and synthetic features here."),
    cache_dir: Path = GENERATOR_CACHE,
    device: str = DEVICE,
    size: int = SIZE,
    data_root: str = DATA_ROOT,
    no_verify: bool = NO_VERIFY,
) -> None:
    """FID, KID, precision / recall and density / coverage of a synthetic set, overall and per class."""
    from synthmed.experiment.files import atomic_write_bytes, atomic_write_json
    from synthmed.metrics.distribution import DomainFeatures, InceptionFeatures, fidelity_from_features, tsne_plot

    if features not in ("domain", "inception"):
        raise SynthmedError(f"--features {features!r}: choose domain or inception")
    if split not in ("train", "val", "test"):
        raise SynthmedError(f"--split {split!r}: choose train, val or test")
    images, labels = _load_synthetic(synthetic)
    data = _load_real(real, size, data_root, not no_verify)
    if features == "inception":
        extractor = InceptionFeatures(inception_weights, device="cpu" if device == "auto" else device)
    else:
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("in-domain extractor (cached after the first time)", total=domain_epochs)
            extractor = DomainFeatures.for_dataset(data, cache_dir or _cache_root(), domain_epochs, seed, device,
                                                   on_epoch=lambda row: progress.advance(task))
    reference = data.split(split)
    with console.status("features and metrics"):
        real_feats, synth_feats = extractor.features(reference.images), extractor.features(images)
        result = fidelity_from_features(real_feats, reference.labels, synth_feats, labels, extractor.name,
                                        data.class_names, seed=seed)
    table = Table(title=f"{synthetic.name} vs {data.name} {split} ({extractor.name[:60]})")
    for name in ("set", "n real / synth", "FID", "KID (± std)", "precision", "recall", "density", "coverage"):
        table.add_column(name)
    overall = result["overall"]
    scope = "all" if not result["classes_only_real"] else "classes " + ",".join(map(str, overall["real_classes"]))
    rows = [(scope, overall)] + [(f"class {r['class']} {r['name'] or ''}"[:28], r)
                                           for r in result["per_class"] if "fid" in r]
    for name, m in rows:
        table.add_row(name, f"{m['n_real']} / {m['n_synthetic']}", f"{m['fid']:.2f}",
                      f"{m['kid_mean']:.4f} ± {m['kid_std']:.4f}", *(f"{m[k]:.3f}" for k in
                                                                   ("precision", "recall", "density", "coverage")))
    Console().print(table)
    console.print(result["note"], soft_wrap=True)
    if out:
        atomic_write_json(out, result)
    if tsne:
        atomic_write_bytes(tsne, tsne_plot(real_feats, reference.labels, synth_feats, labels, data.class_names,
                                           seed=seed, title=f"t-SNE · {synthetic.name} vs {data.name} {split}"))


def _experiment(file: Path, data_root: str | None, verify: bool, device: str):
    from synthmed.experiment.grid import available_datasets, load_experiment
    from synthmed.experiment.runner import Runner

    header, specs = load_experiment(file)
    runnable, skipped = available_datasets(specs, data_root)
    for name, hint in skipped.items():
        console.print(f"[yellow]skipped[/] {name}: {hint}", highlight=False, soft_wrap=True)
    runner = Runner(header["out"], data_root=data_root, verify=verify, device=device)
    return header, runnable, runner


@experiment_app.command("run")
def experiment_run(
    file: Path = typer.Argument(..., help="Experiment YAML (configs/*.yaml)."),
    data_root: str = DATA_ROOT,
    no_verify: bool = NO_VERIFY,
    device: str = DEVICE,
    report: bool = typer.Option(True, "--report/--no-report", help="Write the report at the end."),
    backend: str = typer.Option("local", "--backend", help="local (this process) | ray (one Ray task per run)."),
    address: str = typer.Option(None, "--address", help="ray: an existing cluster (auto or ray://HOST:10001); "
                                "default: start a local Ray instance on this machine's cores."),
    cpus_per_run: int = CPUS_PER_RUN,
    workers: int = WORKERS,
    mlflow: str = MLFLOW,
) -> None:
    """Run every run of FILE not yet in its store (killed or failed runs are redone, finished ones kept)."""
    header, specs, runner = _experiment(file, data_root, not no_verify, device)
    if not specs:
        raise SynthmedError(f"no dataset of {file} is available; see the download hints above")
    runner.validate(specs)
    if backend not in ("local", "ray"):
        raise SynthmedError(f"--backend {backend!r}: choose local or ray")
    console.print(f"experiment {header['name']} -> {runner.out}")
    _execute(runner, specs, report, backend, address, cpus_per_run, workers=workers, mlflow=mlflow,
             name=header["name"])


@experiment_app.command("status")
def experiment_status(
    file: Path = typer.Argument(..., help="Experiment YAML."),
    data_root: str = DATA_ROOT,
    no_verify: bool = NO_VERIFY,
) -> None:
    """Done, pending and failed runs of FILE (a failed run has runs/ID/error.json and no record)."""
    from synthmed.experiment.report import failed_runs

    header, specs, runner = _experiment(file, data_root, not no_verify, "cpu")
    pending = runner.pending(specs)
    ids = {s.key(runner.dataset(s).md5)[0] for s in pending}
    failed = [f for f in failed_runs(runner.out, set()) if f["run_id"] in ids] if (runner.out / "runs").exists() else []
    table = Table(title=f"{header['name']} ({runner.out})")
    for name in ("runs", "done", "pending", "failed"):
        table.add_column(name)
    table.add_row(str(len(specs)), str(len(specs) - len(pending)), str(len(pending) - len(failed)), str(len(failed)))
    Console().print(table)
    for f in failed:
        console.print(f"failed {f['run_id']} {f['what']}: {f['error']}", highlight=False, soft_wrap=True)


@app.command("report")
def report_cmd(
    out: Path = typer.Argument(..., help="Run folder holding results.sqlite."),
    fmt: str = typer.Option("html", "--format", help="html (writes report.md and report.html) | json (stdout)."),
) -> None:
    """Summarise a run folder: mean ± std over seeds, 95 % intervals, paired differences to `none`."""
    from synthmed.experiment.report import load_records, write_report

    if fmt == "json":
        sys.stdout.write(json.dumps(load_records(out), indent=1) + "\n")
        return
    if fmt not in ("html", "md"):
        raise SynthmedError(f"unknown report format {fmt!r}; choose html, md or json")
    for path in write_report(out):
        console.print(str(path))


@app.command("list")
def list_cmd() -> None:
    """Methods, recipes, classifiers and datasets synthmed knows."""
    from synthmed.augment import available
    from synthmed.data import FLAGS_2D
    from synthmed.nets.classifiers import CLASSIFIERS
    from synthmed.train.recipes import RECIPES

    for title, items in (("methods", available()), ("recipes", list(RECIPES)), ("classifiers", CLASSIFIERS),
                         ("datasets", [*FLAGS_2D, "folder:PATH"])):
        typer.echo(f"{title}: {', '.join(items)}")


def _dataset_table(name: str, size: int, data_root: str | None, verify: bool) -> None:
    from synthmed.data import load_dataset

    data = load_dataset(name, size=size, data_root=data_root, verify=verify)
    table = Table(title=f"{data.name} ({data.task}, {data.size}x{data.size}, "
                        f"{'RGB' if data.n_channels == 3 else 'grey'})")
    table.add_column("class")
    for split in ("train", "val", "test"):
        table.add_column(split, justify="right")
    counts = {s: data.counts(s) for s in ("train", "val", "test")}
    for i, cls in enumerate(data.class_names):
        table.add_row(f"{i} {cls}", *(str(counts[s][i]) for s in counts))
    table.add_row("total", *(str(len(data.split(s))) for s in counts))
    Console().print(table)
    md5_state = {True: "MD5 ok (official file)", False: "MD5 differs from the official file (--no-verify)",
                 None: "no official MD5 (image folder)"}[data.extra.get("md5_ok")]
    typer.echo(f"source: {data.source}\nmd5: {data.md5} - {md5_state}")


@data_app.command("info")
def data_info(name: str = typer.Argument(...), size: int = SIZE, data_root: str = DATA_ROOT,
              no_verify: bool = NO_VERIFY) -> None:
    """Classes, images per split and class, file and MD5."""
    _dataset_table(name, size, data_root, not no_verify)


@data_app.command("verify")
def data_verify(name: str = typer.Argument(...), size: int = SIZE, data_root: str = DATA_ROOT) -> None:
    """Check the file's MD5, keys, dtypes, shapes and labels; exit 2 with one line if anything is wrong."""
    _dataset_table(name, size, data_root, True)
    typer.echo("verified: keys, dtypes, shapes, label range and MD5 are as expected")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except SynthmedError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted: finished runs are kept in the store; run the same command again to resume")
        sys.exit(130)
