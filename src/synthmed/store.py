"""The SQLite results store: one row per finished run, the source of truth for resuming and reporting.

A row is inserted in one transaction after the run's artifacts are on disk, so an interrupted run
leaves no record and is simply run again; a finished run is never repeated (its id is the hash of its
configuration).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

COLUMNS = {
    "run_id": "TEXT PRIMARY KEY",
    "dataset": "TEXT",
    "protocol": "TEXT",
    "method": "TEXT",
    "classifier": "TEXT",
    "recipe": "TEXT",
    "seed": "INTEGER",
    "config_hash": "TEXT",
    "config": "TEXT",
    "val_auc": "REAL",
    "val_acc": "REAL",
    "test_auc": "REAL",
    "test_acc": "REAL",
    "test_selected_auc": "REAL",
    "test_selected_acc": "REAL",
    "best_epoch": "INTEGER",
    "epochs_run": "INTEGER",
    "train_time": "REAL",
    "total_time": "REAL",
    "peak_rss_mb": "REAL",
    "device": "TEXT",
    "precision": "TEXT",
    "n_train": "INTEGER",
    "n_val": "INTEGER",
    "n_test": "INTEGER",
    "n_synthetic": "INTEGER",
    "metrics": "TEXT",
    "versions": "TEXT",
    "created": "TEXT",
}
JSON_COLUMNS = ("config", "metrics", "versions")


class ResultStore:
    """``runs/NAME/results.sqlite``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        with self._conn:
            self._conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({columns})")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has(self, run_id: str) -> bool:
        return self._conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None

    def run_ids(self) -> set[str]:
        return {row[0] for row in self._conn.execute("SELECT run_id FROM runs")}

    def record(self, run_id: str) -> dict:
        return self._decode(self._conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)))[0]

    def add(self, record: dict) -> None:
        unknown = set(record) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown result fields: {sorted(unknown)}")
        row = {k: json.dumps(v, sort_keys=True) if k in JSON_COLUMNS else v for k, v in record.items()}
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._conn:
            self._conn.execute(f"INSERT OR IGNORE INTO runs ({names}) VALUES ({marks})", tuple(row.values()))

    def records(self) -> list[dict]:
        return self._decode(self._conn.execute("SELECT * FROM runs ORDER BY dataset, protocol, method, seed, created"))

    @staticmethod
    def _decode(cursor: sqlite3.Cursor) -> list[dict]:
        names = [d[0] for d in cursor.description]
        out = []
        for values in cursor.fetchall():
            record = dict(zip(names, values))
            for key in JSON_COLUMNS:
                if record[key] is not None:
                    record[key] = json.loads(record[key])
            out.append(record)
        return out
