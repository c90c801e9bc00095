"""The typer application and the consoles every command writes to (messages on stderr, tables on stdout)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Does synthetic data help a medical image classifier? Train, augment, evaluate, report.",
)
data_app = typer.Typer(no_args_is_help=True, help="Inspect and verify datasets.")
app.add_typer(data_app, name="data")
experiment_app = typer.Typer(no_args_is_help=True, help="Run and inspect YAML experiment files (see configs/).")
app.add_typer(experiment_app, name="experiment")
console = Console(stderr=True)


def warn(text: str) -> None:
    console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)


def note(text: str) -> None:
    console.print(f"note: {text}", highlight=False, soft_wrap=True, markup=False)
