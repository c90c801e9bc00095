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
console = Console(stderr=True)

DATA_ROOT = typer.Option(None, "--data-root", help="Folder holding the MedMNIST npz files "
                         "[default: $SYNTHMED_DATA, else ~/.medmnist].")
NO_VERIFY = typer.Option(False, "--no-verify", help="Skip the MD5 check (other checks still apply).")
STRATIFIED = typer.Option(False, "--stratified", help="fraction: draw the same share of every class.")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda.")
SIZE = typer.Option(28, "--size", help="Image size: 28, or 64/128/224 when that MedMNIST file is present.")


_TYPES = {"epochs": int, "patience": int, "per_class": int, "size": int, "stratified": bool, "paper_style": bool,
          "no_verify": bool, "report": bool, "save_model": bool, "synthetic_per_class": int, "balance": bool}


def _split(text: str, kind: type = str) -> list:
    return [kind(part.strip()) for part in text.split(",") if part.strip()]


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
    paper_style: bool = typer.Option(False, "--paper-style", help="Also record test scores every epoch to show "
                                     "the optimistic max-over-epochs figure seed 000 reported."),
    synthetic_per_class: int = typer.Option(None, "--synthetic-per-class", help="Generative methods: new images "
                                            "per class [150, as seed 000]."),
    balance: bool = typer.Option(False, "--balance", help="Generative methods: fill every class up to the "
                                 "majority count instead (seed 002)."),
    device: str = DEVICE,
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 where fast) | fp32 | bf16."),
    size: int = SIZE,
    data_root: str = DATA_ROOT,
    no_verify: bool = NO_VERIFY,
    report: bool = typer.Option(True, "--report/--no-report", help="Write report.md and report.html at the end."),
    save_model: bool = typer.Option(False, "--save-model", help="Keep each run's selected weights (model.pt)."),
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
    from synthmed.experiment.report import print_table, write_report
    from synthmed.experiment.runner import Runner, expand
    from synthmed.train.recipes import get_recipe

    if not o["dataset"] or not o["out"]:
        raise SynthmedError("give --dataset and --out (on the command line or as keys of --config)")
    out = Path(o["out"])
    specs = expand(_split(o["dataset"]), _split(o["methods"]), _split(o["seeds"], int), protocol=o["protocol"],
                   recipe=o["recipe"], classifier=o["classifier"], epochs=o["epochs"], patience=o["patience"],
                   per_class=o["per_class"], fractions=_split(o["fraction"], float) if o["fraction"] else None,
                   stratified=o["stratified"], paper_style=o["paper_style"], size=o["size"],
                   precision=o["precision"], synthetic_per_class=o["synthetic_per_class"], balance=o["balance"])
    runner = Runner(out, data_root=o["data_root"], verify=not o["no_verify"], device=o["device"],
                    save_model=o["save_model"])
    runner.validate(specs)
    todo = runner.pending(specs)
    console.print(f"{len(specs)} runs, {len(specs) - len(todo)} already in {out / 'results.sqlite'}, "
                  f"{len(todo)} to do")
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        total = progress.add_task("runs", total=len(todo))
        for spec in todo:
            label = f"{spec.dataset} {spec.method} seed {spec.seed}"
            epochs_task = progress.add_task(f"  {label}", total=get_recipe(spec.recipe, spec.epochs).epochs)

            def on_epoch(row: dict, task=epochs_task, label=label) -> None:
                progress.update(task, advance=1, description=f"  {label} val AUC {row['val_auc']:.3f}")

            record = runner.run(spec, on_epoch=on_epoch)
            progress.update(epochs_task, visible=False)
            progress.advance(total)
            console.print(f"{label}: test AUC {record['test_auc']:.3f} ACC {record['test_acc']:.3f} "
                          f"(epoch {record['best_epoch']} of {record['epochs_run']}, {record['total_time']:.0f} s)")
    print_table(out, console)
    if o["report"]:
        paths = write_report(out)
        console.print("report: " + ", ".join(str(p) for p in paths))


def _cache_root() -> Path:
    """$XDG_CACHE_HOME/synthmed, else ~/.cache/synthmed: reference classifiers are reused across output folders."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "synthmed"


@app.command()
def generate(
    dataset: str = typer.Option(..., "--dataset", "-d", help="MedMNIST flag or folder:PATH."),
    method: str = typer.Option(..., "--method", "-m", help="Generative method (ae, cvae, cgan, conv-ae, ...)."),
    out: Path = typer.Option(..., "--out", "-o", help="The synthetic set FILE.npz; FILE.json (provenance), "
                             "FILE_grid.png, FILE_losses.png, FILE_closest.png and FILE_audit.json go beside it."),
    protocol: str = typer.Option("lowdata", "--protocol", help="lowdata | fraction | full: the real training "
                                 "subset the generator learns from."),
    per_class: int = typer.Option(None, "--per-class", "--synthetic-per-class", help="New images per class "
                                  "[150, as seed 000]."),
    balance: bool = typer.Option(False, "--balance", help="Fill every class up to the majority count instead "
                                 "(seed 002)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subset draw, the generator's training and sampling."),
    epochs: int = typer.Option(None, "--epochs", help="Override the method's number of training epochs."),
    per_class_train: int = typer.Option(None, "--per-class-train", help="lowdata: real training images per "
                                        "class [150]."),
    fraction: float = typer.Option(None, "--fraction", help="fraction: share of the training split (e.g. 0.05)."),
    stratified: bool = STRATIFIED,
    fidelity: bool = typer.Option(False, "--fidelity", help="Also measure class fidelity with a reference "
                                  "ResNet-18 trained on the real subset (cached, minutes on a CPU)."),
    fidelity_epochs: int = typer.Option(30, "--fidelity-epochs", help="Epochs of the reference classifier."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Reference classifier cache "
                                   "(default: $XDG_CACHE_HOME/synthmed, else ~/.cache/synthmed)."),
    device: str = DEVICE,
    precision: str = typer.Option("auto", "--precision", help="Reference classifier: auto | fp32 | bf16."),
    size: int = SIZE,
    data_root: str = DATA_ROOT,
    no_verify: bool = NO_VERIFY,
) -> None:
    """Fit a generative method on a real training subset, sample a synthetic set and audit it."""
    from synthmed.augment import create_augmenter
    from synthmed.augment.export import export_synthetic
    from synthmed.data import load_dataset, make_subset
    from synthmed.experiment.files import atomic_write_bytes, atomic_write_json
    from synthmed.experiment.plots import closest_pairs, image_grid, loss_curves
    from synthmed.experiment.runner import synthetic_counts
    from synthmed.metrics.memorisation import audit, reconstructs

    if out.suffix != ".npz":
        raise SynthmedError(f"--out {out} must end in .npz (the synthetic set is a MedMNIST-layout npz file)")
    if balance and per_class is not None:
        raise SynthmedError("give either --per-class N or --balance, not both")
    if not create_augmenter(method).generative:
        raise SynthmedError(f"method {method!r} does not generate images; choose a generative one "
                            "(ae, cvae, cgan, conv-ae, conv-cvae, conv-cgan)")
    params = {"device": device, **({"epochs": epochs} if epochs is not None else {})}
    augmenter = create_augmenter(method, **params)
    data = load_dataset(dataset, size=size, data_root=data_root, verify=not no_verify, seed=seed)
    subset = make_subset(data, protocol, seed=seed, per_class=per_class_train, fraction=fraction,
                         stratified=stratified)
    train = subset.train
    stem = out.with_suffix("")
    console.print(f"{data.name} {protocol}: {len(train)} real training images, {len(subset.val)} validation")
    counts = synthetic_counts(train.labels, data.n_classes, per_class, balance)
    if sum(counts.values()) == 0:
        raise SynthmedError("nothing to generate: " + ("the training subset is already balanced; give --per-class N"
                                                      if balance else "--per-class must be at least 1"))
    with console.status(f"fitting {method} ({augmenter.params['epochs']} epochs)"):
        augmenter.fit(train.images, train.labels, seed=seed)
    images, labels = augmenter.sample(counts, seed=seed)
    with console.status("auditing: memorisation, collapse, losses"):
        report = audit(images, labels, train.images, train.labels, augmenter.history_, held_out=subset.val.images,
                       reconstructions=reconstructs(augmenter), seed=seed)
    if fidelity:
        from synthmed.metrics.fidelity import class_fidelity, reference_classifier

        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("reference classifier (cached after this)", total=fidelity_epochs)
            reference = reference_classifier(data, subset, seed, cache_dir or _cache_root(), fidelity_epochs,
                                             device, precision, on_epoch=lambda row: progress.advance(task))
        report["fidelity"] = {**class_fidelity(reference.model, images, labels, data.task,
                                               reference.meta["precision"]),
                              "reference": {**reference.meta, "path": str(reference.path),
                                            "cached": reference.cached}}
    provenance = {"method": method, "config": augmenter.config(), "seed": seed, "dataset": data.name,
                  "dataset_md5": data.md5, "size": data.size, "class_names": data.class_names,
                  "n_classes": data.n_classes, "protocol": protocol, "subset_params": subset.params,
                  "subset": subset.indices(), "requested_per_class": counts, "audit_flags": report["flags"],
                  "reconstructions_by_design": report["reconstructions_by_design"],
                  "audit": f"{stem.name}_audit.json"}
    export_synthetic(out, images, labels, provenance)
    title = f"{data.name} {protocol} · {method} · seed {seed}"
    pngs = {"grid": image_grid(train.images, train.labels, images, labels, data.class_names, title=title,
                               seed=seed),
            "losses": loss_curves(augmenter.history_, f"{method} losses · {title}"),
            "closest": closest_pairs(images, train.images, report["memorisation"]["closest"])}
    for name, png in pngs.items():
        atomic_write_bytes(f"{stem}_{name}.png", png)
    for pair in report["memorisation"]["closest"]:
        pair["train_pool_index"] = int(subset.train_indices[pair["train"]])
    report["indices"] = ("memorisation 'nearest' and 'train' index the training subset (side-car subset.train); "
                         "'synthetic' indexes the npz's train_images; 'train_pool_index' is the pool index")
    atomic_write_json(f"{stem}_audit.json", {"method": method, "dataset": data.name, "seed": seed, **report})
    mem, col = report["memorisation"], report["collapse"]
    console.print(f"{len(labels)} synthetic images -> {out} (+ .json, _grid.png, _losses.png, _closest.png, "
                  f"_audit.json)", soft_wrap=True)
    console.print(f"near-copies (ratio < {mem['threshold']}): {mem['near_copy_share']:.1%} "
                  f"(real validation images: {mem['held_out_near_copy_share'] or 0:.1%})"
                  + (" - reconstructions by design" if report["reconstructions_by_design"] else "")
                  + "; diversity vs real (min over classes): "
                  + ("n/a" if col["min_diversity"] is None else f"{col['min_diversity']:.2f}"), soft_wrap=True)
    if "fidelity" in report:
        console.print(f"class fidelity: {report['fidelity']['accuracy']:.3f} "
                      f"(reference test ACC {report['fidelity']['reference']['test']['acc']:.3f})", soft_wrap=True)
    if report["flags"]:
        console.print(f"[bold yellow]warning:[/] failed checks: {', '.join(report['flags'])}; see "
                      f"{stem.name}_audit.json before using this set", highlight=False, soft_wrap=True)


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
