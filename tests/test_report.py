"""The report: statistics over seeds, paired differences, published numbers, files written."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthmed.report import write_report
from synthmed.report.model import Document, Section
from synthmed.report.render import page, table_markdown
from synthmed.report.sections import header
from synthmed.report.stats import interval
from synthmed.report.summary import Settings, summarise
from synthmed.report.tables import fraction_tables, results_table, verdict_bullets
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
    records = [record("none", s, a, 0.8) for s, a in enumerate([0.90, 0.85, 0.88, 0.86, 0.89])]
    records += [record("flip", s, a, 0.8) for s, a in enumerate([0.92, 0.87, 0.90, 0.88, 0.91])]  # +0.02 on every seed
    records += [record("classic", s, a, 0.8) for s, a in enumerate([0.95, 0.80, 0.89, 0.90, 0.85])]
    rows = {r["method"]: r for r in summarise(records)}
    flip = rows["flip"]["comparisons"]["none"]
    assert flip.mean == pytest.approx(0.02) and flip.t_low == pytest.approx(0.02) and flip.verdict == "better"
    assert rows["classic"]["comparisons"]["none"].verdict == "undecided"
    assert "none" not in rows["none"].get("comparisons", {})  # the baseline is not compared with itself
    weighted = [record("none", s, a, 0.8, class_weight="balanced") for s, a in enumerate([0.89, 0.84, 0.87, 0.85])]
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


def test_a_third_reference_adds_a_comparison_and_keeps_the_copies():
    """``--reference flip`` (for a study, ``pseudo-label``): every row meets none, the copies and flip, each once
    (none and the copies are not compared with flip again: their comparisons with it are flip's), all in one Holm
    family; the table has a Δ column per reference."""
    base = [0.80, 0.82, 0.84, 0.83, 0.81]
    records = grid_of({"oversample": [0.01] * 5, "flip": [0.02, 0.01, 0.02, 0.03, 0.02]}, base)
    records += grid_of({"dcgan": [0.03, 0.04, 0.03, 0.05, 0.04]}, base)[5:]
    settings = Settings(reference="flip")
    rows = {r["method"]: r for r in summarise(records, settings)}
    assert set(rows["dcgan"]["comparisons"]) == {"none", "oversample", "flip"}
    assert rows["dcgan"]["comparisons"]["flip"].mean == pytest.approx(0.018)
    assert set(rows["flip"]["comparisons"]) == {"none", "oversample"}
    assert set(rows["oversample"]["comparisons"]) == {"none"} and "comparisons" not in rows["none"]
    assert {c.family for r in rows.values() for c in (r.get("comparisons") or {}).values()} == {6}
    columns = results_table(list(rows.values()), settings=settings).columns
    assert [c.split(" [")[0] for c in columns if c.startswith("Δ AUC")] == [
        "Δ AUC vs none",
        "Δ AUC vs oversample",
        "Δ AUC vs flip",
    ]


def test_published_numbers_only_for_the_papers_setting():
    rows = summarise([record("none", 0, 0.9, 0.8, real_per_class=50), record("none", 0, 0.9, 0.8, protocol="full")])
    labels = {r["protocol"]: r["published"] for r in rows}
    assert labels["lowdata 50/class"] is None
    assert labels["full"][1] == (0.901, 0.863)


def test_fraction_table_has_a_row_per_fraction_and_a_column_per_method():
    records = [
        record(m, s, auc + bump, 0.8, protocol="fraction", fraction=f)
        for f, auc in ((0.05, 0.70), (0.5, 0.90))
        for s in range(5)
        for m, bump in (("none", 0.01 * s), ("dcgan", 0.01 * s + 0.05))
    ]
    records.append(record("flip", 0, 0.6, 0.8, protocol="fraction", fraction=0.5))
    # fewer generator epochs at the larger fraction: the same column, the cell says so
    records += [
        record("sngan", s, 0.9, 0.8, protocol="fraction", fraction=f, method_params=p)
        for f, p in ((0.05, {}), (0.5, {"epochs": 20}))
        for s in range(5)
    ]
    tables = fraction_tables(summarise(records))
    md = table_markdown(tables[0])
    assert md[2] == "| training share | none | dcgan | sngan | flip |"
    assert md[4] == "| fraction 0.05 | 0.720 ± 0.016 (n=5) | 0.770 ± 0.016* (n=5) | 0.900 ± 0.000* (n=5) |  |"
    assert md[5] == (
        "| fraction 0.5 | 0.920 ± 0.016 (n=5) | 0.970 ± 0.016* (n=5) | 0.900 ± 0.000 (n=5, epochs=20) | 0.600 (n=1) |"
    )
    assert "<th>dcgan</th>" in page(Document("t", sections=[Section("s", list(tables))]))
    assert fraction_tables(summarise([r for r in records if r["config"]["fraction"] == 0.5])) == []


def test_header_counts_the_precisions_of_a_study_resumed_on_another_cpu():
    from synthmed.report.sections import header

    runs = [record("none", s, 0.9, 0.8) for s in range(3)]
    assert "device cpu (fp32)" in header(runs)[0]
    runs[0]["precision"] = "bf16"
    runs[2]["versions"]["cpu_capability"] = "AVX2"  # the newest run's hardware is the one shown
    first, hardware, _ = header(runs)
    assert "device cpu (bf16) × 1, cpu (fp32) × 2" in first and "CPU 2 × Test CPU (AVX2 kernels)" in hardware
    runs[2]["versions"]["bf16_kernels"] = "fp32"  # bf16 operands on fp32 kernels (no oneDNN bf16 on AVX2)
    assert "(AVX2 kernels), bf16 convolutions and matrix products on fp32 kernels" in header(runs)[1]


def test_the_header_says_whether_runs_sharing_a_fit_got_the_same_weights():
    """A teacher-labelled ddpm row reuses the plain row's fit by its cache key; made again on another machine the
    fit may differ, and the header says so. TSynD's networks (``metrics.generator_fit``) are checked alike."""
    from synthmed.report.sections import shared_fits_line

    def used(method: str, seed: int, key: str, digest: str, field: str = "synthetic") -> dict:
        run = record(method, seed, 0.9, 0.8)
        fit = (
            {"generator_key": key, "generator_digest": digest}
            if field == "synthetic"
            else {"key": key, "digest": digest}
        )
        run["metrics"] = {**run.get("metrics", {}), field: fit}
        return run

    runs = [used("ddpm", 0, "ddpm_a", "1"), used("ddpm teacher", 0, "ddpm_a", "1"), used("ddpm", 1, "ddpm_b", "2")]
    runs += [
        used("tsynd", 0, "tsynd_a", "3", "generator_fit"),
        used("random-latent", 0, "tsynd_a", "3", "generator_fit"),
    ]
    assert shared_fits_line(runs) == [
        "generator fits: 2 served 4 runs, each with one set of weights in all its runs (weights digest)"
    ]
    assert shared_fits_line(runs) == header(runs)[-1:]
    runs.append(used("ddpm teacher", 1, "ddpm_b", "9"))  # refitted elsewhere: other weights
    assert shared_fits_line(runs) == [
        "generator fits made again with other weights (the runs that share them used different fits): "
        "ddpm_b (2 versions)"
    ]
    assert shared_fits_line([record("none", 0, 0.9, 0.8)]) == []  # nothing shared: nothing said
    older = record("ddpm", 1, 0.9, 0.8)  # imported from an export made before digests were kept
    older["metrics"] = {"synthetic": {"generator_cached": False, "generator_seconds": 1300.0}}
    assert shared_fits_line([*runs[:2], older]) == [
        "generator fits: 1 served 2 runs, each with one set of weights in all its runs (weights digest); 1 runs that "
        "used a fit recorded no digest (made before digests were kept): not checked"
    ]


def test_a_group_of_more_than_ten_methods_is_drawn(tmp_path):
    """tab10 has ten colours; a ratio sweep beside the controls makes more rows than that (the PneumoniaMNIST
    low-data study has 13)."""
    from synthmed.report.figures import group_plot, method_colours

    methods = ["none", *[f"m{i}" for i in range(12)]]
    colours = method_colours(methods)
    assert set(colours) == set(methods) and len(set(colours.values())) == len(methods)
    runs = [record(m, s, 0.8 + 0.01 * s, 0.7) for m in methods for s in range(2)]
    assert group_plot(runs, "thirteen methods").startswith(b"\x89PNG")


def test_a_group_with_long_row_labels_keeps_its_axes():
    """A TSynD row's label with its levers, rotated unwrapped, took the whole figure: matplotlib collapsed the
    axes to nothing and warned. Labels are wrapped and the figure grows by them."""
    import warnings

    from synthmed.report.figures import group_plot

    long = {"method_params": {"target": "mutual_information", "latent_steps": 20, "step_size": 0.05}}
    runs = [
        record(m, s, 0.8 + 0.01 * s, 0.7, **(long if m != "none" else {})) for m in ("none", "tsynd") for s in (0, 1)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert group_plot(runs, "a long label").startswith(b"\x89PNG")


def test_header_gives_the_wall_time_with_a_run_going_beside_the_compute():
    """Two overlapping runs (10 minutes each, 5 apart) and one an hour later: 15 + 1 minutes of wall time."""

    def timed(seed: int, created: str, seconds: float) -> dict:
        return {**record("none", seed, 0.9, 0.8), "created": created, "total_time": seconds}

    runs = [
        timed(0, "2026-01-01T00:10:00+00:00", 600),
        timed(1, "2026-01-01T00:15:00+00:00", 600),
        timed(2, "2026-01-01T01:00:00+00:00", 60),
    ]
    assert header(runs)[0].startswith("3 runs · total compute 0.35 h (21.0 min) in 0.27 h of wall time · device")
    assert "wall time" not in header([record("none", 0, 0.9, 0.8)])[0]  # a date without a time of day: no claim


def test_report_files(tmp_path):
    with ResultStore(tmp_path / "results.sqlite") as store:
        for s, a in enumerate([0.90, 0.85, 0.88, 0.86, 0.89]):
            store.add(record("none", s, a, 0.8))
            store.add(record("flip", s, a + 0.01, 0.81))
    paths = write_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| none | 0,1,2,3,4 | 0.876 | 0.876 ± 0.021" in md  # mean validation AUC, then test AUC
    assert "+0.010 [+0.010, +0.010] better (p 0)" in md  # a family of one: its p
    assert "flip is better than none: +0.010 AUC [95 % CI +0.010, +0.010] (5 seeds)" in md
    assert "0.896 / 0.830" in md  # the optimistic test-selected column
    assert "10 runs · total compute 0.01 h (0.3 min) · device cpu (fp32)" in md
    assert "hardware: CPU 2 × Test CPU, GPU none, 1 torch threads per run" in md and "versions: torch x" in md
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()
    assert all(p.exists() for p in paths)
    import csv

    runs = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert len(runs) == 10 and {r["method"] for r in runs} == {"none", "flip"}
    assert float(next(r for r in runs if r["method"] == "flip" and r["seed"] == "1")["test_auc"]) == 0.86
    summary = {r["method"]: r for r in csv.DictReader((tmp_path / "summary.csv").open())}
    assert summary["none"]["seeds"] == "0 1 2 3 4"
    assert float(summary["none"]["test_auc_mean"]) == pytest.approx(0.876, abs=1e-4)
    assert float(summary["flip"]["vs_none_mean"]) == pytest.approx(0.01)
    assert summary["flip"]["vs_none_verdict"] == "better"
    assert summary["none"]["vs_none_mean"] == ""  # no difference of the baseline to itself


def test_fid_table_shows_the_validation_fid_and_the_checkpoint_each_seed_sampled():
    from synthmed.report.tables import fid_over_epochs_table

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


# --- rows that hold up: one run per seed, every result field in the key, pairs on one platform ----------------------


def test_a_row_with_a_repeated_seed_is_refused_naming_both_runs():
    from synthmed.errors import SynthmedError

    records = [record("flip", s, 0.9, 0.8) for s in range(5)]
    twin = record("flip", 2, 0.91, 0.8, robustness=True)  # robustness does not change a result: the same row
    with pytest.raises(SynthmedError) as info:
        summarise([*records, twin])
    message = str(info.value)
    assert "\n" not in message and records[2]["run_id"] in message and twin["run_id"] in message


def test_every_field_that_changes_a_result_splits_rows_and_names_them():
    records = [record("none", s, 0.85 + 0.01 * s, 0.8) for s in range(6)]
    records += [record("flip", s, 0.86 + 0.01 * s, 0.8, epochs=20) for s in range(3)]
    records += [record("flip", s, 0.87 + 0.01 * s, 0.8, epochs=100) for s in range(3)]
    rows = {r["method"]: r for r in summarise(records)}
    assert {"flip epochs 20", "flip epochs 100"} <= set(rows) and rows["flip epochs 20"]["n"] == 3
    assert all(not rows[m]["comparisons"]["none"].decided for m in ("flip epochs 20", "flip epochs 100"))
    # fidelity_epochs shapes a result only where its reference classifier filters or selects
    audit = [record("dcgan", s, 0.9, 0.8, synthesis={"fidelity_epochs": e}) for s, e in enumerate([20, 30])]
    assert len([r for r in summarise(audit) if r["base_method"] == "dcgan"]) == 1
    chosen = {"select_generator": "fid", "track_fid_every": 10}
    picky = [record("dcgan", 0, 0.9, 0.8, synthesis={**chosen, "fidelity_epochs": e}) for e in (20, 30)]
    assert len(summarise(picky)) == 2
    # a field added later, at its default, leaves a record's row unchanged
    later = [record("flip", s, 0.9, 0.8, epochs=20, dropout=0.0, synthesis={"finetune_epochs": 0}) for s in (3, 4)]
    assert next(r for r in summarise(records + later) if r["method"] == "flip epochs 20")["n"] == 5


def test_pairs_across_precisions_are_flagged_and_never_decide():
    records = [record("none", s, 0.85 + 0.01 * s, 0.8) for s in range(6)]
    flips = [record("flip", s, 0.90 + 0.01 * s, 0.8) for s in range(6)]  # +0.05 on every seed
    flips[1]["precision"] = "bf16"
    row = next(r for r in summarise(records + flips) if r["method"] == "flip")
    versus = row["comparisons"]["none"]
    assert versus.verdict == "undecided (mixed precision)" and versus.pairs == 5 and row["mixed"]["none"] == [1]
    records[1]["precision"] = "bf16"  # the same platform on every seed again: decided
    assert next(r for r in summarise(records + flips) if r["method"] == "flip")["comparisons"]["none"].decided
    flips[2]["versions"] = {**flips[2]["versions"], "cpu_capability": "AVX512"}  # another kernel level
    assert not next(r for r in summarise(records + flips) if r["method"] == "flip")["comparisons"]["none"].decided


def test_bf16_runs_pair_across_cpus_that_sum_bf16_products_in_fp32():
    """oneDNN's bf16 kernels (AVX512, AMX) and fp32 kernels on bf16 operands (an AVX2 run naming ``bf16_kernels``)
    differ in the order of summation only: one platform. PyTorch's reference bf16 kernels (an older AVX2 record)
    and fp32 runs on another kernel level are not."""

    def verdict(records: list[dict], flips: list[dict]) -> str:
        return next(r for r in summarise(records + flips) if r["method"] == "flip")["comparisons"]["none"].verdict

    records = [record("none", s, 0.85 + 0.01 * s, 0.8) for s in range(6)]
    flips = [record("flip", s, 0.90 + 0.01 * s, 0.8) for s in range(6)]
    for run in records + flips:
        run["precision"], run["versions"] = "bf16", {**run["versions"], "cpu_capability": "AVX512"}
    flips[1]["versions"] = {**flips[1]["versions"], "cpu_capability": "AVX2", "bf16_kernels": "fp32"}
    assert verdict(records, flips) == "better"
    del flips[1]["versions"]["bf16_kernels"]  # an AVX2 bf16 run of PyTorch's reference kernels
    assert verdict(records, flips) == "undecided (mixed precision)"
    for run in records + flips:
        run["precision"] = "fp32"
    flips[1]["versions"]["bf16_kernels"] = "fp32"  # names the kernels bf16 would use; the run is fp32
    assert verdict(records, flips) == "undecided (mixed precision)"


def test_the_baseline_is_shown_over_the_seeds_of_the_row_it_is_compared_with():
    records = [record("none", s, 0.80 + 0.02 * s, 0.8) for s in range(10)]
    records += [record("ddpm", s, 0.81 + 0.02 * s, 0.8) for s in range(5)]
    rows = summarise(records)
    ddpm = next(r for r in rows if r["method"] == "ddpm")
    assert ddpm["comparisons"]["none"].reference_mean == pytest.approx(0.84)  # seeds 0-4, not all ten (0.89)
    table = table_markdown(results_table(rows, settings=Settings()))
    assert "none's test AUC on the same seeds" in table[0]
    assert any(line.startswith("| ddpm | 0,1,2,3,4 |") and "| 0.840 |" in line for line in table)


def test_headline_rows_are_the_variants_with_the_best_validation_auc():
    records = [record("none", s, 0.85, 0.8) for s in range(5)]
    records += [record("dcgan", s, 0.86, 0.8) for s in range(5)]
    records += [record("dcgan", s, 0.88, 0.8, method_params={"ema": 0.999}) for s in range(5)]
    records += [record("oversample", s, 0.84, 0.8, synthesis={"synthetic_ratio": r}) for s in range(5) for r in (1, 2)]
    headline = {r["method"] for r in summarise(records) if r["headline"]}
    assert headline == {"none", "dcgan ema=0.999", "oversample ratio 1", "oversample ratio 2"}


def test_a_headline_row_is_picked_among_thresholds_not_across_labels_learning_or_pretraining():
    """Issue 29's rows: the teacher threshold is a lever picked on validation; own labels against a teacher's, with
    against without the unlabelled images, pretraining on the set against mixing it in (issue 28) and pseudo-label's
    count-matched set against all of it are each a row."""
    records = [record("none", s, 0.85, 0.8) for s in range(5)]
    for auc, params, synthesis in [
        (0.86, {}, {"tstr": True}),
        (0.87, {}, {"tstr": True, "teacher": "hard", "teacher_threshold": 0.7}),
        (0.88, {}, {"tstr": True, "teacher": "hard", "teacher_threshold": 0.9}),
        (0.89, {"use_unlabelled": True}, {"tstr": True}),
        (0.84, {"use_unlabelled": True}, {"tstr": True, "teacher": "hard", "teacher_threshold": 0.7}),
        (0.83, {"use_unlabelled": True}, {"tstr": True, "teacher": "hard", "teacher_threshold": 0.9}),
        (0.82, {}, {"tstr": True, "pretrain_on_synthetic": True}),  # issue 28's own row: pretrain, then fine-tune
    ]:
        records += [record("ddpm", s, auc, 0.8, method_params=params, synthesis=synthesis) for s in range(5)]
    for auc, params, threshold in [(0.86, {}, 0.7), (0.85, {}, 0.9), (0.84, {"count": "all"}, 0.7)]:
        synthesis = {"teacher": "hard", "teacher_threshold": threshold}
        records += [record("pseudo-label", s, auc, 0.8, method_params=params, synthesis=synthesis) for s in range(5)]
    headline = sorted(r["method"] for r in summarise(records) if r["headline"])
    assert headline == [
        "ddpm tstr",
        "ddpm tstr pretrain",
        "ddpm tstr teacher hard teacher≥0.7 use_unlabelled=True",
        "ddpm tstr teacher hard teacher≥0.9",
        "ddpm tstr use_unlabelled=True",
        "none",
        "pseudo-label teacher hard teacher≥0.7",
        "pseudo-label teacher hard teacher≥0.7 count=all",
    ]
    rows = {r["method"]: r for r in summarise(records, Settings(reference="pseudo-label"))}
    versus = rows["ddpm tstr teacher hard teacher≥0.9"]["comparisons"]["pseudo-label"]
    assert versus.reference_mean == pytest.approx(0.85)  # the pseudo-label row at 0.9, not the first one (0.7)


def test_generator_fits_are_the_units_of_a_row_whose_seeds_share_them():
    records = [record("none", s, 0.85 + 0.01 * s, 0.8) for s in range(10)]
    records += [record("ddpm", s, 0.86 + 0.01 * s, 0.8, synthesis={"generator_seeds": 5}) for s in range(10)]
    versus = next(r for r in summarise(records) if r["base_method"] == "ddpm")["comparisons"]["none"]
    assert (versus.n, versus.pairs, versus.unit) == (5, 10, "generator fits")
    shared = [record("cvae", s, 0.9, 0.8, synthesis={"generator_seed": 0}) for s in range(10)]
    alone = next(r for r in summarise(records + shared) if r["base_method"] == "cvae")["comparisons"]["none"]
    assert alone.n == 1 and not alone.decided
