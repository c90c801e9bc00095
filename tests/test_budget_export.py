"""Time budgets (--time-budget), exports written as runs finish (--export-to, --pages), and a pool sized from the
memory the kernel reports as available."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_execution import FakeRunner, fake_record

from synthmed.errors import SynthmedError
from synthmed.experiment.execution import Execution
from synthmed.experiment.grid import Grid, expand, override
from synthmed.store import ResultStore, read_jsonl


class TimedRunner(FakeRunner):
    """Runs that take a given number of seconds each (by method) and store a made-up record."""

    seconds: dict[str, float] = {}

    def compute(self, spec, on_epoch=None, on_status=None):
        run_dir = self.out / "runs" / self.run_id(spec)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ".history.json.inflight.tmp").write_text("{")  # an atomic write in progress
        time.sleep(self.seconds.get(spec.method, 0.0))
        (run_dir / ".history.json.inflight.tmp").unlink()
        return {**fake_record(self, spec, 0.8), "total_time": self.seconds.get(spec.method, 0.0)}


def _grid(methods: str, seeds: list[int]) -> Grid:
    return override(Grid(datasets=["breastmnist"], seeds=seeds), {"method": methods})


# ---- durations ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds", [("2h30m", 9000), ("90m", 5400), ("3600", 3600), ("45s", 45), ("1.5h", 5400), ("1h 5m", 3900)]
)
def test_durations_are_read_in_hours_minutes_and_seconds(text, seconds):
    from synthmed.experiment.execution import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "", "0", "0m", "2x", "-5", "h"])
def test_a_bad_duration_is_one_error(text):
    from synthmed.experiment.execution import parse_duration

    with pytest.raises(SynthmedError, match="--time-budget"):
        parse_duration(text)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("10:52", 4320),
        ("9:40:30", 30),
        ("23:59:59", 14 * 3600 + 20 * 60 - 1),
        ("2026-12-08T09:40", 24 * 3600),
        ("2026-12-07 11:00", 4800),
        ("2026-12-07T11:40+01:00", 3600),  # an offset given: 10:40 UTC
    ],
)
def test_a_time_budget_can_end_at_a_clock_time(text, seconds):
    from datetime import datetime, timezone

    from synthmed.experiment.execution import parse_duration

    now = datetime(2026, 12, 7, 9, 40, 0, tzinfo=timezone.utc)  # a time without an offset is in now's zone
    assert parse_duration(text, now=now) == seconds


@pytest.mark.parametrize(
    "text, message",
    [("9:39", "has passed"), ("2026-12-07T09:00", "has passed"), ("25:00", "give a clock time"), ("9:7", "clock")],
)
def test_a_clock_time_past_or_malformed_is_one_error(text, message):
    from datetime import datetime, timezone

    from synthmed.experiment.execution import parse_duration

    now = datetime(2026, 12, 7, 9, 40, 0, tzinfo=timezone.utc)
    with pytest.raises(SynthmedError, match=f"--time-budget '{text}'.*{message}"):
        parse_duration(text, now=now)


# ---- time budgets -----------------------------------------------------------------------------------------------


def test_a_budget_starts_only_the_runs_the_store_says_it_fits(tmp_path, monkeypatch):
    from synthmed.experiment.execute import run_grid

    monkeypatch.setenv("SYNTHMED_RUN_SECONDS", "10000")
    runner = TimedRunner(tmp_path)
    runner.seconds = {"none": 0.0, "flip": 0.0}
    with ResultStore(runner.store_path) as store:  # durations known ahead: flip took 1000 s, none 0.5 s
        for spec in expand(_grid("none,flip", [9])):
            store.add({**fake_record(runner, spec, 0.8), "total_time": 1000.0 if spec.method == "flip" else 0.5})
    outcome = run_grid(_grid("none,flip", [0, 1, 2]), Execution(workers=1, report=False, time_budget=60), runner=runner)
    assert outcome.budget_reached and sorted(r["method"] for r in outcome.finished) == ["none"] * 3
    assert (outcome.done, outcome.left) == (3, 3)
    with ResultStore(runner.store_path) as store:
        assert not store.holders()  # no claim left behind


def test_a_run_without_history_gets_the_stated_default(tmp_path, monkeypatch):
    from synthmed.experiment.budget import DEFAULT_RUN_SECONDS, Budget
    from synthmed.experiment.execute import run_grid

    assert DEFAULT_RUN_SECONDS == 3600
    monkeypatch.setenv("SYNTHMED_RUN_SECONDS", "5")
    runner = TimedRunner(tmp_path)
    grid = _grid("none", [0, 1])
    assert Budget(4).default_run_seconds == 5
    events = []
    assert (
        run_grid(grid, Execution(workers=1, report=False, time_budget=4), runner=runner, on_event=events.append).done
        == 0
    )
    warning = next(e.message for e in events if e.kind == "warning")
    assert (
        "2 run(s) did not start" in warning and "default estimate, 5 s" in warning and "SYNTHMED_RUN_SECONDS" in warning
    )
    assert run_grid(grid, Execution(workers=1, report=False, time_budget=60), runner=runner).done == 2


def test_at_the_deadline_the_run_in_flight_is_abandoned_cleanly(tmp_path, monkeypatch):
    from synthmed.experiment.execute import run_grid

    monkeypatch.setenv("SYNTHMED_RUN_SECONDS", "0.1")
    runner = TimedRunner(tmp_path)
    runner.seconds = {"none": 60.0}
    started = time.monotonic()
    outcome = run_grid(_grid("none", [0, 1]), Execution(workers=1, report=False, time_budget=1.5), runner=runner)
    assert time.monotonic() - started < 15
    assert outcome.budget_reached and not outcome.finished and not outcome.failed
    assert (outcome.done, outcome.left) == (0, 2)
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("error.json"))
    with ResultStore(runner.store_path) as store:
        assert not store.run_ids() and not store.holders()


SLEEPY = """
import os, time
from pathlib import Path

def compute(settings, spec, threads):
    folder = Path(os.environ["SLEEPY_DIR"])
    (folder / "started").write_text(str(os.getpid()))
    tmp = folder / ".record.json.x.tmp"
    tmp.write_text("{")
    try:
        time.sleep(120)
    except BaseException:
        tmp.unlink()  # as io.atomic_write_bytes does
        raise
    return "ok", {}
"""


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32", reason="POSIX signals")
def test_a_pool_abandons_its_runs_at_the_deadline(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from synthmed.experiment.backends import Abandoned, run_on_pool

    (tmp_path / "sleepy_compute.py").write_text(SLEEPY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SLEEPY_DIR", str(tmp_path))
    import sleepy_compute

    results = []
    runner = SimpleNamespace(settings=dict)
    started = time.monotonic()
    # a spawned worker starts well within this on a busy machine (it imports the backends module, not torch: 12 s
    # when it did)
    deadline = started + 6
    with pytest.raises(Abandoned):
        run_on_pool(runner, ["a", "b"], lambda *r: results.append(r), workers=1, compute=sleepy_compute.compute,
                    deadline=deadline)  # fmt: skip
    assert time.monotonic() - deadline < 15 and not results
    assert not list(tmp_path.glob("*.tmp"))
    if (tmp_path / "started").exists():  # on a loaded machine the worker may not have reached its run in 12 s
        pid = int((tmp_path / "started").read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_pool_with_no_run_to_make_starts_no_process(monkeypatch):
    """Every run done or held by another process: no worker pool and no event queue's manager process is started
    (a lane whose runs the other lane holds ends at once)."""
    from types import SimpleNamespace

    from synthmed.experiment import backends

    def refuse(*args, **kwargs):
        raise AssertionError("a process was started for no run")

    monkeypatch.setattr(backends, "SyncManager", refuse)
    monkeypatch.setattr(backends, "ProcessPoolExecutor", refuse)
    results: list = []
    backends.run_on_pool(SimpleNamespace(settings=dict), iter([]), lambda *r: results.append(r), workers=2,
                         on_progress=lambda *event: None)  # fmt: skip
    assert results == []


def test_the_command_line_says_budget_reached_and_exits_3(tmp_path, cli, monkeypatch):
    from conftest import write_breast_like

    write_breast_like(tmp_path / "data")
    monkeypatch.setenv("SYNTHMED_RUN_SECONDS", "100000")
    out = tmp_path / "out"
    args = ["run", "-d", "breastmnist", "--protocol", "full", "-m", "none", "--seeds", "0,1", "--epochs", "1"]
    # --workers 1: a pool (the default for two runs) starts its progress queue's manager, a process that imports
    # torch, even when the budget starts no run
    args += ["--workers", "1"]
    result = cli(*args, "--out", str(out), "--no-verify", "--time-budget", "1h", root=tmp_path / "data")
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "budget reached: 0 runs done, 2 left; run the same command to continue"
    )
    with ResultStore(out / "results.sqlite") as store:
        assert not store.run_ids()


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--time-budget", "soon"], "--time-budget 'soon': give a duration such as 2h30m"),
        (["--time-budget", "00:00"], "--time-budget '00:00' has passed"),
        (["--pages", "README.md"], "--pages regenerates tables from an export: give --export-to DIR too"),
        (["--export-to", "{tmp}/notexport"], "exists and is not a synthmed export"),
        (["--export-to", "{tmp}/out"], "is the run folder itself"),
        (["--export-to", "{tmp}/exp", "--pages", "{tmp}/absent.md"], "--pages {tmp}/absent.md is not a file"),
    ],
)
def test_bad_budget_and_export_options_are_one_line_errors(tmp_path, cli, args, phrase):
    (tmp_path / "notexport").mkdir()
    (tmp_path / "notexport" / "thesis.tex").write_text("x")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = cli("run", "-d", "breastmnist", "--out", str(tmp_path / "out"), *args)
    assert result.returncode == 2 and phrase.replace("{tmp}", str(tmp_path)) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "exp").exists()


def test_experiment_run_refuses_a_budget_on_ray(tmp_path, cli):
    config = tmp_path / "grid.yaml"
    config.write_text(f"name: g\nout: {tmp_path / 'out'}\ndatasets: [breastmnist]\nmethods: [none]\n")
    result = cli("experiment", "run", str(config), "--backend", "ray", "--time-budget", "10m")
    assert result.returncode == 2 and "--time-budget needs the local backend" in result.stderr
    assert not (tmp_path / "out").exists()


# ---- exports as runs finish -----------------------------------------------------------------------------------


def test_each_finished_run_is_in_the_export_as_it_is_stored_and_the_report_is_written_there(tmp_path, cli):
    from conftest import write_breast_like

    write_breast_like(tmp_path / "data")
    out, exp = tmp_path / "out", tmp_path / "exp"
    args = ["run", "-d", "breastmnist", "--protocol", "full", "-m", "none", "--seeds", "0,1", "--epochs", "1"]
    args += ["--precision", "fp32", "--workers", "1", "--no-verify", "--out", str(out), "--export-to", str(exp)]
    result = cli(*args, root=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    records = read_jsonl(exp / "records.jsonl")
    with ResultStore(out / "results.sqlite") as store:
        assert {r["run_id"] for r in records} == store.run_ids() and len(records) == 2
    assert (exp / "report.md").exists() and (exp / "export.json").exists() and not list(exp.rglob("*.tmp"))
    again = cli(*args, root=tmp_path / "data")
    assert again.returncode == 0 and len(read_jsonl(exp / "records.jsonl")) == 2  # nothing twice


def test_runs_are_appended_one_by_one_and_a_later_export_catches_up(tmp_path):
    from synthmed.experiment.export import append_run, export_runs, is_export, start_export

    runner = FakeRunner(tmp_path / "out")
    specs = expand(_grid("none,flip", [0, 1, 2]))
    with ResultStore(runner.store_path) as store:
        for spec in specs:
            store.add(fake_record(runner, spec, 0.8))
    ids = sorted(runner.run_id(s) for s in specs)
    start_export(tmp_path / "exp")
    assert is_export(tmp_path / "exp") and read_jsonl(tmp_path / "exp" / "records.jsonl") == []
    assert append_run(runner.out, tmp_path / "exp", ids[0]) and not append_run(runner.out, tmp_path / "exp", ids[0])
    assert [r["run_id"] for r in read_jsonl(tmp_path / "exp" / "records.jsonl")] == ids[:1]
    export_runs(runner.out, tmp_path / "exp")  # what the next command with --export-to does first
    assert sorted(r["run_id"] for r in read_jsonl(tmp_path / "exp" / "records.jsonl")) == ids


KILLED_WRITER = """
import sys
from pathlib import Path
from synthmed.experiment.export import append_run, start_export
from synthmed.store import ResultStore

out, dest = Path(sys.argv[1]), Path(sys.argv[2])
start_export(dest)
with ResultStore(out / "results.sqlite") as store:
    ids = sorted(store.run_ids())
print("ready", flush=True)
while True:  # rewrite the export over and over, as a long grid does
    for run_id in ids:
        append_run(out, dest, run_id)
    (dest / "records.jsonl").write_text("")
"""


def test_a_writer_killed_mid_export_leaves_an_export_that_loads_without_duplicates(tmp_path):
    from synthmed.experiment.export import export_runs
    from synthmed.report.records import load_records

    runner = FakeRunner(tmp_path / "out")
    specs = expand(_grid("none,flip", list(range(10))))
    with ResultStore(runner.store_path) as store:
        for spec in specs:
            store.add(fake_record(runner, spec, 0.8))
    dest = tmp_path / "exp"
    for delay in (0.3, 0.7):
        writer = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(runner.out), str(dest)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        ids = [r["run_id"] for r in load_records(dest)]  # loads, whatever the moment of the kill
        assert len(ids) == len(set(ids))
    export_runs(runner.out, dest)  # the next command: every stored run, once, and no temporary left
    ids = [r["run_id"] for r in read_jsonl(dest / "records.jsonl")]
    assert sorted(ids) == sorted(runner.run_id(s) for s in specs) and not list(dest.rglob("*.tmp"))


def test_pages_get_their_tables_regenerated_and_keep_their_prose(tmp_path):
    from synthmed.experiment.export import export_runs, update_pages

    (tmp_path / "pyproject.toml").write_text("")  # the repository root the blocks' exports are relative to
    runner = FakeRunner(tmp_path / "out")
    with ResultStore(runner.store_path) as store:
        for spec in expand(_grid("none,flip", [0, 1])):
            store.add(fake_record(runner, spec, 0.8 + 0.01 * spec.seed))
    export_runs(runner.out, tmp_path / "results" / "x")
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("prose before\n<!-- study_table results/x --no-setting -->\nold\n<!-- /study_table -->\nafter\n")
    assert update_pages([page]) == [f"{page}: tables updated"]
    lines = page.read_text().splitlines()
    assert lines[0] == "prose before" and lines[-1] == "after" and "old" not in lines
    assert lines[2].startswith("| method | seeds | test AUC") and lines[4].startswith("| `none` | 2 |")
    assert update_pages([page]) == [f"{page}: tables unchanged"]


# ---- the pool and a busy machine --------------------------------------------------------------------------------


def test_the_pool_counts_the_page_cache_as_available_memory(tmp_path):
    from synthmed.experiment.backends import MEMORY_PER_WORKER, _available_memory, pool_plan

    meminfo = tmp_path / "meminfo"  # a machine that has run for a while: 3.7 GB free, 22 GB available
    meminfo.write_text("MemTotal:       32000000 kB\nMemFree:         3700000 kB\nMemAvailable:   22000000 kB\n")
    available = _available_memory(str(meminfo))
    assert available == 22000000 * 1024
    assert pool_plan(2, 1, cores=2, memory=available) == (2, None)
    size, why = pool_plan(8, 1, cores=8, memory=2 * MEMORY_PER_WORKER)
    assert size == 2 and why == "6.0 GB of memory available, 3 GB per worker"
    assert pool_plan(8, 2, cores=8, memory=available) == (4, "8 cores, 2 CPU per run")


def test_free_cores_come_from_the_load_average():
    from synthmed.experiment.backends import free_cores

    assert free_cores(2, 0.1) == (2, 0.1)
    assert free_cores(2, 1.2) == (1, 1.2)
    assert free_cores(2, 5.0) == (1, 5.0)  # at least one


def test_a_busy_machine_gets_a_warning_and_the_same_threads(monkeypatch):
    import torch

    from synthmed.experiment import backends, execute

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(backends, "load_average", lambda: 3.0)
    warning, inline = execute._busy("pool", 4, None, explicit=False)
    assert warning == (
        "this machine is busy (load average 3.0 on 4 cores): this command's 4 threads will share them; "
        "give --workers and --cpus-per-run to use only the free ones"
    )
    threads = torch.get_num_threads()
    assert execute._busy(None, 1, None, explicit=False) == (None, "")  # one run in this process: nothing said
    assert torch.get_num_threads() == threads  # a load average never changes a run's thread count
    monkeypatch.setattr(backends, "load_average", lambda: 0.2)
    assert execute._busy("pool", 4, None, explicit=False) == (None, "")


def test_status_costs_pending_runs_by_the_longest_stored_run_and_names_what_it_cannot_cost():
    from synthmed.experiment.budget import Durations, estimate

    def record(method: str, seconds: float | None, **config) -> dict:
        return {
            "dataset": "pneumoniamnist",
            "protocol": "lowdata",
            "method": method,
            "total_time": seconds,
            "config": {"method": method, "seed": 0, **config},
        }

    stored = [record("ddpm", 1600), record("ddpm", 250, pretrain=True), record("none", 200), record("none", None)]
    durations = Durations.of(stored)
    ddpm, none = ("pneumoniamnist", "lowdata", "ddpm"), ("pneumoniamnist", "lowdata", "none")
    assert durations.by_method == {ddpm: 1600, none: 200}
    # a run is costed as its own config's longest run, whatever its seed; a config nothing stored ran, as its method's
    assert durations.seconds(ddpm, {"method": "ddpm", "seed": 7, "pretrain": True}) == 250
    assert durations.seconds(ddpm, {"method": "ddpm", "seed": 7, "batch_size": 128}) == 1600
    dcgan = ("pneumoniamnist", "lowdata", "dcgan")
    runs = [(ddpm, {"method": "ddpm", "seed": 3}, None, None), (ddpm, None, None, None), (none, None, None, None)]
    runs += [(dcgan, None, None, None)]
    cost = estimate(runs, durations)
    assert (cost.seconds, cost.known, cost.unknown) == (3400, 3, {"dcgan": 1})
    line = cost.line(workers=2)
    assert "about 57 min of CPU (28 min at 2 worker(s)" in line and "nothing stored for them yet: dcgan (1)" in line


def test_a_budget_costs_each_run_by_its_own_config_so_short_runs_of_a_long_method_still_start(tmp_path, monkeypatch):
    """The copies with their class-fidelity audit took 1000 s, without it 0.5 s: under a 60 s budget the unaudited
    runs start (costed by their method's longest run, none would)."""
    from synthmed.experiment.execute import run_grid

    monkeypatch.setenv("SYNTHMED_RUN_SECONDS", "10000")
    runner = TimedRunner(tmp_path)

    def grid(seeds: list[int]) -> Grid:
        unaudited = {"method": "oversample", "fidelity": [False]}
        return Grid(datasets=["breastmnist"], seeds=seeds, methods=[{"method": "oversample"}, unaudited])

    with ResultStore(runner.store_path) as store:
        for spec in expand(grid([9])):
            store.add({**fake_record(runner, spec, 0.8), "total_time": 1000.0 if spec.synthesis.fidelity else 0.5})
    outcome = run_grid(grid([0, 1]), Execution(workers=1, report=False, time_budget=60), runner=runner)
    assert outcome.budget_reached and (outcome.done, outcome.left) == (2, 2)
    assert [r["config"]["synthesis"]["fidelity"] for r in outcome.finished] == [False, False]


def test_a_grids_export_takes_its_own_runs_and_the_curve_not_another_studys_imported_rows(tmp_path):
    """The unlabelled study imports the low-noise export for its controls and curve; that export's flip (or
    generator) rows must not join this study's export, where they would be rows and Holm family members that its
    looks never judged."""
    import dataclasses

    from synthmed.experiment.execute import run_grid

    runner = TimedRunner(tmp_path / "study")
    curve_point = dataclasses.replace(expand(_grid("none", [0]))[0], curve_per_class=25)
    with ResultStore(runner.store_path) as store:  # as --resume-from leaves them: another study's rows and its curve
        for spec in [*expand(_grid("flip", [0, 1])), curve_point]:
            store.add(fake_record(runner, spec, 0.8))
    run_grid(_grid("none", [0, 1]), Execution(workers=1, report=False, export_to=tmp_path / "exp"), runner=runner)
    exported = read_jsonl(tmp_path / "exp" / "records.jsonl")
    assert sorted((r["method"], r["config"]["curve_per_class"] or 0, r["seed"]) for r in exported) == [
        ("none", 0, 0),
        ("none", 0, 1),
        ("none", 25, 0),
    ]


def test_time_blocked_on_a_cache_lock_is_counted_and_said(tmp_path):
    """A run that waits for a fit another worker is making learns how long it waited (its record keeps it apart),
    and says that it waits (``on_wait``, once) instead of showing what it did last; a free lock says nothing."""
    import threading
    import time

    from synthmed.io import file_lock, lock_wait_seconds

    held = threading.Event()

    def holder() -> None:
        with file_lock(tmp_path / "fit.lock"):
            held.set()
            time.sleep(0.5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    before, said = lock_wait_seconds(), []
    with file_lock(tmp_path / "fit.lock", on_wait=lambda: said.append("waiting")):
        waited = lock_wait_seconds() - before
    thread.join()
    assert 0.3 < waited < 5 and said == ["waiting"]
    before = lock_wait_seconds()
    with file_lock(tmp_path / "fit.lock", on_wait=lambda: said.append("waiting")):
        assert lock_wait_seconds() - before < 0.3  # a free lock costs nothing
    assert said == ["waiting"]


def test_a_runs_wait_for_another_workers_fit_is_not_counted_as_its_cost(tmp_path):
    """``ddpm --pretrain-on-synthetic`` that waited 1,000 s for the other worker's fit is costed at its own 290 s,
    from the store and from an export alike."""
    from synthmed.experiment.budget import stored_durations

    key = ("pneumoniamnist", "lowdata", "ddpm")
    config = {"method": "ddpm", "seed": 1, "pretrain": True}
    waited = {**dict(zip(("dataset", "protocol", "method"), key)), "config": config, "total_time": 1290.0}
    waited["metrics"] = {"lock_wait_s": 1000.0}
    assert stored_durations(tmp_path / "none.sqlite", [waited]).seconds(key, config) == 290.0
    runner = TimedRunner(tmp_path)
    spec = expand(Grid(datasets=["breastmnist"], seeds=[0], methods=[{"method": "none"}]))[0]
    with ResultStore(runner.store_path) as store:
        record = fake_record(runner, spec, 0.8)
        metrics = {**(record["metrics"] or {}), "lock_wait_s": 1000.0, "recall": [1.0, float("nan")]}  # a class absent
        store.add({**record, "total_time": 1290.0, "metrics": metrics})
    durations = stored_durations(runner.store_path)
    assert durations.by_method == {("breastmnist", spec.protocol, "none"): 290.0}


def test_runs_stored_on_another_cpu_are_costed_at_this_ones_speed(tmp_path):
    """Configs run on both machines give the ratio (the median over configs of their median durations); the other
    machine's runs of any config are costed at it, from the store (which keeps each run's machine) and an export."""
    from synthmed.experiment.budget import scaling_line, speed_factors, stored_durations, stored_timings, typical

    key = ("breastmnist", "lowdata", "dcgan")

    def run(seconds: float, capability: str | None, config: str = "a", device: str = "cpu") -> dict:
        versions = {"cpu_capability": capability, "gpu": "NVIDIA H100"} if capability else {}
        record = dict(zip(("dataset", "protocol", "method"), key)) | {"config": {"method": "dcgan", "p": config}}
        return record | {"total_time": seconds, "metrics": {}, "device": device, "versions": versions}

    stored = [run(450, "AVX512"), run(470, "AVX512"), run(1000, "AVX2"), run(100, "AVX512", "b"), run(300, "AVX2", "b")]
    stored += [run(600, "AVX512", "c"), run(50, None, "c"), run(10, "AVX512", "d", device="cuda")]
    assert speed_factors(stored, "cpu AVX2") == {"cpu AVX512": pytest.approx((1000 / 460 + 3) / 2)}
    factor = (1000 / 460 + 3) / 2
    durations = stored_durations(tmp_path / "none.sqlite", stored, machine="cpu AVX2")
    assert durations.seconds(key, {"method": "dcgan", "p": "c"}) == pytest.approx(600 * factor)  # run only there
    assert durations.seconds(key, {"method": "dcgan", "p": "a"}) == pytest.approx(470 * factor)  # the longest, scaled
    assert durations.seconds(key, {"method": "dcgan", "p": "d"}) == 10  # a GPU, paired with no CPU config: as stored
    assert stored_durations(tmp_path / "none.sqlite", stored).seconds(key, {"method": "dcgan", "p": "c"}) == 600
    assert speed_factors(stored, "cpu AVX512") == {"cpu AVX2": pytest.approx((460 / 1000 + 1 / 3) / 2)}
    assert scaling_line({"cpu AVX512": factor}, "cpu AVX2").endswith("(cpu AVX2): cpu AVX512 x2.59")
    assert scaling_line({}, "cpu AVX2") == ""
    assert scaling_line({"cpu AVX512": factor}, "cpu AVX2", stored).endswith(
        "cpu AVX512 x2.59; not scaled, no config stored on both machines: cuda NVIDIA H100 (costed as stored)"
    )
    assert scaling_line({}, "cpu AVX2", [run(5, "AVX512")]) == (
        "runs stored on other machines (cpu AVX2 here) not scaled, no config stored on both machines: cpu AVX512 "
        "(costed as stored)"
    )
    # the typical run is the median of the scaled durations: AVX512 1000 s and 1100 s, AVX2 2000 s, factor 2.5
    mixed = [run(1000, "AVX512", "m"), run(1100, "AVX512", "m"), run(2000, "AVX2", "m")]
    [middle] = typical(mixed, {"cpu AVX512": 2.5})
    assert middle["total_time"] == 1000  # 2,500 s here, between 2,000 and 2,750
    import torch

    from synthmed.experiment.budget import machine_class

    assert machine_class("cpu") == f"cpu {torch.backends.cpu.get_cpu_capability()}"  # as the store records its runs
    zero_here = [run(0, "AVX2", "e"), run(100, "AVX512", "e")]  # a run too short to time: no ratio, not a factor 0
    assert speed_factors(zero_here, "cpu AVX2") == {}
    # a store keeps the machine of each run, so a step resumed from it is scaled alike
    runner = TimedRunner(tmp_path)
    spec = expand(Grid(datasets=["breastmnist"], seeds=[0], methods=[{"method": "none"}]))[0]
    with ResultStore(runner.store_path) as store:
        record = fake_record(runner, spec, 0.8)
        store.add({**record, "total_time": 100.0, "device": "cpu", "versions": {"cpu_capability": "AVX2", "x": 1}})
    timings = stored_timings(runner.store_path)
    assert [(t["device"], t["versions"]) for t in timings] == [("cpu", {"cpu_capability": "AVX2"})]


def test_a_resumed_seeds_auto_study_keeps_its_recorded_plan(tmp_path):
    """Once a look is recorded the plan is the study's: a step on fewer workers keeps the recorded rounds (a
    1-worker command had re-planned a 2-worker study to more looks at a smaller alpha), and a command asking for
    another plan is refused before anything runs."""
    import json

    from synthmed.experiment.execute import run_grid

    runner = TimedRunner(tmp_path / "study")
    grid = _grid("none,flip", [0])

    def auto(**options) -> Execution:
        return Execution(
            **{"auto_seeds": True, "min_seeds": 5, "max_seeds": 9, "workers": 1, "report": False} | options
        )

    run_grid(grid, auto(seed_step=2), runner=runner)
    recorded = json.loads((runner.out / "sequential.json").read_text())
    assert (recorded["step"], recorded["planned_looks"], [lk["seeds"] for lk in recorded["looks"]]) == (2, 3, [5])
    events: list = []
    run_grid(grid, auto(), runner=runner, on_event=events.append)  # --workers 1 alone would give a step of 1
    assert any("then 2 per round" in e.message and "(the study's recorded plan)" in e.message for e in events)
    again = json.loads((runner.out / "sequential.json").read_text())
    assert (again["step"], again["look_alpha"], len(again["looks"])) == (2, recorded["look_alpha"], 1)
    for options, phrase in [
        ({"seed_step": 1}, "--seed-step 1 (recorded: 2)"),
        ({"min_seeds": 6}, "--min-seeds 6 (recorded: 5)"),
        ({"reference": "flip"}, "--reference flip (recorded: None)"),
        ({"max_seeds": 11}, "--max-seeds 11 (recorded: 9)"),
        ({"margin": 0.02}, "--margin 0.02 (recorded: 0.01)"),
    ]:
        with pytest.raises(SynthmedError, match="looks at 5 seeds") as error:
            run_grid(grid, auto(**options), runner=runner)
        assert phrase in str(error.value) and "a new plan needs a new output folder" in str(error.value)
    assert json.loads((runner.out / "sequential.json").read_text()) == again  # nothing rewritten
    # options left out are the recorded ones: a study begun at margin 0.02 goes on at 0.02 without --margin
    other = TimedRunner(tmp_path / "wide")
    run_grid(grid, auto(seed_step=2, margin=0.02), runner=other)
    run_grid(grid, auto(min_seeds=None), runner=other)
    wide = json.loads((other.out / "sequential.json").read_text())
    assert (wide["margin"], wide["start"], wide["step"], len(wide["looks"])) == (0.02, 5, 2, 1)


def test_a_plan_with_no_look_yet_changes_only_where_the_command_says_so():
    """Before the first look a given option replaces the recorded plan's; one the command left out keeps it: a lane
    of one worker (step 1 from --workers) on a study planned with 2 per round once made the first look of an
    11-look plan instead of the recorded 6-look one."""
    from synthmed.experiment.sequential import Plan, recorded_plan

    requested = Plan(max_seeds=20, step=1, start=10)
    recorded = {"step": 2, "max_seeds": 30, "start": 10, "looks": []}
    assert recorded_plan(requested, None) == requested
    assert recorded_plan(requested, recorded, given=frozenset({"max_seeds", "step"})) == requested
    kept = recorded_plan(requested, recorded)  # only --max-seeds given: the recorded step stays
    assert (kept.step, kept.max_seeds, kept.looks) == (2, 20, 6)


def test_a_run_that_will_make_its_generators_fit_is_costed_with_the_fit():
    """``ddpm --pretrain-on-synthetic`` took 300 s where it loaded its seed's fit: one that will make the fit (the
    ddpm run of its seed not done, or a fresh machine's empty cache) is costed with the method's longest fit."""
    from synthmed.experiment.budget import Durations

    key = ("pneumoniamnist", "lowdata", "ddpm")

    def record(seconds: float, cached: bool, pretrain: bool = False) -> dict:
        synthetic = {"generator_cached": cached, "generator_seconds": 0.0 if cached else 1300.0}
        config = {"method": "ddpm", "seed": 0} | ({"pretrain": True} if pretrain else {})
        return dict(zip(("dataset", "protocol", "method"), key)) | {
            "config": config,
            "total_time": seconds,
            "metrics": {"synthetic": synthetic},
        }

    fits, loads = record(1600, cached=False), record(300, cached=True, pretrain=True)
    pretrain = {"method": "ddpm", "seed": 5, "pretrain": True}
    durations = Durations.of([fits, loads])
    assert durations.seconds(key, pretrain) == durations.seconds(key, pretrain, fit_cached=True) == 300
    assert durations.seconds(key, pretrain, fit_cached=False) == 1600  # 300 + the 1,300 s fit
    assert durations.seconds(key, {"method": "ddpm", "seed": 5}, fit_cached=False) == 1600  # its longest run fitted
    # a seed that reuses a stored fit (BreastMNIST's 5 ddpm fits cycled over 20 seeds) does not pay that run's fit
    assert durations.seconds(key, {"method": "ddpm", "seed": 5}, fit_cached=True) == 300  # 1,600 less its 1,300 s fit
    reused = record(320, cached=True) | {"config": {"method": "ddpm", "seed": 3}}  # a loading run slower than that
    assert Durations.of([fits, reused]).seconds(key, {"method": "ddpm", "seed": 5}, fit_cached=True) == 320
    assert durations.seconds(key, {"method": "ddpm", "seed": 5}) == 1600  # unknown: the longest run as it ran
    teacher = {"method": "ddpm", "seed": 5, "teacher": "hard"}  # a config nothing stored ran, on a cached fit
    assert durations.seconds(key, teacher, fit_cached=True) == 300 and durations.seconds(key, teacher) == 1600
    no_fit_seconds = {**fits, "metrics": {}}
    assert Durations.of([no_fit_seconds, loads]).seconds(key, pretrain, fit_cached=False) == 1600  # the method's
    # a variant's fit (ddpm that also learns from unlabelled images: an hour) is not this generator's
    unlabelled = record(4000, cached=False) | {"config": {"method": "ddpm", "seed": 0, "method_params": {"u": True}}}
    unlabelled["metrics"] = {"synthetic": {"generator_cached": False, "generator_seconds": 3600.0}}
    assert Durations.of([fits, loads, unlabelled]).seconds(key, pretrain, fit_cached=False) == 1600
    # a fit made during training (TSynD's autoencoder, shared by its variants) is recorded and costed alike
    tsynd = ("breastmnist", "lowdata", "tsynd")
    made = {"dataset": "breastmnist", "protocol": "lowdata", "method": "tsynd", "config": {"method": "tsynd"}}
    loaded = made | {"config": {"method": "tsynd", "method_params": {"uncertainty": "entropy"}}}
    made |= {"total_time": 900.0, "metrics": {"generator_fit": {"cached": False, "seconds": 200.0}}}
    loaded |= {"total_time": 300.0, "metrics": {"generator_fit": {"cached": True, "seconds": 0.0}}}
    entropy = {"method": "tsynd", "seed": 4, "method_params": {"uncertainty": "entropy"}}
    # the variants share one autoencoder fit: the entropy variant's 300 s plus that fit's 200 s, not the 900 s run
    assert Durations.of([made, loaded]).seconds(tsynd, entropy, fit_cached=False) == 500


def test_a_fit_config_nothing_stored_made_is_costed_by_its_work():
    """ddpm with the unlabelled images at batch 128 makes twice the image-steps of the stored plain fit at batch 64
    (2,500 steps each): its first run is costed as a run less its fit plus twice that fit, not as the plain run."""
    from synthmed.experiment.budget import Durations, fit_work

    key = ("pneumoniamnist", "lowdata", "ddpm")
    plain = dict(zip(("dataset", "protocol", "method"), key)) | {
        "config": {"method": "ddpm", "seed": 0},
        "total_time": 1600.0,
        "metrics": {"synthetic": {"generator_cached": False, "generator_seconds": 1300.0}},
    }
    unlabelled = {"method": "ddpm", "seed": 0, "method_params": {"use_unlabelled": True, "batch_size": 128}}
    assert fit_work(key, unlabelled) == 2 * fit_work(key, plain["config"]) == 2500 * 128
    durations = Durations.of([plain])
    assert durations.seconds(key, unlabelled, fit_cached=False) == 300 + 2 * 1300
    assert durations.seconds(key, unlabelled, fit_cached=True) == 300  # its fit made: the rest of a run
    assert durations.seconds(key, unlabelled) == 1600  # not known whether it fits: the method's longest run
    # a teacher-labelled row whose fit is the plain one's (same fit config): the rest of a run plus that fit
    teacher = {"method": "ddpm", "seed": 3, "teacher": "hard"}
    assert durations.seconds(key, teacher, fit_cached=False) == 1600
    # a fit counted in epochs has no work known before its subset: costed as the method's longest run
    epochs = {"method": "ddpm", "seed": 0, "method_params": {"epochs": 40}}
    assert fit_work(key, epochs) is None and durations.seconds(key, epochs, fit_cached=False) == 1600
    # never below the method's longest run: a wider network makes the plain fit's image-steps at a higher cost each
    made = plain | {"config": unlabelled, "total_time": 2900.0}
    made["metrics"] = {"synthetic": {"generator_cached": False, "generator_seconds": 2600.0}}
    wider = {"method": "ddpm", "seed": 0, "method_params": {"channels": [64, 128, 128]}}
    assert Durations.of([plain, made]).seconds(key, wider, fit_cached=False) == 2900


def test_a_run_far_longer_than_its_like_does_not_price_its_config():
    """PneumoniaMNIST's ddpm with pretraining on a stored fit: 14 runs of 243-301 s and one of 1,290 s that waited
    for another worker's fit before the wait was recorded. Scaled to a machine 2.79 times slower it priced every later
    run at an hour, so a step with 53 minutes left started neither run of its round. Outliers (over 3 times the median
    of at least 3 runs alike) are left out; a fitting run is not the like of a loading one."""
    from synthmed.experiment.budget import Durations, without_outliers

    key = ("pneumoniamnist", "lowdata", "ddpm")
    pretrain = {"method": "ddpm", "seed": 20, "pretrain": True}

    def record(seconds: float, cached: bool, cpu: str = "AVX512") -> dict:
        synthetic = {"generator_cached": cached, "generator_seconds": 0.0 if cached else 4000.0}
        return dict(zip(("dataset", "protocol", "method"), key)) | {
            "config": {"method": "ddpm", "seed": 0, "pretrain": True},
            "total_time": seconds,
            "device": "cpu",
            "versions": {"cpu_capability": cpu},
            "metrics": {"synthetic": synthetic},
        }

    loads = [record(s, cached=True) for s in (243, 250, 254, 265, 292, 301)]
    waited, fitted = record(1290, cached=True), record(5053, cached=False, cpu="AVX2")
    stored = [*loads, waited, fitted]
    assert without_outliers(stored) == [*loads, fitted]  # the fitting run is alone of its kind: kept
    slower = Durations.of(stored, {"cpu AVX512": 2.79})
    assert slower.seconds(key, pretrain, fit_cached=True) == pytest.approx(1053)  # the fitting run less its fit
    assert Durations.of([*loads, waited]).seconds(key, pretrain, fit_cached=True) == 301
    # too few alike to call one an outlier: the longest stands
    assert Durations.of([loads[0], waited]).seconds(key, pretrain, fit_cached=True) == 1290
    # added one by one as runs finish (a running step): kept as they come
    growing = Durations.of(loads)
    growing.add(waited)
    assert growing.seconds(key, pretrain, fit_cached=True) == 1290


def test_a_config_measured_on_this_machine_is_costed_by_its_runs_here_alone():
    """ddpm making its fit: AVX512 runs of 1,600-2,300 s scaled by 3.67 priced it at 8,445 s on an AVX2 machine where
    its runs took 4,883-5,263 s. With two or more runs alike here, those alone cost it; a config with one run here
    (or none) is still costed from every machine's runs, scaled."""
    from synthmed.experiment.budget import Durations, measured_here

    key = ("pneumoniamnist", "lowdata", "ddpm")

    def record(seconds: float, cpu: str, config: str = "ddpm") -> dict:
        return dict(zip(("dataset", "protocol", "method"), key)) | {
            "config": {"method": "ddpm", "seed": 0, "variant": config},
            "total_time": seconds,
            "device": "cpu",
            "versions": {"cpu_capability": cpu},
            "metrics": {"synthetic": {"generator_cached": False, "generator_seconds": seconds - 1000}},
        }

    ddpm = [record(s, "AVX512") for s in (1604, 1851, 2303)] + [record(s, "AVX2") for s in (4883, 5022, 5263)]
    other = [record(2000, "AVX512", "other"), record(5000, "AVX2", "other")]
    factors = {"cpu AVX512": 3.67}
    assert measured_here([*ddpm, *other], "cpu AVX2") == [*ddpm[3:], *other]
    here, everywhere = Durations.of([*ddpm, *other], factors, "cpu AVX2"), Durations.of([*ddpm, *other], factors)
    config = {"method": "ddpm", "seed": 5, "variant": "ddpm"}
    assert here.seconds(key, config, fit_cached=False) == 5263
    assert everywhere.seconds(key, config, fit_cached=False) == pytest.approx(2303 * 3.67)
    # one run here is not enough to go by: the scaled AVX512 run still counts
    assert here.seconds(key, config | {"variant": "other"}, fit_cached=False) == pytest.approx(2000 * 3.67)


def test_the_runner_knows_whether_a_runs_generator_fit_is_cached(real_root, tmp_path):
    """``fit_cached`` names the fit ``synthesise`` makes, with the generator seed a cycled --generator-seeds gives."""
    from synthmed.experiment.runner import Runner, subset_of
    from synthmed.experiment.synthetic_set import synthesise

    runner = Runner(tmp_path / "study", Execution(data_root=str(real_root)))
    methods = [{"method": "cvae", "params": {"epochs": 1}, "fidelity": [False]}, {"method": "none"}]

    def grid(seed: int) -> Grid:
        return override(Grid(datasets=["breastmnist"], seeds=[seed], methods=methods), {"generator_seeds": "2"})

    cvae, none = expand(grid(3))
    assert runner.fit_cached(none) is None and runner.fit_cached(cvae) is False
    data = runner.dataset(cvae)
    made = synthesise(data, subset_of(cvae, data), "cvae", cvae.method_params, cvae.synthesis, 3, runner.cache_dir)
    assert made.generator_path == runner.fit_path(cvae) and runner.fit_cached(cvae) is True
    assert runner.fit_cached(expand(grid(5))[0]) is True and runner.fit_cached(expand(grid(4))[0]) is False  # cycled


def test_a_reference_classifier_is_costed_apart_and_only_for_a_run_that_will_train_it():
    """A ddpm run that trained its reference (600 s) and made its fit (1,300 s) in 2,200 s: a run that loads both
    costs 300 s, one that loads the fit and trains the reference 900 s, one that makes both 2,200 s; a new machine
    trains one reference per generator seed that the stored runs had loaded."""
    from synthmed.experiment.budget import Durations, estimate, run_seconds

    key = ("breastmnist", "lowdata", "ddpm")
    config = {"method": "ddpm", "seed": 0, "synthesis": {"fidelity_epochs": 20}}

    def record(seconds: float, fit: bool, reference: bool, seed: int = 0) -> dict:
        synthetic = {"generator_cached": not fit, "generator_seconds": 1300.0 if fit else 0.0}
        synthetic |= {"reference_cached": not reference} | ({"reference_seconds": 600.0} if reference else {})
        made = config | {"seed": seed}
        return {**dict(zip(("dataset", "protocol", "method"), key)), "config": made, "total_time": seconds} | {
            "metrics": {"synthetic": synthetic}
        }

    both, loads = record(2200.0, fit=True, reference=True), record(310.0, fit=False, reference=False, seed=5)
    assert run_seconds(both) == 1600.0 and run_seconds(loads) == 310.0
    durations = Durations.of([both, loads])
    assert durations.seconds(key, config, fit_cached=True, reference_cached=True) == 310.0
    assert durations.seconds(key, config, fit_cached=True, reference_cached=False) == 910.0
    assert durations.seconds(key, config, fit_cached=False, reference_cached=False) == 2200.0
    assert durations.seconds(key, config, fit_cached=False, reference_cached=None) == 1600.0  # needs none
    # a reference of other epochs, or of another dataset, is not priced by this one's
    other = config | {"synthesis": {"fidelity_epochs": 30}}
    # (a config nothing stored ran, that will make its fit: the longest run less its fit, 310 s, plus the fit)
    assert durations.seconds(key, other, fit_cached=False, reference_cached=False) == 310.0 + 1300.0
    assert estimate([(key, config, True, False), (key, config, True, True)], durations).seconds == 910.0 + 310.0


def test_the_runner_knows_whether_a_runs_reference_classifier_is_cached(real_root, tmp_path):
    """``reference_cached`` names the file ``reference_classifier`` writes, with the cycled generator seed; a run
    without a synthetic set, or without an audit that reads a reference, needs none."""
    from synthmed.audit.reference import reference_path
    from synthmed.experiment.runner import Runner, subset_of

    runner = Runner(tmp_path / "study", Execution(data_root=str(real_root)))
    methods = [{"method": "cvae", "fidelity": [True]}, {"method": "cvae", "fidelity": [False]}, {"method": "none"}]
    grid = override(Grid(datasets=["breastmnist"], seeds=[5], methods=methods), {"generator_seeds": "2"})
    audited, unaudited, none = expand(grid)
    assert runner.reference_cached(none) is None and runner.reference_cached(unaudited) is None
    assert runner.reference_cached(audited) is False
    data = runner.dataset(audited)
    path = reference_path(data, subset_of(audited, data), 1, runner.cache_dir, audited.synthesis.fidelity_epochs)
    assert runner.reference_path(audited) == path  # generator seed 5 mod 2
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    assert runner.reference_cached(audited) is True


def test_a_budget_leaves_out_a_run_that_would_make_its_fit_and_starts_the_one_that_loads_it(tmp_path, monkeypatch):
    """Pretraining on ddpm's images took 0.5 s where it loaded a stored fit and the fit 900 s: under a 60 s budget
    the run whose fit is cached starts, the one that would make its fit does not."""
    from synthmed.experiment.execute import run_grid

    class FitRunner(TimedRunner):
        def fit_path(self, spec):
            return self.out / "fits" / f"{spec.seed}.pt"

        def fit_cached(self, spec):
            return self.fit_path(spec).exists()

    monkeypatch.setenv("SYNTHMED_RUN_SECONDS", "10000")
    runner = FitRunner(tmp_path)

    def grid(seeds: list[int], pretrain: bool = True) -> Grid:
        return Grid(
            datasets=["breastmnist"], seeds=seeds, methods=[{"method": "ddpm", "pretrain_on_synthetic": [pretrain]}]
        )

    with ResultStore(runner.store_path) as store:
        for spec, seconds, cached in [(expand(grid([9], False))[0], 1000.0, False), (expand(grid([9]))[0], 0.5, True)]:
            record = fake_record(runner, spec, 0.8)
            synthetic = {"generator_cached": cached, "generator_seconds": 0.0 if cached else 900.0}
            store.add({**record, "total_time": seconds, "metrics": {**record["metrics"], "synthetic": synthetic}})
    (tmp_path / "fits").mkdir()
    (tmp_path / "fits" / "0.pt").write_bytes(b"")
    outcome = run_grid(grid([0, 1]), Execution(workers=1, report=False, time_budget=60), runner=runner)
    assert outcome.budget_reached and [r["seed"] for r in outcome.finished] == [0]


def test_status_prices_one_fit_per_generator_the_first_run_of_it_makes(tmp_path):
    """Of ``ddpm`` and ``ddpm --pretrain-on-synthetic`` at a seed with no fit cached, ddpm (it starts first) makes
    the fit and pretraining loads it; a fit already cached is loaded by both; ``none`` fits nothing."""
    from synthmed.experiment.execute import planned_fits

    class FitRunner(TimedRunner):
        def fit_path(self, spec):
            return None if spec.method == "none" else self.out / "fits" / f"{spec.seed}.pt"

    runner = FitRunner(tmp_path)
    (tmp_path / "fits").mkdir()
    (tmp_path / "fits" / "0.pt").write_bytes(b"")
    methods = [{"method": "ddpm"}, {"method": "ddpm", "pretrain_on_synthetic": [True]}, {"method": "none"}]
    planned = planned_fits(runner, expand(Grid(datasets=["breastmnist"], seeds=[0, 1], methods=methods)))
    states = {(s.seed, s.method, s.synthesis.pretrain_on_synthetic): cached for s, cached, _ in planned}
    assert states == {
        (0, "ddpm", True): True,
        (0, "ddpm", False): True,
        (0, "none", False): None,
        (1, "ddpm", False): False,
        (1, "ddpm", True): True,
        (1, "none", False): None,
    }


def test_a_run_passed_over_while_its_fit_is_made_starts_after_it_even_when_another_run_did_not_fit(
    tmp_path, monkeypatch
):
    """On a pool, ddpm --pretrain-on-synthetic comes up while ddpm is still making its fit: costed with that fit it
    does not fit the budget, so it is passed over and looked at again once the fit is made; ``none`` (nothing
    stored, the 10,000 s default) does not fit, which must not stop that second look."""
    from synthmed.experiment import backends
    from synthmed.experiment.execute import run_grid

    class FitRunner(TimedRunner):
        def fit_path(self, spec):
            return None if spec.method == "none" else self.out / "fits" / f"{spec.seed}.pt"

        def fit_cached(self, spec):
            path = self.fit_path(spec)
            return None if path is None else path.exists()

        def compute(self, spec, on_epoch=None, on_status=None):
            if spec.method == "ddpm" and not spec.synthesis.pretrain_on_synthetic:
                self.fit_path(spec).parent.mkdir(exist_ok=True)
                self.fit_path(spec).write_bytes(b"")
            return super().compute(spec)

    def eager_pool(runner, specs, on_result, workers, **_):  # every run drawn before any ends: free workers
        drawn = list(specs)
        for spec in drawn:
            on_result(spec, "ok", runner.compute(spec))

    monkeypatch.setattr(backends, "run_on_pool", eager_pool)
    monkeypatch.setenv("SYNTHMED_RUN_SECONDS", "10000")
    runner = FitRunner(tmp_path)
    methods = [{"method": "ddpm"}, {"method": "ddpm", "pretrain_on_synthetic": [True]}]
    with ResultStore(runner.store_path) as store:
        for spec, seconds, cached in zip(
            expand(Grid(datasets=["breastmnist"], seeds=[9], methods=methods)), (30, 40), (False, True)
        ):
            record = fake_record(runner, spec, 0.8)
            synthetic = {"generator_cached": cached, "generator_seconds": 0.0 if cached else 25.0}
            store.add(
                {**record, "total_time": float(seconds), "metrics": {**record["metrics"], "synthetic": synthetic}}
            )
    grid = Grid(datasets=["breastmnist"], seeds=[0], methods=[*methods, {"method": "none"}])
    outcome = run_grid(grid, Execution(workers=2, report=False, time_budget=60), runner=runner)
    finished = [(r["method"], r["config"]["synthesis"]["pretrain_on_synthetic"]) for r in outcome.finished]
    assert finished == [("ddpm", False), ("ddpm", True)] and outcome.budget_reached and outcome.left == 1


def test_a_run_left_out_for_its_fit_starts_once_another_run_of_the_step_has_made_that_fit(tmp_path, monkeypatch):
    """ddpm of a seed comes up first, costed with the fit nobody is making yet (100 s) against a 60 s budget, and
    is left out; ddpm --pretrain-on-synthetic of the seed (50 s with its fit) starts and makes the fit; ddpm, now
    10 s on the cached fit, is looked at again and runs. A session's step stopped here with 53 minutes left and
    ddpm's 25-minute run on its cached fit undone."""
    from synthmed.experiment.execute import run_grid

    class FitRunner(TimedRunner):
        def fit_path(self, spec):
            return self.out / "fits" / f"{spec.seed}.pt"

        def fit_cached(self, spec):
            return self.fit_path(spec).exists()

        def compute(self, spec, on_epoch=None, on_status=None):
            self.fit_path(spec).parent.mkdir(exist_ok=True)
            self.fit_path(spec).write_bytes(b"")  # whichever run comes first makes the fit
            return super().compute(spec)

    runner = FitRunner(tmp_path)
    methods = [{"method": "ddpm"}, {"method": "ddpm", "pretrain_on_synthetic": [True]}]
    with ResultStore(runner.store_path) as store:
        stored = expand(Grid(datasets=["breastmnist"], seeds=[9], methods=methods))
        for spec, seconds, fit in zip(stored, (100.0, 50.0), (90.0, 40.0)):
            record = fake_record(runner, spec, 0.8)
            synthetic = {"generator_cached": False, "generator_seconds": fit}
            store.add({**record, "total_time": seconds, "metrics": {**record["metrics"], "synthetic": synthetic}})
    outcome = run_grid(
        Grid(datasets=["breastmnist"], seeds=[0], methods=methods),
        Execution(workers=1, report=False, time_budget=60),
        runner=runner,
    )
    finished = [r["config"]["synthesis"]["pretrain_on_synthetic"] for r in outcome.finished]
    assert finished == [True, False] and not outcome.budget_reached and outcome.left == 0


@pytest.mark.parametrize("flag, expected", [((), "shared"), (("--generator-cache", "{tmp}/mine"), "mine")])
def test_status_reads_the_generator_cache_as_experiment_run_does(tmp_path, cli, monkeypatch, flag, expected):
    """The fits status finds cached (and so prices without the fit) are those of the cache the run would use: the
    flag, else the file's ``execution.cache_dir``."""
    from conftest import write_breast_like

    import synthmed.experiment.runner as runner_module

    seen = []

    class Recording(runner_module.Runner):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.cache_dir)

    monkeypatch.setattr(runner_module, "Runner", Recording)
    path = tmp_path / "study.yaml"
    path.write_text(
        f"name: s\nout: {tmp_path / 'out'}\ndatasets: [breastmnist]\nmethods: [none]\nseeds: [0]\n"
        f"execution: {{cache_dir: {tmp_path / 'shared'}}}\n"
    )
    args = [a.format(tmp=tmp_path) for a in flag]
    write_breast_like(tmp_path / "d")
    result = cli("experiment", "status", str(path), "--no-verify", *args, root=tmp_path / "d")
    assert result.returncode == 0, result.stderr
    assert seen == [tmp_path / expected]


def test_the_typical_estimate_takes_each_configs_median_run_with_fitting_runs_apart():
    """Three conv-cvae runs (300, 400 and a 900 s one slowed by a busy machine) cost 400 typically and 900 at the
    longest; a ddpm run that made its fit and one that loaded it are each their own median, so a seed that will
    make its fit is still costed with it."""
    from synthmed.experiment.budget import Durations, estimate, typical

    def record(method: str, seconds: float, cached: bool | None = None, seed: int = 0) -> dict:
        synthetic = {} if cached is None else {"synthetic": {"generator_cached": cached, "generator_seconds": 0.0}}
        if cached is False:
            synthetic["synthetic"]["generator_seconds"] = 1300.0
        return {
            "dataset": "pneumoniamnist",
            "protocol": "lowdata",
            "method": method,
            "config": {"method": method, "seed": seed},
            "total_time": seconds,
            "metrics": synthetic,
        }

    cvae = [record("conv-cvae", t, seed=i) for i, t in enumerate((300.0, 900.0, 400.0))]
    ddpm = [record("ddpm", 1600.0, cached=False), record("ddpm", 1500.0, cached=False, seed=1)]
    ddpm += [record("ddpm", 320.0, cached=True, seed=2)]
    chosen = typical(cvae + ddpm)
    assert sorted(r["total_time"] for r in chosen) == [320.0, 400.0, 1500.0]
    runs = [(("pneumoniamnist", "lowdata", "conv-cvae"), {"method": "conv-cvae", "seed": 9}, None, None)]
    runs += [(("pneumoniamnist", "lowdata", "ddpm"), {"method": "ddpm", "seed": 9}, False, None)]
    longest, median = estimate(runs, Durations.of(cvae + ddpm)), estimate(runs, Durations.of(chosen))
    # a seed that loads a stored fit: the loading runs' median, not the fitting runs' median less their fit (200 s)
    loads = (("pneumoniamnist", "lowdata", "ddpm"), {"method": "ddpm", "seed": 9}, True, None)
    assert estimate([loads], Durations.of(chosen)).seconds == 320.0
    assert estimate([loads], Durations.of(cvae + ddpm)).seconds == 320.0  # the longest of 300 (1,600 - 1,300) and 320
    assert (longest.seconds, median.seconds) == (900.0 + 1600.0, 400.0 + 1500.0)
    line = longest.line(2, median)
    assert "take about 42 min of CPU (21 min at 2 worker(s); each run costed as the longest stored run" in line
    assert "less the fit and the fidelity reference where they are cached" in line
    assert line.endswith("; 32 min of CPU (16 min) at the median stored run of each config)")


def test_the_reference_a_study_named_stays_with_its_runs_and_export_so_a_report_needs_no_flag(tmp_path):
    """A grid run with a third reference (the unlabelled study's ``execution.reference: pseudo-label``) records it
    beside its runs and in its export; ``synthmed report`` of either, a step without the option, and a new machine's
    store resumed from the export judge against it unasked; a flag still wins, and a command without one keeps it."""
    from synthmed.experiment.execute import run_grid
    from synthmed.experiment.export import import_export
    from synthmed.report import SETTINGS_FILE, settings_for

    runner = TimedRunner(tmp_path / "study")
    named = Execution(workers=1, report=False, export_to=tmp_path / "exp", reference="flip", margin=0.02)
    run_grid(_grid("none,oversample,flip", [0, 1]), named, runner=runner)
    for folder in (runner.out, tmp_path / "exp"):
        settings = settings_for(folder)
        assert (settings.reference, settings.margin) == ("flip", 0.02)
        assert settings.references() == ["none", "oversample", "flip"]
    assert settings_for(runner.out, reference="oversample", margin=0.01).references() == ["none", "oversample"]
    run_grid(_grid("none,oversample,flip", [0, 1, 2]), Execution(workers=1, report=False), runner=runner)
    assert settings_for(runner.out).reference == "flip"  # a step that names no reference keeps the study's
    elsewhere = tmp_path / "new-machine" / "study"  # the same study's store on another machine: its name
    elsewhere.mkdir(parents=True)
    import_export(tmp_path / "exp", elsewhere)
    assert (elsewhere / SETTINGS_FILE).exists() and settings_for(elsewhere).reference == "flip"
    other = tmp_path / "other-study"  # another study importing these runs as controls keeps its own settings
    other.mkdir()
    import_export(tmp_path / "exp", other)
    assert not (other / SETTINGS_FILE).exists() and settings_for(other).reference is None


# ---- stop on request ----------------------------------------------------------------------------------------------


class StoppingRunner(TimedRunner):
    """Its first run asks the step to stop, as `synthmed experiment stop` from another shell would meanwhile."""

    def compute(self, spec, on_epoch=None, on_status=None):
        from synthmed.experiment.budget import request_stop

        time.sleep(0.05)  # the request comes after the command started, as it does from another shell
        request_stop(self.out)
        return super().compute(spec, on_epoch, on_status)


def test_a_stop_request_lets_the_run_in_flight_finish_and_starts_no_other(tmp_path):
    """The run in flight when the stop comes is finished, stored and exported; no other starts; a command started
    after the request is not stopped by it and does the rest."""
    from synthmed.experiment.execute import run_grid

    out, export = tmp_path / "out", tmp_path / "export"
    events: list = []
    execution = Execution(workers=1, report=False, export_to=export)
    outcome = run_grid(_grid("none", [0, 1, 2]), execution, runner=StoppingRunner(out), on_event=events.append)
    assert outcome.stopped and not outcome.budget_reached and not outcome.failed
    assert [r["seed"] for r in outcome.finished] == [0] and (outcome.done, outcome.left) == (1, 2)
    assert [r["seed"] for r in read_jsonl(export / "records.jsonl")] == [0]
    assert any(e.kind == "info" and e.message.startswith("stop requested") for e in events)
    with ResultStore(out / "results.sqlite") as store:
        assert not store.holders()  # no claim left behind
    again = run_grid(_grid("none", [0, 1, 2]), execution, runner=TimedRunner(out))
    assert not again.stopped and (again.done, again.left) == (3, 0)


def test_a_stopped_seeds_auto_step_makes_no_look(tmp_path):
    """A round cut by a stop request is not a round this process saw end: no look is made on it."""
    from synthmed.experiment.execute import run_grid

    out = tmp_path / "out"
    execution = Execution(workers=1, report=False, auto_seeds=True, min_seeds=5, max_seeds=7, seed_step=2)
    outcome = run_grid(_grid("none,flip", [0]), execution, runner=StoppingRunner(out))
    assert outcome.stopped and outcome.done == 1
    assert not (out / "sequential.json").exists() or not json.loads((out / "sequential.json").read_text())["looks"]


def test_a_command_waiting_on_another_processs_run_ends_at_a_stop(tmp_path):
    """Seed 1 is held by another command: this one runs seed 0, then waits; the stop ends the wait at once (it has
    nothing in flight), leaving seed 1 to its holder."""
    import threading

    from synthmed.experiment.budget import request_stop
    from synthmed.experiment.claims import Claims
    from synthmed.experiment.execute import run_grid

    out = tmp_path / "out"
    out.mkdir()
    runner, grid = TimedRunner(out), _grid("none", [0, 1])
    ended: dict = {}
    with Claims(out / "results.sqlite", lease=60) as other:
        assert other.take(runner.run_id(expand(grid)[1]))
        execution = Execution(workers=1, report=False)
        command = threading.Thread(target=lambda: ended.setdefault("outcome", run_grid(grid, execution, runner=runner)))
        command.start()
        time.sleep(1.0)
        request_stop(out)
        command.join(timeout=15)
        assert not command.is_alive(), "the waiting command did not see the stop"
    outcome = ended["outcome"]
    assert outcome.stopped and [r["seed"] for r in outcome.finished] == [0] and (outcome.done, outcome.left) == (1, 1)


def test_experiment_stop_asks_the_files_run_folder_and_refuses_a_folder_that_is_not_there(tmp_path, cli):
    from conftest import write_breast_like

    path = tmp_path / "study.yaml"
    path.write_text(f"name: s\nout: {tmp_path / 'out'}\ndatasets: [breastmnist]\nmethods: [none]\nseeds: [0]\n")
    result = cli("experiment", "stop", str(path), root=tmp_path)
    assert result.returncode == 2 and "is not a run folder: nothing runs there to stop" in result.stderr
    assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    result = cli("experiment", "stop", str(path), root=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "stop requested" in result.stdout + result.stderr and (tmp_path / "out" / "stop").is_file()
    write_breast_like(tmp_path / "d")
    result = cli("experiment", "status", str(path), "--no-verify", root=tmp_path / "d")
    assert result.returncode == 0 and "last stop request: 20" in result.stdout, result.stderr  # its date


def test_ray_draws_runs_as_the_cluster_has_room_so_a_stop_is_seen(monkeypatch):
    """With room for two tasks, Ray has at most two runs drawn (claimed) at a time, and a source that ends (as a
    stop request ends `claimed`) leaves the rest undrawn; the capacity counts CPUs per run, and GPUs for CUDA."""
    import types

    from synthmed.experiment.backends import ray_capacity, run_on_ray

    in_flight, most = [], [0]

    class Ref:
        def __init__(self, spec):
            self.spec = spec

    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: True
    sizes = iter([4.0])  # a node of 4 CPUs at the first draw; a second one has joined by the next

    def nodes() -> list[dict]:
        size = next(sizes, 8.0)
        return [{"Alive": True, "Resources": {"CPU": 4.0}}] + (
            [{"Alive": True, "Resources": {"CPU": 4.0}}] if size > 4 else []
        )

    fake.nodes = nodes
    fake.exceptions = types.SimpleNamespace(RayError=RuntimeError)

    def remote(**options):
        def wrap(compute):
            def submit(settings, spec, cpus):
                in_flight.append(spec)
                most[0] = max(most[0], len(in_flight))
                return Ref(spec)

            return types.SimpleNamespace(remote=submit)

        return wrap

    def wait(refs, num_returns):
        in_flight.remove(refs[0].spec)
        return [refs[0]], refs[1:]

    fake.remote, fake.wait, fake.get = remote, wait, lambda ref: ("ok", {"run": ref.spec})
    monkeypatch.setitem(sys.modules, "ray", fake)
    drawn: list[int] = []

    def source():
        for spec in range(6):
            if spec == 4:  # a stop request: claimed() returns
                return
            drawn.append(spec)
            yield spec

    results: list = []
    runner = types.SimpleNamespace(device="cpu", settings=dict)
    run_on_ray(runner, source(), lambda spec, *r: results.append((spec, len(drawn))), cpus_per_run=2)
    assert drawn == [0, 1, 2, 3] and [r[0] for r in results] == [0, 1, 2, 3]
    assert results[0][1] == 2  # when the first run came back, only two had been drawn
    assert most[0] == 3  # the room is read at every draw: the joined node took a third run

    def node(cpus: float, gpus: float = 0.0, alive: bool = True) -> dict:
        return {"Alive": alive, "Resources": {"CPU": cpus} | ({"GPU": gpus} if gpus else {})}

    assert ray_capacity([node(16, 1)], 4, gpu=True) == 1 and ray_capacity([node(16)], 4, gpu=False) == 4
    assert ray_capacity([node(2)] * 4, 4, gpu=False) == 1  # 8 CPUs, no node of 4: one queued, not two
    assert (
        ray_capacity([node(3)] * 3, 2, gpu=False) == 3 and ray_capacity([node(8), node(8, alive=False)], 4, False) == 2
    )
    assert ray_capacity([node(16)], 1, gpu=True) == 1  # no GPU anywhere: one queued for an autoscaler
