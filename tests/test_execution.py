"""Running grids: seeds until decided, exports that survive a move, claims that let several processes split a grid,
the default worker count, and the bad input of those options."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from synthmed.errors import SynthmedError
from synthmed.experiment.export import export_runs, import_export
from synthmed.experiment.grid import Grid, expand, override
from synthmed.experiment.runner import Runner
from synthmed.experiment.sequential import Plan, progress_line, run_until_decided
from synthmed.report import summary_json, write_report
from synthmed.store import ResultStore


class FakeRunner(Runner):
    """A runner whose dataset is only an MD5: enough to name runs without loading data."""

    def dataset(self, spec):
        return SimpleNamespace(md5="fake", name=spec.dataset)

    def validate(self, specs):
        """Nothing to check: there is no data behind the MD5."""

    def reference_path(self, spec):
        """No reference classifier: there is no subset to train one on."""
        return None


def fake_record(runner: Runner, spec, auc: float) -> dict:
    run_id, config = spec.key("fake")
    history = [{"epoch": 1, "val_auc": auc, "val_loss": 0.5}]
    return {
        "run_id": run_id,
        "dataset": spec.dataset,
        "protocol": spec.protocol,
        "method": spec.method,
        "classifier": spec.classifier,
        "recipe": spec.recipe,
        "seed": spec.seed,
        "config": config,
        "val_auc": auc,
        "val_acc": 0.8,
        "test_auc": auc,
        "test_acc": 0.8,
        "best_epoch": 1,
        "epochs_run": 1,
        "train_time": 1.0,
        "total_time": 1.0,
        "n_train": 10,
        "n_val": 5,
        "n_test": 5,
        "device": "cpu",
        "precision": "fp32",
        "metrics": {"history": history},
        "versions": {"torch": "x", "cpus": 2, "cpu": "Test CPU", "gpu": "none", "torch_threads": 1},
        "created": f"2026-12-0{1 + spec.seed % 9}",
    }


def constructed(effects: dict[str, tuple[float, float]]):
    """An ``execute_round`` that stores made-up records: per method, a paired effect (mean, sd) over none."""
    rng = {m: np.random.default_rng(i) for i, m in enumerate(effects)}
    calls = []

    def execute_round(runner: Runner, grid: Grid) -> None:
        calls.append(list(grid.seeds))
        with ResultStore(runner.store_path) as store:
            for spec in expand(grid):
                if store.has(runner.run_id(spec)):
                    continue
                base = 0.85 + 0.01 * np.sin(spec.seed)
                mean, sd = effects.get(spec.method, (0.0, 0.0))
                store.add(
                    fake_record(
                        runner,
                        spec,
                        base + mean + sd * rng[spec.method].standard_normal() if spec.method in rng else base,
                    )
                )

    return execute_round, calls


def test_the_report_answers_each_reference_in_one_line_before_its_sentences(tmp_path):
    """flip clearly ahead of none, cvae level with it but noisy: the line names flip as better with its difference
    and counts the undecided rows with what their seeds could detect."""
    runner = FakeRunner(tmp_path)
    grid = override(Grid(datasets=["breastmnist"], seeds=list(range(8))), {"method": "none,flip,cvae"})
    execute_round, _ = constructed({"flip": (0.05, 0.005), "cvae": (0.0, 0.03)})
    execute_round(runner, grid)
    write_report(runner.out)
    report = (tmp_path / "report.md").read_text()
    line = next(text for text in report.splitlines() if text.startswith("Against none: "))
    assert re.fullmatch(
        r"Against none: better: flip \(\+0\.0\d\d\); undecided: 1 \(.*could detect 0\.\d+ AUC\)\.", line
    )
    assert report.index(line) < report.index("- flip is better than none")
    from synthmed.report import terminal_tables

    assert terminal_tables(runner.out)[0].note == line  # under the table `synthmed run` prints at its end


def test_seeds_auto_stops_once_every_verdict_is_decided(tmp_path):
    runner = FakeRunner(tmp_path)
    grid = override(Grid(datasets=["breastmnist"]), {"method": "none,flip"})
    execute_round, calls = constructed({"flip": (0.05, 0.002)})
    stop = run_until_decided(runner, grid, Plan(max_seeds=9, step=2), lambda g: execute_round(runner, g))
    # no verdict is decided below 5 seeds, so the first look comes at 5 (looks at 5, 7, 9)
    assert calls == [[0, 1, 2, 3, 4]] and stop["seeds"] == 5 and "decided by 5 seeds" in stop["reason"]
    assert stop["planned_looks"] == 3 and stop["look_alpha"] == pytest.approx(0.05 / 3)
    report = summary_json(tmp_path)
    assert report["groups"][0]["rows"][1]["comparisons"]["none"]["verdict"] == "better"
    assert report["settings"]["alpha"] == pytest.approx(0.05 / 3)  # the report's intervals use the split alpha
    assert json.loads((tmp_path / "sequential.json").read_text())["looks"][-1]["undecided"] == []


def test_seeds_auto_goes_on_while_a_verdict_against_the_copies_is_undecided(tmp_path):
    runner = FakeRunner(tmp_path)
    grid = override(Grid(datasets=["breastmnist"]), {"method": "none,oversample,flip"})
    execute_round, calls = constructed({"oversample": (0.06, 0.02), "flip": (0.05, 0.0)})
    stop = run_until_decided(runner, grid, Plan(max_seeds=7, step=2), lambda g: execute_round(runner, g))
    first = stop["looks"][0]["undecided"]
    assert any(u.endswith("flip vs oversample") for u in first)
    assert not any(u.endswith("flip vs none") for u in first)  # decided against none: the copies keep it going
    assert [len(c) for c in calls] == [5, 7]
    assert any(d.endswith("flip vs none") for d in stop["looks"][0]["decided"])
    notes = (Path(write_report(tmp_path)[0]).parent / "report.md").read_text()
    assert (
        "Seeds each verdict needed: decided at 5 seeds: flip vs none, oversample vs none; decided at 7 seeds: flip vs "
        "oversample." in notes
    )


def test_the_seeds_a_verdict_needed_are_those_of_the_first_look_that_decided_it():
    from synthmed.report.summary import decided_at

    looks = [
        {"seeds": 10, "undecided": ["b", "c"], "decided": ["a"]},
        {"seeds": 12, "undecided": ["a", "c"], "decided": ["b"]},  # a look before decisions were carried
        {"seeds": 14, "undecided": ["c"], "decided": ["a", "b"]},
    ]
    assert decided_at(["a", "b", "c", "other study's"], looks) == {"a": 10, "b": 12, "c": None}
    legacy = [{"seeds": 10, "undecided": ["c"]}, {"seeds": 12, "undecided": []}]  # before "decided" was recorded
    assert decided_at(["a", "c"], legacy) == {"a": 10, "c": 12}


def drifting(decide_at: int):
    """An ``execute_round`` whose ``flip`` is far better than none on the first ``decide_at`` seeds and far worse
    after, so that all the seeds together leave it undecided; ``oversample`` stays noise around none."""
    rng = np.random.default_rng(0)

    def execute_round(runner: Runner, grid: Grid) -> None:
        with ResultStore(runner.store_path) as store:
            for spec in expand(grid):
                if store.has(runner.run_id(spec)):
                    continue
                base = 0.85 + 0.01 * np.sin(spec.seed)
                auc = base
                if spec.method == "flip":
                    auc += (0.05 if spec.seed < decide_at else -0.08) + 0.002 * rng.standard_normal()
                elif spec.method == "oversample":
                    auc += 0.03 * rng.standard_normal()
                store.add(fake_record(runner, spec, auc))

    return execute_round


def test_a_verdict_decided_at_one_look_is_kept_at_the_next_and_the_report_shows_that_looks_numbers(tmp_path):
    """flip vs none is decided better at the 5-seed look; the 7-seed look would undo it on all seeds (two far worse
    seeds), but a decision is kept: the stop rule waits only for the others, and the report shows the 5-seed
    comparison, marked, while a report at another margin judges all the seeds afresh."""
    from synthmed.report import settings_for

    runner = FakeRunner(tmp_path)
    grid = override(Grid(datasets=["breastmnist"]), {"method": "none,oversample,flip"})
    stop = run_until_decided(runner, grid, Plan(max_seeds=7, step=2), lambda g: drifting(5)(runner, g))
    first, second = stop["looks"]
    name = next(name for name in first["decided"] if name.endswith("flip vs none"))
    assert name in first["decided"] and name in second["decided"] and name not in second["undecided"]
    assert "decided: flip vs none (at 5)" in progress_line(stop)
    recorded_before_carrying = {**stop, "looks": [first, {**second, "undecided": [*second["undecided"], name]}]}
    assert f"7 ({len(second['undecided'])} undecided)" in progress_line(recorded_before_carrying)
    flip = next(row for row in summary_json(tmp_path)["groups"][0]["rows"] if row["method"] == "flip")
    kept = flip["comparisons"]["none"]
    assert kept["verdict"] == "better" and kept["decided_at"] == 5 and kept["pairs"] == 5 and kept["mean"] > 0.04
    assert flip["n"] == 7  # the row itself is over every seed
    afresh = summary_json(tmp_path, dataclasses.replace(settings_for(tmp_path), decided_at=()))
    flip = next(row for row in afresh["groups"][0]["rows"] if row["method"] == "flip")
    assert flip["comparisons"]["none"]["pairs"] == 7 and flip["comparisons"]["none"]["verdict"] != "better"
    assert settings_for(tmp_path, margin=0.02).decided_at == ()  # the looks decided at 0.01, not this margin
    assert settings_for(tmp_path, reference="flip").decided_at == ()  # a third reference: a larger Holm family
    assert settings_for(tmp_path, reference="oversample").decided_at != ()  # the copies, named: the same comparisons
    assert settings_for(tmp_path, reference="none").decided_at != ()
    from synthmed.report.records import load_records
    from synthmed.report.summary import summarise

    rows = summarise(load_records(tmp_path), settings_for(tmp_path))
    flip = next(row for row in rows if row["method"] == "flip")
    assert flip["acc_diffs"]["none"][3] == 5  # the Δ ACC beside a kept verdict is over the same seeds
    report = Path(write_report(tmp_path)[0]).read_text()
    assert "decided at 5 seeds" in report and "decided at the look after 5 seeds and kept" in report
    assert "not by this folder's records" not in report
    # a look that recorded a decision the folder's records do not make on its seeds: judged on all, and said so
    noisy = next(name for name in first["undecided"] if name.endswith("oversample vs none"))
    first["decided"].append(noisy)
    first["undecided"].remove(noisy)
    (tmp_path / "sequential.json").write_text(json.dumps(stop))
    report = Path(write_report(tmp_path)[0]).read_text()
    assert "not by this folder's records of that look's seeds, so judged here on all the seeds: oversample vs none" in (
        report
    )


def test_a_look_recorded_before_decisions_were_listed_carries_what_it_left_off_its_undecided_list():
    from synthmed.experiment.sequential import Look, carried

    legacy = Look(10, ["b"], None)  # "a" was judged and decided at 10; only the undecided list was recorded
    now = carried(Look(12, ["a", "b"], ["c"]), [legacy])
    assert now.undecided == ["b"] and now.decided == ["c", "a"]


def test_seeds_auto_goes_on_while_one_of_tsynds_claims_is_undecided(tmp_path):
    """MI against entropy is the claim the seeds have to settle here: every row is far from none and the copies."""
    runner = FakeRunner(tmp_path)
    grid = override(Grid(datasets=["breastmnist"]), {"method": "none,oversample,tsynd,random-latent"})
    grid.methods.append({"method": "tsynd", "params": {"uncertainty": "entropy"}})
    effects = {"oversample": (0.1, 0.0), "tsynd": (0.2, 0.02), "random-latent": (0.3, 0.0)}
    execute_round, calls = constructed(effects)
    stop = run_until_decided(runner, grid, Plan(max_seeds=7, step=2), lambda g: execute_round(runner, g))
    first = stop["looks"][0]["undecided"]
    assert any("mutual information > entropy (clean test AUC)" in u for u in first), first
    assert not any("(PGD" in u for u in first)  # not measured here: never waited for
    assert [len(c) for c in calls] == [5, 7]


def test_a_step_cut_by_its_budget_leaves_the_plan_and_its_looks_and_the_next_step_goes_on_from_them(tmp_path):
    """Before the first round the plan is on disk, so a report of a cut step decides at the looks' alpha; a resumed
    command of the same plan goes on from the looks made before."""
    runner = FakeRunner(tmp_path / "study")
    grid = override(Grid(datasets=["breastmnist"]), {"method": "none,flip"})
    execute_round, calls = constructed({"flip": (0.0, 0.05)})
    plan = Plan(max_seeds=9, step=2)

    class BudgetReached(Exception):
        pass

    def cut_after_first_look(g: Grid) -> None:
        if len(calls) == 1:
            raise BudgetReached()
        execute_round(runner, g)

    with pytest.raises(BudgetReached):
        run_until_decided(runner, grid, plan, cut_after_first_look)
    record = json.loads((runner.out / "sequential.json").read_text())
    assert record["reason"].startswith("in progress") and [lk["seeds"] for lk in record["looks"]] == [5]
    assert summary_json(runner.out)["settings"]["alpha"] == pytest.approx(0.05 / 3)  # the looks' alpha already
    notes = (Path(write_report(runner.out)[0]).parent / "report.md").read_text()
    assert "Still running: 1 look(s) so far, the last at 5 seeds." in notes and "It stopped" not in notes
    # where the cut round stands: the next look's seeds 5 and 6 of both rows
    assert "The look at 7 seeds waits for 4 more run(s) of the 2 rows stored (seeds 0-4 done in every one)." in notes
    expected = {"look_seeds": 7, "missing_runs": 4, "rows": 2, "curve_points": 0, "complete_seeds": 5}
    assert summary_json(runner.out)["round"] == expected
    # on another machine: a fresh store resuming from the export goes on from the export's looks
    export_runs(runner.out, tmp_path / "export")
    elsewhere = FakeRunner(tmp_path / "elsewhere" / "study")  # the same study's store on another machine
    import_export(tmp_path / "export", elsewhere.out)
    (elsewhere.out / "sequential.json").unlink()  # as if the import came after the plan was written
    moved = run_until_decided(
        elsewhere, grid, plan, lambda g: execute_round(elsewhere, g), resume_from=tmp_path / "export"
    )
    assert [lk["seeds"] for lk in moved["looks"]] == [5, 7, 9]
    # another study importing this one's runs (same plan) neither takes its plan file nor goes on from its looks
    other_study = FakeRunner(tmp_path / "other")
    import_export(tmp_path / "export", other_study.out)
    assert not (other_study.out / "sequential.json").exists()
    before = len(calls)
    own = run_until_decided(
        other_study, grid, plan, lambda g: execute_round(other_study, g), resume_from=tmp_path / "export"
    )
    assert calls[before] == list(range(5)) and [lk["seeds"] for lk in own["looks"]] == [5, 7, 9]  # its first look
    stop = run_until_decided(runner, grid, plan, lambda g: execute_round(runner, g))
    assert [lk["seeds"] for lk in stop["looks"]] == [5, 7, 9] and stop["seeds"] == 9 and calls[-1] == list(range(9))
    again = run_until_decided(runner, grid, plan, lambda g: execute_round(runner, g))  # a stopped study run again
    assert [lk["seeds"] for lk in again["looks"]] == [5, 7, 9]  # its last look made again, not added
    assert "looks so far: at seeds 5 (1 undecided), 7 (1 undecided), 9 (1 undecided); --max-seeds 9" in progress_line(
        stop
    )
    other = run_until_decided(runner, grid, Plan(max_seeds=11, step=2), lambda g: execute_round(runner, g))
    assert [lk["seeds"] for lk in other["looks"]] == [5, 7, 9, 11]  # another plan: its own looks only


def test_the_copy_of_a_studys_looks_with_more_of_them_wins_between_an_export_and_a_store(tmp_path):
    """An export and a run folder sync sequential.json both ways; the older copy (a --rows step begun before another
    machine's look, a store left from an earlier session) must neither overwrite the newer looks nor hide them."""
    runner = FakeRunner(tmp_path / "here" / "study")
    elsewhere = FakeRunner(tmp_path / "elsewhere" / "study")  # the same study's store on another machine
    grid = override(Grid(datasets=["breastmnist"]), {"method": "none,flip"})
    execute_round, calls = constructed({"flip": (0.0, 0.05)})
    plan, export = Plan(max_seeds=9, step=2), tmp_path / "export"

    def first_look_only(g: Grid) -> None:  # a step cut by its budget after its first look
        if calls:
            raise TimeoutError
        execute_round(runner, g)

    with pytest.raises(TimeoutError):
        run_until_decided(runner, grid, plan, first_look_only)
    export_runs(runner.out, export)

    def looks(path: Path) -> list[int]:
        return [lk["seeds"] for lk in json.loads((path / "sequential.json").read_text())["looks"]]

    import_export(export, elsewhere.out)
    run_until_decided(elsewhere, grid, plan, lambda g: execute_round(elsewhere, g), resume_from=export)
    export_runs(elsewhere.out, export)
    assert looks(elsewhere.out) == looks(export) == [5, 7, 9]
    export_runs(runner.out, export)  # the older copy (one look) is not written over the newer
    assert looks(runner.out) == [5] and looks(export) == [5, 7, 9]
    import_export(export, runner.out)  # and the store that had it takes the newer one
    assert looks(runner.out) == [5, 7, 9]


def test_seeds_auto_never_exceeds_max_seeds_and_says_why(tmp_path):
    runner = FakeRunner(tmp_path)
    grid = override(Grid(datasets=["breastmnist"]), {"method": "none,flip"})
    execute_round, calls = constructed({"flip": (0.0, 0.05)})  # noisy: never decided at margin 0.01
    stop = run_until_decided(runner, grid, Plan(max_seeds=7, step=2), lambda g: execute_round(runner, g))
    assert [len(c) for c in calls] == [5, 7] and stop["seeds"] == 7
    assert "--max-seeds 7 reached with 1 verdict(s) still undecided" in stop["reason"]
    with ResultStore(runner.store_path) as store:
        assert len(store.run_ids()) == 14  # 2 methods x 7 seeds, none beyond


def test_export_then_report_gives_the_same_numbers_and_resume_skips_the_exported_runs(tmp_path):
    src = tmp_path / "src"
    runner = FakeRunner(src)
    grid = override(Grid(datasets=["breastmnist"], seeds=[0, 1, 2, 3]), {"method": "none,flip,classic"})
    execute_round, _ = constructed({"flip": (0.02, 0.01), "classic": (-0.01, 0.02)})
    execute_round(runner, grid)
    info = export_runs(src, tmp_path / "export")
    assert info["runs"] == 12 and info["bytes_per_run"] < 5000
    assert not list((tmp_path / "export").rglob("*.sqlite")) and (tmp_path / "export" / "records.jsonl").exists()
    original, exported = summary_json(src), summary_json(tmp_path / "export")
    assert original["groups"] == exported["groups"]
    assert export_runs(src, tmp_path / "export")["added"] == 0  # merging into an export adds nothing twice
    fresh = FakeRunner(tmp_path / "fresh")
    more = override(grid, {"seed": "0,1,2,3,4"})
    assert import_export(tmp_path / "export", fresh.out) == 12
    pending = fresh.pending(expand(more))
    assert sorted((s.method, s.seed) for s in pending) == [("classic", 4), ("flip", 4), ("none", 4)]


def test_export_takes_the_figures_of_the_lowest_seed_that_has_them(tmp_path):
    """A run imported from an earlier export has no run folder; its row's figures come from the next seed."""
    src = tmp_path / "src"
    runner = FakeRunner(src)
    grid = override(Grid(datasets=["breastmnist"], seeds=[0, 1, 2]), {"method": "none"})
    execute_round, _ = constructed({})
    execute_round(runner, grid)
    ids = {spec.seed: runner.run_id(spec) for spec in expand(grid)}
    folder = src / "runs" / ids[1]
    folder.mkdir(parents=True)
    (folder / "synthetic_grid.png").write_bytes(b"png of seed 1")
    export_runs(src, tmp_path / "export")
    assert (tmp_path / "export" / "runs" / ids[1] / "synthetic_grid.png").read_bytes() == b"png of seed 1"
    assert not (tmp_path / "export" / "runs" / ids[0]).exists()


def test_export_refuses_a_folder_that_is_not_an_export(tmp_path):
    src = tmp_path / "src"
    runner = FakeRunner(src)
    execute_round, _ = constructed({})
    execute_round(runner, override(Grid(datasets=["breastmnist"], seeds=[0]), {}))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(SynthmedError, match="exists and is not a synthmed export"):
        export_runs(src, tmp_path / "taken")
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["notes.txt"]
    with pytest.raises(SynthmedError, match="is not a synthmed export"):
        import_export(tmp_path / "taken", tmp_path / "out")


def test_claims_are_exclusive_until_they_expire(tmp_path):
    with ResultStore(tmp_path / "results.sqlite") as store:
        assert store.claim("r1", "a", lease=60) and store.claim("r1", "a", lease=60)  # renewing one's own
        assert not store.claim("r1", "b", lease=60)
        assert store.claimed_by_others("b") == {"r1"}
        assert store.claim("r2", "b", lease=0.05)
        time.sleep(0.1)
        assert store.claim("r2", "a", lease=60)  # b stopped renewing: a takes over
        store.release("r1", "a")
        assert store.claim("r1", "b", lease=60)
        store.add({"run_id": "r3", "config": {}, "metrics": {}, "versions": {}})
        assert not store.claim("r3", "a", lease=60)  # a stored run is never claimed


def _pretrained(spec):
    """The same run with --pretrain-on-synthetic: another run on the same generator fit."""
    return dataclasses.replace(spec, synthesis=dataclasses.replace(spec.synthesis, pretrain_on_synthetic=True))


def test_schedule_starts_each_generator_first_and_its_reusers_a_seed_later():
    from synthmed.experiment.execute import schedule

    grid = override(Grid(datasets=["breastmnist"], seeds=[0, 1, 2]), {"method": "none,cvae", "generator_seed": 0})
    order = [(s.method, s.seed) for s in schedule(expand(grid))]
    assert order == [("cvae", 0), ("none", 0), ("none", 1), ("none", 2), ("cvae", 1), ("cvae", 2)]
    per_seed = override(Grid(datasets=["breastmnist"], seeds=[0, 1]), {"method": "none,cvae"})
    assert [(s.method, s.seed) for s in schedule(expand(per_seed))] == [
        ("cvae", 0),
        ("none", 0),
        ("cvae", 1),
        ("none", 1),
    ]
    # two rows on one fit per seed (ddpm and ddpm --pretrain-on-synthetic): the second a seed later, not at the end
    pretrained = [_pretrained(s) for s in expand(per_seed) if s.method == "cvae"]
    shared = expand(per_seed) + pretrained
    assert [(s.method, s.seed, s.synthesis.pretrain_on_synthetic) for s in schedule(shared)] == [
        ("cvae", 0, False),
        ("none", 0, False),
        ("cvae", 1, False),
        ("none", 1, False),
        ("cvae", 0, True),
        ("cvae", 1, True),
    ]
    three = override(Grid(datasets=["breastmnist"], seeds=[0, 1, 2]), {"method": "cvae"})
    pretrain = [_pretrained(s) for s in expand(three)]
    assert [(s.seed, s.synthesis.pretrain_on_synthetic) for s in schedule(expand(three) + pretrain)] == [
        (0, False),
        (1, False),
        (0, True),
        (2, False),
        (1, True),
        (2, True),
    ]
    # seed by seed, so a step cut by its time budget leaves whole, paired seeds
    plain = override(Grid(datasets=["breastmnist"], seeds=[3, 1]), {"method": "none,oversample,flip"})
    assert [(s.method, s.seed) for s in schedule(expand(plain))] == [
        ("none", 1),
        ("oversample", 1),
        ("flip", 1),
        ("none", 3),
        ("oversample", 3),
        ("flip", 3),
    ]
    # a seed whose none is already stored keeps its place in the order
    assert [(s.method, s.seed) for s in schedule(expand(plain)[2:])][:2] == [("oversample", 1), ("flip", 1)]


def test_default_workers_is_one_single_thread_worker_per_core_on_a_cpu(monkeypatch):
    from synthmed.experiment.execute import default_workers

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert default_workers("cpu", runs=4) == 2 and default_workers("cpu", runs=1) == 1
    assert default_workers("cpu", runs=4, cpus_per_run=2) == 1


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--seeds", "auto"], "--seeds auto needs --max-seeds N"),
        (["--max-seeds", "5"], "--max-seeds applies to --seeds auto"),
        (["--seeds", "auto", "--max-seeds", "5", "--margin", "-0.1"], "--margin -0.1 must be >= 0"),
        (["--resume-from", "{tmp}"], "is not a synthmed export"),
    ],
)
def test_bad_execution_options_are_one_line_errors(tmp_path, cli, args, phrase):
    out = tmp_path / "out"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = cli("run", "-d", "breastmnist", "--out", str(out), *args)
    assert result.returncode == 2 and phrase in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_report_margin_and_export_target_errors(tmp_path, cli):
    runner = FakeRunner(tmp_path / "src")
    execute_round, _ = constructed({})
    execute_round(runner, override(Grid(datasets=["breastmnist"], seeds=[0, 1]), {"method": "none,flip"}))
    bad = cli("report", str(tmp_path / "src"), "--margin=-1")
    assert bad.returncode == 2 and "--margin -1.0 must be >= 0" in bad.stderr
    (tmp_path / "file").write_text("x")
    taken = cli("export", str(tmp_path / "src"), str(tmp_path / "file"))
    assert taken.returncode == 2 and "is a file; give a folder" in taken.stderr
    done = cli("export", str(tmp_path / "src"), str(tmp_path / "exp"))
    assert done.returncode == 0 and "4 runs (4 new)" in done.stderr
    report = cli("report", str(tmp_path / "exp"), "--format", "json")
    assert report.returncode == 0 and json.loads(report.stdout)["groups"][0]["rows"][1]["method"] == "flip"


def _synthmed(args: list[str], root: Path, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "SYNTHMED_DATA": str(root), "SYNTHMED_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "synthmed", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _done_lines(stderr: str) -> list[str]:
    """The labels of the runs a process finished, from its log's timed result lines (``12:00:00 LABEL: test AUC``)."""
    return re.findall(r"^(?:\d\d:\d\d:\d\d )?(.+?): test AUC", stderr, flags=re.MULTILINE)


def _short_test_split(real_root: Path, folder: Path) -> Path:
    """A data root holding BreastMNIST with 20 test images per class (runs given it need --no-verify): scoring the
    official 156 at one thread took three quarters of a run on 16 training images."""
    folder.mkdir(parents=True)
    with np.load(real_root / "breastmnist.npz") as breast:
        arrays = {key: breast[key] for key in breast.files}
    keep = np.concatenate([np.flatnonzero(arrays["test_labels"][:, 0] == c)[:20] for c in (0, 1)])
    arrays["test_images"], arrays["test_labels"] = arrays["test_images"][keep], arrays["test_labels"][keep]
    np.savez(folder / "breastmnist.npz", **arrays)
    return folder


@pytest.mark.slow
def test_two_processes_on_one_folder_run_each_run_once(real_root, tmp_path):
    out = tmp_path / "shared"
    root = _short_test_split(real_root, tmp_path / "data")
    args = [
        "run",
        "-d",
        "breastmnist",
        "--no-verify",
        "--real-per-class",
        "8",
        "-m",
        "none,flip",
        "--seeds",
        "0,1,2",
        "--epochs",
        "1",
        "--workers",
        "1",
        "--cpus-per-run",
        "1",
        "--no-report",
        "--out",
        str(out),
    ]
    first = _synthmed(args, root)
    second = _synthmed(args, root)
    results = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, results
    lines = _done_lines(results[0][1]) + _done_lines(results[1][1])
    assert sorted(lines) == sorted(set(lines)) and len(lines) == 6  # every run done once, by one of them
    assert _done_lines(results[0][1]) and _done_lines(results[1][1])  # and both did some
    with sqlite3.connect(out / "results.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT run_id) FROM runs").fetchone() == (6, 6)
        assert conn.execute("SELECT COUNT(*) FROM claims").fetchone() == (0,)


def test_no_wait_for_others_ends_at_once_and_leaves_the_held_run_and_the_look_to_its_holder(real_root, tmp_path, cli):
    """A lane whose last run another lane holds sat idle for minutes waiting for it (and for the --seeds auto look
    the holder makes anyway); --no-wait-for-others ends it, the claim and the study's plan untouched."""
    from synthmed.spec import RunSpec

    out = tmp_path / "shared"
    spec = RunSpec("breastmnist", real_per_class=8, epochs=1)
    run_id = Runner(out, data_root=str(real_root)).run_id(spec)
    with ResultStore(out / "results.sqlite") as store:
        assert store.claim(run_id, "other-host:4242:busy", lease=600)
    grid = ["run", "-d", "breastmnist", "--real-per-class", "8", "-m", "none", "--epochs", "1", "--out", str(out)]
    started = time.time()
    lane = cli(*grid, "--seeds", "0", "--no-wait-for-others", "--no-report", root=real_root)
    assert lane.returncode == 0, lane.stderr
    assert "1 run(s) left to the processes that hold them" in lane.stdout + lane.stderr
    assert time.time() - started < 30
    with ResultStore(out / "results.sqlite") as store:
        assert store.run_ids() == set() and run_id in store.claimed_by_others("")
    auto = ["--seeds", "auto", "--min-seeds", "2", "--max-seeds", "4", "--workers", "1", "--no-wait-for-others"]
    lane = cli(*grid, *auto, root=real_root)  # runs seed 1, leaves seed 0 and the look at 2 seeds to its holder
    assert lane.returncode == 0, lane.stderr
    assert "look at 2 seeds" not in lane.stdout + lane.stderr
    assert json.loads((out / "sequential.json").read_text())["looks"] == []  # the plan recorded, no look made
    with ResultStore(out / "results.sqlite") as store:
        assert len(store.run_ids()) == 1


@pytest.mark.slow
def test_a_claim_that_is_not_renewed_is_taken_over_after_its_lease_expires(real_root, tmp_path, cli, monkeypatch):
    """Another machine's process claimed the run and went silent: this one waits for the lease, then runs it (in this
    process: a new interpreter took longer to start than the lease lasts)."""
    from synthmed.spec import RunSpec

    out = tmp_path / "shared"
    spec = RunSpec("breastmnist", real_per_class=8, epochs=1)
    run_id = Runner(out, data_root=str(real_root)).run_id(spec)
    with ResultStore(out / "results.sqlite") as store:
        assert store.claim(run_id, "other-host:4242:gone", lease=4)
    started = time.time()
    monkeypatch.setenv("SYNTHMED_LEASE_SECONDS", "4")
    args = ["run", "-d", "breastmnist", "--real-per-class", "8", "-m", "none", "--seeds", "0", "--epochs", "1"]
    taker = cli(*args, "--no-report", "--out", str(out), root=real_root)
    assert taker.returncode == 0, taker.stderr
    assert _done_lines(taker.stderr) == ["breastmnist lowdata 8/class none seed 0"] and time.time() - started > 3.5
    assert "waiting: 1 run(s) held by other processes (breastmnist lowdata 8/class none seed 0)" in taker.stderr


@pytest.mark.slow
def test_a_killed_drivers_claims_are_dropped_at_once_on_its_machine(real_root, tmp_path, cli):
    import torch

    out = tmp_path / "shared"
    args = [
        "run",
        "-d",
        "breastmnist",
        "--real-per-class",
        "20",
        "-m",
        "none",
        "--seeds",
        "0",
        "--epochs",
        "3",  # the holder's claim lasts its run (3 epochs: about 7 s here, polled every 0.2 s); the taker runs them all
        "--workers",
        "1",
        "--cpus-per-run",
        "1",
        "--no-report",
        "--out",
        str(out),
    ]
    holder = _synthmed(args, real_root)  # the default lease: 300 s
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / "results.sqlite").exists():
            with sqlite3.connect(out / "results.sqlite", timeout=30) as conn:
                try:
                    if conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0]:
                        break
                except sqlite3.OperationalError:  # being created
                    pass
        time.sleep(0.2)
    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    threads, started = torch.get_num_threads(), time.time()
    try:  # in this process (no interpreter and torch start-up); --cpus-per-run sets its threads
        taker = cli(*args, root=real_root)
    finally:
        torch.set_num_threads(threads)
    assert taker.returncode == 0, taker.stderr
    assert _done_lines(taker.stderr) == ["breastmnist lowdata 20/class none seed 0"]
    assert "held by other processes" not in taker.stderr and time.time() - started < 240  # far less than the lease


SLEEPY_WORKER = """
import os, time
from pathlib import Path

def compute(settings, spec, threads, events=None):
    Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
    time.sleep(120)
    return "ok", {}
"""

POOL_DRIVER = """
from types import SimpleNamespace
from synthmed.experiment.backends import run_on_pool
import sleepy
run_on_pool(
    SimpleNamespace(settings=dict),
    ["a run"],
    lambda *result: None,
    workers=1,
    compute=sleepy.compute,
    on_progress=lambda *event: None,  # as the CLI does: progress through a queue, whose manager is a process too
)
"""


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by a container's init) counts as gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _parent(stat: Path) -> int | None:
    """The parent pid in a /proc/PID/stat file (None when the process is gone)."""
    try:
        return int(stat.read_text().split(")")[-1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_pool_workers_exit_when_their_driver_is_killed(tmp_path):
    (tmp_path / "sleepy.py").write_text(SLEEPY_WORKER)
    pid_file = tmp_path / "worker.pid"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "PID_FILE": str(pid_file)}
    driver = subprocess.Popen([sys.executable, "-c", POOL_DRIVER], env=env)
    deadline = time.time() + 60
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    assert _alive(worker)
    children = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat") if _parent(p) == driver.pid]
    assert worker in children and len(children) >= 3  # the worker, the progress queue's manager, a resource tracker
    driver.send_signal(signal.SIGKILL)  # no chance to shut its pool down
    driver.wait()
    deadline = time.time() + 20
    while any(_alive(pid) for pid in children) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(worker), "a pool worker outlived its killed driver"
    assert not any(_alive(pid) for pid in children), "a process of the pool outlived its killed driver"


def test_a_run_that_fails_in_a_pool_worker_comes_back_as_its_message(tmp_path):
    """A pool worker returns ("failed", message) for a run that raises a SynthmedError (a diverging generator, a
    missing file), and the driver records it as in its own process. Called here directly: the CLI's grid with a
    failing generator runs in one process, and a pool's spawned workers would each import torch."""
    import torch

    from synthmed.experiment.backends import remote_compute
    from synthmed.spec import RunSpec

    runner = Runner(tmp_path / "out", data_root=str(tmp_path / "empty"), download=False)
    sent: list[tuple] = []
    events = SimpleNamespace(put=sent.append)
    status, message = remote_compute(runner.settings(), RunSpec("breastmnist"), torch.get_num_threads(), events)
    assert status == "failed" and "breastmnist.npz not found" in str(message)
    assert [kind for kind, *_ in sent] == ["started"]


def test_a_rerun_sweeps_the_temporaries_a_killed_attempt_left_in_its_folder(tmp_path):
    """SIGKILL between an atomic write's write and rename leaves ``.NAME.xxxx.tmp``; the next attempt at the same
    run (which holds its claim, so no live writer shares the folder) removes it."""
    from conftest import write_breast_like

    from synthmed.spec import RunSpec

    write_breast_like(tmp_path / "data")
    runner = Runner(tmp_path / "out", data_root=str(tmp_path / "data"), verify=False, device="cpu")
    spec = RunSpec("breastmnist", protocol="full", method="none", epochs=1, precision="fp32")
    run_dir = tmp_path / "out" / "runs" / runner.run_id(spec)
    run_dir.mkdir(parents=True)
    (run_dir / ".history.json.killed.tmp").write_text("{")
    runner.run(spec)
    assert (run_dir / "history.json").exists() and not list(run_dir.rglob("*.tmp"))


def test_a_step_writing_to_a_log_file_prints_timed_progress_lines(monkeypatch):
    """No terminal, no bars: a run's start, its stages, an epoch line at most every LOG_EVERY seconds, and what it
    waits for once (a lane's log was silent for minutes while it waited on another lane's run)."""
    import io
    import re

    from rich.console import Console

    from synthmed.cli import render
    from synthmed.experiment.execute import Event

    log = io.StringIO()
    view = render.ProgressView(Console(file=log, width=200), "runs/x/results.sqlite")
    clock = iter([0.0, 10.0, 70.0])
    monkeypatch.setattr(render, "clock", lambda: next(clock))
    with view:
        view(Event("planned", total=1, todo=1, where="in this process"))
        view(Event("started", "breastmnist ddpm seed 3", total=20))
        view(Event("status", "breastmnist ddpm seed 3", message="fitting ddpm's networks"))
        for _ in range(3):  # at 0 s (printed), 10 s (too soon), 70 s (printed)
            view(Event("epoch", "breastmnist ddpm seed 3", row={"val_auc": 0.9}))
        record = {"test_auc": 0.91, "test_acc": 0.8, "best_epoch": 3, "epochs_run": 20, "total_time": 1234.0}
        view(Event("finished", "breastmnist ddpm seed 3", record=record))
        for _ in range(2):  # polled again and again: said once
            view(Event("waiting", message="1 run(s) held by other processes (breastmnist none seed 4)"))
    lines = re.findall(r"^\d\d:\d\d:\d\d (.*)$", log.getvalue(), flags=re.MULTILINE)
    assert lines == [
        "started breastmnist ddpm seed 3",
        "breastmnist ddpm seed 3: fitting ddpm's networks",
        "breastmnist ddpm seed 3: epoch 1 of 20, val AUC 0.900",
        "breastmnist ddpm seed 3: epoch 3 of 20, val AUC 0.900",
        "breastmnist ddpm seed 3: test AUC 0.910 ACC 0.800 (epoch 3 of 20, 1234 s)",  # when it ended
        "waiting: 1 run(s) held by other processes (breastmnist none seed 4)",
    ]
    terminal = io.StringIO()
    with render.ProgressView(Console(file=terminal, force_terminal=True), "s") as bars:
        bars(Event("started", "a run", total=2))
    assert "started a run" not in terminal.getvalue()


def test_a_looks_log_line_names_what_it_decided():
    """The look at 18 seeds of PneumoniaMNIST's study decided 2 of 11 comparisons; its line named 3 undecided ones in
    a parenthesis after "2 decided", as if they were the decided ones."""
    from synthmed.experiment.sequential import Look, look_line

    line = look_line(Look(18, ["a vs none", "b vs none", "c vs none", "d vs none"], ["e vs none", "f vs none"]))
    assert (
        line == "look at 18 seeds: 4 verdict(s) undecided (a vs none; b vs none; c vs none...), "
        "2 decided (e vs none; f vs none)"
    )
    assert look_line(Look(12, ["a vs none"], None)) == "look at 12 seeds: 1 verdict(s) undecided (a vs none)"


def test_a_run_label_tells_apart_runs_that_differ_a_curve_point_a_protocol_setting_and_pretraining():
    from synthmed.experiment.execute import run_label
    from synthmed.spec import RunSpec, SyntheticLevers

    assert run_label(RunSpec(dataset="breastmnist", method="cvae", seed=2)) == "breastmnist cvae seed 2"
    curve_point = RunSpec(dataset="pneumoniamnist", method="none", curve_per_class=300, seed=18)
    assert run_label(curve_point) == "pneumoniamnist none 300/class seed 18"
    smaller_subset = RunSpec(dataset="pneumoniamnist", method="none", real_per_class=50, seed=18)
    assert run_label(smaller_subset) == "pneumoniamnist lowdata 50/class none seed 18"
    pretrained = RunSpec(dataset="breastmnist", method="ddpm", synthesis=SyntheticLevers(pretrain_on_synthetic=True))
    assert run_label(pretrained) == "breastmnist ddpm pretrain seed 0"
