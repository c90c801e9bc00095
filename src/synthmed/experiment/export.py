"""Results that survive a move to another machine: an export is a folder of text a repository can hold.

``export_runs(RUN_DIR, DEST)`` writes DEST/records.jsonl (one record per run, sorted, with its per-epoch history),
the small artifacts the report draws (for the lowest seed of every table row: the synthetic image grid, t-SNE and
FID-over-epochs figures; for robustness runs the CAM maps as base64 text), ``sequential.json`` when seeds were
added until decided, and ``export.json`` (what it is, from where, how many runs, bytes). No SQLite file, no
weights, no synthetic npz. Exporting into an existing export merges: runs already there are kept.

``synthmed report DEST`` reads an export like a run folder; ``import_export(DEST, OUT)`` (``--resume-from DEST``)
copies its records and artifacts into OUT's store, so a grid continued there skips every exported run.
"""

from __future__ import annotations

import base64
import shutil
from datetime import datetime, timezone
from pathlib import Path

from synthmed.errors import SynthmedError
from synthmed.io import atomic_write_bytes, atomic_write_json
from synthmed.report import SEQUENTIAL_FILE
from synthmed.report.records import EXPORT_RECORDS, load_records
from synthmed.store import ResultStore, read_jsonl, write_jsonl

MARKER = "export.json"
FORMAT = "synthmed-export/1"
#: Figures of a run that the report shows (only the lowest seed of each row is exported).
FIGURES = ("synthetic_grid.png", "synthetic_tsne.png", "synthetic_fid.png")


def is_export(folder: Path) -> bool:
    return (folder / MARKER).exists() and (folder / EXPORT_RECORDS).exists()


def _check_target(dest: Path) -> None:
    if dest.exists() and not dest.is_dir():
        raise SynthmedError(f"{dest} is a file; give a folder for the export")
    if dest.exists() and any(dest.iterdir()) and not is_export(dest):
        raise SynthmedError(
            f"{dest} exists and is not a synthmed export; give a new folder or an earlier export to merge into"
        )


def _shown_runs(records: list[dict], run_dir: Path) -> set[str]:
    """Run ids whose figures the report draws: of every (group, method) row, the lowest seed whose run folder in
    ``run_dir`` holds figures (an imported run may have none), else the lowest seed."""
    from synthmed.report.summary import group_key
    from synthmed.spec import method_label

    rows: dict[tuple, list[dict]] = {}
    for r in records:
        rows.setdefault((*group_key(r), method_label(r["config"])), []).append(r)

    def has_figures(r: dict) -> bool:
        folder = run_dir / "runs" / r["run_id"]
        return any((folder / name).exists() for name in (*FIGURES, "cam.npz"))

    shown = set()
    for runs in rows.values():
        runs.sort(key=lambda r: r["seed"])
        shown.add(next((r for r in runs if has_figures(r)), runs[0])["run_id"])
    return shown


def export_runs(run_dir: str | Path, dest: str | Path) -> dict:
    """Export the finished runs of ``run_dir`` into ``dest`` (merging with an earlier export there); returns
    export.json's content, including the bytes per run."""
    run_dir, dest = Path(run_dir), Path(dest)
    if not (run_dir / "results.sqlite").exists():
        raise SynthmedError(f"{run_dir / 'results.sqlite'} does not exist; export a run folder of `synthmed run`")
    _check_target(dest)
    records = load_records(run_dir)
    for r in records:
        r.pop("history", None)  # the loader's copy of metrics.history
    merged = {r["run_id"]: r for r in (read_jsonl(dest / EXPORT_RECORDS) if is_export(dest) else [])}
    new = [r for r in records if r["run_id"] not in merged]
    merged.update({r["run_id"]: r for r in new})
    all_records = list(merged.values())
    size = len(write_jsonl(dest / EXPORT_RECORDS, all_records))
    for run_id in _shown_runs(all_records, run_dir):
        source, target = run_dir / "runs" / run_id, dest / "runs" / run_id
        for name in FIGURES:
            if (source / name).exists() and not (target / name).exists():
                atomic_write_bytes(target / name, (source / name).read_bytes())
                size += (source / name).stat().st_size
        if (source / "cam.npz").exists() and not (target / "cam.json").exists():
            encoded = base64.b64encode((source / "cam.npz").read_bytes()).decode()
            atomic_write_json(target / "cam.json", {"format": "npz-base64", "npz_base64": encoded})
            size += len(encoded)
    if (run_dir / SEQUENTIAL_FILE).exists():
        atomic_write_bytes(dest / SEQUENTIAL_FILE, (run_dir / SEQUENTIAL_FILE).read_bytes())
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file() and p.name != MARKER)
    info = {
        "format": FORMAT,
        "source": str(run_dir.resolve()),
        "runs": len(all_records),
        "added": len(new),
        "bytes": total,
        "bytes_per_run": round(total / max(len(all_records), 1)),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "contents": f"{EXPORT_RECORDS} (every record), runs/RUN_ID/ figures and CAM maps of the lowest seed with "
        "figures of each table row; no SQLite file, weights or synthetic images",
    }
    atomic_write_json(dest / MARKER, info)
    return info


def import_export(source: str | Path, out: str | Path) -> int:
    """Copy an export's records (those ``out`` lacks) and artifacts into ``out``'s store; returns how many."""
    source, out = Path(source), Path(out)
    if not is_export(source):
        raise SynthmedError(
            f"--resume-from {source} is not a synthmed export (no {MARKER} and {EXPORT_RECORDS}); "
            "give a folder written by `synthmed export`"
        )
    records = read_jsonl(source / EXPORT_RECORDS)
    with ResultStore(out / "results.sqlite") as store:
        known = store.run_ids()
        added = [r for r in records if r["run_id"] not in known]
        for record in added:
            store.add(record)
    if (source / "runs").is_dir():
        for folder in (source / "runs").iterdir():
            target = out / "runs" / folder.name
            for path in folder.iterdir():
                if not (target / path.name).exists():
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target / path.name)
    if (source / SEQUENTIAL_FILE).exists() and not (out / SEQUENTIAL_FILE).exists():
        shutil.copyfile(source / SEQUENTIAL_FILE, out / SEQUENTIAL_FILE)
    return len(added)
