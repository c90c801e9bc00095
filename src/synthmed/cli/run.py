"""``synthmed run`` (a grid from options or a YAML file), ``synthmed experiment run | status`` and
``synthmed export``."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

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
    opt.all_fields(),
    {
        **{name: opt.Override(default=default) for name, default in AXIS_DEFAULTS.items()},
        "seed": opt.Override(
            default="0,1,2",
            help="Comma-separated seeds, or auto: add seeds in rounds (one per "
            "worker) until every method's verdict against none is decided or --max-seeds ran.",
        ),
    },
)
MAX_SEEDS = typer.Option(
    None,
    "--max-seeds",
    min=2,
    rich_help_panel=opt.EXECUTION,
    help="With --seeds auto: stop after this many seeds even if undecided.",
)
MARGIN = typer.Option(
    None, "--margin", rich_help_panel=opt.EXECUTION, help="Equivalence margin of the verdicts, in AUC (default 0.01)."
)
REFERENCE = typer.Option(
    None,
    "--reference",
    rich_help_panel=opt.EXECUTION,
    help="A second reference every method is compared with besides none (default: the "
    "count-matched oversample control at the same policy, where the grid holds it).",
)
#: The exit status of a command whose --time-budget ended before every run of its grid was stored (0: all done,
#: 1: a run failed, 2: a user error, 130: interrupted).
BUDGET_EXIT = 3
RESUME_FROM = typer.Option(
    None,
    "--resume-from",
    rich_help_panel=opt.EXECUTION,
    help="An export (`synthmed export`) whose runs are imported first and so not run again.",
)


@dataclass
class Execution:
    """How a grid runs: the options of execution shared by ``run`` and ``experiment run``."""

    data_root: str | None = None
    verify: bool = True
    device: str = "auto"
    classes: list[str] | None = None
    cache_dir: Path | None = None
    save_model: bool = False
    report: bool = True
    backend: str = "local"
    address: str | None = None
    workers: int | None = None
    cpus_per_run: int | None = None
    mlflow: str | None = None
    skip_absent: bool = False
    max_seeds: int | None = None
    auto_seeds: bool = False
    margin: float | None = None
    reference: str | None = None
    resume_from: Path | None = None
    time_budget: float | None = None  # seconds
    export_to: Path | None = None
    pages: list[Path] | None = None


class _BudgetReached(Exception):
    """A round of --seeds auto ended at the time budget: no further round starts."""


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
    max_seeds: int = MAX_SEEDS,
    margin: float = MARGIN,
    reference: str = REFERENCE,
    resume_from: Path = RESUME_FROM,
    time_budget: str = opt.TIME_BUDGET,
    export_to: Path = opt.EXPORT_TO,
    pages: list[Path] = opt.PAGES,
    real_curve: str = typer.Option(
        None,
        "--real-curve",
        rich_help_panel="Data and protocol",
        help="Also train none "
        "on these numbers of real images per class (comma list, nested within each "
        "seed's real pool): the curve the report reads every method's worth from.",
    ),
    **options: Any,
) -> None:
    """Run dataset x protocol x method x classifier x recipe x seed, skipping runs already in OUT/results.sqlite,
    then report."""
    from synthmed.experiment.grid import Grid, load_grid, override

    moved = opt.take_deprecated(options, warn)
    given = {k: v for k, v in options.items() if opt.given(ctx, k) or k in moved}
    auto = str(given.get("seed", "")).strip().lower() == "auto"
    if auto:
        given.pop("seed")
    grid = load_grid(config) if config is not None else Grid(name=out.name if out else "synthmed")
    if generator_epochs is not None:
        given["generator_epochs"] = generator_epochs
    if real_curve is not None:
        given["real_curve"] = real_curve
    grid = override(grid, given)
    if out is None and config is not None:
        out = Path(grid.out or f"runs/{grid.name}")
    if not grid.datasets or out is None:
        raise SynthmedError("give --dataset and --out (on the command line or as datasets / out in --config)")
    _execute(
        grid,
        opt.check_out_folder(out),
        Execution(
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
            auto_seeds=auto,
            max_seeds=max_seeds,
            margin=margin,
            reference=reference,
            resume_from=resume_from,
            time_budget=opt.parse_duration(time_budget),
            export_to=export_to,
            pages=opt.split_paths(pages),
        ),
    )


def _check(run: Execution) -> None:
    """Refuse inconsistent execution options before anything runs or is written."""
    if run.workers is not None and run.workers < 1:
        raise SynthmedError(f"--workers {run.workers} must be at least 1")
    if run.auto_seeds and run.max_seeds is None:
        raise SynthmedError("--seeds auto needs --max-seeds N (the most seeds to run, e.g. 20)")
    if run.max_seeds is not None and not run.auto_seeds:
        raise SynthmedError("--max-seeds applies to --seeds auto")
    if run.margin is not None and not run.margin >= 0:
        raise SynthmedError(f"--margin {run.margin} must be >= 0 (an AUC difference, e.g. 0.01)")
    if run.resume_from is not None:
        from synthmed.experiment.export import is_export

        if not is_export(run.resume_from):
            raise SynthmedError(
                f"--resume-from {run.resume_from} is not a synthmed export; give a folder written by `synthmed export`"
            )
    if run.time_budget is not None and run.backend == "ray":
        raise SynthmedError("--time-budget needs the local backend (Ray queues every run at once); drop --backend ray")
    if run.pages and run.export_to is None:
        raise SynthmedError("--pages regenerates tables from an export: give --export-to DIR too")
    if run.export_to is not None:
        from synthmed.experiment.export import check_export_target, check_pages

        check_export_target(run.export_to)
        check_pages(run.pages or [])


def _check_export(run: Execution, out: Path) -> None:
    if run.export_to is not None and run.export_to.resolve() == out.resolve():
        raise SynthmedError(f"--export-to {run.export_to} is the run folder itself; give another folder")


def _execute(grid: Any, out: Path, run: Execution) -> None:
    """Expand, check and run a grid with progress bars (in rounds of seeds with --seeds auto), then print the
    tables; exit code 3 when the time budget ended before the grid was done, else 1 when a run failed."""
    from synthmed.cli.render import ProgressView
    from synthmed.experiment.execute import Budget, Outcome, default_workers, execute
    from synthmed.experiment.grid import available_datasets, expand
    from synthmed.experiment.runner import Runner
    from synthmed.report import Settings, settings_for, terminal_tables
    from synthmed.report.render import rich_table

    _check(run)
    _check_export(run, out)
    budget = Budget(run.time_budget) if run.time_budget is not None else None
    if run.auto_seeds:
        grid.seeds = list(range(3))
    specs = expand(grid)
    methods = sorted({spec.method for spec in specs})
    if run.reference is not None and run.reference not in methods:
        raise SynthmedError(
            f"--reference {run.reference} names no method of the grid; choose one of {', '.join(methods)}"
        )
    for text in grid.notes:
        note(text)
    if run.skip_absent:
        specs, skipped = available_datasets(specs, run.data_root)
        for name, hint in skipped.items():
            console.print(f"[yellow]skipped[/] {escape(name)}: {escape(hint)}", highlight=False, soft_wrap=True)
        if not specs:
            raise SynthmedError("no dataset of the grid is available; see the download hints above")
        grid.datasets = [d for d in grid.datasets if d not in skipped]
    runner = Runner(
        out,
        data_root=run.data_root,
        verify=run.verify,
        device=run.device,
        save_model=run.save_model,
        cache_dir=run.cache_dir,
        classes=run.classes,
    )
    runner.validate(specs)
    failed: list[str] = []
    reached: list[Outcome] = []  # the outcome of the round the time budget ended

    def execute_round(grid: Any, report: bool = True, settings: Settings | None = None) -> None:
        with ProgressView(console, str(runner.store_path)) as view:
            outcome = execute(
                runner,
                expand(grid),
                backend=run.backend,
                workers=run.workers,
                cpus_per_run=run.cpus_per_run,
                address=run.address,
                report=report,
                mlflow=run.mlflow,
                name=grid.name,
                resume_from=run.resume_from,
                report_settings=settings,
                on_event=view,
                budget=budget,
                export_to=run.export_to,
            )
        run.resume_from = None  # imported once
        failed.extend(outcome.failed)
        if outcome.budget_reached:
            reached.append(outcome)
            raise _BudgetReached()

    if run.auto_seeds:
        from synthmed.experiment.sequential import Plan, run_until_decided

        step = run.workers or default_workers(run.device, 2, run.cpus_per_run or 1)
        plan = Plan(
            max_seeds=run.max_seeds or 2,
            step=step,
            margin=0.01 if run.margin is None else run.margin,
            reference=run.reference,
        )
        console.print(
            f"seeds until decided: {plan.start} seeds, then {plan.step} per round up to {plan.max_seeds}; "
            f"{plan.looks} planned looks at alpha {plan.alpha:g} / {plan.looks} = {plan.look_alpha:.4g}"
        )
        with contextlib.suppress(_BudgetReached):
            stop = run_until_decided(
                runner,
                grid,
                plan,
                lambda g: execute_round(g, report=False),
                on_look=lambda look: console.print(
                    f"look at {look.seeds} seeds: {len(look.undecided)} verdict(s) against none "
                    "undecided" + (f" ({'; '.join(look.undecided[:3])}...)" if look.undecided else ""),
                    markup=False,
                ),
            )
            console.print(f"stopped after {stop['seeds']} seeds: {stop['reason']}", soft_wrap=True)
        if run.report and runner.done():
            from synthmed.report import write_report

            console.print(
                "report: " + ", ".join(map(str, write_report(out, settings_for(out, run.margin, run.reference))))
            )
            if run.export_to is not None:
                from synthmed.experiment.export import finish_export

                finish_export(out, run.export_to, settings_for(run.export_to, run.margin, run.reference))
                console.print(f"export: {run.export_to} (report written there)", soft_wrap=True)
    else:
        with contextlib.suppress(_BudgetReached):
            execute_round(grid, run.report, settings_for(out, run.margin, run.reference))
    if runner.done():
        for table in terminal_tables(out, settings_for(out, run.margin, run.reference)):
            Console().print(rich_table(table))
    if run.pages:
        from synthmed.experiment.export import update_pages

        for line in update_pages(run.pages, run.export_to):
            console.print(line, highlight=False, soft_wrap=True)
    if failed:
        console.print(
            f"[bold red]{len(failed)} run(s) failed[/] (runs/RUN_ID/error.json holds each traceback; "
            "running the same command again retries them)",
            highlight=False,
        )
    if reached:
        console.print(
            f"budget reached: {reached[-1].done} runs done, {reached[-1].left} left; run the same command to continue",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(BUDGET_EXIT)
    if failed:
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
    seeds: str = typer.Option(
        None,
        "--seeds",
        rich_help_panel=opt.EXECUTION,
        help="auto: add seeds until decided (with --max-seeds) instead of the file's seeds.",
    ),
    max_seeds: int = MAX_SEEDS,
    margin: float = MARGIN,
    reference: str = REFERENCE,
    resume_from: Path = RESUME_FROM,
    time_budget: str = opt.TIME_BUDGET,
    export_to: Path = opt.EXPORT_TO,
    pages: list[Path] = opt.PAGES,
) -> None:
    """Run every run of FILE not yet in its store (killed or failed runs are redone, finished ones kept)."""
    from synthmed.experiment.grid import load_grid

    if seeds is not None and seeds.strip().lower() != "auto":
        raise SynthmedError(f"--seeds {seeds!r}: experiment run takes only --seeds auto (the file lists its seeds)")
    budget = opt.parse_duration(time_budget)
    grid = load_grid(file)
    out = opt.check_out_folder(Path(grid.out or f"runs/{grid.name}"))
    console.print(f"experiment {grid.name} -> {out}", markup=False)
    _execute(
        grid,
        out,
        Execution(
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
            auto_seeds=seeds is not None,
            max_seeds=max_seeds,
            margin=margin,
            reference=reference,
            resume_from=resume_from,
            time_budget=budget,
            export_to=export_to,
            pages=opt.split_paths(pages),
        ),
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
        console.print(f"failed {f['run_id']} {f['what']}: {f['error']}", highlight=False, soft_wrap=True, markup=False)


@app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder holding results.sqlite."),
    dest: Path = typer.Argument(..., help="Export folder: new, or an earlier export to merge into."),
) -> None:
    """Write the finished runs as JSON lines plus the figures the report needs (text to commit; no SQLite file, no
    weights, no synthetic images); `synthmed report DEST` and `--resume-from DEST` read it."""
    from synthmed.experiment.export import export_runs

    info = export_runs(run_dir, dest)
    console.print(
        f"{info['runs']} runs ({info['added']} new) -> {dest}: {info['bytes'] / 1024:.0f} KiB, "
        f"{info['bytes_per_run'] / 1024:.1f} KiB per run",
        soft_wrap=True,
    )
