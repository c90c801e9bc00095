"""Where a report's runs come from: the SQLite store of a run folder or the JSON lines of an export, with each
run's per-epoch history, and the runs that failed (``runs/RUN_ID/error.json`` without a record)."""

from __future__ import annotations

import json
from pathlib import Path

from synthmed.errors import SynthmedError
from synthmed.store import ResultStore, read_jsonl

#: An export's records (``synthmed export``).
EXPORT_RECORDS = "records.jsonl"


def load_records(out: str | Path) -> list[dict]:
    """Every finished run of a run folder (or an export), each with its ``history`` (from its record or
    runs/ID/history.json)."""
    out = Path(out)
    path = out / "results.sqlite"
    if path.exists():
        with ResultStore(path) as store:
            records = store.records()
    elif (out / EXPORT_RECORDS).exists():
        records = read_jsonl(out / EXPORT_RECORDS)
    else:
        raise SynthmedError(
            f"{out} holds neither results.sqlite nor {EXPORT_RECORDS}; run `synthmed run ... --out "
            f"{out}` first, or give an export folder"
        )
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
