"""Scheduler overhead: what each backend adds per run, measured on 1,000 trivial runs.

A trivial run returns a small record without training, so the time per run is pure orchestration: the store
lookup that finds pending runs, dispatching the run (a call in this process, a pool worker, a Ray task), shipping
the record back, and the driver's atomic insert into the SQLite store. Results go to bench/results/scheduler.json.
Needs SYNTHMED_DATA (the run ids hash the data file's MD5); run it on an otherwise idle machine.

    SYNTHMED_DATA=../shared/data/medmnist .venv/bin/python bench/scheduler.py [--runs 1000] [--backends local,pool,ray]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from synthmed.experiment.backends import run_on_pool, run_on_ray
from synthmed.experiment.runner import Runner, versions
from synthmed.io import atomic_write_json
from synthmed.spec import RunSpec
from synthmed.store import ResultStore


def trivial_compute(settings: dict, spec: RunSpec, threads: int) -> tuple[str, dict]:
    """Stands in for a training run: the record of a run that took no time."""
    run_id, config = spec.key("bench")
    return "ok", {
        "run_id": run_id,
        "dataset": spec.dataset,
        "protocol": spec.protocol,
        "method": spec.method,
        "classifier": spec.classifier,
        "recipe": spec.recipe,
        "seed": spec.seed,
        "config": config,
        "test_auc": 0.5,
        "test_acc": 0.5,
        "metrics": {},
        "versions": {},
    }


def measure(backend: str, n_runs: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(Path(tmp) / "out", data_root=os.environ.get("SYNTHMED_DATA"), download=False)
        runner.out.mkdir(parents=True)
        specs = [RunSpec(dataset="breastmnist", seed=seed) for seed in range(n_runs)]
        start = time.perf_counter()
        todo = runner.pending(specs)
        with ResultStore(runner.out / "results.sqlite") as store:

            def on_result(spec: RunSpec, status: str, record: object) -> None:
                assert isinstance(record, dict)
                store.add(record)

            if backend == "local":
                for spec in todo:
                    on_result(spec, *trivial_compute({}, spec, 1))
            elif backend == "pool":
                run_on_pool(runner, todo, on_result, workers=workers, compute=trivial_compute)
            else:
                run_on_ray(runner, todo, on_result, num_cpus=workers, compute=trivial_compute)
            stored = len(store.records())
        seconds = time.perf_counter() - start
    assert stored == n_runs, f"{backend}: {stored} of {n_runs} runs stored"
    return {
        "backend": backend,
        "runs": n_runs,
        "workers": workers,
        "seconds": round(seconds, 3),
        "ms_per_run": round(1000 * seconds / n_runs, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backends", default="local,pool,ray")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scheduler.json"))
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    results = []
    for backend in args.backends.split(","):
        results.append(measure(backend, args.runs, args.workers))
        print(results[-1], flush=True)
    atomic_write_json(
        Path(args.out),
        {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "versions": versions(),
            "results": results,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
