"""The study's docs pages hold the tables the committed exports give: ``scripts/study_table.py --update`` would
change nothing (so a page is never out of date with ``results/``), and the block markers are well formed."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs" / "results").glob("study*.md"))


def study_table():
    spec = importlib.util.spec_from_file_location("study_table", ROOT / "scripts" / "study_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_study_pages_match_the_committed_exports(page, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the blocks name exports relative to the repository
    copy = tmp_path / page.name
    shutil.copy(page, copy)
    study_table().update(copy)
    assert copy.read_text() == page.read_text(), (
        f"{page.name} is out of date with results/: run python scripts/study_table.py --update {page.relative_to(ROOT)}"
    )


def test_a_marked_block_is_replaced_by_its_table(tmp_path, monkeypatch):
    module = study_table()
    monkeypatch.setattr(module, "report_json", lambda folder, extra: {"groups": [{"title": "t", "rows": [ROW]}]})
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- study_table results/x --no-setting -->\nold\n<!-- /study_table -->\nend\n")
    assert module.update(page) == 1
    lines = page.read_text().splitlines()
    assert lines[2].startswith("| method | seeds | test AUC | Δ AUC vs none [95 % CI], verdict | Δ AUC vs oversample")
    assert lines[4] == "| `flip` | 3 | 0.900 ± 0.010 | -0.010 [-0.030, +0.010] undecided |  |"
    assert lines[0] == "intro" and lines[-1] == "end" and "old" not in lines


ROW = {
    "method": "flip",
    "n": 3,
    "test_auc": {"mean": 0.9, "std": 0.01},
    "comparisons": {"none": {"mean": -0.01, "t_low": -0.03, "t_high": 0.01, "verdict": "undecided"}},
    "real_equivalent": None,
}
