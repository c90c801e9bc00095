"""The layering rule, read from the imports of every module: each layer imports only the layers below it.

data, nets and metrics import nothing from train, augment, audit, experiment, report or cli; train imports nothing
from augment (it declares the hooks it calls, ``train.hooks``) or anything above; augment imports nothing from
audit, experiment, report or cli; audit and report nothing from experiment or cli; experiment nothing from cli."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "synthmed"
#: package -> packages it must not import.
FORBIDDEN = {
    "data": {"nets", "metrics", "train", "augment", "audit", "experiment", "report", "cli"},
    "nets": {"metrics", "train", "augment", "audit", "experiment", "report", "cli"},
    "metrics": {"train", "augment", "audit", "experiment", "report", "cli"},
    "train": {"augment", "audit", "experiment", "report", "cli"},
    "augment": {"audit", "experiment", "report", "cli"},
    "audit": {"experiment", "report", "cli"},
    "report": {"experiment", "cli"},
    "experiment": {"cli"},
}
#: Modules at the top of the package that every layer may use: they import nothing above themselves.
BOTTOM = {"errors", "io", "tensors", "spec", "store", "record"}


def imports(path: Path) -> list[str]:
    """Every ``synthmed...`` module a file imports, at any depth (imports inside functions count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [m for m in found if m == "synthmed" or m.startswith("synthmed.")]


def violations() -> list[str]:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).parts
        layer = parts[0] if len(parts) > 1 else path.stem
        for module in imports(path):
            target = module.split(".")
            top = target[1] if len(target) > 1 else ""
            if layer in BOTTOM and top and top not in BOTTOM and top != "errors":
                bad.append(f"{path.relative_to(SRC)} imports {module} (bottom modules import no layer)")
            if top in FORBIDDEN.get(layer, set()):
                bad.append(f"{path.relative_to(SRC)} imports {module}")
    return bad


def test_layers_point_down():
    assert violations() == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from synthmed.experiment.runner import Runner", ["synthmed.experiment.runner"]),
        ("def f():\n    import synthmed.cli\n", ["synthmed.cli"]),
        ("import numpy\nfrom . import x\n", []),
    ],
)
def test_the_import_reader_sees_every_form(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert imports(path) == expected
