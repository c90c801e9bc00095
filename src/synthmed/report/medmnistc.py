"""The report's MedMNIST-C part (``--robustness medmnistc``): per-run columns (robustness.csv), a table per group
with paired differences against ``none`` and ``oversample``, and the AUC-against-severity figure."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

from synthmed.report.formats import fmt_comparison, level_text
from synthmed.report.model import Figure, Paragraph, Table
from synthmed.report.stats import Comparison, compare, interval
from synthmed.report.summary import paired_units
from synthmed.spec import classifier_label, method_label, protocol_label

#: The PGD strength the MedMNIST-C table shows beside the corruptions (x/255 pixel units; the one the TSynD results
#: page reads: at 8/255 PGD leaves little to compare).
TABLE_PGD_EPS_255 = 2.0
#: A run's MedMNIST-C columns (robustness.csv): the benchmark's summary and PGD at ``TABLE_PGD_EPS_255``.
MEDMNISTC_COLUMNS = (
    "set",
    "clean_auc",
    "clean_acc",
    "corrupted_auc",
    "corrupted_acc",
    "worst_corruption",
    "worst_auc",
    "drop_auc",
    "drop_acc",
    "pgd_auc",
    "pgd_acc",
)


def medmnistc_columns(robustness: dict) -> dict:
    """``MEDMNISTC_COLUMNS`` of one run's ``metrics.robustness`` (None where the run did not measure them)."""
    bench = robustness.get("medmnistc") or {}
    pgd: dict = next((p for p in robustness.get("attacks", {}).get("pgd", []) if p["eps_255"] == TABLE_PGD_EPS_255), {})
    clean, mean = bench.get("clean") or {}, bench.get("mean") or {}
    worst, drop = bench.get("worst") or {}, bench.get("drop") or {}
    return {
        "set": bench.get("set"),
        "clean_auc": clean.get("auc"),
        "clean_acc": clean.get("acc"),
        "corrupted_auc": mean.get("auc"),
        "corrupted_acc": mean.get("acc"),
        "worst_corruption": worst.get("corruption"),
        "worst_auc": worst.get("auc"),
        "drop_auc": drop.get("auc"),
        "drop_acc": drop.get("acc"),
        "pgd_auc": pgd.get("auc"),
        "pgd_acc": pgd.get("acc"),
    }


def robustness_rows(records: list[dict]) -> tuple[list[str], list[list]]:
    """One row per run measured with ``--robustness medmnistc`` (robustness.csv): its labels and the benchmark's
    columns; no rows when no run was."""
    labels = ("run_id", "dataset", "protocol", "classifier", "recipe", "method", "seed")
    rows = []
    for r in records:
        robustness = (r.get("metrics") or {}).get("robustness") or {}
        if not robustness.get("medmnistc"):
            continue
        config = r["config"]
        shown = {
            "protocol": protocol_label(config),
            "classifier": classifier_label(config),
            "method": method_label(config),
        }
        columns = medmnistc_columns(robustness)
        rows.append([shown.get(c, r.get(c)) for c in labels] + [columns[c] for c in MEDMNISTC_COLUMNS])
    return [*labels, *MEDMNISTC_COLUMNS], rows


def _delta(
    runs: list[dict], reference: list[dict], column: str, method: str, ref: str, margin: float, alpha: float
) -> Comparison | None:
    """``column`` of ``runs`` minus the reference's, paired by seed where both ran on the same platform (undecided
    where some seeds did not), over generator fits where seeds share one (as the results table), at the report's
    margin and level, as a family of one (the results table's Holm adjustment does not cover these)."""

    def value(run: dict) -> float | None:
        return medmnistc_columns(run["metrics"]["robustness"])[column]

    diffs, units, mixed = paired_units(runs, reference, value)
    if not diffs:
        return None
    blocked = "mixed precision" if mixed else ""
    return compare(diffs, method, ref, column, margin=margin, alpha=alpha, clusters=units, blocked=blocked)


#: The table's paired differences: (the heading's figure, the run column it reads)
DELTAS = (("MedMNIST-C AUC", "corrupted_auc"), (f"PGD {TABLE_PGD_EPS_255:g}/255 ACC", "pgd_acc"))
REFERENCES = ("none", "oversample")


def medmnistc_json(by_method: dict[str, list[dict]], margin: float = 0.01, alpha: float = 0.05) -> list[dict]:
    """The MedMNIST-C table as data (``synthmed report --format json``: ``robustness``; a page's ``study_table
    --robustness``), one entry per method whose runs were scored on the benchmark: its seeds, mean and std of the
    clean AUC, the corrupted mean AUC, the relative drop and PGD ACC, its most frequent worst corruption, and per
    figure of ``DELTAS`` its paired comparison with each of ``REFERENCES`` (as data)."""
    bench = {
        m: [r for r in rs if (r["metrics"].get("robustness") or {}).get("medmnistc")] for m, rs in by_method.items()
    }
    bench = {m: rs for m, rs in bench.items() if rs}
    refs = {name: next((rs for rs in bench.values() if rs[0]["method"] == name), None) for name in REFERENCES}

    def stats(values: list) -> dict:
        mean, std, _ = interval([v for v in values if v is not None])
        return {"mean": mean, "std": std}

    out = []
    for method, runs in bench.items():
        cols = [medmnistc_columns(r["metrics"]["robustness"]) for r in runs]
        deltas: dict[str, dict[str, dict]] = {}
        for title, column in DELTAS:
            for ref, ref_runs in refs.items():
                c = (
                    None
                    if ref_runs is None or ref_runs is runs
                    else _delta(runs, ref_runs, column, method, ref, margin, alpha)
                )
                if c is not None:
                    deltas.setdefault(title, {})[ref] = dataclasses.asdict(c)
        out.append(
            {
                "method": method,
                "seeds": [r["seed"] for r in runs],
                **{
                    k: stats([c[k] for c in cols])
                    for k in ("clean_auc", "corrupted_auc", "worst_auc", "drop_auc", "pgd_acc")
                },
                "worst_corruption": Counter(c["worst_corruption"] for c in cols).most_common(1)[0][0],
                "deltas": deltas,
            }
        )
    return out


#: The table's column titles after ``method`` and ``seeds`` (``medmnistc_cells`` fills them)
MEDMNISTC_TITLES = (
    "clean AUC",
    "MedMNIST-C AUC (mean)",
    "worst corruption (AUC)",
    "relative AUC drop",
    f"PGD {TABLE_PGD_EPS_255:g}/255 ACC",
    *[f"Δ {title} vs {ref}" for title, _ in DELTAS for ref in REFERENCES],
)


def medmnistc_cells(row: dict) -> list[str]:
    """The cells of one entry of ``medmnistc_json`` after its method and seeds, as ``MEDMNISTC_TITLES``."""

    def finite(value: float | None) -> bool:  # --format json writes a missing figure (NaN) as null
        return value is not None and math.isfinite(value)

    def cell(stat: dict) -> str:
        mean, std = stat["mean"], stat["std"]
        return "" if not finite(mean) else f"{mean:.3f}" + (f" ± {std:.3f}" if finite(std) else "")

    deltas = [
        fmt_comparison(Comparison(**c)) if (c := row["deltas"].get(title, {}).get(ref)) else ""
        for title, _ in DELTAS
        for ref in REFERENCES
    ]
    return [
        cell(row["clean_auc"]),
        cell(row["corrupted_auc"]),
        f"{row['worst_corruption']} ({cell(row['worst_auc'])})",
        cell(row["drop_auc"]),
        cell(row["pgd_acc"]),
        *deltas,
    ]


def medmnistc_table(by_method: dict[str, list[dict]], margin: float = 0.01, alpha: float = 0.05) -> Table:
    """Per method (mean ± std over seeds): clean AUC, AUC under MedMNIST-C (mean over corruptions and severities),
    the worst corruption, the relative drop, PGD ACC, and paired differences with ``none`` and ``oversample``."""
    caption = (
        f"MedMNIST-C corruptions and PGD (mean ± std over seeds; Δ paired by seed with a {level_text(alpha)} % "
        f"interval, over generator fits where seeds share one, each comparison a family of one with a ±{margin:g} "
        "margin):"
    )
    table = Table(caption, ["method", "seeds", *MEDMNISTC_TITLES])
    for row in medmnistc_json(by_method, margin, alpha):
        table.rows.append([row["method"], ",".join(map(str, row["seeds"])), *medmnistc_cells(row)])
    return table


def medmnistc_blocks(
    by_method: dict[str, list[dict]], title: str, index: int, margin: float = 0.01, alpha: float = 0.05
) -> list:
    """The MedMNIST-C part of a robustness section (empty when no run of it was measured with the benchmark), its
    differences at the report's ``margin`` and ``alpha``."""
    from synthmed.report.figures import severity_plot

    bench = {m: [r for r in rs if r["metrics"]["robustness"].get("medmnistc")] for m, rs in by_method.items()}
    bench = {m: rs for m, rs in bench.items() if rs}
    if not bench:
        return []
    runs_of = next(iter(bench.values()))
    first = runs_of[0]["metrics"]["robustness"]["medmnistc"]
    names = ", ".join(first["corruptions"])
    which = (
        f"the generic set ({names}): MedMNIST-C defines no set we implement for {runs_of[0]['dataset']}"
        if first["set"] == "generic"
        else f"the {first['set']} set ({names})"
    )
    text = (
        f"MedMNIST-C (Di Salvo et al. 2024; our implementation of the published definitions) on all {first['n']} "
        f"test images: {which}, each at severities 1-5, drawn with the run's seed. Spatial parameters are scaled "
        f"from {first['settings']['reference_size']} px to the image size. The test split is only scored here, "
        "never used for selection."
    )
    if first.get("no_effect"):
        text += (
            f" No effect at this size, so left out of the corrupted mean: {', '.join(first['no_effect'])} (it "
            "changes no test image at any severity); severities that scale to the same kernel or grid at this size "
            "differ only in their random draws, so a curve need not fall at every step."
        )
    curves = severity_plot(
        {m: [r["metrics"]["robustness"]["medmnistc"] for r in rs] for m, rs in bench.items()}, f"MedMNIST-C · {title}"
    )
    return [
        Paragraph(text),
        medmnistc_table(bench, margin, alpha),
        Figure(f"report_medmnistc_{index}.png", curves, f"MedMNIST-C · {title}"),
    ]
