"""Where runs execute besides this process: a pool of worker processes (``local`` with several workers) or Ray.

Workers compute a run in a fresh Runner, write its artifacts atomically into the output folder and return the
record; the driver alone inserts records into the SQLite store, as they arrive. Both backends take the runs as an
iterable and draw from it only when a worker is free, so the driver can claim each run just before it starts
(``synthmed.experiment.execute``) and several drivers on one folder split a grid. Pool workers send their progress
(run started, each epoch, status) back through a queue, so the driver shows per-run progress bars.

With Ray, every run is a task that declares its needs (``cpus_per_run`` CPUs, one GPU with ``--device cuda``). On a
cluster, the output folder (and the data root) must be on storage every node sees, and synthmed installed on
every node.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from synthmed.errors import SynthmedError
from synthmed.experiment.runner import Runner
from synthmed.spec import RunSpec

#: how often a pool worker checks that its driver is still alive (seconds)
DRIVER_CHECK_SECONDS = 1.0
#: the memory a pool worker is budgeted (peak RSS of a DenseNet-121 run at 64 px, with headroom)
MEMORY_PER_WORKER = 3 * 2**30

OnResult = Callable[[RunSpec, str, object], None]
#: (kind, spec, payload): "started" (epochs), "epoch" (history row), "status" (text), sent by pool workers
OnProgress = Callable[[str, RunSpec, Any], None]


def remote_compute(settings: dict, spec: RunSpec, threads: int, events: Any = None) -> tuple[str, object]:
    """One run in a worker process: ("ok", record) or ("failed", message); nothing touches the store. ``events``
    (a queue) receives the run's progress."""
    import torch

    torch.set_num_threads(threads)
    send = events.put if events is not None else (lambda item: None)
    try:
        from synthmed.experiment.runner import epochs_of

        send(("started", spec, epochs_of(spec)))
        record = Runner(**settings).compute(
            spec, on_epoch=lambda row: send(("epoch", spec, row)), on_status=lambda text: send(("status", spec, text))
        )
        return "ok", record
    except SynthmedError as err:
        return "failed", str(err)


def _available_memory() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on every platform
        return None


def pool_size(workers: int, threads: int, cores: int | None = None, memory: int | None = None) -> int:
    """``workers`` bounded by the cores (``threads`` each) and the free memory in bytes (MEMORY_PER_WORKER each);
    ``cores`` and ``memory`` default to this machine's (no memory bound where the platform cannot tell)."""
    if workers < 1 or threads < 1:
        raise SynthmedError(f"--workers {workers} and --cpus-per-run {threads} must be at least 1")
    cores = cores or os.cpu_count() or 1
    memory = _available_memory() if memory is None else memory
    bound = max(1, cores // threads)
    if memory is not None:
        bound = min(bound, max(1, memory // MEMORY_PER_WORKER))
    return min(workers, bound)


def _exit_with_driver(driver: int) -> None:
    """Pool initializer: end this worker as soon as its driver is gone. A driver killed hard (SIGKILL, a scheduler
    or a shell's ``kill``) cannot stop its pool, and orphaned workers would go on computing runs that nobody
    records while holding the cores the next driver needs."""

    def watch() -> None:
        while os.getppid() == driver:
            time.sleep(DRIVER_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="driver-watch", daemon=True).start()


def _relay(queue: Any, on_progress: OnProgress) -> None:
    """Forward worker progress to the driver's callback until the sentinel None arrives."""
    while (item := queue.get()) is not None:
        on_progress(*item)


def run_on_pool(
    runner: Runner,
    specs: Iterable[RunSpec],
    on_result: OnResult,
    workers: int,
    threads: int = 1,
    compute: Callable = remote_compute,
    on_progress: OnProgress | None = None,
) -> None:
    """Run ``specs`` in a pool of ``workers`` processes (bound it with ``pool_size`` first), drawing the next run
    only when a worker is free, and call ``on_result`` in the driver as each finishes. ``compute`` is replaceable
    for bench/scheduler.py."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked torch state
    manager = context.Manager() if on_progress is not None else None
    events = manager.Queue() if manager is not None else None
    relay = threading.Thread(target=_relay, args=(events, on_progress), daemon=True) if events is not None else None
    if relay is not None:
        relay.start()
    source: Iterator[RunSpec] = iter(specs)
    try:
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_exit_with_driver, initargs=(os.getpid(),)
        ) as pool:
            pending: dict[Future, RunSpec] = {}

            def fill() -> None:
                while len(pending) < workers and (spec := next(source, None)) is not None:
                    args = (runner.settings(), spec, threads) + ((events,) if events is not None else ())
                    pending[pool.submit(compute, *args)] = spec

            fill()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    spec = pending.pop(future)
                    try:
                        status, payload = future.result()
                    except Exception as err:  # noqa: BLE001 - a worker died (killed, out of memory): record, go on
                        status, payload = "failed", f"worker process failed: {type(err).__name__}: {err}"
                    on_result(spec, status, payload)
                fill()
    finally:
        if events is not None and relay is not None and manager is not None:
            events.put(None)
            relay.join(timeout=10)
            manager.shutdown()


def run_on_ray(
    runner: Runner,
    specs: Iterable[RunSpec],
    on_result: OnResult,
    address: str | None = None,
    cpus_per_run: int = 1,
    num_cpus: int | None = None,
    compute: Callable = remote_compute,
) -> None:
    """Run ``specs`` as Ray tasks (a local instance unless ``address`` is ``auto`` or ``ray://...``) and call
    ``on_result(spec, "ok" | "failed", record | message)`` in the driver as each finishes."""
    try:
        import ray
    except ImportError:
        raise SynthmedError("the ray backend needs Ray: pip install 'synthmed[ray]' (or pip install ray)") from None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    try:
        task = ray.remote(num_cpus=cpus_per_run, num_gpus=1 if runner.device == "cuda" else 0, max_retries=0)(compute)
        pending = {task.remote(runner.settings(), spec, cpus_per_run): spec for spec in specs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done[0])
            try:
                status, payload = ray.get(done[0])
            except ray.exceptions.RayError as err:  # a worker crashed (e.g. out of memory)
                status, payload = "failed", f"ray task failed: {str(err).splitlines()[0]}"
            on_result(spec, status, payload)
    finally:
        if started_here:
            ray.shutdown()
