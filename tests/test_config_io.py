"""YAML run files, checkpoints, downloads and the store: safe to read, atomic to write."""

from __future__ import annotations

import hashlib
import http.server
import json
import pickle
import threading
from pathlib import Path

import pytest
import torch

from synthmed.data import load_dataset
from synthmed.data import medmnist as mm
from synthmed.errors import SynthmedError
from synthmed.experiment.grid import expand, load_grid
from synthmed.io import atomic_write_bytes, json_text, load_checkpoint, remove_temporaries, save_checkpoint
from synthmed.store import ResultStore


def test_yaml_lists_and_types(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "datasets: breastmnist\nmethods: [none, flip]\nrecipes: {recipe: medmnist, epochs: 3}\n"
        "options: {report-test-selected: true}\nseeds: 0\n"
    )
    specs = expand(load_grid(path))
    assert [(s.dataset, s.method, s.epochs, s.report_test_selected) for s in specs] == [
        ("breastmnist", "none", 3, True),
        ("breastmnist", "flip", 3, True),
    ]


@pytest.mark.parametrize(
    "text,pattern",
    [
        ("datset: breastmnist\n", "unknown key 'datset'"),
        (
            "datasets: x\nrecipes: {recipe: medmnist, epochs: three}\n",
            "recipes.epochs should be an integer, got 'three'",
        ),
        ("datasets: x\nrecipes: {recipe: medmnist, epochs: true}\n", "should be an integer, got True"),
        ("epochs: three\ndatasets: x\n", "epochs should be an integer"),  # the old dialect is checked the same way
        ("- a\n- b\n", "must hold a mapping"),
        ("dataset: [unclosed\n", "not valid YAML at line"),
        ("!!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
    ],
)
def test_yaml_errors_are_one_line(tmp_path, text, pattern):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SynthmedError, match=pattern) as err:
        expand(load_grid(path))
    assert "\n" not in str(err.value)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_round_trip_and_crafted_file_refused(tmp_path):
    model = torch.nn.Linear(3, 2)
    save_checkpoint(tmp_path / "m.pt", model, {"best_epoch": 4})
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded["meta"] == {"best_epoch": 4}
    assert torch.equal(loaded["state_dict"]["weight"], model.weight.detach())

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Exploit()))
    torch.save({"x": Exploit()}, tmp_path / "evil2.pt")
    for name in ("evil.pt", "evil2.pt"):
        with pytest.raises(SynthmedError, match="plain-weights checkpoint"):
            load_checkpoint(tmp_path / name)
    assert not marker.exists()


def test_json_text_is_strict_json_with_null_for_a_missing_statistic():
    text = json_text({"mean": float("nan"), "rows": [{"ci95": float("inf")}, 0.5], "n": 3})
    assert json.loads(text) == {"mean": None, "rows": [{"ci95": None}, 0.5], "n": 3}
    assert "NaN" not in text and "Infinity" not in text


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"one")
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "a.bin", 42)  # type: ignore[arg-type]
    assert (tmp_path / "a.bin").read_bytes() == b"one"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_remove_temporaries_sweeps_only_what_a_killed_writer_left(tmp_path):
    atomic_write_bytes(tmp_path / "run" / "history.json", b"{}")
    (tmp_path / "run" / ".history.json.abc123.tmp").write_bytes(b"{")  # a writer killed between write and rename
    (tmp_path / "run" / "synthetic").mkdir()
    (tmp_path / "run" / "synthetic" / ".grid.png.x.tmp").write_bytes(b"")
    (tmp_path / "run" / "notes.tmp").write_bytes(b"a user's file, not one of ours")
    assert remove_temporaries(tmp_path / "run") == 2
    assert sorted(p.name for p in (tmp_path / "run").rglob("*") if p.is_file()) == ["history.json", "notes.tmp"]
    assert remove_temporaries(tmp_path / "absent") == 0


def test_store_ignores_duplicate_run(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.add({"run_id": "x", "seed": 0, "config": {"a": 1}})
        store.add({"run_id": "x", "seed": 1, "config": {"a": 2}})
        assert store.has("x") and len(store.records()) == 1 and store.records()[0]["config"] == {"a": 1}
        with pytest.raises(KeyError):
            store.add({"run_id": "y", "nonsense": 1})


@pytest.fixture
def local_server(real_root):
    """Serve the official BreastMNIST file from a loopback HTTP server."""
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(real_root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_missing_file_is_downloaded_and_md5_checked(local_server, tmp_path, monkeypatch):
    monkeypatch.delenv("SYNTHMED_OFFLINE")
    monkeypatch.setitem(mm.INFO["breastmnist"], "url", f"{local_server}/breastmnist.npz")
    data = load_dataset("breastmnist", data_root=tmp_path)
    assert len(data.train) == 546 and (tmp_path / "breastmnist.npz").exists()

    monkeypatch.setitem(mm.INFO["breastmnist"], "url", f"{local_server}/pneumoniamnist.npz")
    other = tmp_path / "other"
    with pytest.raises(SynthmedError, match="download failed .*wrong MD5"):
        load_dataset("breastmnist", data_root=other)
    assert not list(Path(other).glob("*"))  # no partial file left behind


def test_md5sum_matches_hashlib(real_root):
    path = real_root / "breastmnist.npz"
    assert mm.md5sum(path) == hashlib.md5(path.read_bytes()).hexdigest()


def test_atomic_write_uses_normal_permissions(tmp_path):
    import os

    atomic_write_bytes(tmp_path / "r.html", b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "r.html").stat().st_mode & 0o777 == 0o666 & ~mask
