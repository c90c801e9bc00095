"""The command line end to end: a real BreastMNIST run, resume, report, and bad input refused cleanly."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_breast_like


def count_records(out: Path) -> tuple[int, int]:
    """(records, distinct run ids); (0, 0) while the store is being created by another process."""
    with sqlite3.connect(out / "results.sqlite", timeout=30) as conn:
        try:
            return conn.execute("SELECT COUNT(*), COUNT(DISTINCT run_id) FROM runs").fetchone()
        except sqlite3.OperationalError:  # the file exists, its table not yet
            return 0, 0


@pytest.mark.slow
def test_end_to_end_breastmnist_run_resume_and_report(real_root, tmp_path, cli):
    out = tmp_path / "runs" / "demo"
    args = [
        "run",
        "-d",
        "breastmnist",
        "-m",
        "none,flip",
        "--seeds",
        "0",
        "--epochs",
        "1",  # one epoch of the full split: epoch selection has its own tests, this one checks the flow on real data
        "--recipe",
        "chaptoukaev",
        "--paper-style",
        # the two runs one after the other in this process: a pool's spawned workers each import torch, about a
        # quarter of this test's time on a busy 2-core machine (the pool backend has its own test in test_grid.py)
        "--workers",
        "1",
        "--out",
        str(out),
    ]
    first = cli(*args, root=real_root)  # in-process: the subprocess entry point is tested by the killed run below
    assert first.returncode == 0, first.stderr
    assert "--paper-style is deprecated; use --report-test-selected" in first.stderr
    assert count_records(out) == (2, 2)
    report = (out / "report.md").read_text()
    assert "breastmnist · lowdata · resnet18 · recipe chaptoukaev" in report
    assert "0.872 / 0.807 (Chaptoukaev 2021, Table 2, test-selected)" in report and "test-selected" in report
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html
    records = json.loads(cli("report", str(out), "--format", "records").stdout)
    assert {r["method"] for r in records} == {"none", "flip"}
    none = next(r for r in records if r["method"] == "none")
    assert none["n_train"] == 546 and none["n_val"] == 78 and none["n_test"] == 156
    assert none["best_epoch"] == 1 and none["test_selected_auc"] >= none["test_auc"] - 1e-12
    run_dir = out / "runs" / none["run_id"]
    assert len(json.loads((run_dir / "subset.json").read_text())["train"]) == 546
    again = cli(*args, root=real_root)  # in-process: resuming needs no training
    assert again.returncode == 0 and "2 already in" in again.stderr and "0 to do" in again.stderr
    assert count_records(out) == (2, 2)


@pytest.mark.slow
def test_generative_run_saves_audits_and_reports_the_synthetic_set(real_root, tmp_path, cli):
    out = tmp_path / "gen"
    args = [
        "run",
        "-d",
        "breastmnist",
        "--real-per-class",
        "12",
        "-m",
        "none,cvae",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--generator-epochs",
        "2",
        "--synthetic-per-class",
        "6",
        "--fidelity-epochs",
        "1",
        "--synthetic-weight",
        "0.5,1",
        "--precision",
        "fp32",
        "--track-fid-every",
        "1",
        "--workers",  # in this process, one run after another: no spawned workers that each import torch
        "1",
        "--out",
        str(out),
    ]
    result = cli(*args, root=real_root)
    assert result.returncode == 0, result.stderr
    records = json.loads(cli("report", str(out), "--format", "records").stdout)
    cvae = sorted(
        (r for r in records if r["method"] == "cvae"), key=lambda r: r["config"]["synthesis"]["synthetic_weight"]
    )
    assert len(records) == 3 and [r["config"]["synthesis"]["synthetic_weight"] for r in cvae] == [0.5, 1.0]
    for r in cvae:
        synthetic = r["metrics"]["synthetic"]
        assert r["n_synthetic"] == synthetic["n"] == 12 and 0.0 <= synthetic["fidelity"] <= 1.0
        assert synthetic["near_copy_share"] is not None and isinstance(synthetic["flags"], list)
        assert synthetic["fid"] > 0 and synthetic["kid"] is not None and 0 <= synthetic["coverage"] <= 1
        assert [p["epoch"] for p in synthetic["fid_over_epochs"]] == [1, 2]
        run_dir = out / "runs" / r["run_id"]
        for name in (
            "synthetic.npz",
            "synthetic.json",
            "synthetic_grid.png",
            "synthetic_losses.png",
            "synthetic_closest.png",
            "synthetic_audit.json",
            "synthetic_tsne.png",
            "synthetic_fid.png",
        ):
            assert (run_dir / name).stat().st_size > 0, name
    # the second lever setting reused the first one's generator and reference classifier
    assert [r["metrics"]["synthetic"]["generator_cached"] for r in cvae].count(True) == 1
    assert (
        len({(r["metrics"]["synthetic"]["generator_key"], r["metrics"]["synthetic"]["generator_digest"]) for r in cvae})
        == 1
    )
    assert len(list((out / "cache" / "generators").iterdir())) == 1
    report = (out / "report.md").read_text()
    assert "Synthetic data: class fidelity, memorisation, collapse" in report and "cvae 6/class weight 0.5" in report
    assert "generator fits: 1 served 2 runs, each with one set of weights in all its runs" in report
    assert report.count("synthetic_grid.png") == 2 and report.count("synthetic_tsne.png") == 2
    assert "FID / KID against the real training images (in-domain features, mean over seeds) during generator" in report
    assert (out / "report.html").read_text().count("data:image/png;base64,") >= 3


@pytest.mark.slow
def test_a_failing_generator_is_recorded_and_the_grid_goes_on(real_root, tmp_path, cli):
    out = tmp_path / "fail"
    args = [
        "run",
        "-d",
        "breastmnist",
        "--real-per-class",
        "10",
        "-m",
        "none,cvae",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "-p",
        "epochs=5",
        "-p",
        "lr=1e6",
        "--no-fidelity",
        "--workers",  # in this process, one run after another: no spawned workers that each import torch
        "1",
        "--out",
        str(out),
    ]
    result = cli(*args, root=real_root)
    assert result.returncode == 1 and "failed:" in result.stderr and "lower the learning rate" in result.stderr
    assert count_records(out) == (1, 1)  # the none run finished and is kept
    errors = list((out / "runs").glob("*/error.json"))
    assert len(errors) == 1 and "lower the learning rate" in json.loads(errors[0].read_text())["error"]
    assert "Failed runs" in (out / "report.md").read_text()
    assert not list((out / "runs").glob("*/synthetic.npz"))  # nothing of the failed run is used or kept


@pytest.mark.slow
def test_killed_run_leaves_no_partial_record_and_resumes(real_root, tmp_path, cli):
    # an experiment file: `synthmed run` builds the same grid and runs it through the same executor and store
    # (its resume is tested end to end above), so one driver covers the kill. One worker, in the driver's process,
    # killed and resumed: a pool's spawned workers each import torch (two per command cost this test 35 of its 58 s);
    # that the workers of a killed driver exit is tested in test_execution.py
    out = tmp_path / "kill"
    (tmp_path / "exp.yaml").write_text(
        f"out: {out}\ndatasets: [breastmnist]\nmethods: [none]\nseeds: [0, 1, 2]\n"
        "protocols: [{protocol: lowdata, real_per_class: 8}]\n"
        "recipes: [{recipe: medmnist, epochs: 2}]\n"
    )
    args = [sys.executable, "-m", "synthmed", "experiment", "run", str(tmp_path / "exp.yaml"), "--no-report"]
    args += ["--workers", "1"]
    env = {**os.environ, "SYNTHMED_DATA": str(real_root), "SYNTHMED_OFFLINE": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (out / "results.sqlite").exists() and count_records(out)[0] >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = count_records(out)[0]
    assert 1 <= done <= 3
    # SIGKILL mid-write can leave a hidden temporary beside its target, never a half-written file; plant one in
    # every unfinished run's folder so the sweep on resume is tested whatever moment the kill hit
    with sqlite3.connect(out / "results.sqlite") as conn:
        stored = {row[0] for row in conn.execute("SELECT run_id FROM runs")}
    unfinished = [d for d in (out / "runs").iterdir() if d.name not in stored] if (out / "runs").exists() else []
    for run_dir in unfinished:
        (run_dir / ".history.json.killed.tmp").write_text("{")
    finished = cli(*args[3:], root=real_root)  # resuming in-process: the kill needed the subprocess
    assert finished.returncode == 0, finished.stderr
    assert count_records(out) == (3, 3)
    assert f"{done} already in" in finished.stderr
    assert not list(out.rglob("*.tmp"))
    for history in out.rglob("history.json"):
        json.loads(history.read_text())


def assert_clean_failure(result: subprocess.CompletedProcess, out: Path, *phrases: str) -> None:
    """Exit code 2, one error line naming the problem, no traceback, nothing written."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert not out.exists()


def test_missing_file_offline(tmp_path, cli):
    out = tmp_path / "out"
    result = cli("run", "-d", "breastmnist", "--out", str(out), root=tmp_path / "empty")
    assert_clean_failure(result, out, "breastmnist.npz not found", "750601b1f35ba3300ea97c75c52ff8f6")


@pytest.mark.parametrize(
    "extra,phrases",
    [
        (["--methods", "diffusion9"], ["unknown method 'diffusion9'"]),
        (["--recipe", "fast"], ["unknown recipe 'fast'"]),
        (["--protocol", "half"], ["--protocol 'half': choose one of lowdata, fraction, full"]),
        (["--classifier", "vit"], ["unknown classifier 'vit'"]),
        (["--seeds", "a,b"], ["--seeds should be an integer, got 'a'"]),
        (["--seeds", "-1"], ["--seeds -1 must be >= 0"]),
        (["--size", "33"], ["--size 33: choose one of 28, 64, 128, 224"]),
        (["--workers", "0"], ["--workers 0 must be >= 1"]),
        (["--device", "cuda"], ["--device cuda was asked for but no CUDA GPU is visible"]),
        (["--epochs", "-2"], ["--epochs -2 must be >= 1"]),
        (["--protocol", "fraction", "--fraction", "1.5"], ["--fraction 1.5 must be > 0 and <= 1"]),
        (["--fraction", "0.5"], ["--fraction applies to --protocol fraction"]),
        (["--synthetic-per-class", "-3", "-m", "cvae"], ["--synthetic-per-class -3 must be >= 1"]),
        (
            ["--synthetic-weight", "0.5", "-m", "none,flip"],
            ["--synthetic-weight applies to methods that add a synthetic"],
        ),
        (["-m", "cvae", "-p", "lr=-1"], ["cvae: lr=-1 is invalid; expected a positive number"]),
        (["-m", "tsynd", "--dropout", "0"], ["tsynd measures uncertainty by MC dropout: give --dropout P"]),
    ],
)
def test_unknown_names(real_root, tmp_path, extra, phrases, cli):
    out = tmp_path / "out"
    result = cli("run", "-d", "breastmnist", "--epochs", "1", "--out", str(out), *extra, root=real_root)
    assert_clean_failure(result, out, *phrases)


def test_unknown_dataset(tmp_path, cli):
    out = tmp_path / "out"
    assert_clean_failure(cli("run", "-d", "mnist", "--out", str(out)), out, "unknown dataset 'mnist'")
    assert_clean_failure(cli("run", "-d", "my_scans.npz", "--out", str(out)), out, "give npz:my_scans.npz")
    assert_clean_failure(
        cli("run", "-d", f"npz:{tmp_path / 'absent.npz'}", "--out", str(out)), out, "is not an npz file"
    )


def test_out_naming_a_file_is_refused(real_root, tmp_path, cli):
    out = tmp_path / "taken"
    out.write_text("not a folder")
    result = cli("run", "-d", "breastmnist", "--out", str(out), root=real_root)
    assert result.returncode == 2 and "--out" in result.stderr and "is a file; give a folder" in result.stderr
    assert out.read_text() == "not a folder"


def test_old_yaml_dialect_runs_with_a_deprecation_note_and_bad_yaml_is_one_line(real_root, tmp_path, cli):
    old = tmp_path / "old.yaml"
    old.write_text("dataset: breastmnist\nmethods: [none]\nepochs: 0\n")
    result = cli("run", "--config", str(old), "--out", str(tmp_path / "out"), root=real_root)
    assert_clean_failure(result, tmp_path / "out", "recipes[0].epochs 0 must be >= 1")
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [breastmnist\n")
    assert_clean_failure(
        cli("run", "--config", str(bad), "--out", str(tmp_path / "out")), tmp_path / "out", "is not valid YAML at line"
    )


def test_wrong_md5_and_bad_labels(tmp_path, cli):
    import numpy as np

    root, out = tmp_path / "data", tmp_path / "out"
    write_breast_like(root, train_labels=np.full((20, 1), 7, dtype=np.uint8))
    assert_clean_failure(cli("run", "-d", "breastmnist", "--out", str(out), root=root), out, "MD5", "--no-verify")
    result = cli("run", "-d", "breastmnist", "--out", str(out), "--no-verify", root=root)
    assert_clean_failure(result, out, "train_labels range over 7..7")


def test_truncated_file(real_root, tmp_path, cli):
    root, out = tmp_path / "data", tmp_path / "out"
    root.mkdir()
    data = (real_root / "breastmnist.npz").read_bytes()
    (root / "breastmnist.npz").write_bytes(data[: len(data) // 3])
    result = cli("run", "-d", "breastmnist", "--out", str(out), "--no-verify", root=root)
    assert_clean_failure(result, out, "truncated or corrupt")


def test_empty_class_in_fraction_subset(tmp_path, cli):
    import numpy as np

    root, out = tmp_path / "data", tmp_path / "out"
    labels = np.zeros((20, 1), dtype=np.uint8)
    labels[0] = 1
    write_breast_like(root, train_labels=labels)
    result = cli(
        "run",
        "-d",
        "breastmnist",
        "--protocol",
        "fraction",
        "--fraction",
        "0.05",
        "--seeds",
        "1",
        "--out",
        str(out),
        "--no-verify",
        root=root,
    )
    assert_clean_failure(result, out, "has no images", "--stratified")


def test_data_info_and_verify(real_root, cli):
    info = cli("data", "info", "pneumoniamnist", root=real_root)
    assert info.returncode == 0 and "1214" in info.stdout and "3494" in info.stdout and "MD5 ok" in info.stdout
    verify = cli("data", "verify", "breastmnist", root=real_root)
    assert verify.returncode == 0 and "verified" in verify.stdout


@pytest.mark.slow
def test_own_npz_dataset_runs_generates_and_scores_and_tsynd_gets_its_dropout(real_root, tmp_path, cli):
    """A renamed copy of BreastMNIST through npz:PATH in run and generate and as a plain path in fidelity; a grid
    with tsynd and no --dropout runs with TSynD's rate for every method. Its first 160 training images (35
    malignant) are plenty for 20 per class, and fidelity's in-domain extractor trains on them, not on 546."""
    data = tmp_path / "my_ultrasound.npz"
    with np.load(real_root / "breastmnist.npz") as breast:
        arrays = {key: breast[key][:160] if key.startswith("train_") else breast[key] for key in breast.files}
    np.savez(data, **arrays)
    out = tmp_path / "out"
    result = cli(
        "run",
        "-d",
        f"npz:{data}",
        "-m",
        "none,tsynd",
        "--real-per-class",
        "8",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "-p",
        "epochs=1",
        "-p",
        "every=1",
        "-p",
        "steps=2",
        "--precision",
        "fp32",
        "--classes",
        "malignant,benign",
        "--workers",  # in this process, one run after another: no spawned workers that each import torch
        "1",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "every method of this grid uses dropout 0.2" in result.stderr
    records = json.loads(cli("report", str(out), "--format", "records").stdout)
    assert {(r["dataset"], r["method"], r["config"]["dropout"]) for r in records} == {
        ("my_ultrasound", "none", 0.2),
        ("my_ultrasound", "tsynd", 0.2),
    }
    assert records[0]["metrics"]["val"]["recall"] is not None
    synth = tmp_path / "synth.npz"
    made = cli(
        "generate",
        "-d",
        f"npz:{data}",
        "--method",
        "cvae",
        "--epochs",
        "2",
        "--synthetic-per-class",
        "20",
        "--per-class-train",
        "20",
        "--out",
        str(synth),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert made.returncode == 0, made.stderr
    assert (
        "--per-class-train is deprecated; use --real-per-class" in made.stderr and "40 synthetic images" in made.stderr
    )
    scored = cli(
        "fidelity",
        str(data),
        str(synth),
        "--domain-epochs",
        "1",
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "fid.json"),
    )
    assert scored.returncode == 0, scored.stderr
    report = json.loads((tmp_path / "fid.json").read_text())
    assert report["features"].startswith("domain:my_ultrasound") and report["overall"]["n_synthetic"] == 40
