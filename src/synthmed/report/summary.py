"""The summary of a set of runs, built once: statistics per (group, method), from which ``tables`` builds the
report's tables and ``sections`` its sections (``formats`` writes the numbers); the robustness part is here too.

A *group* is (dataset, protocol with its parameters, classifier with its dropout, recipe); within it, a *row* is a
method with its levers and hyper-parameters. Per row: mean ± std over seeds and a 95 % t-interval of test AUC and
ACC; its comparisons with ``none``, with the count-matched ``oversample`` control at the same sampling policy where
the group holds it, and with a third reference where ``--reference`` names one (``pseudo-label``: the unlabelled real
images a generator's row competes with), paired by seed, with a verdict
against a margin (``synthmed.report.stats``); the optimistic test-selected figure when runs used
``--report-test-selected``; the published numbers of the implemented papers where the setting matches; and the
audit of its synthetic sets. ``synthmed.report.render`` turns the tables into Markdown, HTML, CSV and the terminal.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthmed.errors import SynthmedError
from synthmed.record import RunRecord, SyntheticAudit
from synthmed.report.model import Figure, Paragraph, Section, Table
from synthmed.report.papers import published
from synthmed.report.stats import EQUIVALENT, MIN_PAIRS, Comparison, adjust, cluster_means, compare, interval
from synthmed.spec import (
    TEACHER_FIELDS,
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

#: The count-matched control every row is also compared with, where the group holds it.
DEFAULT_REFERENCE = "oversample"
#: The references every report compares with; ``--reference`` naming one of them adds nothing.
BUILT_IN = ("none", DEFAULT_REFERENCE)


@dataclass(frozen=True)
class Settings:
    """How the report decides: the equivalence margin (AUC), the error rate of each interval, and a reference compared
    besides ``none`` and the copies (``--reference``). ``alpha`` is already divided by the planned looks when seeds were
    added until decided (``looks`` says how many). ``select_levers``: the rule that picks each method's headline row.
    ``decided_at``: the comparisons the looks judged, by name, each with the seeds of the look that first decided it
    (None: undecided at every look); a decision is kept, so such a comparison shows that look's numbers."""

    margin: float = 0.01
    alpha: float = 0.05
    reference: str | None = None
    looks: int = 1
    select_levers: str = "val_auc"  # how the headline table picks among a method's variants ("none": shows all)
    decided_at: tuple[tuple[str, int | None], ...] = ()

    def references(self) -> list[str]:
        """``none``, the copies, and ``reference`` where it names a third: a control a study adds (``pseudo-label``)
        does not replace the copies every verdict is also judged against."""
        return ["none", DEFAULT_REFERENCE] + ([self.reference] if self.reference not in (None, *BUILT_IN) else [])


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
    _keep_decisions(rows, settings)
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
        key = row_key(r)
        _refuse_repeat(seen, key, r)
        if per_class:  # a point of the real-image curve, not a row
            curves[group_key(r)][r["seed"]][per_class] = r["test_auc"]
        else:
            groups[key].append(r)
    return groups, curves


def row_key(record: dict) -> tuple:
    """What a record is one seed of: its group and result config, a report row or a point of the real-image curve."""
    config = record["config"]
    return group_key(record) + (config["method"] if not config.get("curve_per_class") else "", result_key(config))


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
        "teacher": " ".join(policy_parts(config, TEACHER_FIELDS)),
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
    for run in none["runs"]:  # the curve's point at the anchor is none itself (the grid runs no copy of it)
        curve.setdefault(run["seed"], {}).setdefault(anchor, run["test_auc"])
    none["curve"] = dict(curve)
    for row in group:
        versus = (row.get("comparisons") or {}).get("none")
        pairs, _ = pair_runs(row, none)
        if versus is not None and versus.decided_at is not None:  # a kept decision: priced on the seeds of its look
            pairs = [(r, ref) for r, ref in pairs if r["seed"] < versus.decided_at]
        if row is none or versus is None or versus.blocked or len(pairs) < 2:
            continue  # pairs across precisions are no pairs, here either
        row["curve"] = dict(curve)
        diffs = {r["seed"]: r["test_auc"] - ref["test_auc"] for r, ref in pairs}
        units = fit_units(pairs)
        clusters = None if units is None else {r["seed"]: unit for (r, _), unit in zip(pairs, units)}
        worth = real_equivalent(dict(curve), diffs, anchor, clusters)
        if worth is not None:
            worth["decided"] = versus.decided and versus.verdict != EQUIVALENT
        row["real_equivalent"] = worth


def anchor_per_class(run: dict) -> int | None:
    """The real images per class a ``none`` run trained on, where its protocol draws an even count per class (the
    worth's anchor): ``--real-per-class`` or the lowdata default; None otherwise (BreastMNIST's official split)."""
    from synthmed.data.protocol import anchor_per_class as anchor

    config = run["config"]
    return anchor(config["protocol"], config.get("real_per_class"), run["dataset"])


def reference_row(row: dict, group: list[dict], reference: str) -> dict | None:
    """The row ``row`` is compared with: ``reference`` at the same levers if the group holds it, else at the same
    sampling policy and teacher (``ddpm --tstr --teacher hard --teacher-threshold 0.9`` meets ``pseudo-label`` at
    that teacher and threshold), else at the same sampling policy (``--balance`` with ``--select-generator fid``
    meets ``oversample --balance``), else plain ``reference``; never the row itself. Where several fit equally (a
    generator with its own labels meets pseudo-label at two thresholds), the one with the best mean validation AUC:
    the variant a user would pick, never the first listed."""
    candidates = [r for r in group if r["base_method"] == reference and not r["params"]]
    candidates.sort(key=lambda r: -r["val_auc"][0] if "val_auc" in r and not math.isnan(r["val_auc"][0]) else math.inf)
    same_levers = [r for r in candidates if r["levers"] == row["levers"]]
    same_policy = [r for r in candidates if r["policy"] == row["policy"]]
    same_teacher = [r for r in same_policy if r.get("teacher", "") == row.get("teacher", "")]
    for r in same_levers + same_teacher + same_policy + [r for r in candidates if not r["levers"]]:
        if r is not row:
            return r
    return None


#: The kernel levels whose bf16 work is oneDNN's: products of bf16 operands summed in fp32, results rounded to bf16.
BF16_PRODUCT_LEVELS = ("AVX512", "AMX")


def platform(run: dict) -> tuple[str | None, str | None]:
    """What a seed's result depends on besides its config: the precision it ran at and the CPU kernel level torch
    dispatched to (older records lack the latter). Runs pair only when these agree. bf16 runs whose products are
    summed in fp32 (oneDNN's kernels on AVX512 and AMX CPUs, and fp32 kernels on the bf16 operands where a record
    names ``bf16_kernels``) are one platform: they differ in the order of summation only, as AMX and AVX512-BF16
    CPUs always did. An AVX2 run from before ``bf16_kernels`` (PyTorch's reference bf16 kernels) stays apart."""
    versions = run.get("versions") or {}
    capability = versions.get("cpu_capability")
    if run.get("precision") == "bf16" and (versions.get("bf16_kernels") or capability in BF16_PRODUCT_LEVELS):
        return "bf16", "bf16 products summed in fp32"
    return run.get("precision"), capability


def pair_runs(row: dict, reference: dict) -> tuple[list[tuple[dict, dict]], list[tuple[dict, dict]]]:
    """(pairs, mixed): the runs of ``row`` and ``reference`` on the same seed, split into those on the same
    ``platform`` and those across precisions or kernel levels (which are not pairs)."""
    return pair_run_lists(row["runs"], reference["runs"])


def pair_run_lists(runs: list[dict], reference: list[dict]) -> tuple[list[tuple[dict, dict]], list[tuple[dict, dict]]]:
    """``pair_runs`` of two lists of runs."""
    base = {r["seed"]: r for r in reference}
    pairs: list[tuple[dict, dict]] = []
    mixed: list[tuple[dict, dict]] = []
    for r in sorted(runs, key=lambda r: r["seed"]):
        ref = base.get(r["seed"])
        if ref is not None:
            (pairs if platform(r) == platform(ref) else mixed).append((r, ref))
    return pairs, mixed


def fit_units(pairs: list[tuple[dict, dict]]) -> list[int] | None:
    """The unit each paired seed belongs to: seeds whose synthetic sets came from one generator fit, of either run,
    are not independent, so seeds linked through shared fits form one unit (its differences are averaged before
    the interval); None where every seed fitted its own generator (every seed its own unit)."""
    fits = [(generator_fit(r["config"], r["seed"]), generator_fit(b["config"], b["seed"])) for r, b in pairs]
    if all(mine is None and theirs is None for mine, theirs in fits):
        return None
    parent = list(range(len(pairs)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    first: dict[tuple[str, int], int] = {}
    for i, (mine, theirs) in enumerate(fits):
        for side, fit in (("run", mine), ("reference", theirs)):
            if fit is not None:
                parent[root(i)] = root(first.setdefault((side, fit), i))
    return [root(i) for i in range(len(pairs))]


def paired_units(
    runs: list[dict], reference: list[dict], figure: Callable[[dict], float | None]
) -> tuple[list[float], list[int] | None, bool]:
    """(differences, units, mixed): ``figure`` of each run minus its reference's on the same seed and platform
    (seeds where either lacks the figure left out), the unit of each difference (``fit_units``), and whether some
    seeds ran on another platform (which blocks any decision)."""
    pairs, mixed = pair_run_lists(runs, reference)
    diffs: list[float] = []
    kept: list[tuple[dict, dict]] = []
    for r, b in pairs:
        mine, theirs = figure(r), figure(b)
        if mine is not None and theirs is not None:
            diffs.append(mine - theirs)
            kept.append((r, b))
    return diffs, fit_units(kept), bool(mixed)


def _comparison(row: dict, ref: dict, settings: Settings) -> Comparison:
    """``row`` against ``ref`` on test AUC: same-platform pairs only, averaged within shared generator fits, blocked
    from any decision where some seeds ran on another platform; the reference's mean over the same seeds."""
    pairs, mixed = pair_runs(row, ref)
    clusters = fit_units(pairs)
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


def _keep_decisions(rows: list[dict], settings: Settings) -> None:
    """A comparison an earlier look of ``--seeds auto`` decided keeps that look's verdict: it is made again on the
    seeds of that look (the runs of every row the looks judged, so within the look's Holm family) and marked
    ``decided_at``, with the Δ ACC beside it from the same seeds (the worth follows, ``_real_equivalents``). Judging
    every comparison afresh on all the seeds would let a verdict come and go between looks (worse at 14 seeds,
    undecided at 16), which group sequential practice does not do: a boundary crossed stays crossed, and the
    Bonferroni split over the planned looks already pays for stopping at any of them. Where the folder no longer
    holds what the look saw (the comparison is not decided on those seeds), all the seeds judge it and the notes
    say so (``sections.seeds_needed_text``)."""
    decided = dict(settings.decided_at)
    if not decided:
        return
    judged: list[tuple[str, dict, str, dict]] = []  # (name, row, reference, reference row) of each judged comparison
    for key, group in by_group(rows).items():
        for row in group:
            for reference in row.get("comparisons") or {}:
                name = f"{group_title(key)}: {row['method']} vs {reference}"
                ref = reference_row(row, group, reference)
                if ref is not None and name in decided:
                    judged.append((name, row, reference, ref))
    runs = list({r["run_id"]: r for _, row, _, ref in judged for r in row["runs"] + ref["runs"]}.values())
    last = max((r["seed"] for r in runs), default=-1)
    plain = dataclasses.replace(settings, decided_at=())
    at_look: dict[int, dict[str, tuple[dict, str]]] = {}
    for name, row, reference, ref in judged:
        seeds = decided[name]
        if seeds is None or seeds > last:  # undecided, or decided at the look on every seed the folder holds
            continue
        if seeds not in at_look:
            then_rows = summarise([r for r in runs if r["seed"] < seeds], plain)
            at_look[seeds] = {
                f"{group_title(then['group'])}: {then['method']} vs {k}": (then, k)
                for then in then_rows
                for k in then.get("comparisons") or {}
            }
        then, k = at_look[seeds].get(name, ({}, reference))
        comparison = (then.get("comparisons") or {}).get(k)
        if comparison is None or not comparison.decided:
            continue
        row["comparisons"][reference] = dataclasses.replace(comparison, decided_at=seeds)
        base = ref["base_method"]
        for part in ("acc_diffs", "mixed"):
            row.setdefault(part, {}).pop(base, None)
            if base in (then.get(part) or {}):
                row[part][base] = then[part][base]


def looks_decided(looks: list[dict]) -> tuple[tuple[str, int | None], ...]:
    """``Settings.decided_at`` of a study's looks (``sequential.json``): every comparison they judged, with the seeds
    of the look that first decided it."""
    judged = [name for look in looks for name in look["undecided"] + (look.get("decided") or [])]
    return tuple(decided_at(list(dict.fromkeys(judged)), looks).items())


def group_decisions(settings: Settings, key: tuple) -> dict[str, int | None]:
    """``settings.decided_at`` of one group, by the name within it ("flip vs none", "claim (metric)")."""
    prefix = f"{group_title(key)}: "
    return {name[len(prefix) :]: seeds for name, seeds in settings.decided_at if name.startswith(prefix)}


def comparison_names(rows: list[dict]) -> dict[str, Comparison]:
    """Each comparison of the rows by its name, "group title: method vs reference": how ``--seeds auto`` lists the
    verdicts still undecided at each look."""
    return {
        f"{group_title(row['group'])}: {row['method']} vs {reference}": comparison
        for row in rows
        for reference, comparison in (row.get("comparisons") or {}).items()
    }


def decided_at(names: list[str], looks: list[dict]) -> dict[str, int | None]:
    """The seeds of the first look that decided each named comparison the looks judged (None: undecided at every
    look); a decision is kept from then on. A look that kept only its undecided list (before ``decided`` was
    recorded) counts every comparison not on it as decided; comparisons no look judged (rows of another study in
    the same folder) are left out."""
    out: dict[str, int | None] = {}
    for name in names:
        judged = [lk for lk in looks if name in lk["undecided"] or name in (lk.get("decided") or [])]
        if not judged and all(lk.get("decided") is not None for lk in looks):
            continue
        out[name] = next(
            (
                lk["seeds"]
                for lk in looks
                if name in (lk.get("decided") or []) or (lk.get("decided") is None and name not in lk["undecided"])
            ),
            None,
        )
    return out


def family_text(rows: list[dict]) -> str:
    """The report's Holm family in words: how many comparisons it holds and which stay outside it."""
    comparisons = [c for row in rows for c in (row.get("comparisons") or {}).values()]
    inside = sum(1 for c in comparisons if c.eligible)
    few = sum(1 for c in comparisons if not c.eligible and not c.blocked)
    blocked = sum(1 for c in comparisons if c.blocked)
    return (
        f"Holm family: the {inside} comparisons of test AUC in this report (every group, against none, the copies "
        f"and any other reference) with at least {MIN_PAIRS} paired units on one precision; {few} with fewer "
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
        variants: dict[tuple, list[dict]] = defaultdict(list)
        for row in group:
            variants[variant_family(row)].append(row)
        for family, rows_of in variants.items():
            scored = [r for r in rows_of if not math.isnan(r["val_auc"][0])]
            best = max(scored, key=lambda r: r["val_auc"][0]) if scored else None
            for r in rows_of:
                r["headline"] = rule == "none" or family[0] in CONTROLS or best is None or r is best


def variant_family(row: dict) -> tuple:
    """The rows a headline row is picked among: one method's variants, apart by what they learn from, whose
    labels they use and how the classifier uses the set, which are the questions a study asks, not levers to
    tune: a generator with and without the unlabelled images (``-p use_unlabelled``), with its own labels or a
    teacher's (hard or soft; the threshold is a lever), mixed into training or pretrained on before fine-tuning on
    the real images (``--pretrain-on-synthetic``, RoentGen-v2's recipe), and pseudo-label's count-matched set apart
    from all of its images (``-p count=all``)."""
    config = row["runs"][0]["config"] if row.get("runs") else {}
    params = config.get("method_params") or {}
    synthesis = config.get("synthesis") or {}
    return (
        row["base_method"],
        bool(params.get("use_unlabelled")),
        synthesis.get("teacher"),
        bool(synthesis.get("pretrain_on_synthetic")),
        params.get("count") == "all",
    )


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
        "teacher": interval(values(lambda p: p.teacher_agreement)),
        "teacher_kept": interval(values(lambda p: p.teacher_agreement_kept)),
        "teacher_share": interval(values(lambda p: p.teacher_kept_share)),
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


def robustness_table(by_method: dict[str, list[dict]]) -> Table:
    """Per method (mean ± std over its runs' reports): clean ACC, ACC averaged over the whole perturbation suite,
    and ACC under FGSM and PGD at every attack strength all the runs measured (``shared_attack_eps``)."""

    def cell(values: list[float]) -> str:
        mean, std, _ = interval(values)
        return f"{mean:.3f}" + ("" if math.isnan(std) else f" ± {std:.3f}")

    from synthmed.metrics.robustness import shared_attack_eps

    shared = shared_attack_eps([r["metrics"]["robustness"] for runs in by_method.values() for r in runs])
    attacks = [(name, eps) for name, strengths in shared.items() for eps in strengths if eps > 0]
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


def robustness_sections(out: Path, records: list[dict], report: Settings | None = None) -> list[Section]:
    """Per group with ``--robustness`` runs: accuracy curves under perturbations and attacks (mean and range over
    seeds, one line per method) and an EigenGradCAM panel (lowest seed of each method, same test images)."""
    from synthmed.data.medmnist import medmnist_class_names
    from synthmed.metrics.robustness import shared_attack_eps
    from synthmed.report.claims import claims_blocks
    from synthmed.report.figures import panel_from_maps, robustness_plot
    from synthmed.report.medmnistc import medmnistc_blocks

    decide = report or Settings()  # the report's margin and alpha, which TSynD's claims are decided at
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
        if not shared_attack_eps([r["metrics"]["robustness"] for r in runs]):
            scope += " The runs were attacked at different strengths (--attack-eps), none common: no attack is shown."
        curves = robustness_plot(
            {m: [r["metrics"]["robustness"] for r in rs] for m, rs in by_method.items()}, f"robustness · {title}"
        )
        section = Section(
            f"Robustness and explanations: {title}",
            [
                Paragraph(scope),
                robustness_table(by_method),
                Figure(f"report_robustness_{index}.png", curves, "robustness"),
                *medmnistc_blocks(by_method, title, index, decide.margin, decide.alpha),
                *claims_blocks(by_method, decide.margin, decide.alpha, group_decisions(decide, key)),
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
