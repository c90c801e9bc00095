"""``synthmed report DIR --pages PAGE``: the tables between a page's ``<!-- study_table ARGS -->`` markers are
regenerated from the report of the exports they name, the prose is kept, a current page is not written, a bad block
writes nothing; and the study's docs pages and the README hold the tables the committed exports give."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_execution import FakeRunner, fake_record

from synthmed.experiment.export import export_runs
from synthmed.experiment.grid import Grid, expand, override
from synthmed.report.pages import Block, difference, page_text, study_table, worth
from synthmed.report.render import table_markdown
from synthmed.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]
#: The README and every results page that holds a table block.
PAGES = [
    p
    for p in [ROOT / "README.md", *sorted((ROOT / "docs" / "results").glob("*.md"))]
    if "<!-- study_table" in p.read_text()
]
PAGE = "prose before\n<!-- study_table {args} -->\nold\n<!-- /study_table -->\nprose after\n"


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_study_pages_match_the_committed_exports(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the blocks name exports relative to the repository, wherever the command runs
    assert page_text(page) == page.read_text(), (
        f"{page.name} is out of date with results/: run synthmed report results --pages {page.relative_to(ROOT)}"
    )


def test_the_readme_tables_are_generated_between_markers():
    text = (ROOT / "README.md").read_text()
    assert text.count("<!-- study_table ") == text.count("<!-- /study_table -->") >= 2


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A repository (pyproject.toml) with an export of none and flip on two seeds in results/x, and a page in docs/;
    the command runs from another folder."""
    (tmp_path / "repo" / "docs").mkdir(parents=True)
    (tmp_path / "repo" / "pyproject.toml").write_text("")
    runner = FakeRunner(tmp_path / "out")
    grid = override(Grid(datasets=["breastmnist"], seeds=[0, 1]), {"method": "none,flip"})
    with ResultStore(runner.store_path) as store:
        for spec in expand(grid):
            store.add(fake_record(runner, spec, 0.8 + 0.01 * spec.seed + 0.02 * (spec.method == "flip")))
    export_runs(runner.out, tmp_path / "repo" / "results" / "x")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return tmp_path / "repo"


def test_the_command_rewrites_the_tables_and_keeps_the_prose(cli, repo):
    page = repo / "docs" / "page.md"
    page.write_text(PAGE.format(args="results/x --no-setting") + PAGE.format(args="results/x --methods=flip"))
    done = cli("report", str(repo / "results" / "x"), "--pages", str(page))
    assert done.returncode == 0 and done.stderr.strip() == f"{page}: tables updated"
    lines = page.read_text().splitlines()
    assert lines[:2] == ["prose before", "<!-- study_table results/x --no-setting -->"]
    assert lines[2].startswith("| method | seeds | test AUC | none on the same seeds | Δ AUC vs none")
    assert [line.split(" | ")[:2] for line in lines[4:6]] == [["| `none`", "2"], ["| `flip`", "2"]]
    assert lines[6:9] == ["<!-- /study_table -->", "prose after", "prose before"]
    assert lines[10].startswith("| setting | method | seeds |") and lines[12].split(" | ")[1] == "`flip`"
    assert lines[13:] == ["<!-- /study_table -->", "prose after"] and "old" not in lines


def test_a_current_page_is_not_written(cli, repo):
    page = repo / "docs" / "page.md"
    page.write_text(PAGE.format(args="results/x --no-setting"))
    assert cli("report", ".", "--pages", str(page)).returncode == 0
    before = page.stat()
    done = cli("report", ".", "--pages", f"{page},{page}")
    assert done.stderr.splitlines() == [f"{page}: tables unchanged"] * 2
    assert (page.stat().st_ino, page.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_block_naming_no_export_reads_the_commands_folder(cli, repo):
    page = repo / "docs" / "page.md"
    page.write_text(PAGE.format(args="--no-setting"))
    assert cli("report", str(repo / "results" / "x"), "--pages", str(page)).returncode == 0
    assert page.read_text().splitlines()[4].startswith("| `none` | 2 |")


@pytest.mark.parametrize(
    "text, error",
    [
        (PAGE.format(args="results/absent --no-setting"), "results/absent is not an export or run folder"),
        (PAGE.format(args="results/x --colour"), "unrecognized arguments: --colour"),
        ("prose only\n", "holds no <!-- study_table ARGS -->"),
        (PAGE.format(args="results/x") + "<!-- study_table results/x -->\n", "marker lacks its <!-- /study_table"),
        (PAGE.format(args="results/x --claims --progress"), "are tables of their own; give one"),
    ],
    ids=["unknown export", "unknown option", "no markers", "no closing marker", "two kinds of table"],
)
def test_a_bad_block_is_one_line_and_writes_nothing(cli, repo, text, error):
    stale, bad = repo / "docs" / "stale.md", repo / "docs" / "bad.md"
    stale.write_text(PAGE.format(args="results/x"))
    bad.write_text(text)
    done = cli("report", ".", "--pages", str(stale), "--pages", str(bad))
    assert done.returncode == 2
    message = (done.stdout + done.stderr).strip()
    assert "\n" not in message and str(bad) in message and error in message
    assert stale.read_text() == PAGE.format(args="results/x") and bad.read_text() == text


def test_a_page_outside_a_repository_is_refused(cli, tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE.format(args="results/x"))
    done = cli("report", ".", "--pages", str(page))
    assert done.returncode == 2 and "no pyproject.toml in a folder above it" in done.stdout + done.stderr


def test_a_block_is_laid_out_by_the_reports_table_renderer():
    summary = {"groups": [{"title": "t", "rows": [ROW]}]}
    lines = table_markdown(study_table([summary], Block(folders=(), no_setting=True)))
    assert lines[0].startswith(
        "| method | seeds | test AUC | none on the same seeds | Δ AUC vs none [95 % CI], verdict (Holm) | Δ AUC vs"
    )
    assert lines[2] == "| `flip` | 5 | 0.900 ± 0.010 | 0.910 | -0.010 [-0.030, +0.010] undecided |  |"
    assert lines[3:] == [""]
    assert study_table([summary], Block(folders=(), methods=("none",))).rows == []


def test_a_block_with_a_third_reference_adds_its_column(cli, repo):
    """``--reference flip`` in a block: a Δ column against flip after the copies' (empty here: no copies ran)."""
    page = repo / "docs" / "page.md"
    page.write_text(PAGE.format(args="results/x --no-setting --reference flip"))
    assert cli("report", ".", "--pages", str(page)).returncode == 0
    header = page.read_text().splitlines()[2]
    assert "| Δ AUC vs oversample [95 % CI], verdict (Holm) | Δ AUC vs flip [95 % CI], verdict (Holm) |" in header
    # a row that meets none and the third reference but no copies: each figure stays under its own reference
    control = {**ROW["comparisons"]["none"], "mean": 0.02, "t_low": 0.01, "t_high": 0.03, "p_holm": 0.01}
    row = {**ROW, "comparisons": {"none": ROW["comparisons"]["none"], "pseudo-label": control}}
    summary = {"groups": [{"title": "t", "rows": [row]}], "settings": {"reference": "pseudo-label"}}
    table = study_table([summary], Block(folders=(), no_setting=True))
    cells = dict(zip(table.columns, table.rows[0]))
    assert cells["Δ AUC vs oversample [95 % CI], verdict (Holm)"] == ""
    assert cells["Δ AUC vs pseudo-label [95 % CI], verdict (Holm)"] == "+0.020 [+0.010, +0.030] undecided (Holm p 0.01)"
    synthetic = study_table([summary], Block(folders=(), synthetic=True))
    assert dict(zip(synthetic.columns, synthetic.rows[0]))["Holm-adjusted p vs none / oversample / pseudo-label"] == (
        "0.50 / – / 0.01"
    )


def test_the_interval_columns_say_the_level_the_exports_report_at():
    """A --seeds auto study reports at the looks' split alpha (0.05 / 6 for the low-noise study): its page says so."""
    looks = {"groups": [{"title": "t", "rows": [ROW]}], "settings": {"alpha": 0.05 / 6}}
    columns = study_table([looks], Block(folders=(), no_setting=True)).columns
    assert "Δ AUC vs none [99.17 % CI], verdict (Holm)" in columns
    mixed = study_table([looks, {**looks, "settings": {"alpha": 0.05}}], Block(folders=(), no_setting=True)).columns
    assert "Δ AUC vs none [CI at each export's level], verdict (Holm)" in mixed


def test_the_at_a_glance_table_adds_tstr_and_the_memorised_share_only_where_a_row_has_them():
    generative = {
        **ROW,
        "method": "ddpm",
        "synthetic": {"tstr_auc": {"mean": 0.81, "std": 0.05}, "memorised": {"mean": 0.0, "std": 0.0}},
    }
    glance = Block(folders=(), no_setting=True, headline=True)
    table = study_table([{"groups": [{"title": "t", "rows": [ROW, generative]}]}], glance)
    assert table.columns[-2:] == ["TSTR test AUC", "memorised (pixels)"]
    assert table.rows[0][-2:] == ["", ""]
    assert table.rows[1][-2:] == ["0.810 ± 0.050", "0.0 ± 0.0 %"]
    plain = study_table([{"groups": [{"title": "t", "rows": [ROW]}]}], glance)
    assert plain.columns == study_table([{"groups": [{"title": "t", "rows": [ROW]}]}], Block(folders=())).columns[1:]


def test_cells_bold_only_decided_verdicts_and_give_holm_where_the_raw_interval_excludes_0():
    raw_only = {"n": 5, "mean": 0.008, "t_low": 0.001, "t_high": 0.015, "verdict": "undecided", "p_holm": 0.33}
    assert difference(raw_only) == "+0.008 [+0.001, +0.015] undecided (Holm p 0.33)"
    decided = {**raw_only, "verdict": "better", "p_holm": 0.01}
    assert difference(decided) == "**+0.008 [+0.001, +0.015] better (Holm p 0.01)**"
    fits = {**raw_only, "t_low": -0.001, "n": 3, "unit": "generator fits", "verdict": "undecided (n < 5)"}
    assert difference(fits) == "+0.008 [-0.001, +0.015] undecided (n < 5; n = 3 generator fits)"
    assert difference({"n": 0, "verdict": "undecided (mixed precision)"}) == "undecided (mixed precision)"
    assert difference({**raw_only, "n": 1, "t_low": float("nan"), "t_high": float("nan")}) == (
        "+0.008 (1 seed) undecided"
    )
    assert worth({"point": -80.0, "low": -150.0, "high": None, "decided": False}) == "-80 [-150, …]"
    assert worth({"point": -80.0, "low": -120.0, "high": -20.0, "decided": True}) == "**-80 [-120, -20]**"


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


def test_a_progress_block_says_where_each_study_stands(repo):
    """A fixed-seed export and a ``--seeds auto`` one cut before its first look: runs, CPU hours and seeds per row
    from the data, and for the second what its look at 5 seeds waits for (flip has seed 0 only)."""
    import json
    import shutil

    auto = repo / "results" / "auto"
    shutil.copytree(repo / "results" / "x", auto)
    records = [json.loads(line) for line in (auto / "records.jsonl").read_text().splitlines()]
    kept = [r for r in records if not (r["method"] == "flip" and r["seed"] == 1)]
    (auto / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    plan = {"alpha": 0.05, "look_alpha": 0.025, "planned_looks": 2, "start": 5, "step": 2, "max_seeds": 7}
    plan |= {"margin": 0.01, "reference": None, "rule": "Bonferroni over planned looks", "seeds": 5, "looks": []}
    (auto / "sequential.json").write_text(json.dumps(plan | {"reason": "in progress: seeds are still being added"}))
    page = repo / "docs" / "page.md"
    page.write_text(PAGE.format(args="results/x results/auto --progress"))
    lines = page_text(page).splitlines()
    assert lines[2] == "| study | runs | CPU h | seeds per row | looks | where it stands |"
    hours = sum(r["total_time"] for r in records) / 3600
    assert lines[4] == f"| `x` | 4 | {hours:.1f} | 2 | fixed seeds |  |"
    assert lines[5].startswith("| `auto` | 3 | ") and "| 1-2 | none yet (2 planned, 5 to 7 seeds) | " in lines[5]
    assert "The look at 5 seeds waits for 7 more run(s) of the 2 rows stored (seed 0 done in every one)." in lines[5]
    finished = plan | {"looks": [{"seeds": 5, "undecided": []}], "reason": "every verdict was decided by 5 seeds"}
    (auto / "sequential.json").write_text(json.dumps(finished))
    assert "| done: every verdict was decided by 5 seeds |" in page_text(page).splitlines()[5]


def test_a_rounds_progress_counts_the_real_image_curve_and_says_when_only_the_look_is_left():
    """The grid runs the real-image curve's points every seed and the look waits for them too, though they are not
    rows; a round with every run stored waits only for the next command's look."""
    from synthmed.report.sections import progress_text, round_progress

    def record(method: str, seed: int, per_class: int | None = None) -> dict:
        config = {"method": method, "seed": seed, "protocol": "lowdata", "classifier": "resnet18", "recipe": "study"}
        config |= {"curve_per_class": per_class} if per_class else {}
        return {"dataset": "pneumoniamnist", "config": config, "seed": seed}

    stop = {"reason": "in progress: seeds are still being added", "looks": [{"seeds": 2}], "step": 2, "start": 2}
    stop["max_seeds"] = 6
    records = [record(m, s) for m in ("none", "ddpm") for s in range(4)] + [record("none", s, 25) for s in range(3)]
    progress = round_progress(records, stop)
    assert progress == {"look_seeds": 4, "missing_runs": 1, "rows": 2, "curve_points": 1, "complete_seeds": 3}
    assert "1 more run(s) of the 2 rows and 1 real-image curve points stored (seeds 0-2" in progress_text(progress)
    done = round_progress([*records, record("none", 3, 25)], stop)
    assert progress_text(done).startswith("Every run of the look at 4 seeds is stored; the next command")
    assert round_progress(records, stop | {"reason": "every verdict was decided by 2 seeds"}) is None


def test_the_report_help_names_every_option_a_block_takes():
    from synthmed.report.pages import _block_parser

    help_text = (ROOT / "src" / "synthmed" / "cli" / "info.py").read_text()
    flags = [a.option_strings[0] for a in _block_parser()._actions if a.option_strings]
    assert flags and all(flag in help_text for flag in flags), [f for f in flags if f not in help_text]
