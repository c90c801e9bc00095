"""``synthmed report``, ``synthmed list`` and ``synthmed data info | verify``."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from synthmed.cli import options as opt
from synthmed.cli.app import app, console, data_app
from synthmed.errors import SynthmedError


@app.command("report")
def report_cmd(
    out: Path = typer.Argument(..., help="Run folder holding results.sqlite, or an export (records.jsonl)."),
    fmt: str = typer.Option(
        "html",
        "--format",
        help="html or md (writes report.md, report.html, runs.csv, summary.csv) | "
        "json (the summary with every statistic and verdict, on stdout) | records (every run's "
        "record, on stdout).",
    ),
    margin: float = typer.Option(
        None,
        "--margin",
        help="Equivalence margin of the verdicts, in AUC (default: what the study's commands used, else 0.01).",
    ),
    reference: str = typer.Option(
        None,
        "--reference",
        help="A third reference every method is also compared with, besides none and the count-matched "
        "oversample control at the same policy (e.g. pseudo-label; default: the one the study's commands named).",
    ),
    select_levers: str = typer.Option(
        "val_auc",
        "--select-levers",
        help="val_auc: the headline table shows, of each method's variants (levers, hyper-parameters), the one "
        "with the best mean validation AUC, every row staying in the full table | none: every row.",
    ),
    pages: list[Path] = typer.Option(
        None,
        "--pages",
        metavar="PAGE",
        help="Instead of writing the report: regenerate the tables between the <!-- study_table ARGS --> markers of "
        "these Markdown pages (repeatable or a comma list), leaving their prose as it is. A block names its exports "
        "relative to the page's repository root (the first folder above it holding pyproject.toml) and its own "
        "options (--margin, --reference, --synthetic, --no-setting, --methods, --headline, --claims, --robustness, "
        "--progress: docs/usage.md); a block naming no export reads OUT.",
    ),
) -> None:
    """Summarise a run folder: mean ± std over seeds, paired differences to none and to the count-matched control,
    verdicts at a margin."""
    from synthmed.experiment.execution import parse_value
    from synthmed.io import json_text
    from synthmed.report import settings_for, summary_json, write_report
    from synthmed.report.records import load_records

    if fmt not in ("html", "md", "json", "records"):
        raise SynthmedError(f"unknown report format {fmt!r}; choose html, md, json or records")
    if margin is not None and not margin >= 0:
        raise SynthmedError(f"--margin {margin} must be >= 0 (an AUC difference, e.g. 0.01)")
    if select_levers not in ("val_auc", "none"):
        raise SynthmedError(f"--select-levers {select_levers!r}: choose val_auc or none")
    store = out / "results.sqlite"
    if store.is_file() and store.stat().st_size == 0:  # opening it would write a store's schema into it
        raise SynthmedError(f"{store} is empty (0 bytes), not a results store; restore it, or give another folder")
    if pages:
        _update_pages(out, parse_value("pages", pages, "--pages"), margin, reference)
        return
    settings = settings_for(out, margin, reference, select_levers)
    if fmt == "records":
        sys.stdout.write(json_text(load_records(out)) + "\n")
        return
    if fmt == "json":
        sys.stdout.write(json_text(summary_json(out, settings)) + "\n")
        return
    for path in write_report(out, settings):
        console.print(str(path))


def _update_pages(out: Path, pages: list[Path], margin: float | None, reference: str | None) -> None:
    """``synthmed report OUT --pages PAGE``: the pages' blocks carry their settings, so the page reads the same
    whoever regenerates it."""
    from synthmed.report.pages import update_pages

    if margin is not None or reference is not None:
        raise SynthmedError(
            "--pages: a page's blocks carry its settings (<!-- study_table EXPORT --margin=M -->); drop --margin and "
            "--reference"
        )
    for line in update_pages(pages, out):
        console.print(line, highlight=False, soft_wrap=True, markup=False)


@app.command("list")
def list_cmd(
    presets: bool = typer.Option(False, "--presets", help="Also show every method's hyper-parameters."),
) -> None:
    """Methods (by kind), recipes, classifiers and datasets synthmed knows."""
    from synthmed.augment import Kind, available, method_class, preset
    from synthmed.data import FLAGS_2D
    from synthmed.nets.classifiers import CLASSIFIERS
    from synthmed.train.recipes import RECIPES

    for kind in Kind:
        typer.echo(f"methods ({kind.value}): {', '.join(available(kind))}")
    for title, items in (
        ("recipes", list(RECIPES)),
        ("classifiers", CLASSIFIERS),
        ("datasets", [*FLAGS_2D, "npz:PATH", "folder:PATH"]),
    ):
        typer.echo(f"{title}: {', '.join(items)}")
    if presets:
        for name in available():
            needs = method_class(name).needs
            extra = f" (needs {', '.join(f'{k} {v:g}' for k, v in needs.items())})" if needs else ""
            params = ", ".join(f"{k}={v}" for k, v in preset(name).items()) or "no parameters"
            typer.echo(f"  {name}{extra}: {params}")


def _dataset_table(name: str, size: int, data_root: str | None, verify: bool, classes: list[str] | None) -> None:
    from synthmed.data import load_dataset
    from synthmed.spec import coerce

    data = load_dataset(
        coerce("dataset", name, "DATASET"),
        size=coerce("size", size, "--size"),
        data_root=data_root,
        verify=verify,
        classes=classes,
    )
    table = Table(
        title=f"{data.name} ({data.task}, {data.size}x{data.size}, {'RGB' if data.n_channels == 3 else 'grey'})"
    )
    table.add_column("class")
    for split in ("train", "val", "test"):
        table.add_column(split, justify="right")
    counts = {s: data.counts(s) for s in ("train", "val", "test")}
    for i, cls in enumerate(data.class_names):
        table.add_row(f"{i} {cls}", *(str(counts[s][i]) for s in counts))
    table.add_row("total", *(str(len(data.split(s))) for s in counts))
    Console().print(table)
    md5_state = {
        True: "MD5 ok (official file)",
        False: "MD5 differs from the official file (--no-verify)",
        None: "no official MD5 (your own npz or image folder)",
    }[data.extra.get("md5_ok")]
    typer.echo(f"source: {data.source}\nmd5: {data.md5} - {md5_state}")
    if data.unlabelled is not None:  # images without labels, which only --unlabelled draws from
        typer.echo(f"unlabelled images of its own: {len(data.unlabelled)} (drawn by --unlabelled N|all)")


SIZE = typer.Option(28, "--size", help="Image size: 28, or 64 / 128 / 224 where that MedMNIST file is present.")


@data_app.command("info")
def data_info(
    name: str = typer.Argument(..., help="A MedMNIST flag, npz:PATH or folder:PATH."),
    size: int = SIZE,
    data_root: str = opt.DATA_ROOT,
    no_verify: bool = opt.NO_VERIFY,
    classes: str = opt.CLASSES,
) -> None:
    """Classes, images per split and class, file and MD5."""
    _dataset_table(name, size, data_root, not no_verify, opt.split_classes(classes))


@data_app.command("verify")
def data_verify(name: str = typer.Argument(...), size: int = SIZE, data_root: str = opt.DATA_ROOT) -> None:
    """Check the file's MD5, keys, dtypes, shapes and labels; exit 2 with one line if anything is wrong."""
    _dataset_table(name, size, data_root, True, None)
    typer.echo("verified: keys, dtypes, shapes, label range and MD5 are as expected")
