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


def test_the_config_page_names_every_key_a_grid_file_takes():
    """docs/configs.md lists each section's keys by hand; the schema is the model: a new field is named there."""
    from synthmed.experiment.grid import TOP_KEYS, section_fields

    text = (ROOT / "docs" / "configs.md").read_text()
    keys = [*TOP_KEYS, *(k for s in ("protocols", "methods", "recipes", "options") for k in section_fields(s))]
    assert all(f"`{key}`" in text or f"{key}:" in text for key in keys), [
        key for key in keys if f"`{key}`" not in text and f"{key}:" not in text
    ]


def test_the_architecture_page_names_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text()
    modules = [p for p in (ROOT / "src" / "synthmed").rglob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert modules and not [p.name for p in modules if p.name not in text]


def test_the_config_page_names_every_experiment_file():
    text = (ROOT / "docs" / "configs.md").read_text()
    files = sorted((ROOT / "configs").rglob("*.yaml"))

    def named(path: Path) -> bool:  # a step named by its suffix beside its study file counts
        stem = path.stem
        return path.name in text or any(f"`-{stem.split('-', n)[-1]}.yaml`" in text for n in range(1, 6))

    assert files and not [p.name for p in files if not named(p)]
