"""The study's docs pages and the README hold the tables the committed exports give: ``scripts/study_table.py
--update`` would change nothing (so a page is never out of date with ``results/``), and the block markers are well
formed."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "results").glob("study*.md"))]


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
    assert lines[2].startswith(
        "| method | seeds | test AUC | none on the same seeds | Δ AUC vs none [95 % CI], verdict (Holm) | Δ AUC vs"
    )
    assert lines[4] == "| `flip` | 5 | 0.900 ± 0.010 | 0.910 | -0.010 [-0.030, +0.010] undecided |  |"
    assert lines[0] == "intro" and lines[-1] == "end" and "old" not in lines


def test_the_readme_tables_are_generated_between_markers():
    text = (ROOT / "README.md").read_text()
    assert text.count("<!-- study_table ") == text.count("<!-- /study_table -->") >= 2


def test_cells_bold_only_decided_verdicts_and_give_holm_where_the_raw_interval_excludes_0():
    module = study_table()
    raw_only = {"n": 5, "mean": 0.008, "t_low": 0.001, "t_high": 0.015, "verdict": "undecided", "p_holm": 0.33}
    assert module.difference(raw_only) == "+0.008 [+0.001, +0.015] undecided (Holm p 0.33)"
    decided = {**raw_only, "verdict": "better", "p_holm": 0.01}
    assert module.difference(decided) == "**+0.008 [+0.001, +0.015] better (Holm p 0.01)**"
    fits = {**raw_only, "t_low": -0.001, "n": 3, "unit": "generator fits", "verdict": "undecided (n < 5)"}
    assert module.difference(fits) == "+0.008 [-0.001, +0.015] undecided (n < 5; n = 3 generator fits)"
    assert module.difference({"n": 0, "verdict": "undecided (mixed precision)"}) == "undecided (mixed precision)"
    assert module.worth({"point": -80.0, "low": -150.0, "high": None, "decided": False}) == "-80 [-150, …]"
    assert module.worth({"point": -80.0, "low": -120.0, "high": -20.0, "decided": True}) == "**-80 [-120, -20]**"


ROW = {
    "method": "flip",
    "n": 5,
    "test_auc": {"mean": 0.9, "std": 0.01},
    "comparisons": {
        "none": {
            "n": 5,
            "mean": -0.01,
            "t_low": -0.03,
            "t_high": 0.01,
            "verdict": "undecided",
            "p_holm": 0.5,
            "reference_mean": 0.91,
        }
    },
    "real_equivalent": None,
}
