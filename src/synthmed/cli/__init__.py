"""The ``synthmed`` command line: each command parses its options, calls the Python API and renders what it
returns; the orchestration lives in ``synthmed.experiment.execute``."""

from __future__ import annotations

import sys

from rich.markup import escape

from synthmed.cli import fidelity, generate, info, run  # noqa: F401  (imported to register their commands)
from synthmed.cli.app import app, console
from synthmed.errors import SynthmedError


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    from synthmed.cli.options import optional_values

    sys.argv[1:] = optional_values(sys.argv[1:])
    try:
        app()
    except SynthmedError as err:  # the message holds user text and hints such as [breastmnist]: never markup
        console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted: finished runs are kept in the store; run the same command again to resume")
        sys.exit(130)


__all__ = ["app", "main"]
