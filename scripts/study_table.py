"""The README's at-a-glance table, built from ``synthmed report RESULTS --format json`` of committed exports.

    python scripts/study_table.py results/breastmnist-lowdata results/pneumoniamnist-lowdata ...

One Markdown row per method and setting: test AUC (mean ± std, seeds), ``none``'s mean over the same seeds, the
paired difference to ``none`` and to the count-matched ``oversample`` control with their unadjusted 95 %
t-intervals and the verdicts the report decided on Holm-adjusted ones, and the worth in real images per class where
the setting has a real-image curve. ``--headline`` keeps each method's variant with the best validation AUC.
``--synthetic`` prints the second table of docs/results/study.md instead: test ACC, Holm-adjusted p-values, and for
generators TSTR, class fidelity, in-domain FID and KID and the memorised share. Nothing here computes a statistic:
every number comes from the report's JSON, so the tables are exactly what ``synthmed report`` says.

``--update PAGE...`` refreshes the tables of docs pages in place: every block between
``<!-- study_table ARGS -->`` and ``<!-- /study_table -->`` is replaced by what ``study_table.py ARGS`` prints, so a
page's numbers are regenerated from the committed exports by one command:

    python scripts/study_table.py --update README.md docs/results/*.md
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path


@cache
def _report_json(folder: str, extra: tuple[str, ...]) -> dict:
    command = [sys.executable, "-m", "synthmed", "report", folder, "--format", "json", *extra]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def report_json(folder: str, extra: list[str]) -> dict:
    return _report_json(folder, tuple(extra))


def difference(comparison: dict | None) -> str:
    """``+0.008 [+0.001, +0.015] undecided (Holm p 0.33)``: the unadjusted interval, the verdict its Holm-adjusted
    one decided (bold when better or worse), the adjusted p where the unadjusted interval excludes 0 (where the two
    could disagree), and the units where seeds share generator fits."""
    if not comparison:
        return ""
    verdict = comparison["verdict"]
    if not comparison["n"]:
        return verdict
    if comparison["t_low"] is None:  # one unit: no interval
        return f"{comparison['mean']:+.3f} (1 seed) {verdict}"
    low, high = comparison["t_low"], comparison["t_high"]
    text = f"{comparison['mean']:+.3f} [{low:+.3f}, {high:+.3f}] {verdict}"
    notes = []
    if comparison.get("p_holm") is not None and (low > 0 or high < 0):
        notes.append(f"Holm p {comparison['p_holm']:.2f}")
    if comparison.get("unit", "seeds") != "seeds":
        notes.append(f"n = {comparison['n']} {comparison['unit']}")
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
    low_text = "…" if low is None else f"{low:+.0f}"
    high_text = "…" if high is None else f"{high:+.0f}"
    text = f"{point:+.0f} [{low_text}, {high_text}]"
    return f"**{text}**" if equivalent.get("decided") else text


def same_seeds(row: dict) -> str:
    """``none``'s mean test AUC over the seeds paired with the row (what its Δ compares with)."""
    mean = ((row.get("comparisons") or {}).get("none") or {}).get("reference_mean")
    return "" if mean is None else f"{mean:.3f}"


def stat(summary: dict | None, key: str, digits: int = 3, percent: bool = False) -> str:
    value = (summary or {}).get(key) or {}
    mean, std = value.get("mean"), value.get("std")
    if mean is None:
        return ""
    scale, unit = (100, " %") if percent else (1, "")
    text = f"{mean * scale:.{digits}f}"
    return text + (f" ± {std * scale:.{digits}f}" if std is not None else "") + unit


def synthetic_cells(row: dict) -> list[str]:
    comparisons = row.get("comparisons") or {}
    holm = " / ".join("–" if c.get("p_holm") is None else f"{c['p_holm']:.2f}" for c in comparisons.values())
    syn = row.get("synthetic") or {}
    memorised = ""
    if syn:
        own = f"{stat(syn, 'memorised', 1, True)} / {stat(syn, 'memorised_features', 1, True) or '–'}"
        real = (
            f"{stat(syn, 'memorised_held_out', 1, True)} / {stat(syn, 'memorised_features_held_out', 1, True) or '–'}"
        )
        memorised = f"{own} (real validation images: {real})"
    fidelity = stat(syn, "fidelity", 2)
    recall, accuracy = stat(syn, "reference_recall", 2), stat(syn, "reference_acc", 2)
    if fidelity and (recall or accuracy):  # what the reference scores on real images of the same classes
        fidelity += f" (real: {recall})" if recall else f" (reference test ACC {accuracy})"
    return [
        stat(row, "test_acc"),
        holm,
        stat(syn, "tstr_auc"),
        fidelity,
        stat(syn, "fid", 1),
        stat(syn, "kid", 3),
        memorised,
    ]


def auc_cells(row: dict) -> list[str]:
    comparisons = row.get("comparisons") or {}
    baseline = row.get("real_equivalent") or {}
    return [
        stat(row, "test_auc"),
        same_seeds(row),
        difference(comparisons.get("none")),
        difference(next((c for k, c in comparisons.items() if k != "none"), None)),
        f"0 (the baseline: {baseline['anchor']} per class)"
        if row["method"] == "none" and baseline
        else worth(row.get("real_equivalent")),
    ]


AUC_COLUMNS = [
    "test AUC",
    "none on the same seeds",
    "Δ AUC vs none [95 % CI], verdict (Holm)",
    "Δ AUC vs oversample [95 % CI], verdict (Holm)",
    "worth in real images per class [95 % CI]",
]
SYNTHETIC_COLUMNS = [
    "test ACC",
    "Holm-adjusted p vs none / oversample",
    "TSTR test AUC",
    "class fidelity (the reference on real images)",
    "FID (in-domain)",
    "KID (in-domain)",
    "memorised: pixels / features",
]


def table(argv: list[str]) -> list[str]:
    """The Markdown lines ``study_table.py ARGS`` prints."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="Exports (results/SETTING) or run folders.")
    parser.add_argument("--margin", help="Equivalence margin in AUC (default: the report's, 0.01).")
    parser.add_argument("--synthetic", action="store_true", help="ACC, Holm p-values and the synthetic-set audit.")
    parser.add_argument("--no-setting", action="store_true", help="Leave out the setting column (one setting).")
    parser.add_argument("--methods", help="Only these rows: comma-separated regular expressions on the row label.")
    parser.add_argument(
        "--headline", action="store_true", help="Only headline rows: each method's variant with the best val AUC."
    )
    args = parser.parse_args(argv)
    extra = ["--margin", args.margin] if args.margin else []
    row_cells, columns = (synthetic_cells, SYNTHETIC_COLUMNS) if args.synthetic else (auc_cells, AUC_COLUMNS)
    columns = ["method", "seeds", *columns] if args.no_setting else ["setting", "method", "seeds", *columns]
    wanted = [re.compile(p) for p in args.methods.split(",")] if args.methods else None
    rows: list[tuple[list[str], dict]] = []
    for folder in args.folders:
        for group in report_json(folder, extra)["groups"]:
            for row in group["rows"]:
                if wanted and not any(p.fullmatch(row["method"]) for p in wanted):
                    continue
                if args.headline and not row.get("headline", True):
                    continue
                lead = [f"`{row['method']}`", str(row["n"])]
                rows.append((([*lead] if args.no_setting else [group["title"], *lead]) + row_cells(row), row))
    if not args.synthetic and not any(
        isinstance((r.get("real_equivalent") or {}).get("point"), (int, float)) for _, r in rows
    ):
        columns, rows = columns[:-1], [(cells[:-1], r) for cells, r in rows]  # no curve prices these rows
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + [
        "| " + " | ".join(c) + " |" for c, _ in rows
    ]


BLOCK = re.compile(r"(<!-- study_table (?P<args>[^>]*?) -->\n)(?P<body>.*?)(<!-- /study_table -->)", re.S)


def update(page: Path) -> int:
    """Replace every marked block of ``page`` with its table; returns how many blocks there were."""
    text = page.read_text()
    count = len(BLOCK.findall(text))
    new = BLOCK.sub(lambda m: m.group(1) + "\n".join(table(shlex.split(m.group("args")))) + "\n" + m.group(4), text)
    if new != text:
        page.write_text(new)
    return count


def main() -> None:
    if sys.argv[1:2] == ["--update"]:
        for name in sys.argv[2:]:
            print(f"{name}: {update(Path(name))} table(s)")
        return
    print("\n".join(table(sys.argv[1:])))


if __name__ == "__main__":
    main()
