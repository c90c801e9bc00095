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

import itertools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing.managers import SyncManager
from typing import TYPE_CHECKING, Any

from synthmed.errors import SynthmedError
from synthmed.spec import RunSpec

if TYPE_CHECKING:  # imported where a run computes: a pool's queue manager and idle workers never load torch
    from synthmed.experiment.runner import Runner

#: how often a pool worker checks that its driver is still alive (seconds)
DRIVER_CHECK_SECONDS = 1.0
#: seconds an abandoned pool worker gets to unwind (its atomic writes remove their temporaries) before SIGKILL
ABANDON_GRACE_SECONDS = 10.0
#: the memory a pool worker is budgeted (peak RSS of a DenseNet-121 run at 64 px, with headroom)
MEMORY_PER_WORKER = 3 * 2**30

OnResult = Callable[[RunSpec, str, object], None]
#: (kind, spec, payload): "started" (epochs), "epoch" (history row), "status" (text), sent by pool workers
OnProgress = Callable[[str, RunSpec, Any], None]


def remote_compute(settings: dict, spec: RunSpec, threads: int, events: Any = None) -> tuple[str, object]:
    """One run in a worker process: ("ok", record) or ("failed", message); nothing touches the store. ``events``
    (a queue) receives the run's progress."""
    import torch

    from synthmed.experiment.runner import Runner

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


class Abandoned(BaseException):
    """Raised in a run computing when its time budget ends (``--time-budget``): it unwinds the run without a record
    or an error.json, and every atomic write in progress removes its temporary. A BaseException, so no ``except
    Exception`` on the way swallows it."""


def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    """``MemAvailable`` in bytes: the memory the kernel can give without swapping, page cache included."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _available_memory(meminfo: str = "/proc/meminfo") -> int | None:
    """The memory available to new workers: Linux's ``MemAvailable`` (free pages alone exclude the page cache, so on a
    machine that has run for a while they are a fraction of what can be used), else the free pages."""
    available = _meminfo_available(meminfo)
    if available is not None:
        return available
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on every platform
        return None


def pool_plan(
    workers: int, threads: int, cores: int | None = None, memory: int | None = None
) -> tuple[int, str | None]:
    """``pool_size`` and, when it is below ``workers``, why (the cores or the available memory), in words."""
    if workers < 1 or threads < 1:
        raise SynthmedError(f"--workers {workers} and --cpus-per-run {threads} must be at least 1")
    cores = cores or os.cpu_count() or 1
    memory = _available_memory() if memory is None else memory
    by_cores = max(1, cores // threads)
    by_memory = max(1, memory // MEMORY_PER_WORKER) if memory is not None else None
    size = min(workers, by_cores, by_memory or by_cores)
    if size == workers:
        return size, None
    if memory is not None and by_memory is not None and by_memory < min(workers, by_cores):
        return size, f"{memory / 2**30:.1f} GB of memory available, {MEMORY_PER_WORKER / 2**30:.0f} GB per worker"
    return size, f"{cores} cores, {threads} CPU per run"


def pool_size(workers: int, threads: int, cores: int | None = None, memory: int | None = None) -> int:
    """``workers`` bounded by the cores (``threads`` each) and the available memory in bytes (MEMORY_PER_WORKER
    each); ``cores`` and ``memory`` default to this machine's (no memory bound where the platform cannot tell)."""
    return pool_plan(workers, threads, cores, memory)[0]


def load_average() -> float | None:
    """The 1-minute load average (runnable processes), where the platform tells it."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def free_cores(cores: int | None = None, load: float | None = None) -> tuple[int, float]:
    """(cores not busy with other processes, the load they were judged by): ``cores`` minus the 1-minute load average,
    at least 1; with no load average, every core."""
    cores = cores or os.cpu_count() or 1
    load = load_average() if load is None else load
    if load is None:
        return cores, 0.0
    return max(1, min(cores, round(cores - load))), load


_computing = False  # in a pool worker: a run is computing (SIGTERM abandons it) or the worker is idle


def _on_terminate(signum: int, frame: Any) -> None:
    """SIGTERM in a pool worker (a time budget ended): unwind the run in progress, so its atomic writes remove their
    temporaries, then end; an idle worker just ends."""
    if _computing:
        raise Abandoned()
    os._exit(0)


def _abandonable(compute: Callable, *args: Any) -> tuple[str, object]:
    """Run ``compute(*args)`` in a pool worker so that SIGTERM abandons it cleanly (see ``_on_terminate``)."""
    global _computing
    _computing = True
    try:
        return compute(*args)
    except Abandoned:
        os._exit(0)
    finally:
        _computing = False


def _exit_with_driver(driver: int) -> None:
    """Pool initializer: end this worker as soon as its driver is gone. A driver killed hard (SIGKILL, a scheduler
    or a shell's ``kill``) cannot stop its pool, and orphaned workers would go on computing runs that nobody
    records while holding the cores the next driver needs. SIGTERM abandons the run in progress cleanly."""
    signal.signal(signal.SIGTERM, _on_terminate)
    _watch_driver(driver)


def _watch_driver(driver: int) -> None:
    """End this process (a pool worker, or the progress queue's manager) once its parent ``driver`` is gone: a
    manager outliving a killed driver waits for connections forever, with its resource tracker beside it."""

    def watch() -> None:
        while os.getppid() == driver:
            time.sleep(DRIVER_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="driver-watch", daemon=True).start()


def _abandon_pool(pool: ProcessPoolExecutor) -> None:
    """End a pool's workers at a deadline: SIGTERM (each unwinds its run), SIGKILL after ABANDON_GRACE_SECONDS."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    end = time.monotonic() + ABANDON_GRACE_SECONDS
    for process in processes:
        process.join(timeout=max(0.0, end - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
    pool.shutdown(wait=True, cancel_futures=True)


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
    deadline: float | None = None,
) -> None:
    """Run ``specs`` in a pool of ``workers`` processes (bound it with ``pool_size`` first), drawing the next run
    only when a worker is free, and call ``on_result`` in the driver as each finishes. ``compute`` is replaceable
    for bench/scheduler.py. At ``deadline`` (a ``time.monotonic()`` value) the runs in flight are abandoned: their
    workers get SIGTERM (then SIGKILL), no result is reported for them, and ``Abandoned`` is raised."""
    source: Iterator[RunSpec] = iter(specs)
    first = next(source, None)  # claims the first run, as filling the pool would
    if first is None:  # every run is done or held by another process: no pool, no event queue to start
        return
    source = itertools.chain([first], source)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked torch state
    manager = None
    if on_progress is not None:
        manager = SyncManager(ctx=context)
        manager.start(initializer=_watch_driver, initargs=(os.getpid(),))
    events = manager.Queue() if manager is not None else None
    relay = threading.Thread(target=_relay, args=(events, on_progress), daemon=True) if events is not None else None
    if relay is not None:
        relay.start()
    try:
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_exit_with_driver, initargs=(os.getpid(),)
        ) as pool:
            pending: dict[Future, RunSpec] = {}

            def fill() -> None:
                while len(pending) < workers and (spec := next(source, None)) is not None:
                    args = (runner.settings(), spec, threads) + ((events,) if events is not None else ())
                    pending[pool.submit(_abandonable, compute, *args)] = spec

            fill()
            while pending:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                done, _ = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
                if not done:  # the deadline passed with runs in flight
                    _abandon_pool(pool)
                    raise Abandoned()
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


def ray_capacity(nodes: list[dict], cpus_per_run: int, gpu: bool) -> int:
    """How many runs of ``cpus_per_run`` CPUs (and one GPU each where ``gpu``) the cluster's live ``nodes``
    (``ray.nodes()``) hold at once, node by node: 4 nodes of 2 CPUs hold no run of 4 CPUs, though the cluster has 8.
    At least one: where no node holds a run now, one is queued, which an autoscaling cluster adds a node for and a
    fixed one never starts (Ray reports the task infeasible)."""
    room = 0
    for node in nodes:
        if not node.get("Alive", True):
            continue
        resources = node.get("Resources") or {}
        fits = int(resources.get("CPU", 0) // max(cpus_per_run, 1))
        room += min(fits, int(resources.get("GPU", 0))) if gpu else fits
    return max(room, 1)


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
    ``on_result(spec, "ok" | "failed", record | message)`` in the driver as each finishes. ``specs`` is drawn as
    the cluster has room, as many tasks in flight as its CPUs (and GPUs for CUDA runs) hold, not all at once: each
    spec drawn is a run claimed, so the runs left stay free for other processes and a stop request is seen. The room
    is read again at every draw, so nodes that join are used; an autoscaler sees only the runs drawn as demand."""
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
        gpu = runner.device == "cuda"
        task = ray.remote(num_cpus=cpus_per_run, num_gpus=1 if gpu else 0, max_retries=0)(compute)
        source = iter(specs)
        pending: dict[Any, RunSpec] = {}  # Ray's object reference -> its spec

        def fill() -> None:
            room = ray_capacity(ray.nodes(), cpus_per_run, gpu)
            while len(pending) < room and (spec := next(source, None)) is not None:
                pending[task.remote(runner.settings(), spec, cpus_per_run)] = spec

        fill()
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done[0])
            try:
                status, payload = ray.get(done[0])
            except ray.exceptions.RayError as err:  # a worker crashed (e.g. out of memory)
                status, payload = "failed", f"ray task failed: {str(err).splitlines()[0]}"
            on_result(spec, status, payload)
            fill()
    finally:
        if started_here:
            ray.shutdown()
