"""``run_grid``: the one driver of a grid. It expands and checks the grid, runs it on a backend (in rounds of seeds
with ``--seeds auto``), inserts the records, writes the report and the export, and mirrors to MLflow.

``synthmed run`` and ``synthmed experiment run`` parse their options into a ``Grid`` and an ``Execution``, call
``run_grid`` and render the ``Event`` objects it emits (planned, run started, epoch, status, finished, failed,
waiting, notes, looks) and the final table; the Python API calls it the same way.

- **Where**: ``local`` runs in this process (one worker) or in a pool of single-thread worker processes, by
  default one per core on a CPU when the grid has two or more runs (two 1-thread processes train ResNet-18 faster
  together than one 2-thread process); ``ray`` runs one Ray task per run.
- **Claims** (``claims.Claims`` over ``ResultStore.claim``): each run is claimed in the store just before it
  starts and its lease renewed while it computes, so several processes on one folder (a SLURM job array, two
  terminals) split a grid; when only runs claimed by others are left, a process waits and takes over any whose
  holder stopped renewing (a killed job), then reports.
- **Nothing lost**: workers compute and write their run folders; this process alone inserts records, as they
  arrive, so a killed driver loses only the runs in flight, and the same command later skips every stored run.
  With ``export_to``, each record is also appended to an export as it is stored (``export.append_run``).
- **Time budget** (``budget.Budget``): no run starts whose estimated duration (``budget.Durations``: the longest
  stored run of the same config, else of the same dataset, protocol and method, else ``budget.DEFAULT_RUN_SECONDS``;
  without the generator fit where the run's fit is cached, with it where the run will make it) exceeds the time
  left; at the deadline the runs in flight are abandoned (no record, no error.json, no temporary file) and the
  outcome says ``budget_reached``.
- **Stop on request** (``budget.request_stop``, ``synthmed experiment stop``): a command started before the request
  starts no further run, lets its runs in flight finish and be stored, and ends (``stopped``): the graceful end a
  deadline cannot give, for handing a machine back or putting another study first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthmed.errors import SynthmedError
from synthmed.experiment.budget import (
    STOP_FILE,
    Budget,
    Durations,
    StopMarker,
    alarm,
    machine_class,
    stop_marker,
    stop_requested,
    stored_durations,
)
from synthmed.experiment.claims import POLL_SECONDS, Claims
from synthmed.experiment.execution import Execution
from synthmed.experiment.grid import Grid, row_label
from synthmed.experiment.runner import Runner
from synthmed.spec import RunSpec, protocol_label
from synthmed.store import ResultStore


@dataclass
class Event:
    """What happened, for a front end to show. ``kind``: planned, warning, started, epoch, status, finished, failed,
    waiting, imported, budget (the time budget ended), report, export, mlflow, note (about the grid: a default
    applied, a deprecation), skipped (a dataset whose files are absent), info (a line to show: seed rounds, pages)."""

    kind: str
    label: str = ""
    spec: RunSpec | None = None
    record: dict | None = None
    message: str = ""
    row: dict | None = None  # an epoch's history row
    total: int = 0  # planned: runs in the grid; started: epochs of the run
    skipped: int = 0  # planned: runs already in the store
    todo: int = 0  # planned: runs to do
    where: str = ""  # planned: the backend, in words


@dataclass
class Outcome:
    finished: list[dict] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "label: message"
    skipped: int = 0
    by_others: int = 0  # runs another process claimed and finished
    report: list[Path] = field(default_factory=list)
    mlflow_logged: int | None = None
    budget_reached: bool = False  # a run did not fit the time budget, or its deadline came
    stopped: bool = False  # a stop was requested (``synthmed experiment stop``): no run started after it
    left_to_others: int = 0  # runs other processes held when this one ended without waiting (--no-wait-for-others)
    done: int = 0  # runs of the grid in the store at the end
    left: int = 0  # runs of the grid not in the store at the end


def run_label(spec: RunSpec) -> str:
    """``breastmnist cvae weight 0.5 seed 2``: what a person reads in progress lines and failures, with the row label
    of the report (``ddpm tstr pretrain``, a real-image curve point's ``none 300/class``) and the protocol when it
    has settings (``pneumoniamnist lowdata 50/class``), so two runs that differ are never printed alike."""
    protocol = protocol_label(vars(spec))
    where = f"{spec.dataset} {protocol}" if protocol != spec.protocol else spec.dataset
    return f"{where} {row_label(spec)} seed {spec.seed}"


def default_workers(device: str, runs: int, cpus_per_run: int = 1) -> int:
    """One single-thread worker per core on a CPU for a grid of two or more runs; one on a GPU."""
    from synthmed.train.device import resolve_device

    if runs < 2 or resolve_device(device).type == "cuda":
        return 1
    return max(1, (os.cpu_count() or 1) // cpus_per_run)


def _busy(pooled: str | None, workers: int, cpus_per_run: int | None, explicit: bool) -> tuple[str | None, str]:
    """When other processes keep this machine's cores busy (its 1-minute load average) and this command would run
    more threads than are free (a pool, or an explicit ``--cpus-per-run``), a one-line warning that names them (two
    commands each with every core's threads collapse: 0 of 9 runs in 17 minutes). Thread counts are not changed: the
    same seed trains the same model only at the same thread count, and a load average is no setting a user can
    repeat. Returns (warning, what to add to the planned line)."""
    from synthmed.experiment.backends import free_cores

    cores = os.cpu_count() or 1
    free, load = free_cores(cores)
    if free >= cores:
        return None, ""
    busy = f"this machine is busy (load average {load:.1f} on {cores} cores)"
    if pooled is None and cpus_per_run is None:  # one run at a time: the load is likely this user's last command
        return None, ""
    wanted = workers * (cpus_per_run or 1) if pooled else cpus_per_run or 1
    if wanted <= free:
        return None, ""
    hint = "" if explicit else "; give --workers and --cpus-per-run to use only the free ones"
    return f"{busy}: this command's {wanted} threads will share them{hint}", ""


def schedule(specs: list[RunSpec]) -> list[RunSpec]:
    """The order runs start in: seed by seed, each seed's generator fits before the runs that fit nothing, and the
    runs that reuse a generator one seed later, after the next seed's runs. Seed by seed, so a step cut short by its
    time budget leaves whole seeds with every method paired (a run that fits a generator or copies per seed, such as
    ``oversample``, goes beside its seed's ``none``); reusers a seed later, so no worker waits for a generator
    another worker is still fitting (the demo's three cVAE runs on one generator, started together, left a core
    idle for 90 of its 440 s), and no later than that, so a step that ends at its budget has used the fits it made
    (``ddpm --pretrain-on-synthetic`` beside ``ddpm``: a fit left unused would have to be made again on a machine
    without this one's cache). Seeds go in ascending order (a seed whose first runs are stored keeps its place);
    within a seed the grid's method order is kept."""
    import json

    from synthmed.augment.base import method_class
    from synthmed.experiment.synthetic_set import generator_seed

    seed_rank = {seed: rank for rank, seed in enumerate(sorted({spec.seed for spec in specs}))}
    now: list[tuple[int, int, RunSpec]] = []  # (seed rank, 0 fits / 1 fits nothing / 2 reuses, spec)
    seen: set[tuple] = set()
    for spec in specs:
        if not method_class(spec.method).trains:
            now.append((seed_rank[spec.seed], 1, spec))
            continue
        key = (
            spec.dataset,
            spec.protocol,
            spec.real_per_class,
            spec.fraction,
            spec.size,
            spec.method,
            json.dumps(spec.method_params, sort_keys=True, default=str),
            generator_seed(spec.seed, spec.synthesis),
        )
        now.append((seed_rank[spec.seed] + 1, 2, spec) if key in seen else (seed_rank[spec.seed], 0, spec))
        seen.add(key)
    return [spec for _, _, spec in sorted(now, key=lambda item: item[:2])]


def planned_fits(runner: Runner, specs: list[RunSpec]) -> list[tuple[RunSpec, bool | None, bool | None]]:
    """The runs in the order they start (``schedule``), each with whether its generator fit and its reference
    classifier will be cached when it starts (None: it trains none): cached now, or made by an earlier run of the
    list (``ddpm`` of a seed makes the fit that ``ddpm --pretrain-on-synthetic`` of that seed loads). What
    ``experiment status`` prices."""
    made: set = set()
    planned: list[tuple[RunSpec, bool | None, bool | None]] = []
    for spec in schedule(specs):
        fit, reference = runner.fit_path(spec), runner.reference_path(spec)
        cached = [None if path is None else path in made or path.exists() for path in (fit, reference)]
        planned.append((spec, cached[0], cached[1]))
        made |= {fit, reference}
    return planned


def study_runs(runner: Runner, specs: list[RunSpec]) -> Callable[[dict], bool]:
    """The stored runs a grid's ``--export-to`` takes: the grid's own and the real-image curve's points of its
    datasets (they price its rows), not the rows of another study imported into its store by ``--resume-from`` (the
    unlabelled study imports the low-noise study's export for its shared controls and its curve; its conv-cvae or
    flip rows would join the report's rows and its Holm family, which the looks never judged)."""
    ids = {runner.run_id(spec) for spec in specs}
    datasets = {runner.dataset(spec).name for spec in specs}

    def keep(record: dict) -> bool:
        curve_point = record["config"].get("curve_per_class") is not None and record["dataset"] in datasets
        return record["run_id"] in ids or curve_point

    return keep


def _run_round(
    runner: Runner,
    specs: list[RunSpec],
    execution: Execution,
    *,
    emit: Callable[[Event], None],
    budget: Budget | None,
    report: bool,
    report_settings: Callable[[], Any],
    name: str,
    resume_from: Path | None,
    stop_before: StopMarker = None,
) -> Outcome:
    """Run the specs not yet in the store (a failed run is reported and the grid goes on), then write the report
    and mirror the store to MLflow. ``resume_from``: an export whose runs are imported first (and so skipped).
    ``budget``: start only the runs it fits, abandon those in flight at its end (``Outcome.budget_reached``).
    ``stop_before``: the stop request's identity when the command started; a request made since starts no
    further run (``Outcome.stopped``), and ends a wait for runs other processes hold.
    ``execution.export_to``: an export each finished run is appended to as it is stored, synchronised with the
    store first and last, with its own report at the end. Raises when every run failed."""
    from synthmed.experiment.backends import Abandoned
    from synthmed.experiment.runner import epochs_of
    from synthmed.io import remove_temporaries

    backend, workers, cpus_per_run = execution.backend, execution.workers, execution.cpus_per_run
    mlflow, export_to = execution.mlflow, execution.export_to
    logger = None
    if mlflow:
        from synthmed.experiment.tracking import MlflowLogger

        logger = MlflowLogger(mlflow, name)  # fails before any run when mlflow is missing
    if resume_from is not None:
        from synthmed.experiment.export import import_export

        emit(Event("imported", message=f"{import_export(resume_from, runner.out)} run(s) from {resume_from}"))
    if export_to is not None:
        from synthmed.experiment.export import export_runs, start_export

        start_export(export_to)
        if runner.store_path.exists():  # runs stored before (a killed command's last run among them)
            export_runs(runner.out, export_to, study_runs(runner, specs))
    ids = {runner.run_id(s): s for s in specs}
    todo = schedule(runner.pending(specs))
    threads = cpus_per_run or 1  # of each worker process or Ray task
    explicit = workers is not None
    workers = default_workers(runner.device, len(todo), threads) if workers is None else workers
    pooled = "ray" if backend == "ray" else "pool" if workers > 1 and len(todo) > 1 else None
    bounded = None  # why the pool is smaller than asked
    if pooled == "pool":
        from synthmed.experiment.backends import pool_plan

        size, bounded = pool_plan(workers, threads)
        workers = min(size, len(todo))
        pooled = "pool" if workers > 1 else None
    where = {
        "ray": f"ray backend, {threads} CPU per run",
        "pool": f"{workers} worker processes, {threads} CPU each",
    }.get(pooled or "", "in this process")
    where += f"; pool bounded by {bounded}" if bounded else ""
    warning = None
    if pooled != "ray" and todo:
        warning, inline = _busy(pooled, workers, cpus_per_run, explicit)
        where += inline
    outcome = Outcome(skipped=len(specs) - len(todo))
    emit(Event("planned", total=len(specs), skipped=outcome.skipped, todo=len(todo), where=where))
    if warning:
        emit(Event("warning", message=warning))
    runner.store_path.parent.mkdir(parents=True, exist_ok=True)
    durations = Durations()  # the longest stored run of each config and method, for the budget
    if budget is not None:
        durations = stored_durations(runner.store_path, machine=machine_class(runner.device))

    def method_key(spec: RunSpec) -> tuple[str, str, str]:
        return runner.dataset(spec).name, spec.protocol, spec.method

    def fit_in_flight(spec: RunSpec) -> bool:
        """Whether a run of this process is making the fit ``spec`` needs (it is not cached yet)."""
        path = runner.fit_path(spec)
        if path is None or path.exists():
            return False
        return any(runner.fit_path(other) == path for other in running.values())

    def estimate(spec: RunSpec) -> float:
        config = spec.key(runner.dataset(spec).md5)[1]
        expected = durations.seconds(method_key(spec), config, runner.fit_cached(spec), runner.reference_cached(spec))
        if expected is not None:
            return expected
        return budget.default_run_seconds if budget and budget.default_run_seconds else 0.0

    attempted: set[str] = set()  # runs this process claimed (and ran, or saw fail)
    guessed: set[str] = set()  # unfit runs whose estimate was the default: nothing stored to estimate from
    unfit: set[str] = set()  # runs the time budget could not fit
    deferred: set[str] = set()  # runs passed over while a worker made their fit: looked at again after the pass
    # unfit runs costed with a fit nobody was making yet: looked at again once a run of this step has made it (ddpm
    # of a seed, judged first and costed with its fit, then ddpm --pretrain-on-synthetic of the seed makes that fit)
    unfit_fitting: dict[str, RunSpec] = {}
    running: dict[str, RunSpec] = {}  # claimed and not yet finished or failed
    with Claims(runner.store_path) as claims:

        def finished(spec: RunSpec, record: dict) -> None:
            with ResultStore(runner.store_path) as store:  # the driver alone writes the store
                store.add(record)
            if export_to is not None:
                from synthmed.experiment.export import append_run

                append_run(runner.out, export_to, record["run_id"])
            claims.release(record["run_id"])
            running.pop(record["run_id"], None)
            durations.add(record)
            outcome.finished.append(record)
            emit(Event("finished", run_label(spec), spec, record))

        def failed(spec: RunSpec, message: str) -> None:  # the run left error.json; the grid goes on
            claims.release(runner.run_id(spec))
            running.pop(runner.run_id(spec), None)
            outcome.failed.append(f"{run_label(spec)}: {message}")
            emit(Event("failed", run_label(spec), spec, message=message))

        def claimed(candidates: list[RunSpec]) -> Iterator[RunSpec]:
            """The candidates this process wins the claim on, claimed one by one as a worker frees up; under a
            budget, only those whose estimated duration fits the time left."""
            for spec in candidates:
                if stop_requested(runner.out, stop_before):
                    outcome.stopped = True
                    return
                run_id = runner.run_id(spec)
                if budget is not None and estimate(spec) > budget.left():
                    if fit_in_flight(spec):  # costed with the fit a worker is making: looked at again after it
                        deferred.add(run_id)
                        continue
                    unfit.add(run_id)
                    if runner.fit_cached(spec) is False:
                        unfit_fitting[run_id] = spec
                    if method_key(spec) not in durations.by_method:
                        guessed.add(run_id)
                    outcome.budget_reached = True
                    continue
                if claims.take(run_id):
                    attempted.add(run_id)
                    running[run_id] = spec
                    yield spec

        def progress(kind: str, spec: RunSpec, payload: Any) -> None:
            label = run_label(spec)
            if kind == "started":
                emit(Event("started", label, spec, total=payload))
            elif kind == "epoch":
                emit(Event("epoch", label, spec, row=payload))
            else:
                emit(Event("status", label, spec, message=payload))

        def run_all(candidates: list[RunSpec]) -> None:
            if pooled == "ray":
                from synthmed.experiment.backends import run_on_ray

                run_on_ray(runner, claimed(candidates), on_result, address=execution.address, cpus_per_run=threads)
            elif pooled == "pool":
                from synthmed.experiment.backends import run_on_pool

                run_on_pool(
                    runner,
                    claimed(candidates),
                    on_result,
                    workers=workers,
                    threads=threads,
                    on_progress=progress,
                    deadline=budget.deadline if budget is not None else None,
                )
            else:
                if cpus_per_run is not None:  # in this process: as many threads as told, else torch's default
                    import torch

                    torch.set_num_threads(cpus_per_run)
                for spec in claimed(candidates):
                    progress("started", spec, epochs_of(spec))

                    def on_epoch(row: dict, spec: RunSpec = spec) -> None:
                        if budget is not None and budget.left() <= 0:  # where no alarm rings (not the main thread)
                            raise Abandoned()
                        progress("epoch", spec, row)

                    try:
                        record = runner.compute(
                            spec, on_epoch=on_epoch, on_status=functools.partial(progress, "status", spec)
                        )
                    except SynthmedError as err:
                        failed(spec, str(err))
                        continue
                    finished(spec, record)

        def on_result(spec: RunSpec, status: str, payload: object) -> None:
            if status == "ok":
                finished(spec, payload)  # type: ignore[arg-type]
            else:
                failed(spec, str(payload))

        try:
            with alarm(budget.deadline if budget is not None and pooled is None else None):
                run_all(todo)
                # Runs other processes hold: wait for them, and take over any whose holder stopped renewing its lease;
                # and the runs passed over while their fit was being made, even once another run did not fit.
                while not outcome.stopped:
                    fitted = [run_id for run_id, spec in unfit_fitting.items() if runner.fit_cached(spec)]
                    for run_id in fitted:  # its fit is cached now: costed again without it
                        del unfit_fitting[run_id]
                        unfit.discard(run_id)
                        guessed.discard(run_id)
                        deferred.add(run_id)
                    if fitted:
                        outcome.budget_reached = bool(unfit)
                    with ResultStore(runner.store_path) as store:
                        stored, others = store.run_ids(), store.claimed_by_others(claims.holder)
                    done = stored | attempted | unfit
                    if outcome.budget_reached and not deferred - done:
                        break
                    looked = ids if not outcome.budget_reached else {r: ids[r] for r in deferred - done}
                    left = [s for run_id, s in looked.items() if run_id not in done]
                    if not left:
                        break
                    if budget is not None and budget.left() <= 0:
                        outcome.budget_reached = True
                        break
                    free = [spec for spec in left if runner.run_id(spec) not in others]
                    if free:
                        run_all(free)
                        continue
                    if not execution.wait_for_others:
                        outcome.left_to_others = len(left)
                        break
                    if stop_requested(runner.out, stop_before):  # waiting on others' runs: nothing in flight here
                        outcome.stopped = True
                        break
                    held = ", ".join(run_label(spec) for spec in left[:3]) + (", ..." if len(left) > 3 else "")
                    emit(Event("waiting", message=f"{len(left)} run(s) held by other processes ({held})"))
                    time.sleep(min(claims.lease / 4, POLL_SECONDS))
                    claims.drop_dead_holders()
        except Abandoned:  # the deadline came: the runs in flight leave no record, error.json or temporary file
            outcome.budget_reached = True
            for run_id in running:
                remove_temporaries(runner.out / "runs" / run_id)
            running.clear()
    with ResultStore(runner.store_path) as store:
        stored = store.run_ids() & set(ids)
    outcome.done, outcome.left = len(stored), len(ids) - len(stored)
    outcome.by_others = len(stored) - outcome.skipped - len(outcome.finished)
    if outcome.budget_reached:
        if guessed and budget is not None:
            emit(
                Event(
                    "warning",
                    message=f"{len(guessed)} run(s) did not start because no stored run of their dataset, protocol and "
                    f"method told how long they take, and the default estimate, {budget.default_run_seconds:.0f} s, "
                    "exceeded the time left; give a longer --time-budget, or set SYNTHMED_RUN_SECONDS to a closer "
                    "estimate",
                )
            )
        emit(Event("budget", message=f"{outcome.done} runs done, {outcome.left} left"))
    if outcome.stopped:
        emit(Event("info", message=f"stop requested ({runner.out / STOP_FILE}): no run started after it"))
    if not stored:
        if outcome.budget_reached or outcome.stopped or outcome.left_to_others:
            return outcome
        raise SynthmedError(
            f"every run failed; the first: {outcome.failed[0]}" if outcome.failed else "no run finished"
        )
    if report:
        from synthmed.report import write_report

        outcome.report = write_report(runner.out, report_settings())
        emit(Event("report", message=", ".join(str(p) for p in outcome.report)))
    if export_to is not None:
        from synthmed.experiment.export import finish_export

        written = finish_export(
            runner.out, export_to, report_settings() if report else None, report=report, keep=study_runs(runner, specs)
        )
        emit(Event("export", message=f"{export_to}" + (f" (report: {written[0]})" if written else "")))
    if logger is not None:
        from synthmed.report.records import load_records

        outcome.mlflow_logged = logger.sync(runner.out, load_records(runner.out))
        emit(Event("mlflow", message=f"{outcome.mlflow_logged} run(s) logged to {mlflow}"))
    return outcome


class _Stopped(Exception):
    """A round of --seeds auto ended at the time budget or on a stop request, or left runs to other processes: no
    look, no further round."""


def check_targets(execution: Execution, out: Path) -> None:
    """Refuse an export, a resume source or pages that cannot work, before anything runs or is written."""
    if execution.resume_from is not None:
        from synthmed.experiment.export import is_export

        if not is_export(execution.resume_from):
            raise SynthmedError(
                f"--resume-from {execution.resume_from} is not a synthmed export; give a folder written by "
                "`synthmed export`"
            )
    if execution.export_to is not None:
        from synthmed.experiment.export import check_export_target, check_pages

        if execution.export_to.resolve() == out.resolve():
            raise SynthmedError(f"--export-to {execution.export_to} is the run folder itself; give another folder")
        check_export_target(execution.export_to)
        check_pages(execution.pages or [])


def run_grid(
    grid: Grid,
    execution: Execution | None = None,
    out: str | Path | None = None,
    on_event: Callable[[Event], None] | None = None,
    runner: Runner | None = None,
) -> Outcome:
    """Run every run of ``grid`` not yet stored in ``out`` (default: the grid's ``out``, else ``runs/NAME``) as
    ``execution`` says (default: one process per core on a CPU), in rounds of seeds until decided with
    ``execution.auto_seeds``; write the report (and the export, and the pages). Returns what happened; failed runs
    and a time budget that ended are in the outcome, not raised. ``runner``: a ``Runner`` of one's own (a subclass
    that computes runs differently), used instead of ``Runner(out, execution)``."""
    import copy

    from synthmed.experiment.export import study_plan
    from synthmed.experiment.grid import available_datasets, expand
    from synthmed.experiment.sequential import Plan, look_line, recorded_plan, run_until_decided
    from synthmed.report import record_settings, settings_for

    execution = copy.deepcopy(execution or Execution())
    execution.check()
    out = Path(runner.out if runner is not None else out or grid.out or f"runs/{grid.name}")
    grid = copy.deepcopy(grid)
    emit = on_event or (lambda event: None)
    check_targets(execution, out)
    budget = Budget(execution.time_budget) if execution.time_budget is not None else None
    stop_before = stop_marker(out)  # a stop requested from now on ends this command; an older one does not
    plan, recorded_note = None, ""
    if execution.auto_seeds:
        workers = execution.workers or default_workers(execution.device, 2, execution.cpus_per_run or 1)
        plan = Plan(
            max_seeds=execution.max_seeds or 2,
            step=execution.seed_step or workers,
            margin=0.01 if execution.margin is None else execution.margin,
            reference=execution.reference,
            **({"start": execution.min_seeds} if execution.min_seeds is not None else {}),
        )
        options = {"start": "min_seeds", "max_seeds": "max_seeds", "margin": "margin", "reference": "reference"}
        options["step"] = "seed_step"  # the plan's fields this command set, by the option that sets each
        given = frozenset(field for field, name in options.items() if getattr(execution, name) is not None)
        asked, plan = plan, recorded_plan(plan, study_plan(out, execution.resume_from), given)
        recorded_note = " (the study's recorded plan)" if plan != asked else ""
        grid.seeds = list(range(plan.start))
    specs = expand(grid)
    whole = expand(dataclasses.replace(grid, rows=[])) if grid.rows else specs  # --rows may leave the reference out
    methods = sorted({spec.method for spec in whole})
    if execution.reference is not None and execution.reference not in methods:
        raise SynthmedError(
            f"--reference {execution.reference} names no method of the grid; choose one of {', '.join(methods)}"
        )
    for text in grid.notes:
        emit(Event("note", message=text))
    if execution.skip_absent:
        specs, skipped = available_datasets(specs, execution.data_root)
        for dataset, hint in skipped.items():
            emit(Event("skipped", label=dataset, message=hint))
        if not specs:
            raise SynthmedError("no dataset of the grid is available; see the download hints above")
        grid.datasets = [d for d in grid.datasets if d not in skipped]
    runner = runner or Runner(out, execution)
    runner.validate(specs)
    record_settings(out, execution.margin, execution.reference)  # a later `synthmed report OUT` judges as this did

    def settings() -> Any:  # read when a report is written: after the import of --resume-from, with its looks
        return settings_for(out, execution.margin, execution.reference)

    total = Outcome()
    resume = [execution.resume_from]  # imported by the first round only

    def round_(round_specs: list[RunSpec], report: bool) -> None:
        outcome = _run_round(
            runner,
            round_specs,
            execution,
            emit=emit,
            budget=budget,
            report=report,
            report_settings=settings,
            name=grid.name,
            resume_from=resume.pop() if resume else None,
            stop_before=stop_before,
        )
        total.finished += outcome.finished
        total.failed += outcome.failed
        total.skipped = total.skipped or outcome.skipped
        total.by_others += outcome.by_others
        total.report, total.mlflow_logged = outcome.report or total.report, outcome.mlflow_logged
        total.done, total.left = outcome.done, outcome.left
        total.left_to_others = outcome.left_to_others
        if outcome.budget_reached:
            total.budget_reached = True
        total.stopped = total.stopped or outcome.stopped
        if outcome.budget_reached or outcome.stopped or outcome.left_to_others:  # no look on a round not seen end
            raise _Stopped()

    with contextlib.suppress(_Stopped):
        if plan is None:
            round_(specs, execution.report)
        else:
            emit(
                Event(
                    "info",
                    message=f"seeds until decided: {plan.start} seeds, then {plan.step} per round up to "
                    f"{plan.max_seeds}; {plan.looks} planned looks at alpha {plan.alpha:g} / {plan.looks} = "
                    f"{plan.look_alpha:.4g}{recorded_note}",
                )
            )
            stop = run_until_decided(
                runner,
                grid,
                plan,
                lambda g: round_(expand(g), report=False),
                resume_from=execution.resume_from,
                on_look=lambda look: emit(Event("info", message=look_line(look))),
            )
            emit(Event("info", message=f"stopped after {stop['seeds']} seeds: {stop['reason']}"))
    if plan is not None and execution.report and runner.done():
        from synthmed.report import write_report

        total.report = write_report(out, settings_for(out, execution.margin, execution.reference))  # the looks' alpha
        emit(Event("report", message=", ".join(map(str, total.report))))
        if execution.export_to is not None:
            from synthmed.experiment.export import finish_export

            finish_export(
                out,
                execution.export_to,
                settings_for(execution.export_to, execution.margin, execution.reference),
                keep=study_runs(runner, expand(copy.deepcopy(grid))),  # every round's seeds
            )
            emit(Event("export", message=f"{execution.export_to} (report written there)"))
    if execution.pages:
        from synthmed.experiment.export import update_pages

        for line in update_pages(execution.pages, execution.export_to):
            emit(Event("info", message=line))
    return total
