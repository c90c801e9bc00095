"""Where a report's runs come from: the SQLite store of a run folder, with each run's per-epoch history, and the
runs that failed (``runs/RUN_ID/error.json`` without a record)."""

from __future__ import annotations

import json
from pathlib import Path

from synthmed.errors import SynthmedError
from synthmed.store import ResultStore


def load_records(out: str | Path) -> list[dict]:
    """Every finished run of a run folder, each with its ``history`` (from its record or runs/ID/history.json)."""
    out = Path(out)
    path = out / "results.sqlite"
    if not path.exists():
        raise SynthmedError(f"{path} does not exist; run `synthmed run ... --out {out}` first")
    with ResultStore(path) as store:
        records = store.records()
    for r in records:
        history = (r.get("metrics") or {}).get("history")
        file = out / "runs" / r["run_id"] / "history.json"
        if history is None and file.exists():
            history = json.loads(file.read_text())
        r["history"] = history or []
    return records


def failed_runs(out: str | Path, finished: set[str]) -> list[dict]:
    """Runs that left ``error.json`` and have no record (a later success removes the file)."""
    failures = []
    for path in sorted(Path(out).glob("runs/*/error.json")):
        info = json.loads(path.read_text())
        if info["run_id"] in finished:
            continue
        c = info["config"]
        failures.append(
            {
                "run_id": info["run_id"],
                "error": info["error"],
                "what": f"{c['dataset']} {c['protocol']} {c['method']} seed {c['seed']}",
            }
        )
    return failures
