"""The execution schema: every ``Execution`` field is an option of both run commands and a key of an experiment
file's ``execution:`` section, read the same way in both, and the command line overrides the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main

from synthmed.errors import SynthmedError
from synthmed.experiment.execution import Execution, build, flag_of, from_mapping, public_fields
from synthmed.experiment.grid import parse_grid


def _flags(command) -> set[str]:
    click_command = typer.main.get_command_from_info(command, pretty_exceptions_short=True, rich_markup_mode="rich")
    return {opt for param in click_command.params for opt in [*param.opts, *param.secondary_opts]}


@pytest.mark.parametrize("name", ["run", "experiment run"])
def test_every_execution_field_is_an_option_of_both_run_commands(name):
    from synthmed.cli.app import app, experiment_app

    apps = {"run": (app, "run"), "experiment run": (experiment_app, "run")}
    owner, command_name = apps[name]
    info = next(c for c in owner.registered_commands if (c.name or c.callback.__name__) == command_name)
    flags = _flags(info)
    assert public_fields() and {flag_of(field) for field in public_fields()} <= flags


def test_every_execution_field_is_a_yaml_key_read_as_the_option_reads_it():
    doc = {
        "workers": 2,
        "time_budget": "1h30m",
        "pages": "README.md,docs/x.md",
        "classes": ["a", "b"],
        "verify": False,
        "export_to": "results/x",
        "margin": 0.02,
    }
    values = from_mapping(doc, "f.yaml")
    assert values == {
        "workers": 2,
        "time_budget": 5400.0,
        "pages": [Path("README.md"), Path("docs/x.md")],
        "classes": ["a", "b"],
        "verify": False,
        "export_to": Path("results/x"),
        "margin": 0.02,
    }
    assert set(public_fields()) <= set(Execution.__dataclass_fields__)
    for name in public_fields():  # each public field is accepted as a key (None: its default)
        assert from_mapping({name: None}, "f.yaml") == {name: None}


def test_the_command_line_overrides_the_file_and_the_command_fixes_the_rest():
    grid = parse_grid({"datasets": ["breastmnist"], "execution": {"workers": 2, "time_budget": "2h"}}, "f.yaml")
    assert grid.execution == {"workers": 2, "time_budget": 7200.0}
    execution = build(grid.execution, {"time_budget": "30m"}, skip_absent=True)
    assert (execution.workers, execution.time_budget, execution.skip_absent) == (2, 1800.0, True)


@pytest.mark.parametrize(
    "doc, phrase",
    [
        ({"wrokers": 2}, "execution: unknown key 'wrokers'; known: data_root"),
        ({"workers": "two"}, "execution.workers: 'two' is not int"),
        ({"verify": "maybe"}, "execution.verify: 'maybe' is not bool"),
        ({"time_budget": "soon"}, "execution.time_budget 'soon': give a duration such as 2h30m"),
    ],
)
def test_a_bad_execution_key_or_value_is_one_line_naming_it(doc, phrase):
    with pytest.raises(SynthmedError) as err:
        parse_grid({"datasets": ["breastmnist"], "execution": doc}, "f.yaml")
    assert phrase in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "values, phrase",
    [
        ({"workers": 0}, "--workers 0 must be >= 1"),
        ({"backend": "slurm"}, "--backend 'slurm': choose local or ray"),
        ({"pages": [Path("x.md")]}, "--pages regenerates tables from an export"),
        ({"auto_seeds": True, "max_seeds": 4, "min_seeds": 6}, "--min-seeds 6 is above --max-seeds 4"),
        ({"min_seeds": 6}, "--min-seeds applies to --seeds auto"),
        ({"time_budget": 60.0, "backend": "ray"}, "--time-budget needs the local backend"),
    ],
)
def test_inconsistent_executions_are_refused_before_anything_runs(values, phrase):
    with pytest.raises(SynthmedError, match=phrase.replace("(", r"\(")):
        build(**{"file": values})


def test_a_runner_rebuilds_in_a_worker_with_the_same_execution(tmp_path):
    from synthmed.experiment.runner import Runner

    runner = Runner(tmp_path, Execution(device="cpu", save_model=True), data_root="/data")
    again = Runner(**runner.settings())
    assert again.execution == runner.execution and again.execution.data_root == "/data"
    assert again.cache_dir == tmp_path / "cache" and again.device == "cpu"
