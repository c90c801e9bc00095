"""The summary of a set of runs, built once: statistics per (group, method) and the report's tables and sections.

A *group* is (dataset, protocol with its parameters, classifier with its dropout, recipe); within it, a *row* is a
method with its levers and hyper-parameters. Per row: mean ± std over seeds and a 95 % t-interval of test AUC and
ACC; its comparison with ``none`` and with a second reference (``--reference``, by default the count-matched
``oversample`` control at the same sampling policy where the group holds it), paired by seed, with a verdict
against a margin (``synthmed.report.stats``); the optimistic test-selected figure when runs used
``--report-test-selected``; the published numbers of the implemented papers where the setting matches; and the
audit of its synthetic sets. ``synthmed.report.render`` turns the tables into Markdown, HTML, CSV and the terminal.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthmed.errors import SynthmedError
from synthmed.record import RunRecord, SyntheticAudit
from synthmed.report.model import Bullets, Figure, Paragraph, Section, Table
from synthmed.report.papers import published
from synthmed.report.stats import EQUIVALENT, MIN_PAIRS, Comparison, adjust, cluster_means, compare, interval
from synthmed.spec import (
    classifier_label,
    distinguishing_parts,
    generator_fit,
    lever_parts,
    method_label,
    params_label,
    policy_parts,
    protocol_label,
    recipe_label,
    result_key,
)

#: The count-matched control every generative row is also compared with, where the group holds it.
DEFAULT_REFERENCE = "oversample"


@dataclass(frozen=True)
class Settings:
    """How the report decides: the equivalence margin (AUC), the error rate of each interval, and the second
    reference besides ``none``. ``alpha`` is already divided by the planned looks when seeds were added until
    decided (``looks`` says how many). ``select_levers``: the rule that picks each method's headline row."""

    margin: float = 0.01
    alpha: float = 0.05
    reference: str | None = None
    looks: int = 1
    select_levers: str = "val_auc"  # how the headline table picks among a method's variants ("none": shows all)

    def references(self) -> list[str]:
        return ["none", self.reference or DEFAULT_REFERENCE]


def group_key(record: dict) -> tuple[str, str, str, str]:
    config = record["config"]
    return record["dataset"], protocol_label(config), classifier_label(config), recipe_label(config)


def group_title(key: tuple[str, str, str, str]) -> str:
    dataset, protocol, classifier, recipe = key
    return f"{dataset} · {protocol} · {classifier} · recipe {recipe}"


def summarise(records: list[dict], settings: Settings | None = None) -> list[dict]:
    """One row per (group, result config: the method with every field that changes a result), ``none`` first in
    each group, each with its comparisons against the references (``settings``), decided within the report's one
    Holm family; a row with a repeated seed is refused."""
    settings = settings or Settings()
    groups, curves = _collect(records)
    rows = [_row(key, sorted(runs, key=lambda r: (r["seed"], r["run_id"]))) for key, runs in groups.items()]
    for group in by_group(rows).values():
        _name_rows(group)
    rows.sort(key=lambda row: (row["group"], row["method"] != "none", row["method"], row["key"]))
    _compare_all(rows, settings)
    for key, group in by_group(rows).items():
        if key in curves:
            _real_equivalents(group, curves[key])
    mark_headline(rows, settings.select_levers)
    return rows


def _collect(records: list[dict]) -> tuple[dict[tuple, list[dict]], dict[tuple, dict[int, dict[int, float]]]]:
    """Runs by (group, method, result key), and the real-image curve's points by group; a seed twice in one row or
    at one curve point is refused (a row pairs one run per seed)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    curves: dict[tuple, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    seen: dict[tuple, dict] = {}
    for r in records:
        per_class = r["config"].get("curve_per_class")
        key = group_key(r) + (r["config"]["method"] if not per_class else "", result_key(r["config"]))
        _refuse_repeat(seen, key, r)
        if per_class:  # a point of the real-image curve, not a row
            curves[group_key(r)][r["seed"]][per_class] = r["test_auc"]
        else:
            groups[key].append(r)
    return groups, curves


def _refuse_repeat(seen: dict[tuple, dict], key: tuple, run: dict) -> None:
    """One run per seed and row: a second is refused, naming both runs."""
    other = seen.setdefault(key + (run["seed"],), run)
    if other is not run:
        raise SynthmedError(
            f"runs {other['run_id']} and {run['run_id']} are the same row ({method_label(run['config'])}) with the "
            f"same seed {run['seed']}: a row pairs one run per seed; remove one of them from the folder"
        )


def _row(key: tuple, runs: list[dict]) -> dict:
    """A row's statistics over its runs (one per seed); its label is set by ``_name_rows``."""
    dataset, protocol, classifier, recipe = key[:4]
    config = runs[0]["config"]
    method = method_label(config)
    row = {
        "group": key[:4],
        "key": key[5],
        "dataset": dataset,
        "protocol": protocol,
        "classifier": classifier,
        "recipe": recipe,
        "method": method,
        "base_method": config["method"],
        "levers": " ".join(lever_parts(config)),
        "policy": " ".join(policy_parts(config)),
        "lever_label": method_label(config, params=False),
        "params": params_label(config),
        "n": len(runs),
        "seeds": sorted(r["seed"] for r in runs),
        "epochs": sorted({r["epochs_run"] for r in runs}),
        "time": sum(r["total_time"] for r in runs),
        "runs": runs,
    }
    for metric in ("test_auc", "test_acc", "val_auc", "test_selected_auc", "test_selected_acc"):
        row[metric] = interval([r.get(metric) for r in runs])
    plain = method == config["method"]  # no lever changed: the paper's setting
    row["published"] = published(dataset, protocol, method) if classifier == "resnet18" and plain else None
    row["synthetic"] = _synthetic_summary(runs)
    row["grid"] = _first_grid(runs)
    return row


def _name_rows(group: list[dict]) -> None:
    """Rows of a group that ``method_label`` would name alike get the result fields they differ in appended
    (``flip epochs 100``), so every row's label names everything that changes its result."""
    by_label: dict[str, list[dict]] = defaultdict(list)
    for row in group:
        by_label[row["method"]].append(row)
    for rows in by_label.values():
        if len(rows) < 2:
            continue
        configs = [row["runs"][0]["config"] for row in rows]
        for row, config in zip(rows, configs):
            extra = distinguishing_parts(config, [c for c in configs if c is not config])
            row["method"] = " ".join([row["method"], *extra])
            row["lever_label"] = " ".join([row["lever_label"], *extra])


def _real_equivalents(group: list[dict], curve: dict[int, dict[int, float]]) -> None:
    """Each row's worth in real images per class at the protocol's own count, from the paired differences with
    ``none`` it was compared on and the group's real-image curve (``equivalents``)."""
    from synthmed.report.equivalents import real_equivalent

    none = next((r for r in group if r["method"] == "none"), None)
    if none is None:
        return
    anchor = anchor_per_class(none["runs"][0])
    if anchor is None:
        return
    none["real_equivalent"] = {"point": 0.0, "anchor": anchor, "text": f"0 (the baseline, {anchor} per class)"}
    none["curve"] = dict(curve)
    for row in group:
        versus = (row.get("comparisons") or {}).get("none")
        pairs, _ = pair_runs(row, none)
        if row is none or versus is None or versus.blocked or len(pairs) < 2:
            continue  # pairs across precisions are no pairs, here either
        row["curve"] = dict(curve)
        diffs = {r["seed"]: r["test_auc"] - ref["test_auc"] for r, ref in pairs}
        fits = {r["seed"]: generator_fit(r["config"], r["seed"]) for r, _ in pairs}
        clusters = None if all(v is None for v in fits.values()) else fits
        worth = real_equivalent(dict(curve), diffs, anchor, clusters)
        if worth is not None:
            worth["decided"] = versus.decided and versus.verdict != EQUIVALENT
        row["real_equivalent"] = worth


def anchor_per_class(run: dict) -> int | None:
    """The real images per class a ``none`` run trained on, where its protocol draws an even count per class (the
    worth's anchor): ``--real-per-class`` or the lowdata default; None otherwise (BreastMNIST's official split)."""
    from synthmed.data.protocol import DEFAULT_PER_CLASS, LOWDATA_KEEPS_OFFICIAL

    config = run["config"]
    if config["protocol"] != "lowdata":
        return None
    if config.get("real_per_class"):
        return int(config["real_per_class"])
    return None if run["dataset"] in LOWDATA_KEEPS_OFFICIAL else DEFAULT_PER_CLASS


def reference_row(row: dict, group: list[dict], reference: str) -> dict | None:
    """The row ``row`` is compared with: ``reference`` at the same levers if the group holds it, else at the same
    sampling policy (``--balance`` with ``--select-generator fid`` meets ``oversample --balance``), else plain
    ``reference``; never the row itself."""
    candidates = [r for r in group if r["base_method"] == reference and not r["params"]]
    same_levers = [r for r in candidates if r["levers"] == row["levers"]]
    same_policy = [r for r in candidates if r["policy"] == row["policy"]]
    for r in same_levers + same_policy + [r for r in candidates if not r["levers"]]:
        if r is not row:
            return r
    return None


def platform(run: dict) -> tuple[str | None, str | None]:
    """What a seed's result depends on besides its config: the precision it ran at and the CPU kernel level torch
    dispatched to (older records lack the latter). Runs pair only when these agree."""
    return run.get("precision"), (run.get("versions") or {}).get("cpu_capability")


def pair_runs(row: dict, reference: dict) -> tuple[list[tuple[dict, dict]], list[tuple[dict, dict]]]:
    """(pairs, mixed): the runs of ``row`` and ``reference`` on the same seed, split into those on the same
    ``platform`` and those across precisions or kernel levels (which are not pairs)."""
    base = {r["seed"]: r for r in reference["runs"]}
    pairs: list[tuple[dict, dict]] = []
    mixed: list[tuple[dict, dict]] = []
    for r in sorted(row["runs"], key=lambda r: r["seed"]):
        ref = base.get(r["seed"])
        if ref is not None:
            (pairs if platform(r) == platform(ref) else mixed).append((r, ref))
    return pairs, mixed


def paired(row: dict, reference: dict, metric: str) -> list[float]:
    """``metric`` of ``row`` minus that of ``reference``, once per seed both ran on the same platform."""
    return [r[metric] - ref[metric] for r, ref in pair_runs(row, reference)[0]]


def _comparison(row: dict, ref: dict, settings: Settings) -> Comparison:
    """``row`` against ``ref`` on test AUC: same-platform pairs only, averaged within shared generator fits, blocked
    from any decision where some seeds ran on another platform; the reference's mean over the same seeds."""
    pairs, mixed = pair_runs(row, ref)
    fits = [generator_fit(r["config"], r["seed"]) for r, _ in pairs]
    clusters = None if all(f is None for f in fits) else fits
    comparison = compare(
        [r["test_auc"] - b["test_auc"] for r, b in pairs],
        row["method"],
        ref["method"],
        "test_auc",
        margin=settings.margin,
        alpha=settings.alpha,
        clusters=clusters,
        blocked="mixed precision" if mixed else "",
    )
    acc = cluster_means([r["test_acc"] - b["test_acc"] for r, b in pairs], clusters)
    row.setdefault("acc_diffs", {})[ref["base_method"]] = (*interval(acc, 1 - settings.alpha), len(acc))
    if mixed:
        row.setdefault("mixed", {})[ref["base_method"]] = [r["seed"] for r, _ in mixed]
    reference_mean = float(np.mean([b["test_auc"] for _, b in pairs])) if pairs else math.nan
    return dataclasses.replace(comparison, reference_mean=reference_mean)


def _compare_all(rows: list[dict], settings: Settings) -> None:
    """Each row's comparison with each reference its group holds (test AUC: verdict at the margin; test ACC:
    interval only), all the report's comparisons adjusted as one Holm family."""
    found: list[tuple[dict, str, Comparison]] = []
    for group in by_group(rows).values():
        done: list[str] = []  # references compared with the later ones already (none vs oversample: its mirror)
        for reference in settings.references():
            for row in group:
                ref = reference_row(row, group, reference)
                # a reference is not compared with itself, but `none` with a lever (class weights) is with `none`
                itself = row["base_method"] == reference and (reference != "none" or not row["levers"])
                if ref is None or itself or row["base_method"] in done:
                    continue
                found.append((row, reference, _comparison(row, ref, settings)))
            done.append(reference)
    for (row, reference, _), adjusted in zip(found, adjust([c for _, _, c in found])):
        row.setdefault("comparisons", {})[reference] = adjusted


def family_text(rows: list[dict]) -> str:
    """The report's Holm family in words: how many comparisons it holds and which stay outside it."""
    comparisons = [c for row in rows for c in (row.get("comparisons") or {}).values()]
    inside = sum(1 for c in comparisons if c.eligible)
    few = sum(1 for c in comparisons if not c.eligible and not c.blocked)
    blocked = sum(1 for c in comparisons if c.blocked)
    return (
        f"Holm family: the {inside} comparisons of test AUC in this report (every group, against none and the "
        f"second reference) with at least {MIN_PAIRS} paired units on one precision; {few} with fewer "
        f"units and {blocked} whose pairs mix precisions or CPU kernel levels are outside it and undecided."
    )


# -------------------------------------------------------------------------------------------------- headline


def mark_headline(rows: list[dict], rule: str = "val_auc") -> None:
    """``--select-levers val_auc`` as the report's rule for headline tables: among the variants of one method in a
    group (same method, other levers or hyper-parameters), the row with the best mean validation AUC is the
    headline row (``row["headline"]``); the others stay in the full tables. Controls (none, oversample) and rows
    whose variants lack validation AUC are always headline rows. ``rule="none"`` makes every row a headline row."""
    if rule not in SELECT_LEVERS:
        raise SynthmedError(f"--select-levers {rule!r}: choose one of {', '.join(SELECT_LEVERS)}")
    for group in by_group(rows).values():
        variants: dict[str, list[dict]] = defaultdict(list)
        for row in group:
            variants[row["base_method"]].append(row)
        for method, rows_of in variants.items():
            scored = [r for r in rows_of if not math.isnan(r["val_auc"][0])]
            best = max(scored, key=lambda r: r["val_auc"][0]) if scored else None
            for r in rows_of:
                r["headline"] = rule == "none" or method in CONTROLS or best is None or r is best


#: Methods whose variants are separate controls, never competing levers of one method.
CONTROLS = ("none", "oversample")
#: Rules for the headline row of a method's variants.
SELECT_LEVERS = ("val_auc", "none")


def by_group(rows: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["group"]].append(row)
    return groups


def _synthetic_summary(runs: list[dict]) -> dict | None:
    """Mean audit figures of the runs' synthetic sets (None for methods that generate nothing)."""
    parts = [p for p in (RunRecord.from_json(r).synthetic for r in runs) if p]
    if not parts:
        return None

    def values(figure: Callable[[SyntheticAudit], float | None]) -> list[float]:
        return [v for v in map(figure, parts) if v is not None]

    flags: dict[str, int] = defaultdict(int)
    for p in parts:
        for flag in p.flags or []:
            flags[flag] += 1
    return {
        "n": len(parts),
        "per_run": parts[0].n,
        "fidelity": interval(values(lambda p: p.fidelity)),
        "reference_acc": interval(values(lambda p: p.reference_test_acc)),
        "reference_recall": interval(values(lambda p: p.reference_val_recall)),
        "near_copy": interval(values(lambda p: p.near_copy_share)),
        "held_out": interval(values(lambda p: p.held_out_near_copy_share)),
        "memorised": interval(values(lambda p: p.memorised_share)),
        "memorised_held_out": interval(values(lambda p: p.held_out_memorised_share)),
        "memorised_features": interval(values(lambda p: p.memorised_share_features)),
        "memorised_features_held_out": interval(values(lambda p: p.held_out_memorised_share_features)),
        "tstr_auc": interval(values(lambda p: p.tstr_auc)),
        "tstr_acc": interval(values(lambda p: p.tstr_acc)),
        "diversity": interval(values(lambda p: p.min_diversity)),
        "kept": interval(values(lambda p: p.kept_share)),
        "candidates": interval(values(lambda p: p.fidelity_candidates)),
        "fid": interval(values(lambda p: p.fid)),
        "kid": interval(values(lambda p: p.kid)),
        "precision": interval(values(lambda p: p.precision)),
        "recall": interval(values(lambda p: p.recall)),
        "coverage": interval(values(lambda p: p.coverage)),
        "fid_over_epochs": [p.fid_over_epochs for p in parts if p.fid_over_epochs],
        "generator_s": interval([p.generator_seconds for p in parts if not p.generator_cached]),
        "flags": dict(flags),
        "reconstructions": any(p.reconstructions_by_design for p in parts),
    }


def _first_grid(runs: list[dict]) -> str | None:
    """Relative path of the image grid of the lowest seed's run, if it has one."""
    for r in sorted(runs, key=lambda r: r["seed"]):
        if RunRecord.from_json(r).synthetic:
            return f"runs/{r['run_id']}/synthetic_grid.png"
    return None


# ------------------------------------------------------------------------------------------------- cell formats


def fmt_interval(mean_std_ci: tuple[float, float, float]) -> str:
    """``mean ± std [interval]``, the interval clipped to the metric's range [0, 1]."""
    mean, std, ci = mean_std_ci
    if math.isnan(mean):
        return "–"
    if math.isnan(std):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {std:.3f} [{max(0.0, mean - ci):.3f}, {min(1.0, mean + ci):.3f}]"


def fmt_comparison(c: Comparison | None) -> str:
    """``+0.012 [-0.004, +0.028] undecided (Holm p 0.41)``: the unadjusted t-interval at the report's level (shown,
    not deciding), the verdict of the Holm-adjusted one, its adjusted p, and the units where they are not seeds."""
    if c is None:
        return ""
    if c.n == 0:
        return c.verdict if c.blocked else ""
    if c.n < 2:
        return f"{c.mean:+.3f} (n={c.n}) {c.verdict}"
    notes = [f"Holm p {c.p_holm:.2g}"] if c.p_holm is not None else []
    if c.unit != "seeds":
        notes.append(f"n = {c.n} {c.unit}")
    text = f"{c.mean:+.3f} [{max(-1.0, c.t_low):+.3f}, {min(1.0, c.t_high):+.3f}] {c.verdict}"
    if notes and text.endswith(")"):  # "undecided (n < 5)": one parenthesis for both
        return f"{text[:-1]}; {'; '.join(notes)})"
    return text + (f" ({'; '.join(notes)})" if notes else "")


def fmt_diff(diff: tuple | None) -> str:
    """``+0.012 [-0.004, +0.028]`` for an (mean, std, half-width, n) paired difference."""
    if not diff:
        return ""
    mean, _, ci, n = diff
    if math.isnan(ci):
        return f"{mean:+.3f} (n={n})"
    return f"{mean:+.3f} [{max(-1.0, mean - ci):+.3f}, {min(1.0, mean + ci):+.3f}]"


def fmt_mean_std(values: tuple[float, float, float], percent: bool = False) -> str:
    mean, std, _ = values
    if math.isnan(mean):
        return "–"
    if percent:
        return f"{mean * 100:.1f}" + ("" if math.isnan(std) else f" ± {std * 100:.1f}") + " %"
    return f"{mean:.3f}" + ("" if math.isnan(std) else f" ± {std:.3f}")


def _epochs(row: dict) -> str:
    low, high = min(row["epochs"]), max(row["epochs"])
    return f"{low}-{high}" if low != high else str(low)


# ---------------------------------------------------------------------------------------------------- tables


def level_text(alpha: float) -> str:
    """The interval level for an error rate: 95 for 0.05, 98.3 for 0.05 / 3."""
    return f"{100 * (1 - alpha):.4g}"


def results_table(rows: list[dict], caption: str = "", settings: Settings | None = None) -> Table:
    """The main table of a group: scores, the comparisons with ``none`` and the second reference (Δ AUC with its
    t-interval and verdict at the margin), the detectable difference, the test-selected and published figures."""
    settings = settings or Settings()
    level = level_text(settings.alpha)
    second = settings.references()[1]
    has_second = any(second in (row.get("comparisons") or {}) for row in rows)
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
    if has_second:
        columns.append(f"Δ AUC vs {second} [{level} % CI, unadjusted], verdict (Holm)")
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
        if has_second:
            cells.append(fmt_comparison(comparisons.get(second)))
        if has_curve:
            worth = row.get("real_equivalent")
            cells.append("" if worth is None or row["method"] == "none" else worth["text"])
        cells += [
            _detectable(none),
            optimistic,
            f"{paper[1][0]:.3f} / {paper[1][1]:.3f} ({paper[0]})" if paper else "",
            _epochs(row),
        ]
        table.rows.append(cells)
    return table


#: The columns of the terminal table at the end of ``synthmed run`` (by their start: levels and margins vary).
TERMINAL_COLUMNS = ["method", "seeds", "test AUC (mean ± std [95 % CI])", "Δ AUC vs none", "Δ AUC vs "]


def terminal_table(table: Table) -> Table:
    """The results table's columns for the terminal: each column of ``TERMINAL_COLUMNS`` found by its name or, for
    the Δ columns, by the start of its name (the second reference's only if present)."""
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


def _pair(first: tuple, second: tuple) -> str:
    """``12.0 % / 3.5 %`` of two (mean, std, ci) shares, means only."""
    return " / ".join("–" if math.isnan(v[0]) else f"{100 * v[0]:.1f} %" for v in (first, second))


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
    table = Table(caption, list(SYNTHETIC_COLUMNS))
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
                _pair(syn["memorised"], syn["memorised_features"]),
                _pair(syn["memorised_held_out"], syn["memorised_features_held_out"]),
                "–"
                if math.isnan(syn["tstr_auc"][0])
                else f"{fmt_mean_std(syn['tstr_auc'])} / {syn['tstr_acc'][0]:.3f}",
                fmt_mean_std(syn["diversity"]),
                fmt_mean_std(syn["kept"], percent=True),
                "–" if math.isnan(syn["generator_s"][0]) else f"{syn['generator_s'][0]:.0f}",
                flags,
            ]
        )
    return table


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


def robustness_table(by_method: dict[str, list[dict]]) -> Table:
    """Per method (mean ± std over its runs' reports): clean ACC, ACC averaged over the whole perturbation suite,
    and ACC under FGSM and PGD at every attack strength."""

    def cell(values: list[float]) -> str:
        mean, std, _ = interval(values)
        return f"{mean:.3f}" + ("" if math.isnan(std) else f" ± {std:.3f}")

    first = next(iter(by_method.values()))[0]["metrics"]["robustness"]
    attacks = [
        (name, point["eps_255"]) for name, points in first["attacks"].items() for point in points if point["eps"] > 0
    ]
    table = Table(
        "Accuracy (mean ± std over seeds):",
        [
            "method",
            "seeds",
            "clean ACC",
            "ACC, perturbation suite (mean)",
            *[f"{name.upper()} {eps:g}/255 ACC" for name, eps in attacks],
        ],
    )
    for method, runs in by_method.items():
        reports = [r["metrics"]["robustness"] for r in runs]
        suite = [np.mean([p["acc"] for points in rep["perturbations"].values() for p in points]) for rep in reports]
        attacked = [
            cell([next(p["acc"] for p in rep["attacks"][name] if p["eps_255"] == eps) for rep in reports])
            for name, eps in attacks
        ]
        table.rows.append(
            [
                method,
                ",".join(str(r["seed"]) for r in runs),
                cell([rep["clean"]["acc"] for rep in reports]),
                cell(suite),
                *attacked,
            ]
        )
    return table


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
    "pairs",
    "unit",
    "reference_mean",
    "verdict",
)


def _detectable(c: Comparison | None) -> str:
    """The detectable difference at 80 % power, and for an undecided row the seeds equivalence would need at the
    observed spread (``0.031; ~25 seeds for ±0.01``): what more seeds could buy."""
    if c is None or not math.isfinite(c.mde):
        return ""
    text = f"{c.mde:.3f}"
    if not c.decided and c.units_for_equivalence and c.units_for_equivalence > c.n:
        text += f"; ~{c.units_for_equivalence} {c.unit} for ±{c.margin:g}"
    return text


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

FIGURE_CAPTIONS = {
    "grid": "image grid, top row real",
    "tsne": "t-SNE of in-domain features, real vs synthetic",
    "fid": "FID / KID over generator training",
}


def _row_figures(out: Path, row: dict) -> list[Figure]:
    """The lowest seed's grid, t-SNE and FID-over-epochs figures that exist, referenced from the report."""
    if not row.get("grid"):
        return []
    # The lowest seed whose figures exist: an export or a moved folder may lack the lowest seed's run folder.
    grid = next(
        (g for r in row["runs"] if (out / (g := f"runs/{r['run_id']}/synthetic_grid.png")).exists()), row["grid"]
    )
    seed = next((r["seed"] for r in row["runs"] if grid == f"runs/{r['run_id']}/synthetic_grid.png"), None)
    figures = []
    for kind, caption in FIGURE_CAPTIONS.items():
        path = grid.replace("_grid.png", f"_{kind}.png")
        if (out / path).exists():
            figures.append(
                Figure(
                    path,
                    (out / path).read_bytes(),
                    f"{row['method']} {kind}",
                    f"{row['method']}: {caption} (seed {seed})",
                )
            )
    return figures


HEADLINE_CAPTION = (
    "Headline (--select-levers val_auc): of each method's variants (other levers or hyper-parameters), the one with "
    "the best mean validation AUC; every row is in the full table below."
)


def group_sections(out: Path, records: list[dict], rows: list[dict], settings: Settings | None = None) -> list[Section]:
    """Per group: sizes, the results table, the verdicts in words, the per-seed plot, and for generative methods
    the synthetic-data table, FID over epochs and figures."""
    settings = settings or Settings()
    from synthmed.report.figures import group_plot

    sections = []
    for index, (key, group) in enumerate(by_group(rows).items()):
        title = group_title(key)
        runs = [r for r in records if group_key(r) == key]
        sizes = f"n_train {runs[0]['n_train']} · n_val {runs[0]['n_val']} · n_test {runs[0]['n_test']}"
        headline = [row for row in group if row["headline"]]
        blocks: list[Table | Figure | Paragraph | Bullets] = [Paragraph(sizes)]
        if len(headline) < len(group):
            blocks += [results_table(headline, HEADLINE_CAPTION, settings), Paragraph("All rows:")]
        blocks.append(results_table(group, settings=settings))
        verdicts = verdict_bullets(group, settings)
        if verdicts:
            blocks.append(Bullets(verdicts))
        blocks.append(
            Figure(f"report_{index}.png", group_plot(runs, title), "test AUC and ACC per seed, validation curves")
        )
        section = Section(title, blocks)
        sections.append(section)
        sections += _curve_sections(group, title, index)
        synthetic_rows = [row for row in group if row["synthetic"]]
        none_row = next((row for row in group if row["method"] == "none"), None)
        if synthetic_rows:
            part = Section(
                "Synthetic data: class fidelity, memorisation, collapse, FID",
                [synthetic_table(synthetic_rows, none_row["test_auc"] if none_row else None)],
                level=3,
            )
            fid = fid_over_epochs_table(synthetic_rows)
            if fid is not None:
                part.blocks.append(fid)
            part.blocks += [f for row in synthetic_rows for f in _row_figures(out, row)]
            sections.append(part)
    return sections


def _curve_sections(group: list[dict], title: str, index: int) -> list[Section]:
    """The real-image curve with each method marked on it, and test AUC against the synthetic:real ratio, where
    the group has them."""
    from synthmed.report.figures import curve_plot, ratio_plot

    sections = []
    none = next((row for row in group if row["method"] == "none" and row.get("real_equivalent")), None)
    if none is not None:
        curve, anchor = none["curve"], none["real_equivalent"]["anchor"]
        priced = [row for row in group if row is not none and row.get("real_equivalent")]
        marks = {
            row["method"]: (row["real_equivalent"]["auc"], row["real_equivalent"]["real_per_class"]) for row in priced
        }
        items = [f"{row['method']}: worth {row['real_equivalent']['text']}" for row in priced]
        items += [
            f"{row['method']}: not priced ({row['comparisons']['none'].verdict})"
            for row in group
            if row is not none and not row.get("real_equivalent") and "none" in (row.get("comparisons") or {})
        ]
        sizes = sorted(set.intersection(*(set(points) for points in curve.values())))
        sections.append(
            Section(
                f"Real-image equivalents: {title}",
                [
                    Paragraph(
                        f"none trained on {', '.join(map(str, sizes))} real images per class (nested within each "
                        f"seed's real pool). Each method is priced at the protocol's own count, {anchor} real images "
                        f"per class: its paired differences with none (the same ones its verdict tests) divided by "
                        "the curve's slope in log(images) next to it, below for a loss and above for a gain; the "
                        "interval is Fieller's 95 % interval of that ratio over seeds (generator fits where seeds "
                        "share them), with t quantiles. It is a transform of the same differences as the AUC "
                        "comparison, not an independent confirmation, and it is read as decided only where that "
                        "comparison is."
                    ),
                    Bullets(items),
                    Figure(
                        f"report_curve_{index}.png",
                        curve_plot(curve, marks, f"real-image curve · {title}"),
                        "real-image curve",
                    ),
                ],
                level=3,
            )
        )
    series: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for row in group:
        config = row["runs"][0]["config"]
        ratio = (config.get("synthesis") or {}).get("synthetic_ratio")
        if ratio is not None and not row["params"]:
            rest = {**config, "synthesis": {**config["synthesis"], "synthetic_ratio": None}}
            series[" ".join([row["base_method"], *lever_parts(rest)])].append(
                (float(ratio), row["test_auc"][0], row["test_auc"][1])
            )
    series = {m: points for m, points in series.items() if len(points) >= 2}
    if series:
        none_row = next((row for row in group if row["method"] == "none"), None)
        png = ratio_plot(series, none_row["test_auc"][0] if none_row else None, f"synthetic : real ratio · {title}")
        sections.append(
            Section(
                f"Synthetic : real ratio: {title}",
                [Figure(f"report_ratio_{index}.png", png, "test AUC against the ratio")],
                level=3,
            )
        )
    return sections


def _per_class(n: float) -> str:
    if math.isinf(n):
        return "more than the curve's last point" if n > 0 else "fewer than the curve's first point"
    return f"{n:.0f}"


def robustness_sections(out: Path, records: list[dict]) -> list[Section]:
    """Per group with ``--robustness`` runs: accuracy curves under perturbations and attacks (mean and range over
    seeds, one line per method) and an EigenGradCAM panel (lowest seed of each method, same test images)."""
    from synthmed.data.medmnist import medmnist_class_names
    from synthmed.report.figures import panel_from_maps, robustness_plot

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if (r.get("metrics") or {}).get("robustness"):
            groups[group_key(r)].append(r)
    sections = []
    for index, (key, runs) in enumerate(groups.items()):
        title = group_title(key)
        by_method: dict[str, list[dict]] = defaultdict(list)
        for r in sorted(runs, key=lambda r: (r["method"] != "none", r["seed"])):
            by_method[method_label(r["config"])].append(r)
        settings = runs[0]["metrics"]["robustness"]
        n, attacked = settings["n"], settings["settings"].get("attack_images", settings["n"])
        scope = (
            f"Perturbations on all {n} test images; FGSM and PGD ({settings['settings']['pgd']['steps']} steps, "
            "no random start) on "
            + (f"a fixed class-stratified subset of {attacked} of them." if attacked < n else "all of them.")
        )
        curves = robustness_plot(
            {m: [r["metrics"]["robustness"] for r in rs] for m, rs in by_method.items()}, f"robustness · {title}"
        )
        section = Section(
            f"Robustness and explanations: {title}",
            [
                Paragraph(scope),
                robustness_table(by_method),
                Figure(f"report_robustness_{index}.png", curves, "robustness"),
            ],
        )
        columns: list[tuple[str, str, np.ndarray, np.ndarray | None]] = []
        images, targets, names = None, None, medmnist_class_names(runs[0]["dataset"])
        for method, rs in by_method.items():
            cam = load_cam(out / "runs" / rs[0]["run_id"])
            if cam is not None:
                images, targets = cam["images"], cam["targets"]
                names = cam["class_names"].tolist() if "class_names" in cam else names
                columns.append(
                    (f"{method}\nseed {rs[0]['seed']}", "map", cam["eigengradcam"].astype(np.float32), cam["probs"])
                )
        if columns and images is not None and targets is not None:
            panel = panel_from_maps(images, targets, names, columns, f"EigenGradCAM of the true class · {title}")
            section.blocks.append(Figure(f"report_eigengradcam_{index}.png", panel, "eigengradcam"))
        sections.append(section)
    return sections


def load_cam(run_dir: Path) -> dict[str, np.ndarray] | None:
    """A run's CAM maps: ``cam.npz`` in a run folder, or its base64 copy ``cam.json`` in an export (exports hold
    text only); None when the run has neither."""
    import base64
    import io
    import json

    if (run_dir / "cam.npz").exists():
        data = (run_dir / "cam.npz").read_bytes()
    elif (run_dir / "cam.json").exists():
        data = base64.b64decode(json.loads((run_dir / "cam.json").read_text())["npz_base64"])
    else:
        return None
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


HARDWARE_KEYS = ("cpu", "cpus", "cpu_capability", "gpu", "machine", "processor", "torch_threads")


def header(records: list[dict]) -> list[str]:
    """Runs, compute time, devices, hardware and library versions (of the newest run; older runs' versions are
    in their records)."""
    versions = max(records, key=lambda r: r.get("created") or "")["versions"]
    total = sum(r["total_time"] or 0 for r in records)
    used = Counter(f"{r['device']} ({r['precision']})" for r in records)
    # a study resumed on another machine mixes precisions (bf16 where the CPU has it): say how many of each
    devices = sorted(used) if len(used) == 1 else [f"{d} × {n}" for d, n in sorted(used.items())]
    hardware = {k: versions[k] for k in HARDWARE_KEYS if k in versions}
    cpu = hardware.get("cpu") or hardware.get("processor", "unknown")
    cpus = f"{hardware['cpus']} × {cpu}" if "cpus" in hardware else cpu  # older records lack the count and GPU
    if "cpu_capability" in hardware:
        cpus += f" ({hardware['cpu_capability']} kernels)"
    gpu = f", GPU {hardware['gpu']}" if "gpu" in hardware else ""
    return [
        f"{len(records)} runs · total compute {total / 3600:.2f} h ({total / 60:.1f} min) · "
        f"device {', '.join(devices)}",
        f"hardware: CPU {cpus}{gpu}, {hardware.get('torch_threads', '?')} torch threads per run",
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k not in HARDWARE_KEYS),
    ]


NOTES = [
    "Test figures are of the epoch selected on validation only (highest validation AUC; ties broken by the "
    "lowest validation loss); the test split is scored once per run.",
    "Δ columns pair each run with the run of the reference (`none`, or the count-matched `oversample` control at "
    "the same sampling policy) on the same seed, and only where both ran at the same precision and CPU kernel level; "
    "a comparison whose seeds mix them is marked 'undecided (mixed precision)' and shows the same-platform pairs "
    "alone. Where seeds share a generator fit (--generator-seeds K), their differences are averaged within each fit "
    "and the interval is over fits (n = generator fits). Verdicts on test AUC are decided on Holm-adjusted "
    "intervals within the report's family (below): better when the t-interval at the comparison's Holm step-down "
    "level lies above 0, worse when below; equivalent when the interval of two one-sided tests at its (separate) "
    "Holm level lies inside ± the margin; both at once reads 'better (worse), by less than the margin'; otherwise "
    f"undecided. Fewer than {MIN_PAIRS} paired units is never decided ('undecided (n < {MIN_PAIRS})'). The interval "
    "shown is unadjusted and does not decide. A percentile bootstrap interval over seeds is computed beside the "
    "t-interval and the sentence says where the two disagree. The detectable Δ is the smallest true difference the "
    "seeds would find with 80 % power at the observed paired spread, unadjusted. The 'none on the same seeds' column "
    "is none's mean over the seeds paired with the row.",
    "The test-selected column (only for --report-test-selected runs) is the maximum test score over epochs, the "
    "protocol of Chaptoukaev 2021's Table 2: it selects on the test set and is optimistic.",
    "Class fidelity: accuracy of a reference ResNet-18 trained on the run's real training subset (medmnist "
    "recipe, batch halved on small subsets so an epoch takes 4 steps, selected on validation) on the synthetic "
    "images scored against their intended labels; compare it with the reference's recall on real validation images "
    "of the same classes (what it would score if the synthetic images were real; '–' for runs before it was "
    "recorded), since a reference trained on imbalanced data recognises few minority images, real or synthetic. "
    "Near-copies: share of synthetic images whose distance to the nearest training image is below 0.1 x the "
    "median nearest-neighbour distance inside the training set, beside the same share for real validation images. "
    "Diversity: median pairwise distance of a class's synthetic images over that of its real images (collapse "
    "below 0.1).",
    "FID, KID, precision / recall / coverage: synthetic vs the real training subset (only its images of the classes "
    "the synthetic set fills, e.g. the minority classes under --balance) in the feature space of the "
    "same reference classifier (its 512-d penultimate layer). In-domain numbers are not comparable with published "
    "ImageNet-Inception FIDs; KID's subset size adapts to small sets.",
    "Published numbers are shown only for a method at the paper's setting (no lever changed).",
]


def notes_section(
    settings: Settings | None = None, stop: dict | None = None, rows: list[dict] | None = None
) -> Section:
    """The rules behind the numbers, with this report's margin, interval level and Holm family, and for
    ``--seeds auto`` when and why seeds stopped being added."""
    settings = settings or Settings()
    items = [
        f"Margin of equivalence: ±{settings.margin:g} AUC; the paired differences' intervals and verdicts at "
        f"{level_text(settings.alpha)} % (alpha {settings.alpha:.4g}) before Holm's adjustment"
        + ("." if settings.alpha == 0.05 else "; the test AUC / ACC columns and the real-image worth at 95 %."),
        *([family_text(rows)] if rows is not None else []),
        *NOTES,
    ]
    if stop:
        looks, alpha = stop["planned_looks"], stop["alpha"]
        rounds = f"rounds of {stop['step']} from {stop['start']} up to at most {stop['max_seeds']}"
        text = (
            f"Seeds until decided (--seeds auto): seeds were run in {rounds}, looking after each round at every "
            f"method's verdict against none. To keep the overall error rate at {alpha:g} over the {looks} planned "
            f"looks, each look (and every interval in this report) uses alpha {alpha:g} / {looks} = "
            f"{stop['look_alpha']:.4g} (Bonferroni). It stopped after {stop['seeds']} seeds: {stop['reason']}."
        )
        items.insert(1, text)
    return Section("Notes", [Bullets(items)])
