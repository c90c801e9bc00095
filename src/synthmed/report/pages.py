"""Study pages: the tables of the README and docs/results/*.md, regenerated from the report of committed exports.

A page marks each table it holds::

    <!-- study_table results/breastmnist-lowdata --no-setting --headline -->
    | setting | ... (replaced) |
    <!-- /study_table -->

ARGS name one or more exports (or run folders) and the table's options (``_block_parser``); a folder is relative to
the page's repository root, the first folder above the page holding ``pyproject.toml``, so a page reads the same
exports from any working directory. A block that names none reads the command's own folder (``synthmed report DIR
--pages PAGE``, or the ``--export-to`` export of ``synthmed run``). Every cell comes from ``summary_json``, the
statistics and verdicts ``synthmed report`` decides, and the table is rendered by the report's own Markdown
renderer, so a page never says something the report does not. Only the blocks change; the prose is kept, and a
page whose tables are current is not written.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from synthmed.errors import SynthmedError
from synthmed.report.model import Table
from synthmed.report.records import EXPORT_RECORDS

#: One marked block: its ARGS, its current table and the closing marker.
BLOCK = re.compile(r"(<!-- study_table(?P<args>(?: [^>]*?)?) -->\n)(?P<body>.*?)(<!-- /study_table -->)", re.S)
OPEN, CLOSE = re.compile(r"<!-- study_table\b"), "<!-- /study_table -->"
#: What marks a page's repository root, which the blocks' export folders are relative to.
ROOT_MARKER = "pyproject.toml"
#: A block whose rows no export holds yet (a TSynD claim before both its rows ran).
NOT_YET = "*Not yet: no setting has exported runs of every row this table compares; it appears as the steps export.*\n"

WORTH_COLUMN = "worth in real images per class [95 % CI]"


def references(summaries: list[dict]) -> list[str]:
    """The references the exports' reports compare with (``Settings.references`` of each): ``none``, the copies,
    and a third where a block's ``--reference`` (or the looks of ``--seeds auto``) named one."""
    from synthmed.report.summary import Settings

    named = [summary.get("settings", {}).get("reference") for summary in summaries] or [None]
    return list(dict.fromkeys(r for reference in named for r in Settings(reference=reference).references()))


def auc_columns(summaries: list[dict]) -> list[str]:
    """The AUC columns, their Δ intervals labelled with the level the exports' reports use (95 %, or the looks'
    split level of a ``--seeds auto`` study, e.g. 99.17 %); the worth's Fieller interval is always 95 %."""
    from synthmed.report.formats import level_text

    alphas = {summary.get("settings", {}).get("alpha", 0.05) for summary in summaries} or {0.05}
    ci = f"{level_text(alphas.pop())} % CI" if len(alphas) == 1 else "CI at each export's level"
    return [
        "test AUC",
        "none on the same seeds",
        *[f"Δ AUC vs {reference} [{ci}], verdict (Holm)" for reference in references(summaries)],
        WORTH_COLUMN,
    ]


#: What ``--headline`` (the at-a-glance table) adds for generative rows: the synthetic set's own audit in brief.
GLANCE_COLUMNS = ["TSTR test AUC", "memorised (pixels)"]
SYNTHETIC_COLUMNS = [
    "test ACC",
    "Holm-adjusted p vs none / oversample",  # and the third reference where a block names one
    "TSTR test AUC",
    "class fidelity (the reference on real images)",
    "FID (in-domain)",
    "KID (in-domain)",
    "memorised: pixels / features",
]


class _BlockParser(argparse.ArgumentParser):
    """ARGS of a block; a bad one is a one-line error, not an exit."""

    def error(self, message: str) -> NoReturn:
        raise SynthmedError(message)


def _block_parser() -> argparse.ArgumentParser:
    parser = _BlockParser(prog="study_table", add_help=False)
    parser.add_argument("folders", nargs="*", help="Exports (results/SETTING) or run folders.")
    parser.add_argument("--margin", type=float, help="Equivalence margin in AUC (default: the report's).")
    parser.add_argument("--synthetic", action="store_true", help="ACC, Holm p-values and the synthetic-set audit.")
    parser.add_argument("--no-setting", action="store_true", help="Leave out the setting column (one setting).")
    parser.add_argument("--methods", help="Only these rows: comma-separated regular expressions on the row label.")
    parser.add_argument(
        "--reference", help="A third reference besides none and the copies (pseudo-label), as `synthmed report` has it."
    )
    parser.add_argument(
        "--headline",
        action="store_true",
        help="The at-a-glance table: only each method's variant with the best val AUC, plus TSTR AUC and the "
        "memorised share of the synthetic images.",
    )
    parser.add_argument(
        "--claims", action="store_true", help="TSynD's claims instead of the rows (--methods: claims by name)."
    )
    parser.add_argument(
        "--robustness",
        action="store_true",
        help="The MedMNIST-C and PGD table of the runs scored with --robustness medmnistc instead of the rows.",
    )
    parser.add_argument(
        "--progress",
        action="store_true",
        help="Where each folder's study stands instead of the rows: runs, CPU hours, seeds, looks, what is left.",
    )
    return parser


@dataclass(frozen=True)
class Block:
    """What one marker asks for: the folders (resolved) and how to cut and lay out their rows."""

    folders: tuple[Path, ...]
    margin: float | None = None
    synthetic: bool = False
    no_setting: bool = False
    methods: tuple[str, ...] = ()
    headline: bool = False
    claims: bool = False
    reference: str | None = None
    robustness: bool = False
    progress: bool = False


def parse_block(args: str, root: Path, default: Path | None = None) -> Block:
    """A block's ARGS, its folders resolved against ``root`` (``default`` where it names none)."""
    try:
        parsed = _block_parser().parse_args(shlex.split(args))
    except ValueError as error:  # unbalanced quotes
        raise SynthmedError(f"{args!r}: {error}") from None
    if parsed.margin is not None and not parsed.margin >= 0:
        raise SynthmedError(f"{args!r}: --margin {parsed.margin} must be >= 0 (an AUC difference, e.g. 0.01)")
    folders = [root / f for f in parsed.folders] or ([default] if default is not None else [])
    if not folders:
        raise SynthmedError(f"{args!r} names no export, and no folder was given for it")
    for folder in folders:
        if not (folder / EXPORT_RECORDS).is_file() and not (folder / "results.sqlite").is_file():
            raise SynthmedError(f"{args!r}: {folder} is not an export or run folder (no {EXPORT_RECORDS})")
    if parsed.claims + parsed.robustness + parsed.progress > 1:
        raise SynthmedError(f"{args!r}: --claims, --robustness and --progress are tables of their own; give one")
    methods = tuple(parsed.methods.split(",")) if parsed.methods else ()
    for pattern in methods:
        try:
            re.compile(pattern)
        except re.error as error:
            raise SynthmedError(f"{args!r}: --methods {pattern!r} is no regular expression ({error})") from None
    return Block(
        tuple(folders),
        parsed.margin,
        parsed.synthetic,
        parsed.no_setting,
        methods,
        parsed.headline,
        parsed.claims,
        parsed.reference,
        parsed.robustness,
        parsed.progress,
    )


# ---------------------------------------------------------------------------------------------------- cells


def _num(value: Any) -> float | None:
    """A statistic, None where it is missing or not finite (as ``synthmed report --format json`` prints it)."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def mean_std(summary: dict | None, key: str, digits: int = 3, percent: bool = False) -> str:
    """``0.912 ± 0.010`` of a {mean, std} statistic; empty where it is missing."""
    value = (summary or {}).get(key) or {}
    mean, std = _num(value.get("mean")), _num(value.get("std"))
    if mean is None:
        return ""
    scale, unit = (100, " %") if percent else (1, "")
    text = f"{mean * scale:.{digits}f}"
    return text + (f" ± {std * scale:.{digits}f}" if std is not None else "") + unit


def difference(comparison: dict | None) -> str:
    """``+0.008 [+0.001, +0.015] undecided (Holm p 0.33)``: the unadjusted interval, the verdict its Holm-adjusted
    one decided (bold when better or worse), the adjusted p where the unadjusted interval excludes 0 (where the two
    could disagree), the units where seeds share generator fits, and the seeds of the look that decided it where
    that look came before the last seed (the numbers are then that look's)."""
    if not comparison:
        return ""
    verdict = comparison["verdict"]
    if not comparison["n"]:
        return verdict
    low, high = _num(comparison["t_low"]), _num(comparison["t_high"])
    if low is None or high is None:  # one unit: no interval
        return f"{comparison['mean']:+.3f} (1 seed) {verdict}"
    text = f"{comparison['mean']:+.3f} [{low:+.3f}, {high:+.3f}] {verdict}"
    notes = []
    p_holm = _num(comparison.get("p_holm"))
    if p_holm is not None and (low > 0 or high < 0):
        notes.append(f"Holm p {p_holm:.2f}" if p_holm >= 0.1 else f"Holm p {p_holm:.2g}")
    if comparison.get("unit", "seeds") != "seeds":
        notes.append(f"n = {comparison['n']} {comparison['unit']}")
    if comparison.get("decided_at") is not None:
        notes.append(f"decided at {comparison['decided_at']} seeds")
    if notes and text.endswith(")"):  # "undecided (n < 5)": one parenthesis for both
        text = f"{text[:-1]}; {'; '.join(notes)})"
    elif notes:
        text += f" ({'; '.join(notes)})"
    return f"**{text}**" if verdict in ("better", "worse") else text


def worth(equivalent: dict | None) -> str:
    """The worth and its interval, bold only where the paired AUC comparison with none is decided."""
    if not equivalent:
        return ""
    point, low, high = equivalent.get("point"), equivalent.get("low"), equivalent.get("high")
    if point is None:
        return equivalent.get("text", "")
    if isinstance(point, str):
        return point
    low_text = "…" if _num(low) is None else f"{low:+.0f}"
    high_text = "…" if _num(high) is None else f"{high:+.0f}"
    text = f"{point:+.0f} [{low_text}, {high_text}]"
    return f"**{text}**" if equivalent.get("decided") else text


def _priced(row: dict) -> bool:
    """Whether a real-image curve prices the row (its worth is a number)."""
    return isinstance((row.get("real_equivalent") or {}).get("point"), (int, float))


def auc_cells(row: dict, compared: list[str]) -> list[str]:
    """Test AUC, none's on the same seeds, the Δ against each of ``compared`` and the worth."""
    comparisons = row.get("comparisons") or {}
    baseline = row.get("real_equivalent") or {}
    same_seeds = _num((comparisons.get("none") or {}).get("reference_mean"))
    return [
        mean_std(row, "test_auc"),
        "" if same_seeds is None else f"{same_seeds:.3f}",
        *[difference(comparisons.get(reference)) for reference in compared],
        f"0 (the baseline: {baseline['anchor']} per class)"
        if row["method"] == "none" and baseline
        else worth(row.get("real_equivalent")),
    ]


def glance_cells(row: dict, compared: list[str]) -> list[str]:
    """The AUC columns, then TSTR AUC and the memorised share of the synthetic images (empty for other rows)."""
    syn = row.get("synthetic") or {}
    return [*auc_cells(row, compared), mean_std(syn, "tstr_auc"), mean_std(syn, "memorised", 1, True)]


def synthetic_cells(row: dict, compared: list[str]) -> list[str]:
    comparisons = row.get("comparisons") or {}
    found = [comparisons.get(k) or {} for k in compared]  # a reference the row does not meet keeps its place: "–"
    holm = " / ".join("–" if _num(c.get("p_holm")) is None else f"{c['p_holm']:.2f}" for c in found)
    holm = holm if comparisons else ""  # none itself
    syn = row.get("synthetic") or {}
    memorised = ""
    if syn:
        own = f"{mean_std(syn, 'memorised', 1, True)} / {mean_std(syn, 'memorised_features', 1, True) or '–'}"
        real = (
            f"{mean_std(syn, 'memorised_held_out', 1, True)} / "
            f"{mean_std(syn, 'memorised_features_held_out', 1, True) or '–'}"
        )
        memorised = f"{own} (real validation images: {real})"
    fidelity = mean_std(syn, "fidelity", 2)
    recall, accuracy = mean_std(syn, "reference_recall", 2), mean_std(syn, "reference_acc", 2)
    if fidelity and (recall or accuracy):  # what the reference scores on real images of the same classes
        fidelity += f" (real: {recall})" if recall else f" (reference test ACC {accuracy})"
    return [
        mean_std(row, "test_acc"),
        holm,
        mean_std(syn, "tstr_auc"),
        fidelity,
        mean_std(syn, "fid", 1),
        mean_std(syn, "kid", 3),
        memorised,
    ]


# ---------------------------------------------------------------------------------------------------- tables


def study_table(summaries: list[dict], block: Block) -> Table:
    """The table of a block from the ``summary_json`` of each of its folders: one row per (setting, method), with test
    AUC, the paired differences to ``none``, the copies and a third reference where one is named, and the worth in real
    images (the worth column only where a curve prices a row); with ``headline`` (the at-a-glance table) only each
    method's best variant, plus TSTR and the memorised share where a row has them; or with ``synthetic`` the ACC, Holm
    p-values and the synthetic-set audit."""
    row_cells: Callable[[dict, list[str]], list[str]] = auc_cells
    cells, compared = auc_columns(summaries), references(summaries)
    if block.synthetic:
        holm = f"Holm-adjusted p vs {' / '.join(compared)}"
        row_cells, cells = synthetic_cells, [holm if c.startswith("Holm") else c for c in SYNTHETIC_COLUMNS]
    elif block.headline:
        row_cells, cells = glance_cells, cells + GLANCE_COLUMNS
    columns = ["method", "seeds", *cells]
    if not block.no_setting:
        columns.insert(0, "setting")
    wanted = [re.compile(p) for p in block.methods]
    table, priced = Table("", columns), False
    for summary in summaries:
        for group in summary["groups"]:
            for row in group["rows"]:
                if wanted and not any(p.fullmatch(row["method"]) for p in wanted):
                    continue
                if block.headline and not row.get("headline", True):
                    continue
                lead = [f"`{row['method']}`", str(row["n"])]
                setting = [] if block.no_setting else [group["title"]]
                table.rows.append([*setting, *lead, *row_cells(row, compared)])
                priced = priced or _priced(row)
    if block.synthetic:
        return table
    # left out: the worth where no curve prices a row, the audit columns where no row fills them
    kept = [
        c
        for c in columns
        if (c != WORTH_COLUMN or priced) and (c not in GLANCE_COLUMNS or any(r[columns.index(c)] for r in table.rows))
    ]
    return table.select(kept)


def _entries_table(
    summaries: list[dict],
    block: Block,
    columns: list[str],
    entries: Callable[[dict], list[dict]],
    name: Callable[[dict], str],
    cells: Callable[[dict], list[str]],
) -> Table:
    """One row per entry of each group (``entries(group)``) whose ``name`` ``--methods`` matches, after the setting
    column unless ``--no-setting``: the layout of the claims and robustness blocks."""
    wanted = [re.compile(p) for p in block.methods]
    table = Table("", columns if block.no_setting else ["setting", *columns])
    for summary in summaries:
        for group in summary["groups"]:
            for entry in entries(group):
                if wanted and not any(p.fullmatch(name(entry)) for p in wanted):
                    continue
                table.rows.append(([] if block.no_setting else [group["title"]]) + cells(entry))
    return table


def claims_table(summaries: list[dict], block: Block) -> Table:
    """TSynD's claims of a block's folders (``--claims``; ``--methods`` picks claims by name): per setting and claim,
    each metric's paired difference, unadjusted interval, reading at its Holm level and seeds, as the report's
    robustness section gives them (``synthmed.report.claims``)."""
    from synthmed.report.claims import METRICS, claim_cell

    def cells(claim: dict) -> list[str]:
        label = f"{claim['claim']} (`{claim['ahead']}` − `{claim['behind']}`)"
        return [label, *[claim_cell(claim["metrics"][title]) for title, _ in METRICS]]

    columns = ["claim", *[title for title, _ in METRICS]]
    return _entries_table(summaries, block, columns, lambda g: g.get("tsynd_claims", []), lambda c: c["claim"], cells)


def robustness_table(summaries: list[dict], block: Block) -> Table:
    """The MedMNIST-C and PGD table of a block's folders (``--robustness``; ``--methods`` picks rows): per setting and
    method, the report's robustness table (``synthmed.report.medmnistc``), from the same data."""
    from synthmed.report.medmnistc import MEDMNISTC_TITLES, medmnistc_cells

    def cells(row: dict) -> list[str]:
        return [f"`{row['method']}`", str(len(row["seeds"])), *medmnistc_cells(row)]

    columns = ["method", "seeds", *MEDMNISTC_TITLES]
    return _entries_table(summaries, block, columns, lambda g: g.get("robustness", []), lambda r: r["method"], cells)


def progress_table(summaries: list[dict], block: Block) -> Table:
    """Where each of a block's folders stands (``--progress``): its runs, CPU hours, seeds per row, the looks of
    ``--seeds auto`` and what the next look waits for or why seeds stopped; a page's status line kept by the data."""
    from synthmed.report.sections import progress_text

    table = Table("", ["study", "runs", "CPU h", "seeds per row", "looks", "where it stands"])
    for folder, summary in zip(block.folders, summaries):
        counts = sorted({row["n"] for group in summary["groups"] for row in group["rows"]})
        seeds = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        stop, compute = summary.get("sequential"), summary["compute"]
        if stop is None:
            looks, stands = "fixed seeds", ""
        else:
            made = ", ".join(str(look["seeds"]) for look in stop["looks"]) or "none yet"
            looks = f"{made} ({stop['planned_looks']} planned, {stop['start']} to {stop['max_seeds']} seeds)"
            round_ = summary.get("round")
            stands = progress_text(round_) if round_ else f"done: {stop['reason']}"
        runs, hours = str(compute["runs"]), f"{compute['cpu_hours']:.1f}"
        table.rows.append([f"`{folder.name}`", runs, hours, seeds, looks, stands])
    return table


# ---------------------------------------------------------------------------------------------------- pages


def repository_root(page: Path) -> Path:
    """The first folder above ``page`` holding ``pyproject.toml``: what its blocks' export folders are relative to."""
    for folder in page.resolve().parents:
        if (folder / ROOT_MARKER).is_file():
            return folder
    raise SynthmedError(
        f"{page}: no {ROOT_MARKER} in a folder above it; the export folders its blocks name are relative to the "
        "repository root that holds one"
    )


def check_page(page: Path) -> str:
    """A page's text, refused (one line) if it is not a file or its markers are missing or unbalanced."""
    if not page.is_file():
        raise SynthmedError(f"{page} is not a file; give Markdown pages with <!-- study_table ARGS --> blocks")
    text = page.read_text(encoding="utf-8")
    blocks = len(BLOCK.findall(text))
    if not blocks:
        raise SynthmedError(f"{page} holds no <!-- study_table ARGS --> ... {CLOSE} block to update")
    if len(OPEN.findall(text)) != blocks or text.count(CLOSE) != blocks:
        raise SynthmedError(f"{page}: a <!-- study_table ARGS --> marker lacks its {CLOSE} (or the other way)")
    return text


class Summaries:
    """``summary_json`` of each (folder, margin, reference), computed once however many blocks and pages read it."""

    def __init__(self) -> None:
        self.done: dict[tuple[Path, float | None, str | None], dict] = {}

    def __call__(self, folder: Path, margin: float | None, reference: str | None = None) -> dict:
        from synthmed.report import settings_for, summary_json

        key = (folder.resolve(), margin, reference)
        if key not in self.done:
            self.done[key] = summary_json(folder, settings_for(folder, margin, reference))
        return self.done[key]


def renderer(block: Block) -> Callable[[list[dict], Block], Table]:
    """The table a block asks for: TSynD's claims, the robustness table, the progress line or (default) the rows."""
    kinds = {claims_table: block.claims, robustness_table: block.robustness, progress_table: block.progress}
    return next((render for render, asked in kinds.items() if asked), study_table)


def page_text(page: Path, default: Path | None = None, summaries: Summaries | None = None) -> str:
    """``page`` with every block's table regenerated (nothing written)."""
    from synthmed.report.render import table_markdown

    text = check_page(page)
    root = repository_root(page)
    summaries = summaries or Summaries()

    def table(match: re.Match[str]) -> str:
        try:
            block = parse_block(match["args"], root, default)
            rows = renderer(block)([summaries(f, block.margin, block.reference) for f in block.folders], block)
        except SynthmedError as error:
            raise SynthmedError(f"{page}: {error}") from None
        if not rows.rows:  # a claim whose two rows no setting has run yet: say so rather than show a bare header
            return match[1] + NOT_YET + match[4]
        return match[1] + "\n".join(table_markdown(rows)) + match[4]

    return BLOCK.sub(table, text)


def update_pages(pages: list[Path], default: Path | None = None) -> list[str]:
    """Regenerate the tables of ``pages`` (``default``: the folder of blocks that name none); every page is
    computed before any is written, so a bad block writes nothing, and each changed page is replaced atomically.
    Returns one line per page."""
    from synthmed.io import atomic_write_text

    summaries = Summaries()
    texts = [page_text(page, default, summaries) for page in pages]
    lines = []
    for page, text in zip(pages, texts):
        changed = text != page.read_text(encoding="utf-8")
        if changed:
            atomic_write_text(page, text)
        lines.append(f"{page}: tables {'updated' if changed else 'unchanged'}")
    return lines
