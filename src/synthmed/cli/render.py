"""Progress bars and lines for the events of ``synthmed.experiment.execute``, and the final tables."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from synthmed.experiment.execute import Event

COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def done_line(label: str, record: dict) -> str:
    return (
        f"{label}: test AUC {record['test_auc']:.3f} ACC {record['test_acc']:.3f} "
        f"(epoch {record['best_epoch']} of {record['epochs_run']}, {record['total_time']:.0f} s)"
    )


#: Seconds between two epoch lines of one run where the output is no terminal (a log file).
LOG_EVERY = 60.0
clock = time.monotonic


class ProgressView:
    """A rich progress display: one bar for the grid, one per run in this process (epochs). Where the output is no
    terminal (a background step writing a log), bars are not drawn, so each run's start, stages and an epoch line
    at most every ``LOG_EVERY`` seconds are printed as timed lines instead."""

    def __init__(self, console: Console, store: str) -> None:
        self.console, self.store = console, store
        self.progress = Progress(*COLUMNS, console=console, transient=False)
        self.total: TaskID | None = None
        self.runs: dict[str, TaskID] = {}
        self.plain = not console.is_terminal
        self.logged: dict[str, float] = {}  # plain: when each run's last epoch line was printed
        self.waiting = ""  # plain: the last waiting message printed

    def log(self, text: str) -> None:
        """A timed line, for a log file only."""
        if self.plain:
            self.console.print(f"{time.strftime('%H:%M:%S')} {text}", highlight=False, soft_wrap=True, markup=False)

    def __enter__(self) -> ProgressView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def __call__(self, event: Event) -> None:
        p = self.progress
        if event.kind == "planned":
            self.console.print(
                f"{event.total} runs, {event.skipped} already in {self.store}, {event.todo} to do ({event.where})",
                markup=False,
            )
            self.total = p.add_task("runs", total=event.todo)
        elif event.kind == "started":
            self.runs[event.label] = p.add_task(f"  {escape(event.label)}", total=event.total)
            self.log(f"started {event.label}")
        elif event.kind == "epoch" and event.label in self.runs and event.row:
            auc = event.row["val_auc"]
            p.update(self.runs[event.label], advance=1, description=f"  {escape(event.label)} val AUC {auc:.3f}")
            now = clock()
            if now - self.logged.get(event.label, -LOG_EVERY) >= LOG_EVERY:
                self.logged[event.label] = now
                task = next(t for t in p.tasks if t.id == self.runs[event.label])
                self.log(f"{event.label}: epoch {task.completed:.0f} of {task.total or 0:.0f}, val AUC {auc:.3f}")
        elif event.kind == "status" and event.label in self.runs:
            p.update(self.runs[event.label], description=f"  {escape(event.label)}: {escape(event.message)}")
            self.log(f"{event.label}: {event.message}")
        elif event.kind in ("finished", "failed"):
            if event.kind == "finished" and event.record and self.plain:  # timed and unwrapped, like the start
                self.log(done_line(event.label, event.record))
            elif event.kind == "finished" and event.record:
                self.console.print(done_line(event.label, event.record), highlight=False, markup=False)
            else:
                text = f"{escape(event.label)}: {escape(event.message)}"
                self.console.print(f"[bold red]failed:[/] {text}", highlight=False, soft_wrap=True)
            self.logged.pop(event.label, None)
            if event.label in self.runs:
                p.update(self.runs.pop(event.label), visible=False)
            if self.total is not None:
                p.advance(self.total)
        elif event.kind == "waiting":
            if self.total is not None:
                p.update(self.total, description=f"runs ({escape(event.message)})")
            if event.message != self.waiting:  # a log says when waiting starts or what it waits for changes
                self.waiting = event.message
                self.log(f"waiting: {event.message}")
        elif event.kind == "imported":
            self.console.print(f"imported {event.message}", highlight=False, soft_wrap=True, markup=False)
        elif event.kind == "report":
            self.console.print(f"report: {event.message}", soft_wrap=True, markup=False)
        elif event.kind == "mlflow":
            self.console.print(f"mlflow: {event.message}", soft_wrap=True)
        elif event.kind == "export":
            self.console.print(f"export: {event.message}", highlight=False, soft_wrap=True, markup=False)
        elif event.kind == "note":
            self.console.print(f"note: {event.message}", highlight=False, soft_wrap=True, markup=False)
        elif event.kind == "info":
            self.console.print(event.message, highlight=False, soft_wrap=True, markup=False)
        elif event.kind == "skipped":
            text = f"{escape(event.label)}: {escape(event.message)}"
            self.console.print(f"[yellow]skipped[/] {text}", highlight=False, soft_wrap=True)
        elif event.kind == "warning":
            self.console.print(f"[yellow]warning:[/] {escape(event.message)}", highlight=False, soft_wrap=True)
