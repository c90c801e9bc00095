"""The report's tables, built from the summary rows (``summary.summarise``) into the table model: results with
their verdicts, the terminal's view, synthetic-set audits, FID over epochs, fractions, and the CSV rows."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from synthmed.record import RunRecord, SyntheticAudit
from synthmed.report.formats import (
    detectable_text,
    epochs_text,
    fmt_comparison,
    fmt_diff,
    fmt_interval,
    fmt_mean_std,
    level_text,
    pair_text,
)
from synthmed.report.model import Table
from synthmed.report.summary import Settings
from synthmed.spec import (
    classifier_label,
    method_label,
    protocol_label,
)


def results_table(rows: list[dict], caption: str = "", settings: Settings | None = None) -> Table:
    """The main table of a group: scores, the comparisons with ``none`` and each other reference the rows meet (Δ AUC
    with its t-interval and verdict at the margin), the detectable difference, the test-selected and published
    figures."""
    settings = settings or Settings()
    level = level_text(settings.alpha)
    others = [r for r in settings.references()[1:] if any(r in (row.get("comparisons") or {}) for row in rows)]
    columns = [
        "method",
        "seeds",
        "val AUC (selects levers)",
        "test AUC (mean ± std [95 % CI])",
        "none's test AUC on the same seeds",
        "test ACC",
        f"Δ AUC vs none [{level} % CI, unadjusted], verdict (Holm, ±{settings.margin:g})",
        f"Δ ACC vs none [{level} % CI]",
    ]
    columns += [f"Δ AUC vs {other} [{level} % CI, unadjusted], verdict (Holm)" for other in others]
    has_curve = any(row.get("real_equivalent") for row in rows)
    if has_curve:
        columns.append("worth in real images per class (95 % Fieller)")
    columns += [
        "detectable Δ AUC vs none (80 % power; seeds for equivalence)",
        "test-selected AUC / ACC (optimistic)",
        "published AUC / ACC",
        "epochs",
    ]
    table = Table(caption, columns)
    for row in rows:
        comparisons = row.get("comparisons") or {}
        paper = row["published"]
        optimistic = (
            ""
            if math.isnan(row["test_selected_auc"][0])
            else f"{row['test_selected_auc'][0]:.3f} / {row['test_selected_acc'][0]:.3f}"
        )
        val = "–" if math.isnan(row["val_auc"][0]) else f"{row['val_auc'][0]:.3f}"
        none = comparisons.get("none")
        cells = [
            row["method"],
            ",".join(map(str, row["seeds"])),
            val,
            fmt_interval(row["test_auc"]),
            "" if none is None or math.isnan(none.reference_mean) else f"{none.reference_mean:.3f}",
            fmt_interval(row["test_acc"]),
            fmt_comparison(none),
            fmt_diff((row.get("acc_diffs") or {}).get("none")),
        ]
        cells += [fmt_comparison(comparisons.get(other)) for other in others]
        if has_curve:
            worth = row.get("real_equivalent")
            cells.append("" if worth is None or row["method"] == "none" else worth["text"])
        cells += [
            detectable_text(none),
            optimistic,
            f"{paper[1][0]:.3f} / {paper[1][1]:.3f} ({paper[0]})" if paper else "",
            epochs_text(row),
        ]
        table.rows.append(cells)
    return table


#: The columns of the terminal table at the end of ``synthmed run`` (by their start: levels and margins vary).
TERMINAL_COLUMNS = ["method", "seeds", "test AUC (mean ± std [95 % CI])", "Δ AUC vs none", "Δ AUC vs "]


def terminal_table(table: Table) -> Table:
    """The results table's columns for the terminal: each column of ``TERMINAL_COLUMNS`` found by its name or, for
    the Δ columns, by the start of its name (each other reference's where present)."""
    names = []
    for wanted in TERMINAL_COLUMNS:
        names += [
            c
            for c in table.columns
            if (c == wanted or (wanted.startswith("Δ") and c.startswith(wanted)))
            and c not in names
            and "detectable" not in c
        ]
    return table.select(names)


def verdict_bullets(rows: list[dict], settings: Settings) -> list[str]:
    """One plain sentence per method and reference, with its Holm-adjusted p-value within the report's family."""
    items = []
    for reference in settings.references():
        compared = [row["comparisons"][reference] for row in rows if reference in (row.get("comparisons") or {})]
        for c in compared:
            holm = (
                f"; Holm-adjusted p = {c.p_holm:.3g} over the report's {c.family} decidable comparisons"
                if c.p_holm is not None and math.isfinite(c.p_holm)
                else ""
            )
            items.append(c.sentence("AUC") + holm + ".")
    return items


def verdict_summary(rows: list[dict], settings: Settings) -> list[str]:
    """Per reference, the group's verdicts in one line: which rows are decided which way (with their Δ), and how
    many stay undecided with the range of what their seeds could detect: the answer before the sentences that
    give each comparison."""
    from synthmed.report.stats import DECIDED, MIN_PAIRS, UNDECIDED_FEW

    lines = []
    for reference in settings.references():
        compared = [row["comparisons"][reference] for row in rows if reference in (row.get("comparisons") or {})]
        if not compared:
            continue
        parts = []
        for verdict in DECIDED:
            named = [f"{c.method} ({c.mean:+.3f})" for c in compared if c.verdict == verdict]
            if named:
                parts.append(f"{verdict}: {', '.join(named)}")
        few = [c for c in compared if c.verdict == UNDECIDED_FEW]
        open_ = [c for c in compared if c.verdict not in (*DECIDED, UNDECIDED_FEW)]
        if open_:
            detect = sorted(c.mde for c in open_ if math.isfinite(c.mde))
            reach = (
                f" (their seeds could detect {detect[0]:.3f}"
                + (f"-{detect[-1]:.3f}" if detect[-1] > detect[0] else "")
                + " AUC)"
                if detect
                else ""
            )
            parts.append(f"undecided: {len(open_)}{reach}")
        if few:
            parts.append(f"fewer than {MIN_PAIRS} paired seeds: {len(few)}")
        against = "the copies (oversample)" if reference == "oversample" else reference
        lines.append(f"Against {against}: " + "; ".join(parts) + ".")
    return lines


SYNTHETIC_COLUMNS = [
    "method",
    "images / run",
    "class fidelity (mean ± std)",
    "reference test ACC",
    "reference recall, real val images of the same classes",
    "FID (in-domain)",
    "KID",
    "precision / recall / coverage",
    "near-copies",
    "near-copies of real val images",
    "memorised (d1/d2 < 1/3): pixels / in-domain features",
    "the same for real val images",
    "TSTR test AUC / ACC",
    "diversity (min class)",
    "kept by filter",
    "generator fit (s, uncached)",
    "flags",
]


def synthetic_table(rows: list[dict], real_only: tuple | None = None) -> Table:
    """The audit of every generative row's synthetic sets; ``real_only``: the group's ``none`` test AUC, which a
    classifier trained on the synthetic images alone (TSTR) is read against."""
    caption = (
        ""
        if real_only is None or math.isnan(real_only[0])
        else (
            f"TSTR: a classifier trained on the synthetic images alone, scored on the real test split; the same "
            f"classifier on the real training images (none) scores {real_only[0]:.3f}."
        )
    )
    teacher = any(not math.isnan(row["synthetic"]["teacher_share"][0]) for row in rows)
    table = Table(caption, list(SYNTHETIC_COLUMNS) + ([TEACHER_COLUMN] if teacher else []))
    for row in rows:
        syn = row["synthetic"]
        flags = ", ".join(f"{flag} ({n} of {syn['n']} runs)" for flag, n in syn["flags"].items()) or "none"
        near = fmt_mean_std(syn["near_copy"], percent=True) + (
            (" (copies by design)" if row["base_method"] == "oversample" else " (reconstructions by design)")
            if syn["reconstructions"]
            else ""
        )
        fidelity = fmt_mean_std(syn["fidelity"])
        if not math.isnan(syn["candidates"][0]):
            fidelity += f" (before filter {syn['candidates'][0]:.3f})"
        prc = " / ".join(
            "–" if math.isnan(syn[k][0]) else f"{syn[k][0]:.2f}" for k in ("precision", "recall", "coverage")
        )
        fid = (
            "–"
            if math.isnan(syn["fid"][0])
            else f"{syn['fid'][0]:.2f}" + ("" if math.isnan(syn["fid"][1]) else f" ± {syn['fid'][1]:.2f}")
        )
        kid = "–" if math.isnan(syn["kid"][0]) else f"{syn['kid'][0]:.4f}"
        table.rows.append(
            [
                row["method"],
                str(syn["per_run"]),
                fidelity,
                fmt_mean_std(syn["reference_acc"]),
                fmt_mean_std(syn["reference_recall"]),
                fid,
                kid,
                prc,
                near,
                fmt_mean_std(syn["held_out"], percent=True),
                pair_text(syn["memorised"], syn["memorised_features"]),
                pair_text(syn["memorised_held_out"], syn["memorised_features_held_out"]),
                "–"
                if math.isnan(syn["tstr_auc"][0])
                else f"{fmt_mean_std(syn['tstr_auc'])} / {syn['tstr_acc'][0]:.3f}",
                fmt_mean_std(syn["diversity"]),
                fmt_mean_std(syn["kept"], percent=True),
                "–" if math.isnan(syn["generator_s"][0]) else f"{syn['generator_s'][0]:.0f}",
                flags,
            ]
            + ([teacher_text(syn)] if teacher else [])
        )
    return table


#: shown only where some row relabelled its set with ``--teacher``, so reports without one keep their columns
TEACHER_COLUMN = "teacher agrees with the intended class: all / kept (share kept)"


def teacher_text(syn: dict) -> str:
    """The teacher's agreement with the generator's intended classes, over all images and over those it kept, and
    the share it kept; unlabelled real images (pseudo-label) have no intended class, only the share."""
    if math.isnan(syn["teacher_share"][0]):
        return "–"
    share = f"({syn['teacher_share'][0]:.0%} kept)"
    if math.isnan(syn["teacher"][0]):
        return f"– {share}"
    return f"{fmt_mean_std(syn['teacher'], percent=True)} / {fmt_mean_std(syn['teacher_kept'], percent=True)} {share}"


def fid_over_epochs_table(rows: list[dict]) -> Table | None:
    """Mean FID / KID per tracked epoch and method (Sharma et al. 2022's Table 4), with the validation FID that
    ``--select-generator fid`` minimises and the checkpoint it kept on each seed."""
    series, val_fid, selected = {}, {}, {}
    for row in rows:
        by_epoch: dict[int, list[tuple[float, float]]] = defaultdict(list)
        by_epoch_val: dict[int, list[float]] = defaultdict(list)
        kept = []
        for tracked in row["synthetic"]["fid_over_epochs"]:
            for point in tracked:
                by_epoch[point["epoch"]].append((point["fid"], point["kid"]))
                if point.get("val_fid") is not None:
                    by_epoch_val[point["epoch"]].append(point["val_fid"])
            kept += [str(point["epoch"]) for point in tracked if point.get("selected")]
        if by_epoch:
            method = row["method"]
            series[method] = {
                e: (np.mean([f for f, _ in v]), np.mean([k for _, k in v])) for e, v in sorted(by_epoch.items())
            }
            val_fid[method] = {e: float(np.mean(v)) for e, v in by_epoch_val.items()}
            selected[method] = ", ".join(kept) if kept else "the last"
    if not series:
        return None
    epochs = sorted({e for s in series.values() for e in s})
    table = Table(
        "FID / KID against the real training images (in-domain features, mean over seeds) during generator "
        "training; `val` is the FID against the real validation split, which --select-generator fid minimises "
        "(never the test split), and the last column the checkpoint each seed sampled from:",
        ["method", *[f"epoch {e}" for e in epochs], "sampled checkpoint (per seed)"],
    )

    def cell(method: str, epoch: int) -> str:
        if epoch not in series[method]:
            return ""
        fid, kid = series[method][epoch]
        val = val_fid[method].get(epoch)
        return f"{fid:.2f} / {kid:.4f}" + (f" · val {val:.2f}" if val is not None else "")

    table.rows = [[m, *[cell(m, e) for e in epochs], selected[m]] for m in series]
    return table


def fraction_tables(rows: list[dict]) -> list[Table]:
    """Sharma et al. 2022's Table 1 layout: test AUC (mean ± std over seeds) with one row per training fraction and
    one column per method and levers, for every (dataset, classifier, recipe) run at two or more fractions; a cell
    names the hyper-parameters that differ from the preset (e.g. fewer generator epochs at a larger fraction), and
    several settings of one cell are listed one after another. A gain over ``none`` whose paired 95 % interval
    excludes 0 is marked with ``*``."""
    tables = []
    by_setting: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if row["protocol"].startswith("fraction"):
            by_setting[(row["dataset"], row["classifier"], row["recipe"])].append(row)
    for (dataset, classifier, recipe), group in sorted(by_setting.items()):
        protocols = sorted({r["protocol"] for r in group}, key=lambda p: float(p.split()[1]))
        if len(protocols) < 2:
            continue
        methods = list(dict.fromkeys(r["lever_label"] for r in group))
        cell: dict[tuple, list[dict]] = defaultdict(list)
        for r in group:
            cell[(r["protocol"], r["lever_label"])].append(r)

        def text(row: dict) -> str:
            mean, std, _ = row["test_auc"]
            versus_none = (row.get("comparisons") or {}).get("none")
            sure = versus_none is not None and versus_none.verdict.startswith("better")
            return (
                f"{mean:.3f}"
                + ("" if math.isnan(std) else f" ± {std:.3f}")
                + ("*" if sure else "")
                + f" (n={row['n']}"
                + (f", {row['params']}" if row["params"] else "")
                + ")"
            )

        caption = (
            f"{dataset} · {classifier} · recipe {recipe}: test AUC by training fraction (Sharma et al. "
            "2022's Table 1 layout; * = better than none, paired by seed)"
        )
        table = Table(caption, ["training share", *methods])
        table.rows = [
            [protocol, *["; ".join(text(r) for r in cell[(protocol, m)]) for m in methods]] for protocol in protocols
        ]
        tables.append(table)
    return tables


def runs_rows(records: list[dict]) -> tuple[list[str], list[list]]:
    """One row per run: its labels (as in the tables), scores, audit figures of its synthetic set and flags; the
    columns are the fields ``RunRecord`` and ``SyntheticAudit`` mark ``table``."""
    synthetic_columns = SyntheticAudit.names("table")
    columns = [*RunRecord.names("table"), *(f"synthetic_{c}" for c in synthetic_columns), "synthetic_flags"]
    rows = []
    for data in records:
        r = RunRecord.from_json(data)
        config = r.config or {}
        labels = {
            "protocol": protocol_label(config),
            "classifier": classifier_label(config),
            "method": method_label(config),
        }
        synthetic = r.synthetic or SyntheticAudit()
        rows.append(
            [labels.get(c, getattr(r, c)) for c in RunRecord.names("table")]
            + [getattr(synthetic, c) for c in synthetic_columns]
            + [";".join(synthetic.flags or [])]
        )
    return columns, rows


COMPARISON_PARTS = (
    "n",
    "mean",
    "std",
    "t_low",
    "t_high",
    "boot_low",
    "boot_high",
    "tost_low",
    "tost_high",
    "p_value",
    "p_holm",
    "level",
    "holm_low",
    "holm_high",
    "p_tost_holm",
    "mde",
    "units_for_equivalence",
    "priced_at",
    "pairs",
    "unit",
    "reference_mean",
    "verdict",
    "decided_at",
)


def summary_rows(rows: list[dict], settings: Settings | None = None) -> tuple[list[str], list[list]]:
    """One row per table row: mean, std and 95 % interval half-width of each score, and every part of its
    comparisons with each reference (``vs_none_mean``, ``vs_none_verdict``, ...)."""
    settings = settings or Settings()
    metrics = ("test_auc", "test_acc", "val_auc")
    columns = ["dataset", "protocol", "classifier", "recipe", "method", "n", "seeds"]
    columns += [f"{m}_{part}" for m in metrics for part in ("mean", "std", "ci95")]
    columns += [f"vs_{ref}_{part}" for ref in settings.references() for part in COMPARISON_PARTS]
    out = []
    for row in rows:
        cells = [row[k] for k in columns[:5]] + [row["n"], " ".join(map(str, row["seeds"]))]
        cells += [v for m in metrics for v in row[m]]
        for ref in settings.references():
            c = (row.get("comparisons") or {}).get(ref)
            cells += [getattr(c, part) if c is not None else None for part in COMPARISON_PARTS]
        out.append(cells)
    return columns, out


# ------------------------------------------------------------------------------------------------- sections
