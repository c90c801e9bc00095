"""Every relative link and image of the README and docs/ points at a file of the repository: pages are rewritten as
studies land, and a figure or page that moved would otherwise leave a dead link on the front door."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "bench").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # commands and code, not links
    targets = [a or b for a, b in LINK.findall(text)]
    return [t for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    missing = [t for t in relative_links(page) if not (page.parent / t.split("#", 1)[0]).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_the_link_finder_sees_links_and_images_not_urls_anchors_or_code(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        '[a](docs/a.md#x) [b](https://x.org) [c](#here) <img src="fig.png" width="49%">\n```\n[d](no.md)\n```\n'
    )
    assert relative_links(page) == ["docs/a.md#x", "fig.png"]
