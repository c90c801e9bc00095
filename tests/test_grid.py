"""Experiment files: one format, validation, grid expansion, skipped datasets, run and status from the command
line."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from synthmed.errors import SynthmedError
from synthmed.experiment.grid import available_datasets, expand, load_grid, row_label, select_rows
from synthmed.experiment.runner import Runner

CONFIGS = Path(__file__).parent.parent / "configs"
PRESETS = {
    "chaptoukaev2021": 8 * 4 * 3,
    "chaptoukaev2021-quick": 2 * 4,
    "chaptoukaev2021-none-flip": 2 * 2 * 3,
    "sharma2022": 4 * 7 * 3,
    "sharma2022-quick": 3,
    "tsynd2024": 2 * 4 * 3,
    "tsynd2024-quick": 3,
    "demo": 3 * 3,
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def load_experiment(path: Path):
    grid = load_grid(path)
    return grid, expand(grid)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_expand_and_validate(name):
    grid, specs = load_experiment(CONFIGS / f"{name}.yaml")
    assert grid.name == name and len(specs) == PRESETS[name] and not grid.notes[1:]  # at most the dropout note
    assert len({s.key("md5")[0] for s in specs}) == PRESETS[name]  # every run is distinct


def test_every_preset_writes_to_its_own_folder():
    outs = [load_grid(CONFIGS / f"{name}.yaml").out for name in PRESETS]
    assert len(set(outs)) == len(outs) and all(out == f"runs/{name}" for out, name in zip(outs, PRESETS))


@pytest.mark.parametrize("name", ["chaptoukaev2021-quick", "sharma2022-quick", "tsynd2024-quick", "demo"])
def test_quick_presets_pass_the_runners_checks(real_root, name, tmp_path):
    _, specs = load_experiment(CONFIGS / f"{name}.yaml")
    runner = Runner(tmp_path / "never-written", data_root=str(real_root), download=False)
    runner.validate(specs)  # raises on an unknown method, parameter, recipe or an unusable subset
    assert runner.pending(specs) == specs
    assert not (tmp_path / "never-written").exists()  # validation and the store lookup write nothing
    broken = dataclasses.replace(specs[-1], method_params={**specs[-1].method_params, "no_such_param": 1})
    with pytest.raises(SynthmedError, match="no_such_param"):
        runner.validate([broken])


def test_expansion_carries_method_parameters_levers_and_options(tmp_path):
    _, specs = load_experiment(
        write(
            tmp_path,
            """
datasets: breastmnist
protocols: [lowdata, {protocol: fraction, fraction: [0.5, 0.1], stratified: true}]
methods: [none, {method: cvae, params: {epochs: 5, lr: 1e-4, betas: [0.5, 0.9]}, synthetic_weight: [0.5, 1]}]
recipes: {recipe: medmnist, epochs: 2, patience: 1}
seeds: [0, 1]
options: {dropout: 0.1, fidelity_epochs: 3}
""",
        )
    )
    assert len(specs) == 3 * (1 + 2) * 2
    cvae = [s for s in specs if s.method == "cvae"]
    assert all(s.method_params == {"epochs": 5, "lr": 1e-4, "betas": [0.5, 0.9]} for s in cvae)
    assert {s.synthesis.synthetic_weight for s in cvae} == {0.5, 1.0}
    assert all(s.synthesis.fidelity_epochs == 3 for s in cvae)
    assert all(s.synthesis.fidelity_epochs == 30 for s in specs if s.method == "none")  # levers: generators only
    assert {(s.protocol, s.fraction) for s in specs} == {("lowdata", None), ("fraction", 0.5), ("fraction", 0.1)}
    assert all(s.dropout == 0.1 and s.epochs == 2 and s.patience == 1 for s in specs)


def test_a_diffaugment_policy_on_the_command_line_is_one_value_and_the_yaml_run(tmp_path):
    """``-p diffaugment=color,translation,cutout`` sets the policy (it does not sweep three runs), and names the
    same runs as the study's experiment file."""
    from synthmed.experiment.grid import Grid, override

    _, from_yaml = load_experiment(
        write(
            tmp_path,
            """
datasets: breastmnist
methods: [{method: dcgan, params: {diffaugment: "color,translation,cutout", ema: 0.999}}]
seeds: [0, 1]
""",
        )
    )
    base = Grid(datasets=["breastmnist"], seeds=[0, 1])
    given = {"method": "dcgan", "method_params": ["diffaugment=color,translation,cutout", "ema=0.999"]}
    from_cli = expand(override(base, given))
    assert [s.method_params["diffaugment"] for s in from_cli] == ["color,translation,cutout"] * 2
    assert [s.key("x")[0] for s in from_cli] == [s.key("x")[0] for s in from_yaml]
    swept = expand(override(base, {**given, "method_params": [*given["method_params"], "lr=1e-4,2e-4"]}))
    assert len(swept) == 2 * 2  # other hyper-parameters still sweep


def test_a_run_file_is_an_experiment_file_with_single_values(tmp_path):
    _, specs = load_experiment(write(tmp_path, "datasets: breastmnist\nmethods: flip\nseeds: 3\n"))
    assert [(s.dataset, s.method, s.seed) for s in specs] == [("breastmnist", "flip", 3)]


def test_the_old_run_key_dialect_still_reads_with_a_note_naming_the_new_keys(tmp_path):
    grid, specs = load_experiment(
        write(
            tmp_path,
            "dataset: breastmnist\nmethods: [none, flip]\nepochs: 3\npaper-style: true\nper_class: 40\nout: runs/x\n",
        )
    )
    assert len(specs) == 2 * 3 and all(
        s.epochs == 3 and s.report_test_selected and s.real_per_class == 40 for s in specs
    )
    assert any("'dataset' is deprecated; write 'datasets'" in n for n in grid.notes)
    assert any("'paper-style' is deprecated; write 'report_test_selected' under 'options'" in n for n in grid.notes)
    assert grid.out == "runs/x"


def test_a_grid_with_tsynd_gives_every_method_its_dropout(tmp_path):
    grid, specs = load_experiment(write(tmp_path, "datasets: breastmnist\nmethods: [none, tsynd]\nseeds: 0\n"))
    assert {s.dropout for s in specs} == {0.2} and "every method of this grid uses dropout 0.2" in grid.notes[-1]
    grid, specs = load_experiment(
        write(tmp_path, "datasets: breastmnist\nmethods: [none, tsynd]\nseeds: 0\noptions: {dropout: 0.3}\n")
    )
    assert {s.dropout for s in specs} == {0.3} and not grid.notes


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("datasets: [breastmnist]\nmethods: [none]\nfoo: 1\n", "unknown key 'foo'"),
        ("datasets: [breastmnist]\nmethods: [{method: cvae, weight: 2}]\n", "methods[0]: unknown key 'weight'"),
        (  # the record's name for them: read as nothing before, so refused
            "datasets: [breastmnist]\nmethods: [{method: cvae, method_params: {epochs: 5}}]\n",
            "methods[0]: unknown key 'method_params'",
        ),
        ("datasets: [breastmnist]\nmethods: [none]\nseeds: [a]\n", "seeds should be an integer, got 'a'"),
        (
            "datasets: [breastmnist]\nmethods: [none]\nrecipes: [{recipe: medmnist, epochs: ten}]\n",
            "recipes[0].epochs should be an integer, got 'ten'",
        ),
        (
            "datasets: [breastmnist]\nmethods: [none]\nrecipes: [{recipe: medmnist, epochs: [1, 2]}]\n",
            "recipes[0].epochs takes one value, not a list",
        ),
        ("datasets: []\nmethods: [none]\n", "'datasets' is empty"),
        ("methods: [none]\n", "'datasets' is missing"),
        ("datasets: [breastmnist]\nmethods: [none]\noptions: {gpus: 2}\n", "options: unknown key 'gpus'"),
        (
            "datasets: [breastmnist]\nmethods: [{method: flip, synthetic_weight: 0.5}]\n",
            "synthetic_weight apply to methods that add a synthetic set, not to 'flip'",
        ),
        (
            "datasets: [breastmnist]\nprotocols: {protocol: fraction, fraction: 2}\n",
            "fraction 2.0 must be > 0 and <= 1",
        ),
        ("datasets: [breastmnist]\nprotocols: {protocol: lowdata, size: 33}\n", "size 33: choose one of 28, 64"),
    ],
)
def test_validation_errors_are_one_line(tmp_path, text, phrase):
    with pytest.raises(SynthmedError) as err:
        load_experiment(write(tmp_path, text))
    assert phrase in str(err.value) and "\n" not in str(err.value)


def test_absent_datasets_are_skipped_with_the_hint(real_root, tmp_path):
    _, specs = load_experiment(write(tmp_path, "datasets: [breastmnist, octmnist]\nmethods: [none]\nseeds: [0]\n"))
    runnable, skipped = available_datasets(specs, str(real_root))
    assert [s.dataset for s in runnable] == ["breastmnist"] and "octmnist.npz" in skipped["octmnist"]


@pytest.mark.slow
def test_experiment_run_and_status(real_root, tmp_path, cli):
    out = tmp_path / "out"
    path = write(
        tmp_path,
        f"""
name: tiny
out: {out}
datasets: [breastmnist, octmnist]
protocols: [{{protocol: lowdata, real_per_class: 8}}]
methods: [none]
recipes: [{{recipe: medmnist, epochs: 1}}]
seeds: [0]
""",
    )

    def experiment(*args):  # in this process: `python -m synthmed experiment run` is tested by the CLI's killed run
        return cli("experiment", *args, str(path), root=real_root)

    result = experiment("run")
    assert result.returncode == 0, result.stderr
    assert "skipped octmnist" in result.stderr and "1 runs, 0 already in" in result.stderr
    assert (out / "report.html").exists()
    assert "│ 1    │ 1    │ 0       │ 0      │" in experiment("status").stdout
    # on another machine: a fresh store, the export counts as done and costs the pending seed from its run
    export = tmp_path / "export"
    assert cli("export", str(out), str(export)).returncode == 0
    text = path.read_text().replace(str(out), str(tmp_path / "elsewhere")).replace("seeds: [0]", "seeds: [0, 1]")
    path.write_text(text)
    status = experiment("status", "--resume-from", str(export), "--workers", "2")
    assert "│ 2    │ 1    │ 1       │ 0      │" in status.stdout, status.stderr
    assert "the 1 pending run(s) with a stored run of their dataset, protocol and method take about" in status.stdout
    assert not (tmp_path / "elsewhere" / "results.sqlite").exists()  # status imports nothing
    # a --seeds auto study between looks: the file's seeds are done, and the next round and the rest are costed
    plan = {"alpha": 0.05, "planned_looks": 3, "look_alpha": 0.05 / 3, "start": 1, "step": 1, "max_seeds": 3}
    looks = [{"seeds": 1, "undecided": ["a"]}]
    (out / "sequential.json").write_text(json.dumps({**plan, "reason": "in progress", "seeds": 1, "looks": looks}))
    path.write_text(text.replace(str(tmp_path / "elsewhere"), str(out)).replace("seeds: [0, 1]", "seeds: [0]"))
    status = experiment("status", "--workers", "1").stdout
    assert "the next round (2 seeds): the 1 pending run(s)" in status, status
    assert "up to --max-seeds (3 seeds): the 2 pending run(s)" in status


@pytest.mark.slow
def test_ray_and_pool_backends_write_the_same_records_as_the_local_one(real_root, tmp_path, monkeypatch, cli):
    """Two runs (a pool of two workers takes two: with one run, ``--workers 2`` runs it in the driver's process),
    each at one CPU thread on every backend, so their records are equal to the last bit."""
    pytest.importorskip("ray")
    pytest.importorskip("mlflow")
    import torch

    from synthmed.report.records import load_records

    def experiment(out: Path) -> Path:
        path = tmp_path / f"{out.name}.yaml"
        path.write_text(
            f"out: {out}\ndatasets: [breastmnist]\nprotocols: [{{protocol: lowdata, real_per_class: 8}}]\n"
            "methods: [none]\nrecipes: [{recipe: medmnist, epochs: 1}]\nseeds: [0, 1]\n"
            "options: {precision: fp32}\n"
        )
        return path

    env = {
        "SYNTHMED_DATA": str(real_root),
        "SYNTHMED_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "RAY_AUTH_MODE": "disabled",
        "HOME": str(tmp_path),
        "MLFLOW_ALLOW_FILE_STORE": "true",
    }
    for key, value in env.items():  # this process's (the local and pool drivers) and so the pool's workers'
        monkeypatch.setenv(key, value)
    from synthmed.experiment import backends

    # two workers whatever this machine's cores and free memory (a pool bounded to one runs in the driver)
    monkeypatch.setattr(backends, "pool_plan", lambda workers, threads: (workers, None))

    records: dict[str, dict] = {}

    def check(backend: str, result: subprocess.CompletedProcess) -> None:
        assert result.returncode == 0, result.stderr
        assert ("mlflow: 2 run(s) logged" in result.stderr) == (backend == "local")
        where = {"local": "(in this process)", "ray": "(ray backend", "pool": "(2 worker processes"}[backend]
        assert where in result.stderr, result.stderr
        records[backend] = {r["run_id"]: r for r in load_records(tmp_path / backend)}

    def args(backend: str, *options: str) -> list[str]:
        return ["experiment", "run", str(experiment(tmp_path / backend)), "--no-report", *options]

    # Ray in a process of its own (its local instance never starts in the test process), started first: about half
    # of its time is waiting for its servers, which the local and pool runs fill
    ray = subprocess.Popen(
        [sys.executable, "-m", "synthmed", *args("ray", "--backend", "ray")],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # local and pool drive from this process (no interpreter and torch start-up each); the local runs at one
        # thread, as the pool's and Ray's workers do (--cpus-per-run 1), and the thread count is restored after
        threads = torch.get_num_threads()
        try:
            in_order = cli(
                *args("local", "--mlflow", (tmp_path / "mlruns").as_uri(), "--workers", "1", "--cpus-per-run", "1")
            )
        finally:
            torch.set_num_threads(threads)
        check("local", in_order)
        check("pool", cli(*args("pool", "--workers", "2")))
        stdout, stderr = ray.communicate(timeout=600)
    finally:
        if ray.poll() is None:
            ray.kill()
            ray.communicate()
    check("ray", subprocess.CompletedProcess(ray.args, ray.returncode, stdout, stderr))
    for backend in ("ray", "pool"):
        assert records[backend].keys() == records["local"].keys() and len(records[backend]) == 2
        for run_id, local in records["local"].items():
            remote = records[backend][run_id]
            assert remote["test_auc"] == pytest.approx(local["test_auc"], abs=1e-9)
            assert remote["metrics"]["history"] == local["metrics"]["history"]
            assert (tmp_path / backend / "runs" / run_id / "subset.json").exists()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    logged = client.search_runs([client.get_experiment_by_name("local").experiment_id])
    assert {run.data.tags["synthmed.run_id"] for run in logged} == records["local"].keys()
    for run in logged:
        local = records["local"][run.data.tags["synthmed.run_id"]]
        assert run.data.metrics["test_auc"] == pytest.approx(local["test_auc"])


def test_pool_size_is_bounded_by_cores_and_memory():
    from synthmed.experiment.backends import MEMORY_PER_WORKER, pool_size

    plenty = 64 * MEMORY_PER_WORKER
    assert pool_size(8, 1, cores=2, memory=plenty) == 2
    assert pool_size(8, 2, cores=8, memory=plenty) == 4
    assert pool_size(8, 1, cores=8, memory=2 * MEMORY_PER_WORKER) == 2
    assert pool_size(3, 4, cores=2, memory=0) == 1  # always at least one worker
    with pytest.raises(SynthmedError, match="--workers 0"):
        pool_size(0, 1)


@pytest.mark.parametrize(
    ("step", "study"),
    [
        ("pneumoniamnist-lowdata-5seeds", "pneumoniamnist-lowdata"),
        ("pneumoniamnist-fraction05-5seeds", "pneumoniamnist-fraction05"),
        ("pneumoniamnist-fraction05-controls", "pneumoniamnist-fraction05"),
        ("pneumoniamnist-fraction05-ddpm-dcgan-5seeds", "pneumoniamnist-fraction05"),
        ("pneumoniamnist-fraction05-gans", "pneumoniamnist-fraction05"),
        ("pneumoniamnist-lowdata-controls", "pneumoniamnist-lowdata"),
        ("breastmnist-lowdata-lownoise-controls", "breastmnist-lowdata-lownoise"),
        ("pneumoniamnist-lowdata-lownoise-controls", "pneumoniamnist-lowdata-lownoise"),
    ],
)
def test_a_study_step_runs_only_runs_of_its_study(step, study):
    """A step file runs part of a study sooner; its runs must be the study's own, or the study would redo them."""
    step_grid, step_specs = load_experiment(CONFIGS / "study" / f"{step}.yaml")
    study_grid, study_specs = load_experiment(CONFIGS / "study" / f"{study}.yaml")
    assert step_grid.out == study_grid.out
    step_ids = {s.key("md5")[0] for s in step_specs}
    assert step_ids and step_ids <= {s.key("md5")[0] for s in study_specs}


#: study files behind the committed "first protocol" exports: their runs were recorded with whatever precision
#: ``auto`` chose (the record names it, and the report pairs only equal precisions); pinning it now would change
#: their run ids and redo them. Every study file after them pins its precision.
FIRST_PROTOCOL_STUDY_FILES = {
    "breastmnist-lowdata-generators",
    "breastmnist-lowdata-tsynd",
    "breastmnist-lowdata",
    "pneumoniamnist-fraction05-5seeds",
    "pneumoniamnist-fraction05-bagan-sweep",
    "pneumoniamnist-fraction05-classweight",
    "pneumoniamnist-fraction05-controls",
    "pneumoniamnist-fraction05-ddpm-dcgan-5seeds",
    "pneumoniamnist-fraction05-densenet",
    "pneumoniamnist-fraction05-gans",
    "pneumoniamnist-fraction05-generators",
    "pneumoniamnist-fraction05",
    "pneumoniamnist-fraction10-classweight",
    "pneumoniamnist-fraction10",
    "pneumoniamnist-lowdata-5seeds",
    "pneumoniamnist-lowdata-controls",
    "pneumoniamnist-lowdata-ratio",
    "pneumoniamnist-lowdata-tsynd",
    "pneumoniamnist-lowdata",
}


@pytest.mark.parametrize("path", sorted((CONFIGS / "study").glob("*.yaml")), ids=lambda p: p.stem)
def test_a_study_file_pins_its_precision(path):
    """A study resumed on another CPU must not switch precision under `auto` (bf16 and fp32 runs of one seed differ
    by more than most effects), so every new study file names it."""
    if path.stem in FIRST_PROTOCOL_STUDY_FILES:
        pytest.skip("a first-protocol study file: its committed runs keep their ids")
    _, specs = load_experiment(path)
    assert all(s.precision in ("fp32", "bf16") for s in specs), f"{path.name}: add options: {{precision: bf16}}"


def test_rows_selects_runs_after_the_whole_grid_so_ids_stay(tmp_path):
    """--rows keeps the ids the runs have in the whole file: here none takes tsynd's dropout from the grid."""
    text = "name: rows\ndatasets: [breastmnist]\nmethods: [none, flip, tsynd]\nseeds: [0, 1]\nreal_curve: [25]\n"
    grid = load_grid(write(tmp_path, text))
    whole = {s.key("md5")[0]: s for s in expand(grid)}
    grid.rows = ["none", "tsynd.*"]
    picked = expand(grid)
    assert sorted(row_label(s) for s in picked) == ["none", "none", "tsynd", "tsynd"]
    assert all(s.key("md5")[0] in whole and s.dropout for s in picked)  # the same runs, tsynd's dropout kept
    grid.rows = ["none .*"]  # the real-image curve's points only
    assert [(row_label(s), s.seed) for s in expand(grid)] == [("none 25/class", 0), ("none 25/class", 1)]
    assert {row_label(s) for s in select_rows(list(whole.values()), ["none.*"])} == {"none", "none 25/class"}
    with pytest.raises(SynthmedError, match=r"--rows 'ddpm' matches no row of this grid; its rows: flip, none"):
        select_rows(list(whole.values()), ["none", "ddpm"])
    with pytest.raises(SynthmedError, match=r"--rows '\(' is no regular expression"):
        select_rows(list(whole.values()), ["("])


def test_rows_takes_a_label_copied_whole_with_its_commas_and_regex_characters(tmp_path):
    text = (
        "name: labels\ndatasets: [breastmnist]\nseeds: [0]\nmethods: [none, flip, {method: dcgan, params: "
        "{diffaugment: 'color,translation'}}]\n"
    )
    specs = expand(load_grid(write(tmp_path, text)))
    label = "dcgan diffaugment=color,translation"
    assert label in {row_label(s) for s in specs}
    pieces = [*label.split(","), "none"]  # what --rows 'dcgan diffaugment=color,translation,none' splits into
    assert sorted(row_label(s) for s in select_rows(specs, pieces)) == ["dcgan diffaugment=color,translation", "none"]
    unlabelled = (
        "name: plus\ndatasets: [pneumoniamnist]\nprotocols: {protocol: lowdata, unlabelled: all}\nseeds: [0]\n"
        "methods: [none, {method: pseudo-label, teacher: hard, teacher_threshold: 0.9}]\n"
    )
    plus = "pseudo-label +all unlabelled teacher hard teacher≥0.9"  # as a regex, ' +' would match spaces only
    picked = select_rows(expand(load_grid(write(tmp_path, unlabelled))), [plus])
    assert [row_label(s) for s in picked] == [plus]
    with pytest.raises(SynthmedError, match="matches no row"):
        select_rows(specs, ["dcgan diffaugment=color"])  # a piece of a label is no label


def test_experiment_seeds_and_rows_pick_runs_of_a_file(real_root, tmp_path, cli):
    path = write(
        tmp_path,
        f"name: pick\nout: {tmp_path / 'out'}\ndatasets: [breastmnist]\nmethods: [none, flip]\nseeds: [0, 1]\n",
    )
    status = cli("experiment", "status", str(path), "--seeds", "3,4,5", "--rows", "flip", root=real_root)
    assert "│ 3    │ 0    │ 3       │ 0      │" in status.stdout, status.stderr
    empty = cli("experiment", "status", str(path), "--rows", " , ")
    assert empty.returncode == 2 and "--rows names no row" in empty.stderr
    refused = cli("experiment", "run", str(path), "--seeds", "auto", "--max-seeds", "4", "--rows", "flip")
    assert refused.returncode == 2 and "give the seeds (--seeds 7,8,9) or drop --rows" in refused.stderr
    assert not (tmp_path / "out").exists()
    # the reference of the verdicts is a row the step leaves out (a budget of 1 s: nothing starts)
    args = ("--rows", "flip", "--seeds", "0", "--reference", "none", "--time-budget", "1s", "--no-report")
    step = cli("experiment", "run", str(path), *args, root=real_root)
    assert step.returncode == 3 and "budget reached: 0 runs done, 1 left" in step.stderr, step.stderr  # 3: not all done


def test_status_counts_the_pending_runs_a_live_process_holds(tmp_path):
    from synthmed.cli.run import _running
    from synthmed.store import ResultStore

    path = tmp_path / "results.sqlite"
    assert _running(path, {"a"}) == 0 and not path.exists()  # no store: nothing runs, nothing is created
    with ResultStore(path) as store:
        assert store.claim("a", "worker-1", lease=300) and store.claim("b", "worker-2", lease=-1)  # b's lease ended
    assert _running(path, {"a", "b", "c"}) == 1
