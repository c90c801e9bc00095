"""Run a list of runs on a backend, insert their records, write the report and mirror to MLflow.

This is the orchestration behind ``synthmed run`` and ``synthmed experiment run``; the command line only renders
the ``Event`` objects it emits (planned, run started, epoch, status, finished, failed, waiting) and the final table.

- **Where**: ``local`` runs in this process (one worker) or in a pool of single-thread worker processes, by
  default one per core on a CPU when the grid has two or more runs (two 1-thread processes train ResNet-18 faster
  together than one 2-thread process); ``ray`` runs one Ray task per run.
- **Claims**: each run is claimed in the store just before it starts and its lease renewed while it computes
  (``ResultStore.claim``), so several processes on one folder (a SLURM job array, two terminals) split a grid;
  when only runs claimed by others are left, a process waits and takes over any whose holder stopped renewing
  (a killed job), then reports.
- **Nothing lost**: workers compute and write their run folders; this process alone inserts records, as they
  arrive, so a killed driver loses only the runs in flight, and the same command later skips every stored run.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthmed.errors import SynthmedError
from synthmed.experiment.runner import Runner
from synthmed.spec import RunSpec, method_label
from synthmed.store import ResultStore

BACKENDS = ("local", "ray")
#: Seconds a claim lasts without renewal (``SYNTHMED_LEASE_SECONDS`` overrides, e.g. for tests); renewed every third.
LEASE_SECONDS = 300.0
#: Seconds between looks at the store while only runs held by other processes are left: short, so a process that
#: finished its share reports moments after the last run lands (a 30 s poll cost a 2-process grid 25 % of its wall).
POLL_SECONDS = 3.0


@dataclass
class Event:
    """What happened, for a front end to show. ``kind``: planned, started, epoch, status, finished, failed,
    waiting, imported, report, mlflow."""

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


def run_label(spec: RunSpec) -> str:
    """``breastmnist cvae weight 0.5 seed 2``: what a person reads in progress lines and failures."""
    config = {
        "method": spec.method,
        "method_params": spec.method_params,
        "synthesis": {k: getattr(spec.synthesis, k) for k in spec.synthesis.__dataclass_fields__},
    }
    return f"{spec.dataset} {method_label(config)} seed {spec.seed}"


def default_workers(device: str, runs: int, cpus_per_run: int = 1) -> int:
    """One single-thread worker per core on a CPU for a grid of two or more runs; one on a GPU."""
    from synthmed.train.device import resolve_device

    if runs < 2 or resolve_device(device).type == "cuda":
        return 1
    return max(1, (os.cpu_count() or 1) // cpus_per_run)


def schedule(specs: list[RunSpec]) -> list[RunSpec]:
    """The order runs start in: the first run of each generator first (fitting a generator and its reference
    classifier is the slowest part of a grid), then the runs that fit nothing, then the runs that reuse a generator
    fitted earlier. So no worker waits for a generator another worker is still fitting (the demo's three cVAE runs
    on one generator, started together at the end, left a core idle for 90 of its 440 s)."""
    import json

    from synthmed.augment.base import method_class
    from synthmed.experiment.synthesis import generator_seed

    first: list[RunSpec] = []
    plain: list[RunSpec] = []
    reusing: list[RunSpec] = []
    seen: set[tuple] = set()
    for spec in specs:
        if not method_class(spec.method).trains:
            plain.append(spec)
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
        (reusing if key in seen else first).append(spec)
        seen.add(key)
    return first + plain + reusing


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class Claims:
    """This process's leases on runs of one store, renewed by a background thread while they compute."""

    def __init__(self, store_path: Path, lease: float | None = None) -> None:
        self.store_path = store_path
        self.lease = float(os.environ.get("SYNTHMED_LEASE_SECONDS", LEASE_SECONDS)) if lease is None else lease
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True)

    def __enter__(self) -> Claims:
        self.drop_dead_holders()
        self._thread.start()
        return self

    def drop_dead_holders(self) -> None:
        """Release the claims of processes on this machine that no longer run (a killed or crashed driver), so
        the same command resumes at once instead of waiting for their leases to expire."""
        host = socket.gethostname()
        with self._lock, ResultStore(self.store_path) as store:
            for holder in store.holders():
                name, _, rest = holder.partition(":")
                pid = rest.partition(":")[0]
                if name == host and pid.isdigit() and holder != self.holder and not _alive(int(pid)):
                    store.drop_holder(holder)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock, ResultStore(self.store_path) as store:
            for run_id in self.held:
                store.release(run_id, self.holder)
            self.held.clear()

    def take(self, run_id: str) -> bool:
        with self._lock, ResultStore(self.store_path) as store:
            taken = store.claim(run_id, self.holder, self.lease)
        if taken:
            with self._lock:
                self.held.add(run_id)
        return taken

    def release(self, run_id: str) -> None:
        with self._lock, ResultStore(self.store_path) as store:
            store.release(run_id, self.holder)
            self.held.discard(run_id)

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3):
            with self._lock:
                held = list(self.held)
            if held:
                with ResultStore(self.store_path) as store:
                    store.renew(held, self.holder, self.lease)


def execute(
    runner: Runner,
    specs: list[RunSpec],
    *,
    backend: str = "local",
    workers: int | None = None,
    cpus_per_run: int | None = None,
    address: str | None = None,
    report: bool = True,
    mlflow: str | None = None,
    name: str = "synthmed",
    resume_from: Path | None = None,
    report_settings: Any = None,
    on_event: Callable[[Event], None] | None = None,
) -> Outcome:
    """Run the specs not yet in the store (a failed run is reported and the grid goes on), then write the report
    and mirror the store to MLflow. ``workers`` None: the default of ``default_workers``. ``resume_from``: an export
    whose runs are imported first (and so skipped). ``cpus_per_run``: torch threads of each run (default 1 in
    worker processes and Ray tasks, torch's default in this process; give it when several processes share a
    machine, e.g. ``$SLURM_CPUS_PER_TASK``). Raises when every run failed."""
    from synthmed.experiment.runner import epochs_of

    emit = on_event or (lambda event: None)
    if backend not in BACKENDS:
        raise SynthmedError(f"--backend {backend!r}: choose {' or '.join(BACKENDS)}")
    logger = None
    if mlflow:
        from synthmed.experiment.tracking import MlflowLogger

        logger = MlflowLogger(mlflow, name)  # fails before any run when mlflow is missing
    if resume_from is not None:
        from synthmed.experiment.export import import_export

        emit(Event("imported", message=f"{import_export(resume_from, runner.out)} run(s) from {resume_from}"))
    ids = {runner.run_id(s): s for s in specs}
    todo = schedule(runner.pending(specs))
    threads = cpus_per_run or 1  # of each worker process or Ray task
    workers = default_workers(runner.device, len(todo), threads) if workers is None else workers
    pooled = "ray" if backend == "ray" else "pool" if workers > 1 and len(todo) > 1 else None
    if pooled == "pool":
        from synthmed.experiment.backends import pool_size

        workers = min(pool_size(workers, threads), len(todo))
        pooled = "pool" if workers > 1 else None
    where = {
        "ray": f"ray backend, {threads} CPU per run",
        "pool": f"{workers} worker processes, {threads} CPU each",
    }.get(pooled or "", "in this process")
    outcome = Outcome(skipped=len(specs) - len(todo))
    emit(Event("planned", total=len(specs), skipped=outcome.skipped, todo=len(todo), where=where))
    runner.store_path.parent.mkdir(parents=True, exist_ok=True)

    attempted: set[str] = set()  # runs this process claimed (and ran, or saw fail)
    with Claims(runner.store_path) as claims:

        def finished(spec: RunSpec, record: dict) -> None:
            with ResultStore(runner.store_path) as store:  # the driver alone writes the store
                store.add(record)
            claims.release(record["run_id"])
            outcome.finished.append(record)
            emit(Event("finished", run_label(spec), spec, record))

        def failed(spec: RunSpec, message: str) -> None:  # the run left error.json; the grid goes on
            claims.release(runner.run_id(spec))
            outcome.failed.append(f"{run_label(spec)}: {message}")
            emit(Event("failed", run_label(spec), spec, message=message))

        def claimed(candidates: list[RunSpec]) -> Iterator[RunSpec]:
            """The candidates this process wins the claim on, claimed one by one as a worker frees up."""
            for spec in candidates:
                if claims.take(runner.run_id(spec)):
                    attempted.add(runner.run_id(spec))
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

                run_on_ray(runner, claimed(candidates), on_result, address=address, cpus_per_run=threads)
            elif pooled == "pool":
                from synthmed.experiment.backends import run_on_pool

                run_on_pool(
                    runner, claimed(candidates), on_result, workers=workers, threads=threads, on_progress=progress
                )
            else:
                if cpus_per_run is not None:  # in this process: as many threads as told, else torch's default
                    import torch

                    torch.set_num_threads(cpus_per_run)
                for spec in claimed(candidates):
                    progress("started", spec, epochs_of(spec))
                    try:
                        record = runner.compute(
                            spec,
                            on_epoch=functools.partial(progress, "epoch", spec),
                            on_status=functools.partial(progress, "status", spec),
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

        run_all(todo)
        # Runs other processes hold: wait for them, and take over any whose holder stopped renewing its lease.
        while True:
            with ResultStore(runner.store_path) as store:
                stored, others = store.run_ids(), store.claimed_by_others(claims.holder)
            left = [spec for run_id, spec in ids.items() if run_id not in stored and run_id not in attempted]
            if not left:
                break
            free = [spec for spec in left if runner.run_id(spec) not in others]
            if free:
                run_all(free)
                continue
            emit(Event("waiting", message=f"{len(left)} run(s) held by other processes"))
            time.sleep(min(claims.lease / 4, POLL_SECONDS))
            claims.drop_dead_holders()
    with ResultStore(runner.store_path) as store:
        stored = store.run_ids() & set(ids)
    outcome.by_others = len(stored) - outcome.skipped - len(outcome.finished)
    if not stored:
        raise SynthmedError(
            f"every run failed; the first: {outcome.failed[0]}" if outcome.failed else "no run finished"
        )
    if report:
        from synthmed.report import write_report

        outcome.report = write_report(runner.out, report_settings)
        emit(Event("report", message=", ".join(str(p) for p in outcome.report)))
    if logger is not None:
        from synthmed.report.records import load_records

        outcome.mlflow_logged = logger.sync(runner.out, load_records(runner.out))
        emit(Event("mlflow", message=f"{outcome.mlflow_logged} run(s) logged to {mlflow}"))
    return outcome
