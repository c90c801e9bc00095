"""The report: statistics over seeds, paired differences, published numbers, files written."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthmed.report import write_report
from synthmed.report.model import Document, Section
from synthmed.report.render import page, table_markdown
from synthmed.report.stats import interval
from synthmed.report.summary import Settings, fraction_tables, results_table, summarise, verdict_bullets
from synthmed.store import ResultStore


def record(method: str, seed: int, auc: float, acc: float, protocol: str = "lowdata", **config) -> dict:
    history = [{"epoch": 1, "val_auc": 0.5, "val_loss": 1.0}, {"epoch": 2, "val_auc": auc, "val_loss": 0.5}]
    return {
        "run_id": f"{method}-{seed}-{protocol}-{config}",
        "dataset": "breastmnist",
        "protocol": protocol,
        "method": method,
        "classifier": "resnet18",
        "recipe": "medmnist",
        "seed": seed,
        "config": {
            "method": method,
            "protocol": protocol,
            "classifier": "resnet18",
            "real_per_class": None,
            "size": 28,
            **config,
        },
        "val_auc": auc,
        "val_acc": acc,
        "test_auc": auc,
        "test_acc": acc,
        "test_selected_auc": auc + 0.02,
        "test_selected_acc": acc + 0.03,
        "best_epoch": 2,
        "epochs_run": 2,
        "train_time": 1.0,
        "total_time": 2.0,
        "n_train": 546,
        "n_val": 78,
        "n_test": 156,
        "device": "cpu",
        "precision": "fp32",
        "metrics": {"history": history},
        "versions": {"torch": "x", "cpus": 2, "cpu": "Test CPU", "gpu": "none", "torch_threads": 1},
        "created": f"2026-01-0{seed + 1}",
    }


def test_interval_matches_t_distribution():
    mean, std, half = interval([0.8, 0.9, 1.0])
    assert mean == pytest.approx(0.9) and std == pytest.approx(0.1)
    assert half == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)
    assert math.isnan(interval([0.7])[2])


def test_paired_difference_and_its_verdict():
    records = [record("none", s, a, 0.8) for s, a in enumerate([0.90, 0.85, 0.88])]
    records += [record("flip", s, a, 0.8) for s, a in enumerate([0.92, 0.87, 0.90])]  # +0.02 on every seed
    records += [record("classic", s, a, 0.8) for s, a in enumerate([0.95, 0.80, 0.89])]
    rows = {r["method"]: r for r in summarise(records)}
    flip = rows["flip"]["comparisons"]["none"]
    assert flip.mean == pytest.approx(0.02) and flip.t_low == pytest.approx(0.02) and flip.verdict == "better"
    assert rows["classic"]["comparisons"]["none"].verdict == "undecided"
    assert "none" not in rows["none"].get("comparisons", {})  # the baseline is not compared with itself
    weighted = [record("none", s, a, 0.8, class_weight="balanced") for s, a in enumerate([0.89, 0.84, 0.87])]
    rows = {r["method"]: r for r in summarise(records + weighted)}
    assert rows["none class-weight balanced"]["comparisons"]["none"].mean == pytest.approx(-0.01)  # a lever of none
    assert rows["none"]["published"][1] == (0.872, 0.807)
    assert rows["flip"]["published"] is None


def grid_of(diffs: dict[str, list[float]], base: list[float], **config) -> list[dict]:
    records = [record("none", s, a, 0.8) for s, a in enumerate(base)]
    for method, ds in diffs.items():
        records += [record(method, s, a + d, 0.8, **config) for s, (a, d) in enumerate(zip(base, ds))]
    return records


def test_verdicts_better_worse_equivalent_undecided_with_holm_across_the_group():
    rng = np.random.default_rng(0)
    base = list(0.85 + 0.02 * rng.standard_normal(10))
    diffs = {
        "flip": list(0.05 + 0.005 * rng.standard_normal(10)),  # clearly better
        "classic": list(-0.04 + 0.005 * rng.standard_normal(10)),  # clearly worse
        "ae": list(0.0005 * rng.standard_normal(10)),  # equivalent within 0.01
        "cvae": [0.03, -0.02, 0.01, -0.01, 0.04, -0.03, 0.0, 0.02, -0.01, 0.01],
    }  # undecided
    rows = {r["method"]: r for r in summarise(grid_of(diffs, base))}
    verdicts = {m: rows[m]["comparisons"]["none"].verdict for m in diffs}
    assert verdicts == {"flip": "better", "classic": "worse", "ae": "equivalent", "cvae": "undecided"}
    p = [rows[m]["comparisons"]["none"].p_value for m in diffs]
    from synthmed.report.stats import holm

    assert [rows[m]["comparisons"]["none"].p_holm for m in diffs] == pytest.approx(holm(p))
    bullets = verdict_bullets(list(rows.values()), Settings())
    assert any(b.startswith("ae is equivalent to none within ±0.01 AUC (10 seeds)") for b in bullets)
    assert all("Holm-adjusted p" in b for b in bullets)


def test_generative_rows_are_also_compared_with_oversample_at_the_same_policy():
    base = [0.80, 0.82, 0.84]
    records = grid_of({"oversample": [0.01, 0.01, 0.01]}, base, synthesis={"balance": True})
    records += grid_of({"dcgan": [0.03, 0.03, 0.04]}, base, synthesis={"balance": True})[3:]
    records += grid_of({"oversample": [-0.05, -0.05, -0.05]}, base)[3:]  # another policy: not the reference
    # a lever about the generator (its checkpoint chosen by validation FID) leaves the policy, and the control, alone
    selected = {"balance": True, "select_generator": "fid", "track_fid_every": 10}
    records += grid_of({"dcgan": [0.02, 0.02, 0.02]}, base, synthesis=selected)[3:]
    rows = {r["method"]: r for r in summarise(records)}
    dcgan = rows["dcgan balance"]["comparisons"]
    assert dcgan["none"].mean == pytest.approx(0.0333, abs=1e-3)
    assert dcgan["oversample"].reference == "oversample balance"
    assert dcgan["oversample"].mean == pytest.approx(0.0233, abs=1e-3)
    fid_selected = next(r for r in rows.values() if "select fid" in r["method"])["comparisons"]["oversample"]
    assert fid_selected.reference == "oversample balance" and fid_selected.mean == pytest.approx(0.01)
    assert "oversample" not in rows["none"].get("comparisons", {})  # the mirror of oversample vs none, not repeated
    table = results_table([rows[m] for m in ("none", "dcgan balance")], settings=Settings())
    assert any(c.startswith("Δ AUC vs oversample") for c in table.columns)
    other = summarise(records, Settings(reference="flip"))
    assert "oversample" not in next(r for r in other if r["method"] == "dcgan balance")["comparisons"]


def test_published_numbers_only_for_the_papers_setting():
    rows = summarise([record("none", 0, 0.9, 0.8, real_per_class=50), record("none", 0, 0.9, 0.8, protocol="full")])
    labels = {r["protocol"]: r["published"] for r in rows}
    assert labels["lowdata 50/class"] is None
    assert labels["full"][1] == (0.901, 0.863)


def test_fraction_table_has_a_row_per_fraction_and_a_column_per_method():
    records = [
        record(m, s, auc + bump, 0.8, protocol="fraction", fraction=f)
        for f, auc in ((0.05, 0.70), (0.5, 0.90))
        for s in range(3)
        for m, bump in (("none", 0.01 * s), ("dcgan", 0.01 * s + 0.05))
    ]
    records.append(record("flip", 0, 0.6, 0.8, protocol="fraction", fraction=0.5))
    # fewer generator epochs at the larger fraction: the same column, the cell says so
    records += [
        record("sngan", s, 0.9, 0.8, protocol="fraction", fraction=f, method_params=p)
        for f, p in ((0.05, {}), (0.5, {"epochs": 20}))
        for s in range(2)
    ]
    tables = fraction_tables(summarise(records))
    md = table_markdown(tables[0])
    assert md[2] == "| training share | none | dcgan | sngan | flip |"
    assert md[4] == "| fraction 0.05 | 0.710 ± 0.010 (n=3) | 0.760 ± 0.010* (n=3) | 0.900 ± 0.000* (n=2) |  |"
    assert md[5] == (
        "| fraction 0.5 | 0.910 ± 0.010 (n=3) | 0.960 ± 0.010* (n=3) | 0.900 ± 0.000 (n=2, epochs=20) | 0.600 (n=1) |"
    )
    assert "<th>dcgan</th>" in page(Document("t", sections=[Section("s", list(tables))]))
    assert fraction_tables(summarise([r for r in records if r["config"]["fraction"] == 0.5])) == []


def test_header_counts_the_precisions_of_a_study_resumed_on_another_cpu():
    from synthmed.report.summary import header

    runs = [record("none", s, 0.9, 0.8) for s in range(3)]
    assert "device cpu (fp32)" in header(runs)[0]
    runs[0]["precision"] = "bf16"
    runs[2]["versions"]["cpu_capability"] = "AVX2"  # the newest run's hardware is the one shown
    first, hardware, _ = header(runs)
    assert "device cpu (bf16) × 1, cpu (fp32) × 2" in first and "CPU 2 × Test CPU (AVX2 kernels)" in hardware


def test_a_group_of_more_than_ten_methods_is_drawn(tmp_path):
    """tab10 has ten colours; a ratio sweep beside the controls makes more rows than that (the PneumoniaMNIST
    low-data study has 13)."""
    from synthmed.report.figures import group_plot, method_colours

    methods = ["none", *[f"m{i}" for i in range(12)]]
    colours = method_colours(methods)
    assert set(colours) == set(methods) and len(set(colours.values())) == len(methods)
    runs = [record(m, s, 0.8 + 0.01 * s, 0.7) for m in methods for s in range(2)]
    assert group_plot(runs, "thirteen methods").startswith(b"\x89PNG")


def test_report_files(tmp_path):
    with ResultStore(tmp_path / "results.sqlite") as store:
        for s, a in enumerate([0.90, 0.85, 0.88]):
            store.add(record("none", s, a, 0.8))
            store.add(record("flip", s, a + 0.01, 0.81))
    paths = write_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| none | 0,1,2 | 0.877 | 0.877 ± 0.025" in md  # mean validation AUC, then test AUC
    assert "+0.010 [+0.010, +0.010] better" in md
    assert "flip is better than none: +0.010 AUC [95 % CI +0.010, +0.010] (3 seeds)" in md
    assert "0.897 / 0.830" in md  # the optimistic test-selected column
    assert "6 runs · total compute 0.00 h (0.2 min) · device cpu (fp32)" in md
    assert "hardware: CPU 2 × Test CPU, GPU none, 1 torch threads per run" in md and "versions: torch x" in md
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()
    assert all(p.exists() for p in paths)
    import csv

    runs = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert len(runs) == 6 and {r["method"] for r in runs} == {"none", "flip"}
    assert float(next(r for r in runs if r["method"] == "flip" and r["seed"] == "1")["test_auc"]) == 0.86
    summary = {r["method"]: r for r in csv.DictReader((tmp_path / "summary.csv").open())}
    assert summary["none"]["seeds"] == "0 1 2"
    assert float(summary["none"]["test_auc_mean"]) == pytest.approx(0.8767, abs=1e-4)
    assert float(summary["flip"]["vs_none_mean"]) == pytest.approx(0.01)
    assert summary["flip"]["vs_none_verdict"] == "better"
    assert summary["none"]["vs_none_mean"] == ""  # no difference of the baseline to itself


def test_fid_table_shows_the_validation_fid_and_the_checkpoint_each_seed_sampled():
    from synthmed.report.summary import fid_over_epochs_table

    def history(kept: int) -> list[dict]:
        return [
            {"epoch": e, "fid": 100.0 / e, "kid": 1.0 / e, "val_fid": 50.0 / e, "selected": e == kept} for e in (10, 20)
        ]

    rows = [
        {"method": "dcgan select fid", "synthetic": {"fid_over_epochs": [history(10), history(20)]}},
        {"method": "dcgan", "synthetic": {"fid_over_epochs": [[{"epoch": 10, "fid": 9.0, "kid": 0.1}]]}},
    ]
    table = fid_over_epochs_table(rows)
    assert table.columns == ["method", "epoch 10", "epoch 20", "sampled checkpoint (per seed)"]
    assert table.rows[0] == ["dcgan select fid", "10.00 / 0.1000 · val 5.00", "5.00 / 0.0500 · val 2.50", "10, 20"]
    assert table.rows[1] == ["dcgan", "9.00 / 0.1000", "", "the last"]
