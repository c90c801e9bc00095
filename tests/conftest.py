"""Shared fixtures. Real-data tests read the data root from $SYNTHMED_DATA (``.ci/run`` sets it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """Tests never touch the network (a missing file is an immediate, explained error) nor the user's cache."""
    monkeypatch.setenv("SYNTHMED_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))


@pytest.fixture(scope="session")
def real_root() -> Path:
    root = os.environ.get("SYNTHMED_DATA")
    if not root or not (Path(root) / "breastmnist.npz").exists():
        pytest.skip("set SYNTHMED_DATA to a folder holding the official breastmnist.npz / pneumoniamnist.npz")
    return Path(root)


@pytest.fixture
def breast_copy(real_root, tmp_path) -> Path:
    """A writable copy of the official BreastMNIST file in its own data root."""
    shutil.copy(real_root / "breastmnist.npz", tmp_path / "breastmnist.npz")
    return tmp_path


@pytest.fixture
def cli(monkeypatch, capsys):
    """``synthmed ARGS`` in this process: without an interpreter and torch start-up per call (seconds on a busy
    2-core machine), for error paths, quick commands and runs alike. A subprocess stays where a test needs a
    process of its own: to kill it, to run two at once, for Ray, and for the ``python -m synthmed`` entry point
    (the CLI's killed run). A command given ``--cpus-per-run`` sets this process's torch threads: restore them."""
    from synthmed.cli import main

    def invoke(*args: str, root: Path | None = None) -> subprocess.CompletedProcess:
        monkeypatch.setenv("SYNTHMED_OFFLINE", "1")
        if root is not None:
            monkeypatch.setenv("SYNTHMED_DATA", str(root))
        monkeypatch.setattr(sys, "argv", ["synthmed", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as done:  # typer ends with sys.exit, main() with exit code 2 on user errors
            code = done.code if isinstance(done.code, int) else 0
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)

    return invoke


def write_breast_like(root: Path, **overrides) -> Path:
    """A BreastMNIST-shaped npz with the given arrays replaced (for bad-input tests)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 20), ("val", 6), ("test", 8)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8).reshape(-1, 1)
    arrays.update(overrides)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "breastmnist.npz"
    np.savez(path, **arrays)
    return path


def blobs(n: int, seed: int):
    """Two classes a small ResNet tells apart in a few steps: a bright square in the centre or none."""
    from synthmed.data.dataset import Split

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(60, 120, (n, 28, 28)).astype(np.uint8)
    images[labels == 1, 10:18, 10:18] = 230
    return Split(images, labels)


#: Fixtures that read the official MedMNIST files: a test using one is marked slow, so `pytest -m "not slow"` runs
#: the tests that need no data file.
DATA_FIXTURES = {"real_root", "breast_copy"}


def pytest_collection_modifyitems(items):
    for item in items:
        if DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
