"""How well a time budget predicts a run's duration on another machine, with and without scaling the stored runs to
its speed (``synthmed.experiment.budget.speed_factors``), measured on the committed study exports.

Each run of an export is left out in turn and costed as a step on its own machine would cost it: from the export's
other runs (the longest of its config, else of its method, less the fit where its own fit was cached), once as
stored, once scaled to its machine's speed, and once scaled with each config that has runs alike on the run's
machine costed by those alone (``measured_here``). The ratio actual / estimate says how far off each is; above 1 the
budget would have started a run it could not finish in time. Results go to bench/results/budget_estimates.json.

    .venv/bin/python bench/budget_estimates.py [--exports results/breastmnist-lowdata-lownoise,...]
"""

from __future__ import annotations

import argparse
import statistics
from datetime import datetime, timezone
from pathlib import Path

from synthmed.experiment.budget import Durations, generator_fit, run_seconds, speed_class, speed_factors
from synthmed.io import atomic_write_json
from synthmed.store import read_jsonl

ROOT = Path(__file__).resolve().parent.parent


def ratios(records: list[dict], scaled: bool, here: bool = False) -> dict[str, list[float]]:
    """Per machine class, actual / estimated seconds of each run left out in turn (runs nothing else prices are
    skipped); ``here``: a config with runs alike on the run's machine is costed by those alone (``measured_here``)."""
    out: dict[str, list[float]] = {}
    for index, record in enumerate(records):
        kind = speed_class(record)
        if kind is None or record.get("total_time") is None:
            continue
        others = records[:index] + records[index + 1 :]
        factors = speed_factors(others, kind) if scaled else {}
        key = (record["dataset"], record["protocol"], record["method"])
        durations = Durations.of(others, factors, kind if here else None)
        expected = durations.seconds(key, record["config"], generator_fit(record)[0])
        if expected:
            out.setdefault(kind, []).append(run_seconds(record) / expected)
    return out


def summary(values: list[float]) -> dict:
    return {
        "runs": len(values),
        "median_actual_over_estimate": round(statistics.median(values), 3),
        "share_over_1_25": round(sum(v > 1.25 for v in values) / len(values), 3),
        "worst": round(max(values), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--exports",
        default="results/breastmnist-lowdata-lownoise,results/pneumoniamnist-lowdata-lownoise",
        help="comma-separated export folders (relative to the repository)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "budget_estimates.json"))
    args = parser.parse_args()
    result: dict = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "exports": {}}
    for name in args.exports.split(","):
        records = read_jsonl(ROOT / name / "records.jsonl")
        classes = sorted({speed_class(r) or "unknown" for r in records})
        entry: dict = {"runs": len(records), "machine_classes": classes}
        for label, scaled, here in (
            ("as_stored", False, False),
            ("scaled_to_the_machine", True, False),
            ("scaled_and_measured_here", True, True),
        ):
            entry[label] = {kind: summary(values) for kind, values in sorted(ratios(records, scaled, here).items())}
        result["exports"][name] = entry
        print(name, entry)
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
