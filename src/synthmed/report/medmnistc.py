"""The report's MedMNIST-C part (``--robustness medmnistc``): per-run columns (robustness.csv), a table per group
with paired differences against ``none`` and ``oversample``, and the AUC-against-severity figure."""

from __future__ import annotations

import math
from collections import Counter

from synthmed.report.formats import fmt_comparison, level_text
from synthmed.report.model import Figure, Paragraph, Table
from synthmed.report.stats import compare, interval
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


def _delta_cell(
    runs: list[dict], reference: list[dict], column: str, method: str, ref: str, margin: float, alpha: float
) -> str:
    """``+0.012 [-0.004, +0.028] better``: ``column`` of ``runs`` minus the reference's, paired by seed where both
    ran on the same platform (undecided where some seeds did not), over generator fits where seeds share one (as
    the results table), at the report's margin and level, as a family of one (the results table's Holm adjustment
    does not cover these)."""

    def value(run: dict) -> float | None:
        return medmnistc_columns(run["metrics"]["robustness"])[column]

    diffs, units, mixed = paired_units(runs, reference, value)
    if not diffs:
        return ""
    blocked = "mixed precision" if mixed else ""
    c = compare(diffs, method, ref, column, margin=margin, alpha=alpha, clusters=units, blocked=blocked)
    return fmt_comparison(c)


def medmnistc_table(by_method: dict[str, list[dict]], margin: float = 0.01, alpha: float = 0.05) -> Table:
    """Per method (mean ± std over seeds): clean AUC, AUC under MedMNIST-C (mean over corruptions and severities),
    the worst corruption, the relative drop, PGD ACC, and paired differences with ``none`` and ``oversample``."""

    def cell(values: list) -> str:
        mean, std, _ = interval([v for v in values if v is not None])
        return "" if math.isnan(mean) else f"{mean:.3f}" + ("" if math.isnan(std) else f" ± {std:.3f}")

    refs = {
        name: next((rs for rs in by_method.values() if rs[0]["method"] == name), None)
        for name in ("none", "oversample")
    }
    eps = f"{TABLE_PGD_EPS_255:g}/255"
    table = Table(
        f"MedMNIST-C corruptions and PGD (mean ± std over seeds; Δ paired by seed with a {level_text(alpha)} % "
        f"interval, over generator fits where seeds share one, each comparison a family of one with a ±{margin:g} "
        "margin):",
        [
            "method",
            "seeds",
            "clean AUC",
            "MedMNIST-C AUC (mean)",
            "worst corruption (AUC)",
            "relative AUC drop",
            f"PGD {eps} ACC",
            *[f"Δ MedMNIST-C AUC vs {ref}" for ref in refs],
            *[f"Δ PGD {eps} ACC vs {ref}" for ref in refs],
        ],
    )
    for method, runs in by_method.items():
        cols = [medmnistc_columns(r["metrics"]["robustness"]) for r in runs]
        worst = Counter(c["worst_corruption"] for c in cols).most_common(1)[0][0]
        deltas = [
            ""
            if ref_runs is None or ref_runs is runs
            else _delta_cell(runs, ref_runs, column, method, ref, margin, alpha)
            for column in ("corrupted_auc", "pgd_acc")
            for ref, ref_runs in refs.items()
        ]
        table.rows.append(
            [
                method,
                ",".join(str(r["seed"]) for r in runs),
                cell([c["clean_auc"] for c in cols]),
                cell([c["corrupted_auc"] for c in cols]),
                f"{worst} ({cell([c['worst_auc'] for c in cols])})",
                cell([c["drop_auc"] for c in cols]),
                cell([c["pgd_acc"] for c in cols]),
                *deltas,
            ]
        )
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
