"""TSynD's claims answered one by one (issue 30): Niemeijer et al. 2024 say targeted latent synthesis makes a
classifier more accurate and more robust, with mutual information ahead of entropy ahead of random latent moves.

Each claim is a paired comparison of two rows of one report group (same seeds, same protocol and classifier), on
the clean test AUC, the mean AUC under the MedMNIST-C corruptions and the accuracy under PGD at the table's
strength; the claims of one metric are one Holm family. A claim *holds* where the first row is better, is
*contradicted* where it is worse, and finds *no difference* where the two are equivalent within the margin.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from synthmed.report.medmnistc import TABLE_PGD_EPS_255, medmnistc_columns
from synthmed.report.model import Paragraph, Table
from synthmed.report.stats import (
    BETTER,
    BETTER_WITHIN,
    EQUIVALENT,
    UNDECIDED,
    WORSE,
    WORSE_WITHIN,
    Comparison,
    adjust,
    compare,
)
from synthmed.report.summary import paired_units

#: (claim, the row it says is ahead, the row it says is behind), by method label
TSYND_CLAIMS = (
    ("mutual information > entropy", "tsynd", "tsynd uncertainty=entropy"),
    ("entropy > random latent moves", "tsynd uncertainty=entropy", "random-latent"),
    ("TSynD > no augmentation", "tsynd", "none"),
    ("TSynD > copies of the real images", "tsynd", "oversample"),
)
#: what each claim is read on: (column title, the figure of a run)
METRICS = (
    ("clean test AUC", lambda run: run.get("test_auc")),
    ("MedMNIST-C AUC (mean)", lambda run: _bench(run, "corrupted_auc")),
    (f"PGD {TABLE_PGD_EPS_255:g}/255 ACC", lambda run: _bench(run, "pgd_acc")),
)
READING = {
    BETTER: "holds",
    BETTER_WITHIN: "holds, by less than the margin",
    WORSE: "contradicted",
    WORSE_WITHIN: "contradicted, by less than the margin",
    EQUIVALENT: "no difference (equivalent)",
}


def _bench(run: dict, column: str) -> float | None:
    robustness = (run.get("metrics") or {}).get("robustness")
    return medmnistc_columns(robustness)[column] if robustness else None


def present_claims(by_method: dict[str, list[dict]]) -> list[tuple[str, str, str]]:
    """The claims whose two rows the group holds."""
    return [(claim, a, b) for claim, a, b in TSYND_CLAIMS if a in by_method and b in by_method]


def claim_comparisons(
    by_method: dict[str, list[dict]],
    margin: float = 0.01,
    alpha: float = 0.05,
    decided: Mapping[str, int | None] | None = None,
) -> dict[str, list[Comparison]]:
    """Per metric, the Holm-adjusted comparison of each claim whose two rows are both present (paired by seed on one
    platform, and undecided where some seeds ran on another, as every comparison of the report), at the report's
    margin and alpha (which ``--seeds auto`` divides by its looks); an empty mapping where no claim's rows are. The
    claims of a metric are a family of their own, apart from the results table's, so "TSynD > none" on clean AUC
    may read differently from its row there. ``decided``: "claim (metric)" to the seeds of the look that first
    decided it; such a claim keeps that look's comparison (made again on its seeds), as the results table does."""
    out = _claim_comparisons(by_method, margin, alpha)
    last = max((r["seed"] for runs in by_method.values() for r in runs), default=-1)
    at_look: dict[int, dict[str, list[Comparison]]] = {}
    for i, (claim, _, _) in enumerate(present_claims(by_method)):
        for metric, comparisons in out.items():
            seeds = (decided or {}).get(f"{claim} ({metric})")
            if seeds is None or seeds > last:  # undecided, or decided on every seed here
                continue
            if seeds not in at_look:
                kept = {m: [r for r in runs if r["seed"] < seeds] for m, runs in by_method.items()}
                at_look[seeds] = _claim_comparisons(kept, margin, alpha)
            then = at_look[seeds][metric][i]
            if then.decided:
                comparisons[i] = dataclasses.replace(then, decided_at=seeds)
    return out


def _claim_comparisons(by_method: dict[str, list[dict]], margin: float, alpha: float) -> dict[str, list[Comparison]]:
    present = present_claims(by_method)
    if not present:
        return {}
    out: dict[str, list[Comparison]] = {}
    for title, figure in METRICS:
        comparisons = []
        for _, ahead, behind in present:
            diffs, units, mixed = paired_units(by_method[ahead], by_method[behind], figure)
            blocked = "mixed precision" if mixed else ""
            comparisons.append(
                compare(diffs, ahead, behind, title, margin=margin, alpha=alpha, clusters=units, blocked=blocked)
            )
        out[title] = adjust(comparisons)
    return out


def claim_cell(c: dict) -> str:
    """One claim on one metric: ``+0.010 [+0.004, +0.016] holds, n=8`` (``c``: a comparison as data, with its
    reading; ``n=4 generator fits`` where seeds share fits), or the difference alone for one seed. An undecided
    claim of its Holm family adds what its seeds could detect (``; could detect 0.021``): undecided is then an answer
    with a size. Not one outside the family (too few units, mixed precision): no effect size could decide it."""
    if c["n"] < 2:
        return "–" if c["n"] == 0 else f"{c['mean']:+.3f} (1 seed)"
    units = "" if c["unit"] == "seeds" else f" {c['unit']}"
    cell = f"{c['mean']:+.3f} [{c['t_low']:+.3f}, {c['t_high']:+.3f}] {c['reading']}, n={c['n']}{units}"
    if c.get("decided_at") is not None:
        return cell + f" (decided at {c['decided_at']} seeds)"
    mde = c.get("mde", math.nan)
    if c["verdict"] == UNDECIDED and isinstance(mde, float) and math.isfinite(mde):  # in its Holm family
        cell += f"; could detect {mde:.3f}"
    return cell


def claims_blocks(
    by_method: dict[str, list[dict]],
    margin: float = 0.01,
    alpha: float = 0.05,
    decided: Mapping[str, int | None] | None = None,
) -> list:
    """The report's answer to TSynD's claims: a table of each claim's paired difference, interval and reading per
    metric, and the rule; nothing where the group holds no pair of the claims' rows."""
    claims = claims_json(by_method, margin, alpha, decided)
    if not claims:
        return []
    table = Table(
        "TSynD's claims (Niemeijer et al. 2024), each a paired difference by seed: mean [interval, unadjusted], "
        f"the reading at its Holm level (each metric's claims one family, ±{margin:g} margin) and the seeds:",
        ["claim", *[title for title, _ in METRICS]],
    )
    for claim in claims:
        label = f"{claim['claim']} (`{claim['ahead']}` − `{claim['behind']}`)"
        table.rows.append([label, *[claim_cell(claim["metrics"][title]) for title, _ in METRICS]])
    rule = Paragraph(
        "A claim holds where its first row is better than the second at the Holm-adjusted level, is contradicted "
        "where it is worse, and finds no difference where the two are equivalent within the margin; otherwise the "
        "seeds leave it undecided, and the cell gives the smallest true difference its seeds could detect with 80 % "
        "power at its Holm level. Each metric's claims are a family of their own, apart from the results table's. "
        "The corrupted and attacked test images are only scored, never used for selection."
    )
    return [table, rule]


def claims_json(
    by_method: dict[str, list[dict]],
    margin: float = 0.01,
    alpha: float = 0.05,
    decided: Mapping[str, int | None] | None = None,
) -> list[dict]:
    """The claims as data (``synthmed report --format json``): per claim, its rows and per metric the comparison
    with its reading; empty where the group holds no pair of the claims' rows."""
    comparisons = claim_comparisons(by_method, margin, alpha, decided)
    out = []
    for i, (claim, ahead, behind) in enumerate(present_claims(by_method)):
        per_metric = {}
        for title, _ in METRICS:
            c = comparisons[title][i]
            per_metric[title] = dataclasses.asdict(c) | {"reading": READING.get(c.verdict, c.verdict)}
        out.append({"claim": claim, "ahead": ahead, "behind": behind, "metrics": per_metric})
    return out
