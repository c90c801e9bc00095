"""Run a list of runs on a backend, insert their records, write the report and mirror to MLflow.

This is the orchestration behind ``synthmed run`` and ``synthmed experiment run``; the command line only
renders the ``Event`` objects it emits (run started, epoch, status, finished, failed; runs skipped because they
are already stored) and the final table. Backends:

- ``local`` with one worker: every run in this process, with per-epoch events;
- ``local`` with several workers: a pool of spawned processes (``backends.run_on_pool``);
- ``ray``: one Ray task per run (``backends.run_on_ray``).

Workers compute and write their run folders; this process alone inserts records into the store, as they
arrive, so a killed driver loses only the runs in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from synthmed.errors import SynthmedError
from synthmed.experiment.runner import Runner
from synthmed.spec import RunSpec, method_label
from synthmed.store import ResultStore

BACKENDS = ("local", "ray")


@dataclass
class Event:
    """What happened, for a front end to show. ``kind``: planned, started, epoch, status, finished, failed,
    report, mlflow."""

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
    report: list[Path] = field(default_factory=list)
    mlflow_logged: int | None = None


def run_label(spec: RunSpec) -> str:
    """``breastmnist cvae weight 0.5 seed 2``: what a person reads in progress lines and failures."""
    config = {
        "method": spec.method,
        "method_params": spec.method_params,
        "synthesis": {k: getattr(spec.synthesis, k) for k in spec.synthesis.__dataclass_fields__},
    }
    return f"{spec.dataset} {method_label(config)} seed {spec.seed}"


def execute(
    runner: Runner,
    specs: list[RunSpec],
    *,
    backend: str = "local",
    workers: int = 1,
    cpus_per_run: int = 1,
    address: str | None = None,
    report: bool = True,
    mlflow: str | None = None,
    name: str = "synthmed",
    on_event: Callable[[Event], None] | None = None,
) -> Outcome:
    """Run the specs not yet in the store (a failed run is reported and the grid goes on), then write the report
    and mirror the store to MLflow. Raises when every run failed."""
    from synthmed.train.recipes import get_recipe

    emit = on_event or (lambda event: None)
    if backend not in BACKENDS:
        raise SynthmedError(f"--backend {backend!r}: choose {' or '.join(BACKENDS)}")
    logger = None
    if mlflow:
        from synthmed.experiment.tracking import MlflowLogger

        logger = MlflowLogger(mlflow, name)  # fails before any run when mlflow is missing
    todo = runner.pending(specs)
    pooled = "ray" if backend == "ray" else "pool" if workers > 1 and len(todo) > 1 else None
    if pooled == "pool":
        from synthmed.experiment.backends import pool_size

        workers = min(pool_size(workers, cpus_per_run), len(todo))
    where = {
        "ray": f"ray backend, {cpus_per_run} CPU per run",
        "pool": f"{workers} worker processes, {cpus_per_run} CPU each",
    }.get(pooled or "", "in this process")
    outcome = Outcome(skipped=len(specs) - len(todo))
    emit(Event("planned", total=len(specs), skipped=outcome.skipped, todo=len(todo), where=where))

    def finished(spec: RunSpec, record: dict) -> None:
        with ResultStore(runner.store_path) as store:  # the driver alone writes the store
            store.add(record)
        outcome.finished.append(record)
        emit(Event("finished", run_label(spec), spec, record))

    def failed(spec: RunSpec, message: str) -> None:  # the run left error.json; the grid goes on
        outcome.failed.append(f"{run_label(spec)}: {message}")
        emit(Event("failed", run_label(spec), spec, message=message))

    if pooled:
        from synthmed.experiment.backends import run_on_pool, run_on_ray

        def on_result(spec: RunSpec, status: str, payload: object) -> None:
            finished(spec, payload) if status == "ok" else failed(spec, str(payload))  # type: ignore[arg-type]

        if pooled == "ray":
            run_on_ray(runner, todo, on_result, address=address, cpus_per_run=cpus_per_run)
        else:
            run_on_pool(runner, todo, on_result, workers=workers, threads=cpus_per_run)
    else:
        for spec in todo:
            label = run_label(spec)
            emit(Event("started", label, spec, total=get_recipe(spec.recipe, spec.epochs).epochs))

            def on_epoch(row: dict, spec: RunSpec = spec, label: str = label) -> None:
                emit(Event("epoch", label, spec, row=row))

            def on_status(text: str, spec: RunSpec = spec, label: str = label) -> None:
                emit(Event("status", label, spec, message=text))

            try:
                record = runner.compute(spec, on_epoch=on_epoch, on_status=on_status)
            except SynthmedError as err:
                failed(spec, str(err))
                continue
            finished(spec, record)
    if not runner.store_path.exists() or (todo and len(outcome.failed) == len(todo) and not outcome.skipped):
        raise SynthmedError(
            f"every run failed; the first: {outcome.failed[0]}" if outcome.failed else "no run finished"
        )
    if report:
        from synthmed.report import write_report

        outcome.report = write_report(runner.out)
        emit(Event("report", message=", ".join(str(p) for p in outcome.report)))
    if logger is not None:
        from synthmed.report.records import load_records

        outcome.mlflow_logged = logger.sync(runner.out, load_records(runner.out))
        emit(Event("mlflow", message=f"{outcome.mlflow_logged} run(s) logged to {mlflow}"))
    return outcome
