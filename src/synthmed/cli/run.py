"""``synthmed run`` (a grid from options or a YAML file), ``synthmed experiment run | status`` and
``synthmed export``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from synthmed.cli import options as opt
from synthmed.cli.app import app, console, experiment_app, warn
from synthmed.errors import SynthmedError

if TYPE_CHECKING:
    from synthmed.experiment.execution import Execution

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
            "worker) until every verdict (against none, the copies and any --reference) is decided or --max-seeds ran.",
        ),
    },
)
#: The exit status of a command whose --time-budget ended, or that was asked to stop (`synthmed experiment stop`),
#: before every run of its grid was stored (0: all done, 1: a run failed, 2: a user error, 130: interrupted).
BUDGET_EXIT = 3


@app.command()
@opt.with_parameters(RUN_OPTIONS + opt.execution_parameters())
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
    real_curve: str = typer.Option(
        None,
        "--real-curve",
        rich_help_panel="Data and protocol",
        help="Also train none "
        "on these numbers of real images per class (comma list, nested within each "
        "seed's real pool): the curve the report reads every method's worth from; at the protocol's own count "
        "the point is none itself.",
    ),
    **options: Any,
) -> None:
    """Run dataset x protocol x method x classifier x recipe x seed, skipping runs already in OUT/results.sqlite,
    then report."""
    from synthmed.experiment.execution import build
    from synthmed.experiment.grid import Grid, load_grid, override

    execution_given = opt.execution_given(ctx, options)
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
    execution = build(grid.execution, execution_given, auto_seeds=auto)
    _run_and_show(grid, opt.check_out_folder(out), execution)


def _run_and_show(grid: Any, out: Path, execution: Execution) -> None:
    """Run a grid with progress bars, then print the tables; exit status 3 when the time budget ended or a stop was
    requested before the grid was done, else 1 when a run failed."""
    from synthmed.cli.render import ProgressView
    from synthmed.experiment.execute import run_grid
    from synthmed.report import settings_for, terminal_tables
    from synthmed.report.render import rich_table

    with ProgressView(console, str(out / "results.sqlite")) as view:
        outcome = run_grid(grid, execution, out, on_event=view)
    if outcome.done:
        for table in terminal_tables(out, settings_for(out, execution.margin, execution.reference)):
            Console().print(rich_table(table))
    if outcome.failed:
        console.print(
            f"[bold red]{len(outcome.failed)} run(s) failed[/] (runs/RUN_ID/error.json holds each traceback; "
            "running the same command again retries them)",
            highlight=False,
        )
    if outcome.stopped and outcome.left:
        console.print(
            f"stopped on request: {outcome.done} runs done, {outcome.left} left; run the same command to continue",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(BUDGET_EXIT)
    if outcome.budget_reached:
        console.print(
            f"budget reached: {outcome.done} runs done, {outcome.left} left; run the same command to continue",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(BUDGET_EXIT)
    if outcome.left_to_others:
        console.print(
            f"{outcome.left_to_others} run(s) left to the processes that hold them (--no-wait-for-others; they "
            f"finish them, and make any --seeds auto look); {outcome.done} runs of the grid done",
            highlight=False,
            soft_wrap=True,
        )
    if outcome.failed:
        raise typer.Exit(1)


ROWS_OPTION = typer.Option(
    None,
    "--rows",
    rich_help_panel=opt.EXECUTION,
    help="Only these rows of FILE: comma-separated regular expressions, each matching a row label in full as the "
    "report writes it (ddpm, 'ddpm tstr pretrain', 'dcgan.*'; a real-image curve point is 'none 25/class'); a label "
    "copied whole is taken as it is, its commas and regex characters included. The runs keep the ids they have in "
    "the whole file, so one machine can take some rows and another the rest.",
)


def _select(grid: Any, seeds: str | None, rows: str | None) -> bool:
    """Apply ``--seeds`` (auto, or a comma list replacing the file's seeds) and ``--rows`` to an experiment file's
    grid; whether the seeds are auto. ``--rows`` with auto is refused: every look reads every row."""
    from synthmed.spec import split_values

    auto = seeds is not None and seeds.strip().lower() == "auto"
    if seeds is not None and not auto:
        grid.seeds = split_values("seed", seeds, "--seeds")
    if rows is not None:
        if auto:
            raise SynthmedError(
                "--rows runs some rows only, and --seeds auto decides on every row: give the seeds (--seeds 7,8,9) "
                "or drop --rows"
            )
        grid.rows = [p.strip() for p in rows.split(",") if p.strip()]
        if not grid.rows:
            raise SynthmedError("--rows names no row; give row labels or regular expressions, e.g. --rows 'ddpm.*'")
    return auto


@experiment_app.command("run")
@opt.with_parameters(opt.execution_parameters())
def experiment_run(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="Experiment YAML (configs/*.yaml)."),
    seeds: str = typer.Option(
        None,
        "--seeds",
        rich_help_panel=opt.EXECUTION,
        help="auto: add seeds until decided (with --max-seeds) instead of the file's seeds; or a comma list: run "
        "these seeds instead of the file's.",
    ),
    rows: str = ROWS_OPTION,
    **options: Any,
) -> None:
    """Run every run of FILE not yet in its store (killed or failed runs are redone, finished ones kept)."""
    from synthmed.experiment.execution import build
    from synthmed.experiment.grid import load_grid

    grid = load_grid(file)
    auto = _select(grid, seeds, rows)
    execution = build(grid.execution, opt.execution_given(ctx, options), auto_seeds=auto, skip_absent=True)
    out = opt.check_out_folder(Path(grid.out or f"runs/{grid.name}"))
    console.print(f"experiment {grid.name} -> {out}", markup=False)
    _run_and_show(grid, out, execution)


@experiment_app.command("stop")
def experiment_stop(
    file: Path = typer.Argument(..., help="Experiment YAML whose running commands should stop."),
) -> None:
    """Ask every `experiment run` of FILE running now to finish the runs it has in flight, store and export them, and
    start no other (its exit status is then 3, as at the end of a time budget); a command started later runs as
    usual. For handing the machine back, or putting another study first, without losing a run."""
    from synthmed.experiment.budget import request_stop
    from synthmed.experiment.grid import load_grid

    grid = load_grid(file)
    path = request_stop(Path(grid.out or f"runs/{grid.name}"))
    console.print(
        f"stop requested ({path}): the runs of {grid.name} in flight finish and are stored; no new run starts",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )


@experiment_app.command("status")
def experiment_status(
    file: Path = typer.Argument(..., help="Experiment YAML."),
    data_root: str = opt.DATA_ROOT,
    no_verify: bool = opt.NO_VERIFY,
    resume_from: Path | None = typer.Option(
        None,
        "--resume-from",
        help="An export whose runs count as done, as `experiment run --resume-from` would skip them (nothing is "
        "imported).",
    ),
    workers: int = typer.Option(
        0, "--workers", help="Workers the wall-time estimate assumes (default: one per CPU core).", min=0
    ),
    cache_dir: Path | None = opt.execution_option("cache_dir"),
    seeds: str = typer.Option(None, "--seeds", help="A comma list: count these seeds instead of the file's."),
    rows: str = ROWS_OPTION,
) -> None:
    """Done, pending and failed runs of FILE (a failed run has runs/ID/error.json and no record), and what the
    pending ones should cost, from the longest stored run of each one's config, else of its method (the number to size
    a step's --time-budget by), and from the median one (the number to plan by). A run whose generator is fitted in
    the cache (--generator-cache, else the file's execution.cache_dir, else OUT/cache, as `experiment run` reads it)
    is costed without the fit."""
    import copy
    import os

    from rich.table import Table

    from synthmed.experiment.budget import (
        STOP_FILE,
        Durations,
        estimate,
        machine_class,
        measured_here,
        scaling_line,
        speed_factors,
        stored_timings,
        typical,
    )
    from synthmed.experiment.execute import planned_fits
    from synthmed.experiment.export import is_export, study_plan
    from synthmed.experiment.grid import available_datasets, expand, load_grid
    from synthmed.experiment.runner import Runner
    from synthmed.experiment.sequential import progress_line
    from synthmed.report.records import EXPORT_RECORDS, failed_runs
    from synthmed.store import read_jsonl

    if resume_from is not None and not is_export(resume_from):
        raise SynthmedError(
            f"--resume-from {resume_from} is not a synthmed export; give a folder written by `synthmed export`"
        )
    grid = load_grid(file)
    if seeds is not None and seeds.strip().lower() == "auto":
        raise SynthmedError("--seeds auto: status reads a study's plan from its store; give a comma list or none")
    _select(grid, seeds, rows)
    specs, _ = available_datasets(expand(grid), data_root)
    cache = cache_dir or grid.execution.get("cache_dir")  # the file's own cache: a study sharing another's fits
    runner = Runner(
        grid.out or f"runs/{grid.name}", data_root=data_root, verify=not no_verify, device="cpu", cache_dir=cache
    )
    exported = read_jsonl(resume_from / EXPORT_RECORDS) if resume_from is not None else []
    pending = runner.pending(specs, runner.done() | {r["run_id"] for r in exported})
    ids = {runner.run_id(s) for s in pending}
    failed = [f for f in failed_runs(runner.out, set()) if f["run_id"] in ids]
    where = f"{grid.name}: {runner.out}" + (f", and {resume_from} as done" if resume_from is not None else "")
    Console().print(where, highlight=False, soft_wrap=True, markup=False)
    table = Table()
    for name in ("runs", "done", "pending", "failed"):
        table.add_column(name)
    table.add_row(str(len(specs)), str(len(specs) - len(pending)), str(len(pending) - len(failed)), str(len(failed)))
    Console().print(table)
    for f in failed:
        console.print(f"failed {f['run_id']} {f['what']}: {f['error']}", highlight=False, soft_wrap=True, markup=False)
    running = _running(runner.store_path, ids - {f["run_id"] for f in failed})  # the table's pending runs
    if running:
        line = f"{running} of the pending runs are running now (claimed by a process whose lease is live)"
        Console().print(line, highlight=False, soft_wrap=True, markup=False)
    if (request := runner.out / STOP_FILE).is_file():
        when = request.read_text(encoding="utf-8").strip()
        line = f"last stop request: {when} (commands started before it end after their runs in flight)"
        Console().print(line, highlight=False, soft_wrap=True, markup=False)
    stop = study_plan(runner.out, resume_from)
    if stop is not None:  # a --seeds auto study: its plan and looks so far, the store's, else its export's
        picked = " and ".join(f"the {what} given" for what, given in (("seeds", seeds), ("rows", rows)) if given)
        counted = picked or "the file's own seeds"
        Console().print(progress_line(stop, counted), highlight=False, soft_wrap=True, markup=False)
    timings = stored_timings(runner.store_path, exported)
    machine = machine_class(grid.execution.get("device") or "auto")  # the device `experiment run` would use
    factors = speed_factors(timings, machine)
    durations = Durations.of(timings, factors, machine)
    typical_durations = Durations.of(typical(measured_here(timings, machine), factors), factors)
    if pending and (line := scaling_line(factors, machine, timings)):
        Console().print(line, highlight=False, soft_wrap=True, markup=False)
    done = runner.done() | {r["run_id"] for r in exported}

    def cost_line(runs: list, prefix: str = "") -> None:
        keyed = [
            ((runner.dataset(s).name, s.protocol, s.method), s.key(runner.dataset(s).md5)[1], fit, reference)
            for s, fit, reference in planned_fits(runner, runs)
        ]
        longest, median = estimate(keyed, durations), estimate(keyed, typical_durations)
        line = prefix + longest.line(workers or os.cpu_count() or 1, median)
        Console().print(line, highlight=False, soft_wrap=True, markup=False)

    if pending:
        cost_line(pending)
    if stop is not None and stop["reason"].startswith("in progress") and seeds is None and rows is None:
        # what the next round and the rest cost
        looks = stop["looks"]
        first = looks[-1]["seeds"] + stop["step"] if looks else stop["start"]
        rounds = (("the next round", min(first, stop["max_seeds"])), ("up to --max-seeds", stop["max_seeds"]))
        for label, seeds in rounds:
            grid.seeds = list(range(seeds))
            more = runner.pending(available_datasets(expand(copy.deepcopy(grid)), data_root)[0], done)
            if more:
                cost_line(more, f"{label} ({seeds} seeds): ")


def _running(store_path: Path, pending: set[str]) -> int:
    """How many of the ``pending`` run ids a live process holds a claim on (nothing is written)."""
    from synthmed.store import ResultStore

    if not store_path.exists():
        return 0
    with ResultStore(store_path) as store:
        return len(pending & store.claimed_by_others(""))


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
