"""Reports of a run folder: the summary built once as a table model (``summary``, ``model``), rendered to
Markdown, HTML, CSV and the terminal (``render``), with every figure drawn in one module (``figures``) and the
statistics in another (``stats``)."""

from __future__ import annotations

from pathlib import Path

from synthmed.errors import SynthmedError
from synthmed.report.model import Bullets, Document, Section, Table
from synthmed.report.summary import Settings


def build_document(out: Path, records: list[dict], settings: Settings | None = None) -> tuple[Document, list[dict]]:
    """The report of ``records`` (runs of the folder ``out``) and the summary rows it was built from."""
    from synthmed.report.records import failed_runs
    from synthmed.report.sections import group_sections, header, notes_section, round_progress
    from synthmed.report.summary import robustness_sections, summarise
    from synthmed.report.tables import fraction_tables

    settings = settings or Settings()
    rows = summarise(records, settings)
    doc = Document("synthmed report", header(records), group_sections(out, records, rows, settings))
    pivots = fraction_tables(rows)
    if pivots:
        doc.sections.append(Section("By training fraction", list(pivots)))
    doc.sections += robustness_sections(out, records, settings)
    failures = failed_runs(out, {r["run_id"] for r in records})
    if failures:
        doc.sections.append(
            Section(
                "Failed runs (no record; the same command retries them)",
                [Bullets([f"`{f['run_id']}` {f['what']}: {f['error']}" for f in failures])],
            )
        )
    stop = sequential_stop(out)
    progress = round_progress(records, stop) if stop else None
    doc.sections.append(notes_section(settings, stop, rows, progress))
    return doc, rows


def write_report(out: str | Path, settings: Settings | None = None) -> list[Path]:
    """Write report.md, report.html (figures embedded), its PNG figures, runs.csv, summary.csv and (for
    ``--robustness medmnistc`` runs) robustness.csv into ``out``; return their paths."""
    from synthmed.io import atomic_write_bytes, atomic_write_text
    from synthmed.report.medmnistc import robustness_rows
    from synthmed.report.records import load_records
    from synthmed.report.render import csv_text, markdown, page
    from synthmed.report.tables import runs_rows, summary_rows

    out = Path(out)
    records = load_records(out)
    if not records:
        raise SynthmedError(f"{out / 'results.sqlite'} holds no finished runs yet")
    settings = settings or settings_for(out)
    doc, rows = build_document(out, records, settings)
    written = []
    for figure in doc.figures():
        if figure.name.startswith("report_"):  # run figures (grids, t-SNE) are already in runs/ID/
            atomic_write_bytes(out / figure.name, figure.png)
            written.append(out / figure.name)
    atomic_write_text(out / "report.md", markdown(doc))
    atomic_write_text(out / "report.html", page(doc))
    atomic_write_text(out / "runs.csv", csv_text(*runs_rows(records)))
    atomic_write_text(out / "summary.csv", csv_text(*summary_rows(rows, settings)))
    columns, robust = robustness_rows(records)
    if robust:  # runs measured with --robustness medmnistc
        atomic_write_text(out / "robustness.csv", csv_text(columns, robust))
        written.append(out / "robustness.csv")
    return [out / "report.md", out / "report.html", out / "runs.csv", out / "summary.csv", *written]


def terminal_tables(out: str | Path, settings: Settings | None = None) -> list[Table]:
    """The final tables of ``synthmed run``: per group, the results table's terminal columns, with the answer to
    each reference under it (``verdict_summary``)."""
    from synthmed.report.records import load_records
    from synthmed.report.summary import by_group, group_title, summarise
    from synthmed.report.tables import results_table, terminal_table, verdict_summary

    settings = settings or settings_for(out)
    rows = summarise(load_records(out), settings)
    tables = []
    for key, group in by_group(rows).items():
        table = terminal_table(results_table(group, group_title(key), settings))
        table.note = " ".join(verdict_summary(group, settings))
        tables.append(table)
    return tables


def summary_json(out: str | Path, settings: Settings | None = None) -> dict:
    """The report as data: settings, header, and per group its rows with every statistic and comparison (what
    ``synthmed report --format json`` prints; the README's tables are built from it)."""
    import dataclasses

    from synthmed.report.claims import claims_json
    from synthmed.report.medmnistc import medmnistc_json
    from synthmed.report.records import load_records
    from synthmed.report.sections import header, round_progress
    from synthmed.report.summary import by_group, family_text, group_decisions, group_title, summarise

    settings = settings or settings_for(out)
    records = load_records(out)
    rows = summarise(records, settings)
    stop = sequential_stop(out)

    def stats(values: tuple) -> dict:
        return dict(zip(("mean", "std", "ci95"), values))

    groups = []
    for key, group in by_group(rows).items():
        first = group[0]["runs"][0]
        by_method = {row["method"]: row["runs"] for row in group}
        claims = claims_json(by_method, settings.margin, settings.alpha, group_decisions(settings, key))
        robustness = medmnistc_json(by_method, settings.margin, settings.alpha)
        groups.append(
            {
                "title": group_title(key),
                "dataset": key[0],
                "protocol": key[1],
                "classifier": key[2],
                "recipe": key[3],
                "n_train": first["n_train"],
                "n_val": first["n_val"],
                "n_test": first["n_test"],
                "rows": [
                    {
                        "method": row["method"],
                        "base_method": row["base_method"],
                        "levers": row["levers"],
                        "params": row["params"],
                        "n": row["n"],
                        "seeds": row["seeds"],
                        "headline": row["headline"],
                        "mixed": row.get("mixed") or {},
                        **{m: stats(row[m]) for m in ("test_auc", "test_acc", "val_auc")},
                        "comparisons": {
                            ref: dataclasses.asdict(c) for ref, c in (row.get("comparisons") or {}).items()
                        },
                        "real_equivalent": _finite(row.get("real_equivalent")),
                        "synthetic": _plain(row["synthetic"]),
                    }
                    for row in group
                ],
            }
            | ({"tsynd_claims": claims} if claims else {})
            | ({"robustness": robustness} if robustness else {})
        )
    return {
        "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "decided_at"},  # on each comparison
        "family": family_text(rows),
        "sequential": stop,
        "round": round_progress(records, stop) if stop else None,
        "compute": {"runs": len(records), "cpu_hours": sum(r["total_time"] or 0 for r in records) / 3600},
        "header": header(records),
        "groups": groups,
    }


def _finite(worth: dict | None) -> dict | None:
    """A real-image equivalent with infinite values (off the curve) as None; its ``text`` says which way."""
    import math

    if worth is None:
        return None
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in worth.items()}


def _plain(summary: dict | None) -> dict | None:
    """A synthetic-set summary with its (mean, std, ci95) tuples as mean / std."""
    if summary is None:
        return None
    return {
        k: {"mean": v[0], "std": v[1]} if isinstance(v, tuple) and len(v) == 3 else v
        for k, v in summary.items()
        if k != "fid_over_epochs"
    }


SEQUENTIAL_FILE = "sequential.json"
#: The margin and third reference a study's commands named (``execution.margin`` / ``execution.reference``), kept
#: beside its runs and exports so that a later ``synthmed report`` (or a page) judges as the study did unasked.
SETTINGS_FILE = "report_settings.json"


def sequential_stop(out: str | Path) -> dict | None:
    """What ``--seeds auto`` recorded about its looks and why it stopped (None for a fixed seed list)."""
    import json

    path = Path(out) / SEQUENTIAL_FILE
    return json.loads(path.read_text()) if path.exists() else None


def recorded_settings(out: str | Path) -> dict:
    """The margin and reference the study's commands named (``SETTINGS_FILE``; {} when none did)."""
    import json

    path = Path(out) / SETTINGS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def record_settings(out: str | Path, margin: float | None = None, reference: str | None = None) -> None:
    """Keep the margin and reference a command named beside the study's runs (those it left out stay as recorded)."""
    from synthmed.io import atomic_write_json

    recorded = recorded_settings(out)
    merged = recorded | {k: v for k, v in (("margin", margin), ("reference", reference)) if v is not None}
    if merged != recorded:
        atomic_write_json(Path(out) / SETTINGS_FILE, merged)


def settings_for(
    out: str | Path, margin: float | None = None, reference: str | None = None, select_levers: str = "val_auc"
) -> Settings:
    """The report settings of a folder: the margin and alpha split that ``--seeds auto`` used, else the margin and
    reference the study's commands named (``recorded_settings``), unless given, and the decisions its looks made
    (kept where the report decides as the looks did: at their margin and reference)."""
    from synthmed.report.summary import looks_decided

    stop, recorded = sequential_stop(out), recorded_settings(out)
    if stop is None:
        margin = recorded.get("margin", 0.01) if margin is None else margin
        reference = reference or recorded.get("reference")
        return Settings(margin=margin, reference=reference, select_levers=select_levers)
    margin = stop["margin"] if margin is None else margin
    reference = reference or stop.get("reference") or recorded.get("reference")
    # the looks' decisions hold where the report judges the same comparisons (the same references) at their margin
    as_looked = margin == stop["margin"] and (
        Settings(reference=reference).references() == Settings(reference=stop.get("reference")).references()
    )
    return Settings(
        margin=margin,
        alpha=stop["look_alpha"],
        reference=reference,
        looks=stop["planned_looks"],
        select_levers=select_levers,
        decided_at=looks_decided(stop["looks"]) if as_looked else (),
    )


__all__ = [
    "Settings",
    "build_document",
    "record_settings",
    "recorded_settings",
    "settings_for",
    "summary_json",
    "terminal_tables",
    "write_report",
]
