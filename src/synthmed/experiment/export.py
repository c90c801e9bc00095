"""Results that survive a move to another machine: an export is a folder of text a repository can hold.

``export_runs(RUN_DIR, DEST)`` writes DEST/records.jsonl (one record per run, sorted, with its per-epoch history),
the small artifacts the report draws (for the lowest seed of every table row: the synthetic image grid, t-SNE and
FID-over-epochs figures; for robustness runs the CAM maps as base64 text), ``sequential.json`` when seeds were
added until decided, ``report_settings.json`` when the study's commands named a margin or reference, and
``export.json`` (what it is, from where, how many runs, bytes). No SQLite file, no
weights, no synthetic npz. Exporting into an existing export merges: runs already there are kept.

``synthmed report DEST`` reads an export like a run folder; ``import_export(DEST, OUT)`` (``--resume-from DEST``)
copies its records and artifacts into OUT's store, so a grid continued there skips every exported run.

``--export-to DEST`` keeps an export up to date while a grid runs: ``append_run`` adds each run as its record is
stored (figures first, then records.jsonl by one atomic rename, then export.json), so a killed command leaves an
export that loads, holds every run stored before the kill but the last at most (the next command with the same
``--export-to`` adds it), and never holds a run twice; ``finish_export`` synchronises and writes the report there at
the end, and ``update_pages`` regenerates the study pages' tables (``synthmed.report.pages``). Writers of one run
folder take ``RUN_DIR/.export.lock``.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from synthmed.errors import SynthmedError
from synthmed.io import atomic_write_bytes, atomic_write_json, file_lock, remove_temporaries
from synthmed.record import RunRecord
from synthmed.report import SEQUENTIAL_FILE, SETTINGS_FILE
from synthmed.report.records import EXPORT_RECORDS, load_records
from synthmed.store import ResultStore, read_jsonl, write_jsonl

MARKER = "export.json"
FORMAT = "synthmed-export/1"
#: Figures of a run that the report shows (only the lowest seed of each row is exported).
FIGURES = ("synthetic_grid.png", "synthetic_tsne.png", "synthetic_fid.png")
#: The lock, in the run folder, of the processes that write its runs into an export.
LOCK = ".export.lock"


def is_export(folder: Path) -> bool:
    return (folder / MARKER).exists() and (folder / EXPORT_RECORDS).exists()


def _check_target(dest: Path) -> None:
    if dest.exists() and not dest.is_dir():
        raise SynthmedError(f"{dest} is a file; give a folder for the export")
    started = {MARKER, EXPORT_RECORDS}  # an export whose first write was cut short
    if dest.exists() and not is_export(dest) and any(p.name not in started for p in dest.iterdir()):
        raise SynthmedError(
            f"{dest} exists and is not a synthmed export; give a new folder or an earlier export to merge into"
        )


def check_export_target(dest: Path) -> None:
    """Refuse a ``--export-to`` that is a file or a folder of something else, before anything runs."""
    _check_target(dest)


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


def _copy_figures(records: list[dict], run_dir: Path, dest: Path) -> int:
    """Copy the figures of the runs the report shows (``_shown_runs``) that ``dest`` lacks; returns bytes written."""
    size = 0
    for run_id in _shown_runs(records, run_dir):
        source, target = run_dir / "runs" / run_id, dest / "runs" / run_id
        for name in FIGURES:
            if (source / name).exists() and not (target / name).exists():
                atomic_write_bytes(target / name, (source / name).read_bytes())
                size += (source / name).stat().st_size
        if (source / "cam.npz").exists() and not (target / "cam.json").exists():
            encoded = base64.b64encode((source / "cam.npz").read_bytes()).decode()
            atomic_write_json(target / "cam.json", {"format": "npz-base64", "npz_base64": encoded})
            size += len(encoded)
    return size


def _write_marker(run_dir: Path, dest: Path, runs: int, added: int) -> dict:
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file() and p.name != MARKER)
    info = {
        "format": FORMAT,
        "source": str(run_dir.resolve()),
        "runs": runs,
        "added": added,
        "bytes": total,
        "bytes_per_run": round(total / max(runs, 1)),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "contents": f"{EXPORT_RECORDS} (every record), runs/RUN_ID/ figures and CAM maps of the lowest seed with "
        "figures of each table row; no SQLite file, weights or synthetic images",
    }
    atomic_write_json(dest / MARKER, info)
    return info


def export_runs(run_dir: str | Path, dest: str | Path, keep: Callable[[dict], bool] | None = None) -> dict:
    """Export the finished runs of ``run_dir`` (those ``keep`` takes, else all) into ``dest`` (merging with an
    earlier export there); returns export.json's content, including the bytes per run."""
    run_dir, dest = Path(run_dir), Path(dest)
    if not (run_dir / "results.sqlite").exists():
        raise SynthmedError(f"{run_dir / 'results.sqlite'} does not exist; export a run folder of `synthmed run`")
    if (run_dir / "results.sqlite").stat().st_size == 0:  # opening it would write a store's schema into it
        raise SynthmedError(f"{run_dir / 'results.sqlite'} is empty (0 bytes), not a results store")
    _check_target(dest)
    with file_lock(run_dir / LOCK):
        remove_temporaries(dest)  # left by a writer killed mid-write; writers of this run folder hold the lock
        records = [r for r in load_records(run_dir) if keep is None or keep(r)]
        for r in records:
            r.pop("history", None)  # the loader's copy of metrics.history
        earlier = read_jsonl(dest / EXPORT_RECORDS) if (dest / EXPORT_RECORDS).exists() else []
        merged = {r["run_id"]: r for r in earlier}
        new = [r for r in records if r["run_id"] not in merged]
        merged.update({r["run_id"]: r for r in new})
        all_records = list(merged.values())
        _copy_figures(all_records, run_dir, dest)
        write_jsonl(dest / EXPORT_RECORDS, all_records)
        if _further(run_dir / SEQUENTIAL_FILE, dest / SEQUENTIAL_FILE):
            atomic_write_bytes(dest / SEQUENTIAL_FILE, (run_dir / SEQUENTIAL_FILE).read_bytes())
        _copy_settings(run_dir, dest)
        return _write_marker(run_dir, dest, len(all_records), len(new))


def _copy_settings(run_dir: Path, dest: Path) -> None:
    """The run folder's recorded report settings (``SETTINGS_FILE``) into the export, where they differ."""
    source, target = run_dir / SETTINGS_FILE, dest / SETTINGS_FILE
    if source.exists() and (not target.exists() or target.read_bytes() != source.read_bytes()):
        atomic_write_bytes(target, source.read_bytes())


def start_export(dest: str | Path) -> None:
    """Make ``dest`` an export (empty) unless it is one; refuse a file or a folder of something else."""
    dest = Path(dest)
    _check_target(dest)
    if not is_export(dest):
        dest.mkdir(parents=True, exist_ok=True)
        if not (dest / EXPORT_RECORDS).exists():
            write_jsonl(dest / EXPORT_RECORDS, [])
        atomic_write_json(dest / MARKER, {"format": FORMAT, "runs": 0, "added": 0})


def append_run(run_dir: str | Path, dest: str | Path, run_id: str) -> bool:
    """Add one stored run of ``run_dir`` to the export ``dest`` as ``synthmed export`` would (its figures where the
    report shows them, then its record by one atomic rename of records.jsonl); False when it is there already."""
    run_dir, dest = Path(run_dir), Path(dest)
    with file_lock(run_dir / LOCK):
        remove_temporaries(dest)
        records = read_jsonl(dest / EXPORT_RECORDS) if (dest / EXPORT_RECORDS).exists() else []
        if any(r["run_id"] == run_id for r in records):
            return False
        with ResultStore(run_dir / "results.sqlite") as store:
            records.append(store.record(run_id))
        _copy_figures(records, run_dir, dest)
        write_jsonl(dest / EXPORT_RECORDS, records)
        _copy_settings(run_dir, dest)
        _write_marker(run_dir, dest, len(records), 1)
    return True


def finish_export(
    run_dir: str | Path,
    dest: str | Path,
    settings: Any = None,
    report: bool = True,
    keep: Callable[[dict], bool] | None = None,
) -> list[Path]:
    """At the end of a grid: synchronise the export with the store (``export_runs``) and write its report there
    (unless ``report`` is false); returns the report's files."""
    from synthmed.report import write_report

    export_runs(run_dir, dest, keep)
    return write_report(dest, settings) if report else []


def check_pages(pages: list[Path]) -> None:
    """Refuse a page that is absent, holds no well-formed table block, or lies in no repository, before anything
    runs."""
    from synthmed.report.pages import check_page, repository_root

    for page in pages:
        try:
            check_page(page)
            repository_root(page)
        except SynthmedError as error:
            raise SynthmedError(f"--pages {error}") from None


def update_pages(pages: list[Path], export: Path | None = None) -> list[str]:
    """Regenerate the tables between the study pages' markers from the exports they name (``export`` for a block
    that names none); returns one line per page."""
    from synthmed.report.pages import update_pages as update

    try:
        return update(pages, export)
    except SynthmedError as error:
        raise SynthmedError(f"--pages {error}") from None


def import_export(source: str | Path, out: str | Path) -> int:
    """Copy an export's records (those ``out`` lacks) and artifacts into ``out``'s store; returns how many."""
    source, out = Path(source), Path(out)
    if not is_export(source):
        raise SynthmedError(
            f"--resume-from {source} is not a synthmed export (no {MARKER} and {EXPORT_RECORDS}); "
            "give a folder written by `synthmed export`"
        )
    records = read_jsonl(source / EXPORT_RECORDS)
    for number, record in enumerate(records, start=1):  # before anything is written: a bad record refuses the export
        problem = RunRecord.problem(record)
        if problem is not None:
            raise SynthmedError(
                f"--resume-from {source}: record {number} of {EXPORT_RECORDS} ({record['run_id']}) cannot be "
                f"imported: {problem}"
            )
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
    if _further(source / SEQUENTIAL_FILE, out / SEQUENTIAL_FILE, ties=False) and same_study(source, out):
        shutil.copyfile(source / SEQUENTIAL_FILE, out / SEQUENTIAL_FILE)
    if (source / SETTINGS_FILE).exists() and not (out / SETTINGS_FILE).exists() and same_study(source, out):
        shutil.copyfile(source / SETTINGS_FILE, out / SETTINGS_FILE)
    return len(added)


def _further(source: Path, target: Path, ties: bool = True) -> bool:
    """Whether ``source``'s ``--seeds auto`` progress (looks, then seeds) is ahead of ``target``'s (or ties it): a
    study's looks only grow, so the copy with more is the newer one, whichever machine made it. An export and a run
    folder are synced both ways; without this, a machine's older copy (a `--rows` step begun before another machine's
    look, a store left from an earlier session) would overwrite the newer one."""
    if not source.exists():
        return False
    if not target.exists():
        return True
    ahead, behind = _progress(source), _progress(target)
    return ahead > behind or (ties and ahead == behind)


def _progress(path: Path) -> tuple[int, int]:
    """(looks, seeds) of a ``sequential.json``; an unreadable one counts as no progress."""
    try:
        state = json.loads(path.read_text())
        return len(state.get("looks") or []), int(state.get("seeds") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return -1, -1


def same_study(export: Path, out: Path) -> bool:
    """Whether ``export`` was written from a run folder of ``out``'s name, the same study's store on any machine.
    Only then are its ``--seeds auto`` plan and looks ``out``'s own: a study that imports another's runs (the
    unlabelled study reusing the low-noise study's controls) has a plan, alpha and looks of its own."""
    source = json.loads((export / MARKER).read_text()).get("source")
    return source is not None and Path(source).name == out.name


def study_plan(out: Path, resume_from: Path | None) -> dict | None:
    """The ``--seeds auto`` record (``sequential.json``) of the study whose store is ``out``: the store's, else that
    of the export it resumes from where that export is this study's (``same_study``), else None."""
    from synthmed.report import sequential_stop

    stop = sequential_stop(out)
    if stop is None and resume_from is not None and same_study(resume_from, out):
        stop = sequential_stop(resume_from)
    return stop
