"""MLflow mirror: every stored run logged once, with its config, scores, curves and figures."""

from __future__ import annotations

import json

import pytest

from synthmed.experiment.tracking import MlflowLogger

mlflow = pytest.importorskip("mlflow")


def record(run_id: str, auc: float) -> dict:
    return {
        "run_id": run_id,
        "dataset": "breastmnist",
        "method": "cvae",
        "seed": 0,
        "test_auc": auc,
        "test_acc": 0.8,
        "val_auc": 0.9,
        "val_acc": 0.85,
        "best_epoch": 2,
        "epochs_run": 3,
        "config": {"method": "cvae", "method_params": {"epochs": 5}, "synthetic_weight": 0.5},
        "metrics": {"synthetic": {"fidelity": 0.7, "flags": []}},
        "versions": {"synthmed": "0.1"},
    }


def test_sync_logs_each_run_once_with_params_metrics_curves_and_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the dev extra is mlflow-skinny: no SQL stores
    out = tmp_path / "out"
    run_dir = out / "runs" / "a1"
    run_dir.mkdir(parents=True)
    (run_dir / "history.json").write_text(json.dumps([{"epoch": e, "val_auc": 0.5 + e / 10} for e in (1, 2, 3)]))
    (run_dir / "synthetic_grid.png").write_bytes(b"\x89PNG")
    (run_dir / "synthetic.npz").write_bytes(b"not logged")
    uri = (tmp_path / "mlruns").as_uri()
    logger = MlflowLogger(uri, "exp")
    assert logger.sync(out, [record("a1", 0.9)]) == 1
    assert MlflowLogger(uri, "exp").sync(out, [record("a1", 0.9), record("b2", 0.7)]) == 1  # a1 is not relogged

    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = {r.data.tags["synthmed.run_id"]: r for r in client.search_runs([logger.experiment_id])}
    assert sorted(runs) == ["a1", "b2"]
    a1 = runs["a1"]
    assert a1.data.metrics["test_auc"] == pytest.approx(0.9) and a1.data.metrics["synthetic_fidelity"] == 0.7
    assert a1.data.params["method_params.epochs"] == "5" and a1.data.params["synthetic_weight"] == "0.5"
    curve = client.get_metric_history(a1.info.run_id, "val_auc_curve")
    assert [(m.step, round(m.value, 3)) for m in curve] == [(1, 0.6), (2, 0.7), (3, 0.8)]
    assert [f.path for f in client.list_artifacts(a1.info.run_id)] == ["history.json", "synthetic_grid.png"]
