"""Where runs execute: ``local`` (this process, one run after another; see ``Runner.run``) or ``ray``.

With Ray, every run is a task that declares its needs (``cpus_per_run`` CPUs, one GPU with ``--device cuda``);
the worker trains, writes the run's artifacts atomically into the shared output folder and returns the record;
the driver alone inserts records into the SQLite store, as they arrive. A killed driver therefore loses only
runs in flight, and the same command later skips every stored run. On a cluster, the output folder (and the
data root) must be on storage every node sees, and synthmed must be installed on every node.
"""

from __future__ import annotations

from collections.abc import Callable

from synthmed.errors import SynthmedError
from synthmed.experiment.runner import Runner, RunSpec


def _remote_compute(settings: dict, spec: RunSpec, threads: int) -> tuple[str, object]:
    """A Ray task: compute one run in a fresh Runner; ("ok", record) or ("failed", message)."""
    import torch

    torch.set_num_threads(threads)
    try:
        return "ok", Runner(**settings).compute(spec)
    except SynthmedError as err:
        return "failed", str(err)


def run_on_ray(runner: Runner, specs: list[RunSpec], on_result: Callable[[RunSpec, str, object], None],
               address: str | None = None, cpus_per_run: int = 1, num_cpus: int | None = None) -> None:
    """Run ``specs`` as Ray tasks (a local instance unless ``address`` is ``auto`` or ``ray://...``) and call
    ``on_result(spec, "ok" | "failed", record | message)`` in the driver as each finishes."""
    try:
        import ray
    except ImportError:
        raise SynthmedError("the ray backend needs Ray: pip install 'synthmed[ray]' (or pip install ray)") from None
    settings = {"out": str(runner.out), "data_root": runner.data_root, "verify": runner.verify,
                "device": runner.device, "download": runner.download, "save_model": runner.save_model,
                "cache_dir": str(runner.cache_dir)}
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = {"include_dashboard": False, "log_to_driver": False}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    try:
        task = ray.remote(num_cpus=cpus_per_run, num_gpus=1 if runner.device == "cuda" else 0,
                          max_retries=0)(_remote_compute)
        pending = {task.remote(settings, spec, cpus_per_run): spec for spec in specs}
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
