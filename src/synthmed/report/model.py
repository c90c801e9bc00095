"""The report as data: a ``Document`` of ``Section``s holding tables, figures, paragraphs and bullet lists.

The summary is built once into this model (``synthmed.report.summary``) and rendered to Markdown, HTML, CSV and
the terminal by ``synthmed.report.render``, so every format shows the same cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """A caption, column names and rows of display text; ``values`` (optional) holds each row's raw numbers by
    column for machine-readable output; ``note`` (optional) is text the terminal shows under the table."""

    caption: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    values: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def column(self, name: str) -> list[str]:
        """One column's cells, picked by name."""
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def select(self, names: list[str]) -> Table:
        """The same rows with only the named columns, in that order."""
        index = [self.columns.index(n) for n in names]
        return Table(self.caption, list(names), [[row[i] for i in index] for row in self.rows], self.values, self.note)


@dataclass
class Figure:
    """A PNG written beside the report as ``name`` (Markdown links it, HTML embeds it)."""

    name: str
    png: bytes
    alt: str
    caption: str = ""


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


Block = Table | Figure | Paragraph | Bullets


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


@dataclass
class Document:
    title: str
    header: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]
