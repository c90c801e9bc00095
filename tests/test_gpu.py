"""What only a CUDA GPU can show (issue 27, item 9; `bench/gpu_check.sh` runs these): the trainer keeps its
tensors on the device, bf16 autocast trains there, and two runs share one GPU. Skipped without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import blobs, write_breast_like

from synthmed.augment.base import Augmenter
from synthmed.train.recipes import get_recipe
from synthmed.train.trainer import TrainConfig, train_classifier

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False here)"
)


class _Watch(Augmenter):
    """Records where every training batch is when the trainer hands it over for augmentation."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: set[str] = set()

    def transform_batch(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.devices.add(batch.device.type)
        return batch


class _ConvDtypes:
    """A probe that, from the first optimizer step on, records the dtype of the first convolution's output."""

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()
        self.hooked = False

    def step(self, model: torch.nn.Module) -> None:
        if not self.hooked:
            conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
            conv.register_forward_hook(lambda _m, _i, out: self.dtypes.add(out.dtype))
            self.hooked = True

    def epoch(self, model: torch.nn.Module, epoch: int) -> None:
        pass


def _fit(precision: str, epochs: int = 2, **kwargs):
    train, val, test = blobs(64, 0), blobs(16, 1), blobs(16, 2)
    config = TrainConfig(get_recipe("medmnist", epochs, batch_size=8), precision=precision, device="cuda")
    return train_classifier(train, val, test, 2, "binary-class", config, seed=0, **kwargs)


def test_the_trainer_moves_its_image_tensors_to_the_gpu_once_not_per_batch(monkeypatch):
    moves: list[tuple[int, ...]] = []
    original = torch.Tensor.to

    def counting_to(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        # image tensors (4-D, not a network's weights) that crossed from the host to the GPU
        crossed = self.device.type == "cpu" and out.device.type == "cuda"
        if crossed and self.dim() == 4 and not isinstance(self, torch.nn.Parameter):
            moves.append(tuple(self.shape))
        return out

    monkeypatch.setattr(torch.Tensor, "to", counting_to)
    watch = _Watch()
    fit = _fit("fp32", augmenter=watch)  # 8 batches per epoch, 2 epochs
    assert fit.device.startswith("cuda") and watch.devices == {"cuda"}
    assert sorted(moves) == sorted([(64, 1, 28, 28), (16, 1, 28, 28), (16, 1, 28, 28)])  # train, val, test


def test_bf16_autocast_trains_on_the_gpu_with_finite_losses():
    probe = _ConvDtypes()
    fit = _fit("bf16", epochs=3, probe=probe)
    assert fit.precision == "bf16" and torch.bfloat16 in probe.dtypes
    assert all(np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"]) for row in fit.history)
    assert np.isfinite(fit.test["auc"]) and np.isfinite(fit.test["loss"])


def test_two_worker_processes_share_one_gpu(tmp_path):
    from synthmed.experiment.backends import pool_plan
    from synthmed.store import ResultStore

    assert pool_plan(2, 1)[0] == 2, "this machine would run the two runs in one process"
    root, out = tmp_path / "data", tmp_path / "out"
    write_breast_like(root)
    args = ["run", "-d", "breastmnist", "--protocol", "full", "-m", "none,flip", "--seeds", "0", "--epochs", "2"]
    args += ["--device", "cuda", "--workers", "2", "--no-verify", "--no-report", "--out", str(out)]
    env = {**os.environ, "SYNTHMED_DATA": str(root), "SYNTHMED_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "synthmed", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with ResultStore(Path(out) / "results.sqlite") as store:
        records = store.records()
    assert sorted(r["method"] for r in records) == ["flip", "none"]
    assert all(str(r["device"]).startswith("cuda") and np.isfinite(r["test_auc"]) for r in records)
