"""Reports of a run folder: the summary built once as a table model (``summary``, ``model``), rendered to
Markdown, HTML, CSV and the terminal (``render``), with every figure drawn in one module (``figures``) and the
statistics in another (``stats``)."""

from __future__ import annotations

from pathlib import Path

from synthmed.errors import SynthmedError
from synthmed.report.model import Bullets, Document, Section, Table


def build_document(out: Path, records: list[dict]) -> tuple[Document, list[dict]]:
    """The report of ``records`` (runs of the folder ``out``) and the summary rows it was built from."""
    from synthmed.report.records import failed_runs
    from synthmed.report.summary import (
        fraction_tables,
        group_sections,
        header,
        notes_section,
        robustness_sections,
        summarise,
    )

    rows = summarise(records)
    doc = Document("synthmed report", header(records), group_sections(out, records, rows))
    pivots = fraction_tables(rows)
    if pivots:
        doc.sections.append(Section("By training fraction", list(pivots)))
    doc.sections += robustness_sections(out, records)
    failures = failed_runs(out, {r["run_id"] for r in records})
    if failures:
        doc.sections.append(
            Section(
                "Failed runs (no record; the same command retries them)",
                [Bullets([f"`{f['run_id']}` {f['what']}: {f['error']}" for f in failures])],
            )
        )
    doc.sections.append(notes_section())
    return doc, rows


def write_report(out: str | Path) -> list[Path]:
    """Write report.md, report.html (figures embedded), its PNG figures, runs.csv and summary.csv into ``out``;
    return their paths."""
    from synthmed.io import atomic_write_bytes, atomic_write_text
    from synthmed.report.records import load_records
    from synthmed.report.render import csv_text, markdown, page
    from synthmed.report.summary import runs_rows, summary_rows

    out = Path(out)
    records = load_records(out)
    if not records:
        raise SynthmedError(f"{out / 'results.sqlite'} holds no finished runs yet")
    doc, rows = build_document(out, records)
    written = []
    for figure in doc.figures():
        if figure.name.startswith("report_"):  # run figures (grids, t-SNE) are already in runs/ID/
            atomic_write_bytes(out / figure.name, figure.png)
            written.append(out / figure.name)
    atomic_write_text(out / "report.md", markdown(doc))
    atomic_write_text(out / "report.html", page(doc))
    atomic_write_text(out / "runs.csv", csv_text(*runs_rows(records)))
    atomic_write_text(out / "summary.csv", csv_text(*summary_rows(rows)))
    return [out / "report.md", out / "report.html", out / "runs.csv", out / "summary.csv", *written]


def terminal_tables(out: str | Path) -> list[Table]:
    """The final tables of ``synthmed run``: per group, the results table's terminal columns."""
    from synthmed.report.records import load_records
    from synthmed.report.summary import TERMINAL_COLUMNS, by_group, group_title, results_table, summarise

    rows = summarise(load_records(out))
    return [results_table(group, group_title(key)).select(TERMINAL_COLUMNS) for key, group in by_group(rows).items()]


__all__ = ["build_document", "terminal_tables", "write_report"]
