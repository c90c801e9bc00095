"""The README's at-a-glance table, built from ``synthmed report RESULTS --format json`` of committed exports.

    python scripts/study_table.py results/breastmnist-lowdata results/pneumoniamnist-lowdata ...

One Markdown row per method and setting: test AUC (mean ± std, seeds), the paired difference to ``none`` and to
the count-matched ``oversample`` control with their 95 % t-intervals and verdicts at the report's margin, and the
worth in real images per class where the setting has a real-image curve. ``--synthetic`` prints the second table
of docs/results/study.md instead: test ACC, Holm-adjusted p-values, and for generators TSTR, class fidelity,
in-domain FID and KID and the memorised share. Nothing here computes a statistic: every number comes from the report's
JSON, so the tables are exactly what ``synthmed report`` says.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def report_json(folder: str, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "synthmed", "report", folder, "--format", "json", *extra]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def difference(comparison: dict | None) -> str:
    if not comparison:
        return ""
    verdict = comparison["verdict"]
    if comparison["t_low"] is None:  # one seed: no interval
        return f"{comparison['mean']:+.3f} (1 seed) {verdict}"
    text = f"{comparison['mean']:+.3f} [{comparison['t_low']:+.3f}, {comparison['t_high']:+.3f}] {verdict}"
    return f"**{text}**" if verdict in ("better", "worse") else text


def worth(equivalent: dict | None) -> str:
    if not equivalent:
        return ""
    point, low, high = equivalent.get("point"), equivalent.get("low"), equivalent.get("high")
    if point is None:
        return equivalent.get("text", "")
    if isinstance(point, str):
        return point
    low_text = "…" if low is None else f"{low:+.0f}"
    high_text = "…" if high is None else f"{high:+.0f}"
    return f"{point:+.0f} [{low_text}, {high_text}]"


def stat(summary: dict | None, key: str, digits: int = 3, percent: bool = False) -> str:
    value = (summary or {}).get(key) or {}
    mean, std = value.get("mean"), value.get("std")
    if mean is None:
        return ""
    scale, unit = (100, " %") if percent else (1, "")
    text = f"{mean * scale:.{digits}f}"
    return text + (f" ± {std * scale:.{digits}f}" if std is not None else "") + unit


def synthetic_row(group: dict, row: dict) -> str:
    comparisons = row.get("comparisons") or {}
    holm = " / ".join(f"{c['p_holm']:.2f}" for c in comparisons.values() if c.get("p_holm") is not None)
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
    return (
        f"| {group['title']} | `{row['method']}` | {row['n']} | {stat(row, 'test_acc')} | {holm} | "
        f"{stat(syn, 'tstr_auc')} | {fidelity} | {stat(syn, 'fid', 1)} | {stat(syn, 'kid', 3)} | {memorised} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="Exports (results/SETTING) or run folders.")
    parser.add_argument("--margin", help="Equivalence margin in AUC (default: the report's, 0.01).")
    parser.add_argument("--synthetic", action="store_true", help="ACC, Holm p-values and the synthetic-set audit.")
    args = parser.parse_args()
    extra = ["--margin", args.margin] if args.margin else []
    if args.synthetic:
        print(
            "| setting | method | seeds | test ACC | Holm-adjusted p vs none / oversample | TSTR test AUC | "
            "class fidelity (the reference on real images) | FID (in-domain) | KID (in-domain) | "
            "memorised: pixels / features |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for folder in args.folders:
            for group in report_json(folder, extra)["groups"]:
                for row in group["rows"]:
                    print(synthetic_row(group, row))
        return
    print(
        "| setting | method | seeds | test AUC | Δ AUC vs none [95 % CI], verdict | Δ AUC vs oversample [95 % CI], "
        "verdict | worth in real images per class [95 % CI] |"
    )
    print("|---|---|---|---|---|---|---|")
    for folder in args.folders:
        for group in report_json(folder, extra)["groups"]:
            for row in group["rows"]:
                comparisons = row.get("comparisons") or {}
                print(
                    f"| {group['title']} | `{row['method']}` | {row['n']} | {stat(row, 'test_auc')} | "
                    f"{difference(comparisons.get('none'))} | "
                    f"{difference(next((c for k, c in comparisons.items() if k != 'none'), None))} | "
                    f"{worth(row.get('real_equivalent'))} |"
                )


if __name__ == "__main__":
    main()
