"""The typed run record: the store's columns, the run table and the MLflow scores come from ``RunRecord``; a record
round-trips through the store, an export and a committed old export, and a field of the wrong type is refused with
one line naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthmed.errors import SynthmedError
from synthmed.record import RunRecord, SyntheticAudit
from synthmed.report.tables import runs_rows
from synthmed.store import COLUMNS, ResultStore, read_jsonl, write_jsonl

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _old_records() -> list[dict]:
    """Every line of the committed exports (written before the record was typed)."""
    return [r for path in sorted(RESULTS.glob("*/records.jsonl")) for r in read_jsonl(path)]


def _old_generative() -> dict:
    return next(r for r in _old_records() if (r["metrics"] or {}).get("synthetic"))


def test_the_store_columns_and_the_run_table_come_from_the_record():
    assert list(COLUMNS) == [f for f in RunRecord.columns()] and COLUMNS["run_id"] == "TEXT PRIMARY KEY"
    assert (COLUMNS["seed"], COLUMNS["test_auc"], COLUMNS["config"]) == ("INTEGER", "REAL", "TEXT")
    columns, rows = runs_rows([_old_generative()])
    assert columns[: len(RunRecord.names("table"))] == list(RunRecord.names("table"))
    assert columns[-1] == "synthetic_flags" and "synthetic_fid" in columns and len(rows[0]) == len(columns)


def test_an_old_export_line_round_trips_unchanged():
    old = _old_generative()
    record = RunRecord.from_json(old)
    assert record.to_json() == old
    synthetic = record.synthetic
    assert isinstance(synthetic, SyntheticAudit) and synthetic.n == old["metrics"]["synthetic"]["n"]
    assert synthetic.fid == old["metrics"]["synthetic"]["fid"]


def test_a_record_round_trips_through_the_store_and_an_export(tmp_path):
    old = _old_records()[:3]
    with ResultStore(tmp_path / "results.sqlite") as store:
        for r in old:
            store.add(RunRecord.from_json(r))
        stored = store.records()
    assert stored == sorted(old, key=lambda r: (r["dataset"], r["protocol"], r["method"], r["seed"], r["created"]))
    write_jsonl(tmp_path / "records.jsonl", stored)
    again = read_jsonl(tmp_path / "records.jsonl")
    assert [RunRecord.from_json(r) for r in again] == [
        RunRecord.from_json(r) for r in sorted(old, key=lambda r: r["run_id"])
    ]


def test_a_new_synthetic_audit_keeps_the_old_json_shape():
    old = _old_generative()["metrics"]["synthetic"]
    audit = SyntheticAudit.from_json(old)
    assert audit.to_json() == {**old, "reference_val_recall": old.get("reference_val_recall")}
    assert "tstr_auc" not in SyntheticAudit(n=1).to_json()  # TSTR figures only where TSTR ran
    assert "details" not in audit.to_json() and "real_features" not in audit.to_json()


@pytest.mark.parametrize(
    "change, phrase",
    [
        ({"test_auc": "abc"}, 'test_auc is "abc", not a number'),
        ({"seed": True}, "seed is true, not an integer"),
        ({"metrics": [1]}, "metrics is [1], not a mapping"),
        ({"run_id": ""}, "run_id is not a run id"),
    ],
)
def test_a_bad_field_is_one_line_naming_it(change, phrase):
    with pytest.raises(SynthmedError) as err:
        RunRecord.from_json({**_old_records()[0], **change})
    assert str(err.value) == f"not a valid run record: {phrase}" and "\n" not in str(err.value)


def test_a_record_of_the_wrong_type_is_never_written():
    with pytest.raises(SynthmedError, match="not a valid run record: n_train is 1.5, not an integer"):
        RunRecord(run_id="x", n_train=1.5).to_json()  # type: ignore[arg-type]


def test_a_bad_line_of_an_export_names_the_line_and_the_field(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps({**_old_records()[0], "test_auc": "abc"}) + "\n")
    with pytest.raises(SynthmedError, match='line 1 is not a valid run record: test_auc is "abc", not a number'):
        read_jsonl(path)
