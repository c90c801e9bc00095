"""``synthmed run`` (a grid from options or a YAML file) and ``synthmed experiment run | status``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from synthmed.cli import options as opt
from synthmed.cli.app import app, console, experiment_app, note, warn
from synthmed.errors import SynthmedError

#: The run options whose defaults are the grid's (an axis), shown in --help as such.
AXIS_DEFAULTS = {
    "dataset": None,
    "method": "none",
    "seed": "0,1,2",
    "protocol": "lowdata",
    "classifier": "resnet18",
    "recipe": "medmnist",
}
RUN_OPTIONS = opt.schema_parameters(
    opt.all_fields(), {name: opt.Override(default=default) for name, default in AXIS_DEFAULTS.items()}
)


@app.command()
@opt.with_parameters(RUN_OPTIONS)
def run(
    ctx: typer.Context,
    config: Path = typer.Option(
        None, "--config", "-c", help="Experiment YAML (see configs/); command-line options override it."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Run folder (holds results.sqlite) (default: the file's out)."),
    generator_epochs: int = typer.Option(
        None,
        "--generator-epochs",
        min=1,
        help="Set the epochs of every method that trains networks (its preset otherwise).",
    ),
    generator_cache: Path = opt.GENERATOR_CACHE,
    device: str = opt.DEVICE,
    data_root: str = opt.DATA_ROOT,
    no_verify: bool = opt.NO_VERIFY,
    classes: str = opt.CLASSES,
    report: bool = opt.REPORT,
    save_model: bool = typer.Option(False, "--save-model", help="Keep each run's selected weights (model.pt)."),
    workers: int = opt.WORKERS,
    cpus_per_run: int = opt.CPUS_PER_RUN,
    mlflow: str = opt.MLFLOW,
    **options: Any,
) -> None:
    """Run dataset x protocol x method x classifier x recipe x seed, skipping runs already in OUT/results.sqlite,
    then report."""
    from synthmed.experiment.grid import Grid, load_grid, override

    moved = opt.take_deprecated(options, warn)
    given = {k: v for k, v in options.items() if opt.given(ctx, k) or k in moved}
    grid = load_grid(config) if config is not None else Grid(name=out.name if out else "synthmed")
    if generator_epochs is not None:
        given["generator_epochs"] = generator_epochs
    grid = override(grid, given)
    if out is None and config is not None:
        out = Path(grid.out or f"runs/{grid.name}")
    if not grid.datasets or out is None:
        raise SynthmedError("give --dataset and --out (on the command line or as datasets / out in --config)")
    _execute(
        grid,
        opt.check_out_folder(out),
        data_root=data_root,
        verify=not no_verify,
        device=device,
        classes=opt.split_classes(classes),
        cache_dir=generator_cache,
        save_model=save_model,
        report=report,
        workers=workers,
        cpus_per_run=cpus_per_run,
        mlflow=mlflow,
    )


def _execute(
    grid: Any,
    out: Path,
    *,
    data_root: str | None,
    verify: bool,
    device: str,
    classes: list[str] | None,
    cache_dir: Path | None = None,
    save_model: bool = False,
    report: bool = True,
    backend: str = "local",
    address: str | None = None,
    workers: int = 1,
    cpus_per_run: int = 1,
    mlflow: str | None = None,
    skip_absent: bool = False,
) -> None:
    """Expand, check and run a grid with progress bars, then print the tables; exit code 1 when a run failed.
    ``skip_absent``: leave out datasets whose file is missing (an experiment file's long list), with the hint."""
    from synthmed.cli.render import ProgressView
    from synthmed.experiment.execute import execute
    from synthmed.experiment.grid import available_datasets, expand
    from synthmed.experiment.runner import Runner
    from synthmed.report import terminal_tables
    from synthmed.report.render import rich_table

    if workers < 1 or cpus_per_run < 1:
        raise SynthmedError(f"--workers {workers} and --cpus-per-run {cpus_per_run} must be at least 1")
    specs = expand(grid)
    for text in grid.notes:
        note(text)
    if skip_absent:
        specs, skipped = available_datasets(specs, data_root)
        for name, hint in skipped.items():
            console.print(f"[yellow]skipped[/] {name}: {hint}", highlight=False, soft_wrap=True)
        if not specs:
            raise SynthmedError("no dataset of the grid is available; see the download hints above")
    runner = Runner(
        out,
        data_root=data_root,
        verify=verify,
        device=device,
        save_model=save_model,
        cache_dir=cache_dir,
        classes=classes,
    )
    runner.validate(specs)
    with ProgressView(console, str(runner.store_path)) as view:
        outcome = execute(
            runner,
            specs,
            backend=backend,
            workers=workers,
            cpus_per_run=cpus_per_run,
            address=address,
            report=report,
            mlflow=mlflow,
            name=grid.name,
            on_event=view,
        )
    for table in terminal_tables(out):
        Console().print(rich_table(table))
    if outcome.failed:
        console.print(
            f"[bold red]{len(outcome.failed)} run(s) failed[/] (runs/RUN_ID/error.json holds each "
            "traceback; running the same command again retries them)",
            highlight=False,
        )
        raise typer.Exit(1)


@experiment_app.command("run")
def experiment_run(
    file: Path = typer.Argument(..., help="Experiment YAML (configs/*.yaml)."),
    data_root: str = opt.DATA_ROOT,
    no_verify: bool = opt.NO_VERIFY,
    device: str = opt.DEVICE,
    classes: str = opt.CLASSES,
    report: bool = opt.REPORT,
    backend: str = opt.BACKEND,
    address: str = opt.ADDRESS,
    cpus_per_run: int = opt.CPUS_PER_RUN,
    workers: int = opt.WORKERS,
    mlflow: str = opt.MLFLOW,
) -> None:
    """Run every run of FILE not yet in its store (killed or failed runs are redone, finished ones kept)."""
    from synthmed.experiment.grid import load_grid

    grid = load_grid(file)
    out = opt.check_out_folder(Path(grid.out or f"runs/{grid.name}"))
    console.print(f"experiment {grid.name} -> {out}")
    _execute(
        grid,
        out,
        data_root=data_root,
        verify=not no_verify,
        device=device,
        classes=opt.split_classes(classes),
        report=report,
        backend=backend,
        address=address,
        workers=workers,
        cpus_per_run=cpus_per_run,
        mlflow=mlflow,
        skip_absent=True,
    )


@experiment_app.command("status")
def experiment_status(
    file: Path = typer.Argument(..., help="Experiment YAML."),
    data_root: str = opt.DATA_ROOT,
    no_verify: bool = opt.NO_VERIFY,
) -> None:
    """Done, pending and failed runs of FILE (a failed run has runs/ID/error.json and no record)."""
    from rich.table import Table

    from synthmed.experiment.grid import available_datasets, expand, load_grid
    from synthmed.experiment.runner import Runner
    from synthmed.report.records import failed_runs

    grid = load_grid(file)
    specs, _ = available_datasets(expand(grid), data_root)
    runner = Runner(grid.out or f"runs/{grid.name}", data_root=data_root, verify=not no_verify, device="cpu")
    pending = runner.pending(specs)
    ids = {runner.run_id(s) for s in pending}
    failed = [f for f in failed_runs(runner.out, set()) if f["run_id"] in ids]
    table = Table(title=f"{grid.name} ({runner.out})")
    for name in ("runs", "done", "pending", "failed"):
        table.add_column(name)
    table.add_row(str(len(specs)), str(len(specs) - len(pending)), str(len(pending) - len(failed)), str(len(failed)))
    Console().print(table)
    for f in failed:
        console.print(f"failed {f['run_id']} {f['what']}: {f['error']}", highlight=False, soft_wrap=True)
