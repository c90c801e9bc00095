"""The SQLite results store: one row per finished run, the source of truth for resuming and reporting, and the
claims with which several processes split one grid.

A row is inserted in one transaction after the run's artifacts are on disk, so an interrupted run leaves no record
and is simply run again; a finished run is never repeated (its id is the hash of its configuration).

Claims: before computing a run, a process takes a lease on it (``claim``: one row in ``claims`` with its holder and
an expiry time, taken in an immediate transaction, so two processes never both win). The holder renews it while the
run computes; a killed holder's lease expires and another process takes the run over. Processes on one folder (a
SLURM job array on a shared file system, several terminals) therefore split the grid instead of repeating it.
SQLite's locking needs a file system with working POSIX locks (local disks, most NFSv4 and Lustre setups).

Exports are the same records as JSON lines (``write_jsonl`` / ``read_jsonl``): text that can be committed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from synthmed.record import RunRecord

#: The ``runs`` table, from ``RunRecord``: a column per field, mappings as JSON text.
COLUMNS = RunRecord.columns()
JSON_COLUMNS = RunRecord.json_columns()


def _retry(step: Callable[[], None], seconds: float = 60.0) -> None:
    """Run a setup step, retrying while another process holds the lock: switching a new file to WAL is not covered
    by SQLite's busy timeout when two processes create the store at the same moment."""
    deadline = time.time() + seconds
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.time() > deadline:
                raise
            time.sleep(0.05)


class ResultStore:
    """``runs/NAME/results.sqlite``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60)
        columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())

        def setup() -> None:
            if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # persistent once set
                self._conn.execute("PRAGMA journal_mode=WAL")
            with self._conn:
                self._conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({columns})")
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS claims (run_id TEXT PRIMARY KEY, holder TEXT, expires REAL)"
                )

        try:
            _retry(setup)
            self._conn.execute("SELECT count(*) FROM runs").fetchone()  # walks the table: a truncated file fails
        except sqlite3.DatabaseError as err:
            self._conn.close()
            if "locked" in str(err):
                raise
            raise self._unreadable(err) from None

    def _unreadable(self, err: sqlite3.DatabaseError) -> Exception:
        from synthmed.errors import SynthmedError

        return SynthmedError(
            f"{self.path} is not a readable synthmed results store ({err}); restore it from a copy or an export "
            "(`synthmed run --resume-from EXPORT`), or give another folder"
        )

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

    def add(self, record: RunRecord | dict) -> None:
        """Insert a run's record (a ``RunRecord`` or its JSON); a run already stored keeps its first record."""
        if isinstance(record, RunRecord):
            record = record.to_json()
        unknown = set(record) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown result fields: {sorted(unknown)}")
        row = {k: json.dumps(v, sort_keys=True) if k in JSON_COLUMNS else v for k, v in record.items()}
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._conn:
            self._conn.execute(f"INSERT OR IGNORE INTO runs ({names}) VALUES ({marks})", tuple(row.values()))

    def timings(self) -> list[dict]:
        """Each stored run's dataset, protocol, method, config, ``total_time`` (where known), the machine it ran on
        (``device``, ``versions`` with its CPU's kernel level and GPU), the seconds it waited for another worker's
        fit (``metrics["lock_wait_s"]``) and whether it made its generator's fit and its reference classifier and in
        how long (``metrics["synthetic"]``, ``metrics["generator_fit"]``): what a time budget estimates a pending
        run's duration from."""
        rows = self._conn.execute(
            "SELECT dataset, protocol, method, config, total_time, metrics, device, versions FROM runs "
            "WHERE total_time IS NOT NULL"
        )
        out = []
        for d, p, m, c, t, text, device, v in rows:  # Python's json, not SQLite's json_extract: metrics may hold NaN
            metrics = json.loads(text) if text else {}
            kept = {k: metrics[k] for k in ("lock_wait_s", "generator_fit") if k in metrics}
            if isinstance(metrics.get("synthetic"), dict):
                made = ("generator_cached", "generator_seconds", "reference_cached", "reference_seconds")
                kept["synthetic"] = {k: metrics["synthetic"][k] for k in made if k in metrics["synthetic"]}
            config = json.loads(c) if c else None
            versions = {k: val for k, val in (json.loads(v) if v else {}).items() if k in ("cpu_capability", "gpu")}
            out.append(
                {"dataset": d, "protocol": p, "method": m, "config": config, "total_time": t, "metrics": kept}
                | {"device": device, "versions": versions}
            )
        return out

    def records(self) -> list[dict]:
        try:
            cursor = self._conn.execute("SELECT * FROM runs ORDER BY dataset, protocol, method, seed, created")
            return self._decode(cursor)
        except sqlite3.DatabaseError as err:  # a page the first look did not read is damaged
            raise self._unreadable(err) from None

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

    # ---- claims -------------------------------------------------------------------------------------------

    def claim(self, run_id: str, holder: str, lease: float) -> bool:
        """Take (or renew) the lease on a run for ``lease`` seconds; False when the run is stored or another
        holder's lease is still valid."""
        now = time.time()
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if self.has(run_id):
                return False
            row = self._conn.execute("SELECT holder, expires FROM claims WHERE run_id = ?", (run_id,)).fetchone()
            if row is not None and row[0] != holder and row[1] > now:
                return False
            self._conn.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)", (run_id, holder, now + lease))
            return True
        finally:
            self._conn.execute("COMMIT")

    def renew(self, run_ids: list[str], holder: str, lease: float) -> None:
        with self._conn:
            self._conn.executemany(
                "UPDATE claims SET expires = ? WHERE run_id = ? AND holder = ?",
                [(time.time() + lease, run_id, holder) for run_id in run_ids],
            )

    def release(self, run_id: str, holder: str) -> None:
        with self._conn:
            self._conn.execute("DELETE FROM claims WHERE run_id = ? AND holder = ?", (run_id, holder))

    def holders(self) -> set[str]:
        return {row[0] for row in self._conn.execute("SELECT DISTINCT holder FROM claims")}

    def drop_holder(self, holder: str) -> None:
        """Forget every claim of a holder known to be gone (a killed process on this machine)."""
        with self._conn:
            self._conn.execute("DELETE FROM claims WHERE holder = ?", (holder,))

    def claimed_by_others(self, holder: str) -> set[str]:
        """Runs another holder holds a valid lease on."""
        rows = self._conn.execute("SELECT run_id FROM claims WHERE holder != ? AND expires > ?", (holder, time.time()))
        return {row[0] for row in rows}


def write_jsonl(path: str | Path, records: list[dict]) -> bytes:
    """Records as JSON lines, sorted by run id (stable text for version control); returns the bytes written."""
    from synthmed.io import atomic_write_bytes

    text = "".join(
        json.dumps(r, sort_keys=True, allow_nan=True) + "\n" for r in sorted(records, key=lambda r: r["run_id"])
    )
    data = text.encode("utf-8")
    atomic_write_bytes(path, data)
    return data


def read_jsonl(path: str | Path) -> list[dict]:
    """Records from ``write_jsonl``; a line that is not a JSON record is one error line naming it."""
    from synthmed.errors import SynthmedError

    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise SynthmedError(
                f"{path} line {number} is not JSON ({err.msg}); restore the file from the export"
            ) from None
        if not isinstance(record, dict) or "run_id" not in record:
            raise SynthmedError(f"{path} line {number} is not a run record (no run_id)")
        problem = RunRecord.problem(record, known_only=True)
        if problem is not None:
            raise SynthmedError(f"{path} line {number} is not a valid run record: {problem}; restore the file")
        records.append(record)
    return records
