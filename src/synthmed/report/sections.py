"""The report's sections: per group its tables, figures and curves, the header naming the hardware, and the notes
that say how to read the verdicts."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

from synthmed.report.formats import level_text
from synthmed.report.model import Bullets, Figure, Paragraph, Section, Table
from synthmed.report.stats import MIN_PAIRS
from synthmed.report.summary import (
    Settings,
    by_group,
    comparison_names,
    decided_at,
    family_text,
    group_key,
    group_title,
)
from synthmed.report.tables import (
    fid_over_epochs_table,
    results_table,
    synthetic_table,
    verdict_bullets,
    verdict_summary,
)
from synthmed.spec import (
    TEACHER_FIELDS,
    lever_parts,
    policy_parts,
)

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
            blocks += [Paragraph(" ".join(verdict_summary(group, settings))), Bullets(verdicts)]
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


HARDWARE_KEYS = ("cpu", "cpus", "cpu_capability", "bf16_kernels", "gpu", "machine", "processor", "torch_threads")


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
    if hardware.get("bf16_kernels") == "fp32":  # a CPU without oneDNN bf16: bf16 operands on fp32 kernels
        cpus += ", bf16 convolutions and matrix products on fp32 kernels"
    gpu = f", GPU {hardware['gpu']}" if "gpu" in hardware else ""
    wall = wall_seconds(records)
    return [
        f"{len(records)} runs · total compute {total / 3600:.2f} h ({total / 60:.1f} min)"
        + (f" in {wall / 3600:.2f} h of wall time" if wall else "")
        + f" · device {', '.join(devices)}",
        f"hardware: CPU {cpus}{gpu}, {hardware.get('torch_threads', '?')} torch threads per run",
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k not in HARDWARE_KEYS),
        *unlabelled_line(records),
        *shared_fits_line(records),
    ]


def wall_seconds(records: list[dict]) -> float:
    """Wall-clock time during which at least one run was going (the union of the runs' spans, each ending at its
    record's creation): a study run in steps over several sessions and machines is priced in hours of waiting as well
    as in CPU hours. 0 where records lack a full timestamp (older or hand-made ones)."""
    spans = []
    for r in records:
        try:
            end = datetime.fromisoformat(r["created"]).timestamp()
        except (KeyError, TypeError, ValueError):
            continue
        if "T" in r["created"] and r.get("total_time"):
            spans.append((end - r["total_time"], end))
    wall, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            wall += end - max(start, reach)
            reach = end
    return wall


def recorded_fit(record: dict) -> tuple[str, str] | None:
    """(cache key, weights digest) of the generator fit a run used, where its record keeps them (runs from before
    they were recorded, and methods that train nothing, have none)."""
    metrics = record.get("metrics") or {}
    synthetic, fit = metrics.get("synthetic") or {}, metrics.get("generator_fit") or {}
    key = synthetic.get("generator_key") or fit.get("key")
    digest = synthetic.get("generator_digest") or fit.get("digest")
    return (key, digest) if key and digest else None


def shared_fits_line(records: list[dict]) -> list[str]:
    """Whether the runs that share a generator fit by its cache key (a teacher-labelled row and the plain row of one
    ddpm fit, TSynD's three rounds of one autoencoder) got the same weights: a fit made again on another machine may
    differ, and the rows would then compare two fits, not two uses of one. Nothing where no run shares a fit."""
    digests: dict[str, set[str]] = defaultdict(set)
    runs: Counter[str] = Counter()
    unchecked = 0  # runs that used a fit but recorded no digest (made before digests were kept)
    for record in records:
        if (identity := recorded_fit(record)) is not None:
            digests[identity[0]].add(identity[1])
            runs[identity[0]] += 1
        elif used_a_fit(record):
            unchecked += 1
    shared = [key for key, n in runs.items() if n > 1]
    differ = sorted(key for key in shared if len(digests[key]) > 1)
    if differ:
        listed = ", ".join(f"{key} ({len(digests[key])} versions)" for key in differ[:5])
        more = f" and {len(differ) - 5} more" if len(differ) > 5 else ""
        text = "generator fits made again with other weights (the runs that share them used different fits): "
        text += listed + more
    elif shared:
        served = sum(runs[k] for k in shared)
        text = f"generator fits: {len(shared)} served {served} runs, each with one set of weights in all its runs"
        text += " (weights digest)"
    else:
        return []
    if unchecked:  # e.g. rows imported from an older export whose fits a teacher-labelled row reuses
        text += f"; {unchecked} runs that used a fit recorded no digest (made before digests were kept): not checked"
    return [text]


def used_a_fit(record: dict) -> bool:
    """Whether a run used a trained generator (made or loaded), whatever its record keeps of it."""
    metrics = record.get("metrics") or {}
    synthetic = metrics.get("synthetic") or {}
    made = synthetic.get("generator_cached") is True or (synthetic.get("generator_seconds") or 0) > 0
    return made or bool(metrics.get("generator_fit"))


def unlabelled_line(records: list[dict]) -> list[str]:
    """The audit of ``--unlabelled``: images per run and their true classes (which no training code read), so a
    reader sees whether the unlabelled pool was as imbalanced as the labelled one; nothing without it."""
    drawn = [r["metrics"]["unlabelled"] for r in records if "unlabelled" in (r.get("metrics") or {})]
    if not drawn:
        return []
    per_class: Counter[str] = Counter()
    for d in drawn:
        per_class.update(d["per_class"])
    known = sum(per_class.values())
    unknown = sum(d.get("unknown", 0) for d in drawn)  # a dataset's own unlabelled images: nobody knows their class
    shares = ", ".join(f"{name} {n / known:.0%}" for name, n in per_class.items()) if known else ""
    if unknown:
        shares = (f"{shares} of those with a known class; " if known else "") + (
            f"{unknown / len(drawn):.0f} per run of the dataset's own, class unknown"
        )
    images = sorted({d["images"] for d in drawn})
    count = str(images[0]) if len(images) == 1 else f"{images[0]}-{images[-1]}"
    return [
        f"unlabelled images: {count} per run in {len(drawn)} runs, labels hidden from training; their true "
        f"classes (audit only): {shares}",
        *teacher_kept_lines(records),
    ]


def teacher_kept_lines(records: list[dict]) -> list[str]:
    """Per teacher (labels and threshold), what it kept of the unlabelled real images a pseudo-label run adds and
    how often its label was their true class (audit only): why adding all of them can cost accuracy."""
    kept: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        audit = (r.get("metrics") or {}).get("unlabelled", {}).get("teacher_kept")
        if audit:
            kept[" ".join(policy_parts(r["config"], TEACHER_FIELDS))].append(audit)
    lines = []
    for teacher, audits in sorted(kept.items()):
        per_class: Counter[str] = Counter()
        for a in audits:
            per_class.update(a["per_class"])
        total = sum(per_class.values())
        shares = ", ".join(f"{name} {n / total:.0%}" for name, n in per_class.items()) if total else ""
        right = [a["teacher_right"] for a in audits]
        lines.append(
            f"pseudo-label's {teacher}: kept {total / len(audits):.0f} unlabelled images per run "
            f"({len(audits)} run{'s' if len(audits) > 1 else ''}), true classes {shares}; its label was the true "
            f"class for {sum(right) / len(right):.1%} of them (range {min(right):.1%}-{max(right):.1%}; audit only)"
        )
    return lines


NOTES = [
    "Test figures are of the epoch selected on validation only (highest validation AUC; ties broken by the "
    "lowest validation loss); the test split is scored once per run.",
    "Δ columns pair each run with the run of the reference (`none`, the count-matched `oversample` control at "
    "the same sampling policy, or a third --reference) on the same seed, and only where both ran at the same "
    "precision and CPU kernel level; "
    "a comparison whose seeds mix them is marked 'undecided (mixed precision)' and shows the same-platform pairs "
    "alone. Where seeds share a generator fit (--generator-seeds K), their differences are averaged within each fit "
    "and the interval is over fits (n = generator fits). Verdicts on test AUC are decided on Holm-adjusted "
    "intervals within the report's family (below): better when the t-interval at the comparison's Holm step-down "
    "level lies above 0, worse when below; equivalent when the interval of two one-sided tests at its (separate) "
    "Holm level lies inside ± the margin; both at once reads 'better (worse), by less than the margin'; otherwise "
    f"undecided. Fewer than {MIN_PAIRS} paired units is never decided ('undecided (n < {MIN_PAIRS})'). The interval "
    "shown is unadjusted and does not decide. A percentile bootstrap interval over seeds is computed beside the "
    "t-interval and the sentence says where the two disagree. The detectable Δ is the smallest true difference the "
    "seeds would find with 80 % power at the observed paired spread and the comparison's Holm level, and the seeds "
    "for equivalence are those its TOST would need at its Holm level (a comparison not yet in the family, with too "
    "few units, at the family's strictest step, alpha / m): the rule's own reach, not an unadjusted test's. "
    "The 'none on the same seeds' column "
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


def seeds_needed_text(rows: list[dict], looks: list[dict], kept: bool = True) -> str:
    """How many seeds each verdict (a row against a reference, a TSynD claim) needed under the looks, grouped by that
    count: the answer to "how many seeds did this comparison take" (group titles left out where there is one); with
    ``kept`` (the report keeps the looks' decisions), also those the folder's records no longer decide on the seeds
    of their look, which the report judged on all its seeds instead."""
    compared = comparison_names(rows)
    judged = [name for look in looks for name in look["undecided"] + (look.get("decided") or [])]
    needed = decided_at(list(dict.fromkeys([*compared, *judged])), looks)
    if not needed:
        return ""
    single = len({name.split(": ", 1)[0] for name in needed}) == 1
    redone = [
        name if not single else name.split(": ", 1)[1]
        for name, seeds in needed.items()
        if kept
        and seeds is not None
        and name in compared
        and compared[name].decided_at is None
        and compared[name].pairs > seeds
    ]
    by_seeds: dict[int | None, list[str]] = defaultdict(list)
    for name, seeds in needed.items():
        by_seeds[seeds].append(name.split(": ", 1)[1] if single else name)
    parts = [
        f"decided at {seeds} seeds: {', '.join(names)}"
        for seeds, names in sorted(((k, v) for k, v in by_seeds.items() if k is not None))
    ]
    if None in by_seeds:
        parts.append(f"undecided at the last look ({looks[-1]['seeds']} seeds): {', '.join(by_seeds[None])}")
    if redone:
        parts.append(
            "decided at a look, but not by this folder's records of that look's seeds, so judged here on all the "
            f"seeds: {', '.join(redone)}"
        )
    return "Seeds each verdict needed: " + "; ".join(parts) + "."


def round_progress(records: list[dict], stop: dict) -> dict | None:
    """Where an unfinished ``--seeds auto`` round stands: its look's seed count, the runs it still lacks (every row and
    real-image curve point runs seeds 0 to that count less one) and how many seeds from 0 all of them have; None for
    a finished study. Only what is stored counts: a row with no run yet is not known here."""
    from synthmed.report.summary import row_key

    if not stop["reason"].startswith("in progress"):
        return None
    looks = [lk["seeds"] for lk in stop["looks"]]
    seeds = min(looks[-1] + stop["step"], stop["max_seeds"]) if looks else stop["start"]  # the next look's
    by_key: dict[tuple, set[int]] = defaultdict(set)
    for record in records:
        by_key[row_key(record)].add(record["seed"])
    missing = sum(len(set(range(seeds)) - done) for done in by_key.values())
    complete = next((s for s in range(seeds) if any(s not in done for done in by_key.values())), seeds)
    curve = sum(1 for key in by_key if not key[4])  # a curve point's key has no method
    return {
        "look_seeds": seeds,
        "missing_runs": missing,
        "rows": len(by_key) - curve,
        "curve_points": curve,
        "complete_seeds": complete,
    }


def progress_text(progress: dict) -> str:
    """``round_progress`` in a sentence."""
    complete, seeds = progress["complete_seeds"], progress["look_seeds"]
    if not progress["missing_runs"]:
        return f"Every run of the look at {seeds} seeds is stored; the next command of the study makes the look."
    done = (
        f"seeds 0-{complete - 1} done in every one"
        if complete > 1
        else ("seed 0 done in every one" if complete == 1 else "no seed done in every one yet")
    )
    curve = f" and {progress['curve_points']} real-image curve points" if progress["curve_points"] else ""
    return (
        f"The look at {seeds} seeds waits for {progress['missing_runs']} more run(s) of the {progress['rows']} rows"
        f"{curve} stored ({done})."
    )


def notes_section(
    settings: Settings | None = None,
    stop: dict | None = None,
    rows: list[dict] | None = None,
    progress: dict | None = None,
) -> Section:
    """The rules behind the numbers, with this report's margin, interval level and Holm family, and for
    ``--seeds auto`` when and why seeds stopped being added, or what its next look waits for (``progress``:
    ``round_progress``)."""
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
            "verdict (each row against none, the copies and any third reference). To keep the overall error rate at "
            f"{alpha:g} over the {looks} planned looks, each look (and every interval in this report) uses alpha "
            f"{alpha:g} / {looks} = {stop['look_alpha']:.4g} (Bonferroni). A verdict decided at a look is kept: "
            'later seeds do not re-decide it, and it shows the numbers of that look, marked "decided at N seeds" '
            "(where the report decides at the looks' margin and reference); every other comparison is judged on "
            "all its seeds. "
        )
        made = [lk["seeds"] for lk in stop["looks"]]
        if stop["reason"].startswith("in progress"):  # a step ended by its budget: the study goes on
            text += "Still running: " + (
                f"{len(made)} look(s) so far, the last at {made[-1]} seeds." if made else "no look yet."
            )
            if progress is not None:
                text += " " + progress_text(progress)
        else:
            text += f"It stopped after {stop['seeds']} seeds: {stop['reason']}."
        if made and rows is not None:
            text += " " + seeds_needed_text(rows, stop["looks"], bool(settings.decided_at))
            text = text.rstrip()
        items.insert(1, text)
    return Section("Notes", [Bullets(items)])
