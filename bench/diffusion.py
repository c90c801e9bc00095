"""Diffusion and DiffAugment speed on this machine, written to ``bench/results/diffusion.json``:

- ``ddpm`` (cpu preset, 1.1M-parameter MONAI UNet): seconds per batch-64 training step in fp32 and bf16, and
  sampling images/s at 10, 25 and 50 DDIM steps (guidance 1: two UNet passes per step);
- the whole cpu-preset fit on BreastMNIST lowdata (546 images, 2,500 steps), unless ``--no-full-fit``;
- ``dcgan`` seconds per generator step with and without DiffAugment (colour, translation, cutout).

    SYNTHMED_DATA=/path/to/medmnist OMP_NUM_THREADS=1 python bench/diffusion.py
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from synthmed.augment import create_augmenter
from synthmed.data import load_dataset, make_subset
from synthmed.io import atomic_write_json
from synthmed.train.device import cpu_model


def fit_seconds(method: str, images, labels, **params) -> tuple[float, Any]:
    model = create_augmenter(method, device="cpu", **params)
    start = time.perf_counter()
    model.fit(images, labels, seed=0)
    return time.perf_counter() - start, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="Training steps per timing.")
    parser.add_argument("--no-full-fit", action="store_true", help="Skip the whole cpu-preset fit (~30 min).")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "diffusion.json"))
    args = parser.parse_args()
    data = load_dataset("breastmnist", data_root=os.environ.get("SYNTHMED_DATA"))
    subset = make_subset(data, "lowdata", seed=0)
    images, labels = subset.train.images, subset.train.labels
    results: dict = {"ddpm_train": {}, "ddpm_sampling": {}, "dcgan": {}}
    for precision in ("fp32", "bf16"):
        seconds, _ = fit_seconds("ddpm", images, labels, steps=args.steps, precision=precision, ema=None)
        results["ddpm_train"][precision] = {"s_per_step": round(seconds / args.steps, 3), "batch": 64}
        print(precision, results["ddpm_train"][precision], flush=True)
    _, model = fit_seconds("ddpm", images, labels, steps=2)
    for ddim in (10, 25, 50):
        model.params = {**model.params, "ddim_steps": ddim}
        start = time.perf_counter()
        model.sample({0: 64, 1: 64}, seed=0)
        results["ddpm_sampling"][str(ddim)] = {"images_per_s": round(128 / (time.perf_counter() - start), 2)}
        print(ddim, results["ddpm_sampling"][str(ddim)], flush=True)
    if not args.no_full_fit:
        seconds, model = fit_seconds("ddpm", images, labels)
        results["ddpm_full_fit"] = {
            "seconds": round(seconds, 1),
            "steps": model.params["steps"],
            "final_loss": model.history_[-1]["loss"],
        }
        print(results["ddpm_full_fit"], flush=True)
    for policy in ("none", "color,translation,cutout"):
        seconds, model = fit_seconds("dcgan", images, labels, epochs=2, diffaugment=policy)
        results["dcgan"][policy] = {"s_per_step": round(seconds / model._step, 3), "batch": 128}
        print(policy, results["dcgan"][policy], flush=True)
    atomic_write_json(
        args.out,
        {
            **results,
            "dataset": "breastmnist lowdata (546 training images)",
            "machine": {
                "cpu": cpu_model(),
                "cores": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


if __name__ == "__main__":
    main()
