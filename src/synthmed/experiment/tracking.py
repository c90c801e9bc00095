"""Optional MLflow logging (``--mlflow URI``): one MLflow run per synthmed run, with its config as parameters,
its scores and per-epoch curves as metrics and its figures as artifacts.

The SQLite store stays the source of truth; MLflow is a mirror. Every stored run missing from the MLflow
experiment (found by the ``synthmed.run_id`` tag) is logged after a grid, so a resumed grid or a later
``--mlflow`` on an old folder adds what is missing and never logs a run twice.
"""

from __future__ import annotations

import json
from pathlib import Path

from synthmed.errors import SynthmedError
from synthmed.record import RunRecord, SyntheticAudit

ARTIFACT_SUFFIXES = (".png", ".json")
TAG = "synthmed.run_id"


def _flat_params(config: dict) -> dict[str, str]:
    params = {}
    for key, value in config.items():
        if isinstance(value, dict):
            params.update({f"{key}.{k}": json.dumps(v) for k, v in value.items()})
        else:
            params[key] = json.dumps(value) if not isinstance(value, str) else value
    return {k: v[:500] for k, v in params.items()}  # MLflow's limit on a parameter value


class MlflowLogger:
    """Mirrors records of a synthmed output folder into the MLflow experiment ``experiment`` at ``uri``."""

    def __init__(self, uri: str, experiment: str) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise SynthmedError(
                "--mlflow needs MLflow: pip install 'synthmed[mlflow]' (or pip install mlflow)"
            ) from None
        self.client = MlflowClient(tracking_uri=uri)
        try:
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        except Exception as err:  # noqa: BLE001 - MLflow raises many kinds; the user needs the first line
            raise SynthmedError(
                f"--mlflow {uri}: {str(err).splitlines()[0]} (e.g. give sqlite:///mlflow.db or http://HOST:5000)"
            ) from None

    def logged(self) -> set[str]:
        """synthmed run ids already in the MLflow experiment."""
        runs = self.client.search_runs([self.experiment_id], max_results=50000)
        return {r.data.tags[TAG] for r in runs if TAG in r.data.tags}

    def log(self, record: RunRecord, run_dir: Path) -> str:
        """Log one record (and its run folder's figures and JSON files); returns the MLflow run id. The scores
        are the fields ``RunRecord`` and ``SyntheticAudit`` mark ``mlflow`` (the audit's prefixed ``synthetic_``)."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{record.dataset} {record.method} seed {record.seed}",
            tags={
                TAG: record.run_id,
                "dataset": record.dataset or "",
                "method": record.method or "",
                "synthmed": (record.versions or {}).get("synthmed", ""),
            },
        )
        mlflow_id = run.info.run_id
        for key, value in _flat_params(record.config or {}).items():
            self.client.log_param(mlflow_id, key, value)
        for key in RunRecord.names("mlflow"):
            if getattr(record, key) is not None:
                self.client.log_metric(mlflow_id, key, float(getattr(record, key)))
        synthetic = record.synthetic
        for key in SyntheticAudit.names("mlflow") if synthetic else ():
            if getattr(synthetic, key) is not None:
                self.client.log_metric(mlflow_id, f"synthetic_{key}", float(getattr(synthetic, key)))
        history_path = run_dir / "history.json"
        for row in json.loads(history_path.read_text()) if history_path.exists() else []:
            for key in ("train_loss", "val_loss", "val_auc", "val_acc"):
                if row.get(key) is not None:
                    self.client.log_metric(mlflow_id, key + "_curve", float(row[key]), step=int(row["epoch"]))
        for path in sorted(run_dir.glob("*")) if run_dir.is_dir() else []:
            if path.suffix in ARTIFACT_SUFFIXES:
                self.client.log_artifact(mlflow_id, str(path))
        self.client.set_terminated(mlflow_id)
        return mlflow_id

    def sync(self, out: Path, records: list[dict]) -> int:
        """Log every record not yet in MLflow; returns how many were logged."""
        done = self.logged()
        todo = [r for r in records if r["run_id"] not in done]
        for record in todo:
            self.log(RunRecord.from_json(record), out / "runs" / record["run_id"])
        return len(todo)
