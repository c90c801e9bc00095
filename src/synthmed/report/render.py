"""Render a report ``Document`` (or one ``Table``) as Markdown, self-contained HTML, CSV or a rich table."""

from __future__ import annotations

import base64
import csv
import html
import io

from synthmed.report.model import Bullets, Document, Figure, Paragraph, Table

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px}"
    "th{background:#f0f4f8}img{max-width:100%;margin:1em 0}figcaption{font-size:13px;color:#555}"
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> list[str]:
    lines = [table.caption, ""] if table.caption else []
    lines += ["| " + " | ".join(_cell(c) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return lines + [""]


def markdown(doc: Document) -> str:
    """Markdown with figures linked by file name (they are written beside the report)."""
    lines = [f"# {doc.title}", "", *[f"- {line}" for line in doc.header], ""]
    for section in doc.sections:
        lines += ["#" * section.level + " " + section.title, ""]
        for block in section.blocks:
            if isinstance(block, Table):
                lines += table_markdown(block)
            elif isinstance(block, Figure):
                lines += [f"![{block.alt}]({block.name})", ""]
            elif isinstance(block, Paragraph):
                lines += [block.text, ""]
            elif isinstance(block, Bullets):
                lines += [f"- {item}" for item in block.items] + [""]
    return "\n".join(lines) + "\n"


def table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    caption = f"<p>{html.escape(table.caption)}</p>" if table.caption else ""
    return f"{caption}<table><tr>{head}</tr>{body}</table>"


def page(doc: Document) -> str:
    """One self-contained HTML page, figures embedded."""
    parts = [
        f"<h1>{html.escape(doc.title)}</h1><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in doc.header) + "</ul>"
    ]
    for section in doc.sections:
        parts.append(f"<h{section.level}>{html.escape(section.title)}</h{section.level}>")
        for block in section.blocks:
            if isinstance(block, Table):
                parts.append(table_html(block))
            elif isinstance(block, Figure):
                image = base64.b64encode(block.png).decode()
                caption = f"<figcaption>{html.escape(block.caption)}</figcaption>" if block.caption else ""
                parts.append(
                    f"<figure>{caption}<img alt='{html.escape(block.alt)}' "
                    f"src='data:image/png;base64,{image}'></figure>"
                )
            elif isinstance(block, Paragraph):
                parts.append(f"<p>{html.escape(block.text)}</p>")
            elif isinstance(block, Bullets):
                parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in block.items) + "</ul>")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(doc.title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )


def csv_text(columns: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buffer.getvalue()


def rich_table(table: Table):  # -> rich.table.Table
    from rich.table import Table as RichTable

    out = RichTable(title=table.caption, caption=table.note or None)
    for name in table.columns:
        out.add_column(name)
    for row in table.rows:
        out.add_row(*row)
    return out
