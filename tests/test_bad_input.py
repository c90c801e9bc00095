"""Bad input a new user tries (issue 27, item 11): each is one error line, exit status 2, and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_execution import FakeRunner, fake_record

from synthmed.experiment.export import export_runs
from synthmed.experiment.grid import Grid, expand, override
from synthmed.store import ResultStore


def _one_line(result, phrase: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and phrase in lines[0] and "Traceback" not in result.stderr, result.stderr


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _store(folder: Path, seeds: list[int]) -> FakeRunner:
    runner = FakeRunner(folder)
    grid = override(Grid(datasets=["breastmnist"], seeds=seeds), {"method": "none,flip"})
    with ResultStore(runner.store_path) as store:
        for spec in expand(grid):
            record = fake_record(runner, spec, 0.8)
            record["metrics"]["padding"] = "x" * 3000  # records spanning several pages of the file
            store.add(record)
    return runner


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--seeds", "[/bold]"], "--seeds should be an integer, got '[/bold]'"),
        (["-m", "x[/]"], "unknown method 'x[/]'"),
        (["-m", "[red]none"], "unknown method '[red]none'"),
    ],
)
def test_user_text_is_printed_as_given_not_as_markup(tmp_path, cli, args, phrase):
    result = cli("run", "-d", "breastmnist", "--out", str(tmp_path / "out"), *args)
    _one_line(result, phrase)
    assert not (tmp_path / "out").exists()


def test_the_empty_experiment_file_error_keeps_its_bracketed_hint(tmp_path, cli):
    (tmp_path / "empty.yaml").write_text("")
    result = cli("experiment", "run", str(tmp_path / "empty.yaml"))
    _one_line(result, "'datasets' is missing")
    assert "datasets: [breastmnist]" in result.stderr  # Rich markup would have swallowed the brackets


@pytest.mark.parametrize("damage", ["random", "truncated", "empty"])
def test_report_on_a_damaged_store_is_one_line_and_writes_nothing(tmp_path, cli, damage):
    path = tmp_path / "out" / "results.sqlite"
    if damage == "random":
        path.parent.mkdir()
        path.write_bytes(bytes(range(256)) * 80)
    elif damage == "truncated":
        _store(tmp_path / "out", list(range(6)))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.parent.mkdir()
        path.write_bytes(b"")
    before = _tree(tmp_path / "out")
    phrase = "is empty (0 bytes), not a results store" if damage == "empty" else "is not a readable synthmed results"
    _one_line(cli("report", str(tmp_path / "out")), phrase)
    assert _tree(tmp_path / "out") == before


@pytest.mark.parametrize(
    "change, phrase",
    [
        ({"test_auc": "abc"}, 'test_auc is "abc", not a number'),
        ({"seed": 1.5}, "seed is 1.5, not an integer"),
        ({"config": [1]}, "config is [1], not a mapping"),
        ({"colour": "red"}, "colour is not a field of a run record"),
    ],
)
def test_resume_from_an_export_with_a_bad_record_refuses_it_and_writes_nothing(
    tmp_path, cli, change, phrase, real_root
):
    runner = _store(tmp_path / "src", [0, 1])
    export_runs(runner.out, tmp_path / "exp")
    records = (tmp_path / "exp" / "records.jsonl").read_text().splitlines()
    records[2] = json.dumps({**json.loads(records[2]), **change})
    (tmp_path / "exp" / "records.jsonl").write_text("\n".join(records) + "\n")
    out = tmp_path / "out"
    result = cli("run", "-d", "breastmnist", "--out", str(out), "--resume-from", str(tmp_path / "exp"), root=real_root)
    where = "records.jsonl line 3" if "field" not in phrase else "record 3 of records.jsonl"
    _one_line(result, phrase)
    assert where in result.stderr
    assert not out.exists()


def test_a_repeated_seed_is_refused(tmp_path, cli):
    _one_line(cli("run", "-d", "breastmnist", "--seeds", "0,0", "--out", str(tmp_path / "out")), "repeat seed 0")
    assert not (tmp_path / "out").exists()


def test_a_reference_that_names_no_method_of_the_grid_is_refused(tmp_path, cli):
    result = cli("run", "-d", "breastmnist", "-m", "none,flip", "--reference", "foo", "--out", str(tmp_path / "out"))
    _one_line(result, "--reference foo names no method of the grid; choose one of flip, none")
    assert not (tmp_path / "out").exists()


LAUGHS = "\n".join(
    ["name: laughs", "datasets: [breastmnist]", "options:", "  precision: [&a [fp32, fp32, fp32, fp32, fp32, fp32]"]
    + [f"    , &{b} [{', '.join([f'*{a}'] * 6)}]" for a, b in zip("abcdefgh", "bcdefghi")]
    + ["    ]"]
)


@pytest.mark.parametrize(
    "text, phrase",
    [
        (LAUGHS, "more than 100000 values once its aliases (*name) are expanded"),
        ("name: x\ndatasets: [&d breastmnist" + ", *d" * 101 + "]\n", "more than 100 aliases"),
    ],
)
def test_a_yaml_whose_aliases_expand_without_bound_is_refused(tmp_path, cli, text, phrase):
    (tmp_path / "grid.yaml").write_text(text + f"\nout: {tmp_path / 'out'}\n")
    for args in (["experiment", "run", str(tmp_path / "grid.yaml")], ["run", "--config", str(tmp_path / "grid.yaml")]):
        _one_line(cli(*args), phrase)
    assert not (tmp_path / "out").exists()


def test_a_validation_split_without_a_class_is_refused(tmp_path, cli):
    import numpy as np
    from conftest import write_breast_like

    write_breast_like(tmp_path / "data", val_labels=np.zeros((6, 1), dtype=np.uint8))
    out = tmp_path / "out"
    args = ["run", "-d", "breastmnist", "--protocol", "full", "-m", "none", "--epochs", "1", "--no-verify"]
    result = cli(*args, "--out", str(out), root=tmp_path / "data")
    _one_line(result, "the validation split holds no image of class 'normal, benign'")
    assert not out.exists()


def test_a_size_without_its_file_is_refused_not_upsampled(tmp_path, cli):
    from conftest import write_breast_like

    write_breast_like(tmp_path / "data")  # the 28-px file only
    out = tmp_path / "out"
    result = cli("run", "-d", "breastmnist", "--size", "64", "--no-verify", "--out", str(out), root=tmp_path / "data")
    _one_line(result, "breastmnist_64.npz not found")
    assert "does not upsample breastmnist.npz" in result.stderr and "MD5" in result.stderr
    assert not out.exists() and sorted(p.name for p in (tmp_path / "data").iterdir()) == ["breastmnist.npz"]


def test_random_bytes_as_an_npz_name_the_file_not_a_pickle(tmp_path, cli):
    import numpy as np

    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    out = tmp_path / "out"
    result = cli("run", "-d", f"npz:{path}", "--out", str(out))
    _one_line(result, "is not a valid npz/zip file")
    assert "pickle" not in result.stderr and not out.exists()


def test_an_image_folder_with_two_images_per_class_names_the_minimum(tmp_path, cli):
    import numpy as np
    from PIL import Image

    for name in ("benign", "malignant"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((28, 28), 40 * i, dtype=np.uint8)).save(tmp_path / "images" / name / f"{i}.png")
    out = tmp_path / "out"
    result = cli("run", "-d", f"folder:{tmp_path / 'images'}", "--out", str(out))
    _one_line(result, "too few images per class for a train/val/test split")
    assert "'benign' (2)" in result.stderr and "at least 3 images per class" in result.stderr
    assert "split is empty" not in result.stderr and not out.exists()
