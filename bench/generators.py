"""Generator speed on this CPU: training time per epoch and sampling throughput of every Chaptoukaev 2021 method.

Each method trains on the real BreastMNIST training split (546 images, Chaptoukaev 2021's lowdata subset) for a few
timed epochs (after one warm-up epoch); the full paper schedule is projected from the per-epoch time, or
measured outright with ``--full`` (FC methods only by default: the conv GANs' 1,000 epochs take long).
Sampling is timed on 10,000 images (uint8 output included). Results go to bench/results/generators.json,
written atomically. Run it on an otherwise idle machine.

    .venv/bin/python bench/generators.py                       # timed epochs + projection, all six methods
    .venv/bin/python bench/generators.py --full ae,cvae,cgan   # also run those full schedules
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from synthmed.augment import create_augmenter
from synthmed.data import load_dataset, make_subset
from synthmed.io import atomic_write_json

METHODS = ("ae", "cvae", "cgan", "conv-ae", "conv-cvae", "conv-cgan")
FC = ("ae", "cvae", "cgan")
TARGET_FULL_SCHEDULE_S = 180.0  # issue: each FC model's paper schedule under 3 minutes on 2 cores
TARGET_SAMPLES_PER_S = 10_000.0


def time_fit(method: str, images, labels, epochs: int) -> float:
    augmenter = create_augmenter(method, epochs=epochs, device="cpu")
    start = time.perf_counter()
    augmenter.fit(images, labels, seed=0)
    return time.perf_counter() - start


def time_sampling(method: str, images, labels, n: int) -> float:
    augmenter = create_augmenter(method, epochs=1, device="cpu").fit(images, labels, seed=0)
    augmenter.sample({0: 256, 1: 256}, seed=0)  # warm-up
    per_class = n // 2
    start = time.perf_counter()
    augmenter.sample({0: per_class, 1: per_class}, seed=1)
    return 2 * per_class / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per method (after one warm-up epoch)")
    parser.add_argument(
        "--full", default=",".join(FC), help="methods whose whole paper schedule is also run ('' for none)"
    )
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "generators.json"))
    args = parser.parse_args()
    root = os.environ.get("SYNTHMED_DATA", "/work/shared/data/medmnist")
    data = load_dataset("breastmnist", data_root=root)
    train = make_subset(data, "lowdata", seed=0).train
    full = [m for m in args.full.split(",") if m]
    results = {}
    for method in args.methods.split(","):
        paper_epochs = create_augmenter(method).params["epochs"]
        time_fit(method, train.images, train.labels, 1)  # warm-up: allocator, kernels
        per_epoch = time_fit(method, train.images, train.labels, args.epochs) / args.epochs
        row = {
            "paper_epochs": paper_epochs,
            "seconds_per_epoch": per_epoch,
            "projected_full_schedule_s": per_epoch * paper_epochs,
            "samples_per_s": time_sampling(method, train.images, train.labels, args.samples),
        }
        if method in full:
            row["measured_full_schedule_s"] = time_fit(method, train.images, train.labels, paper_epochs)
        results[method] = row
        print(method, json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)

    def full_time(method: str) -> float | None:
        row = results.get(method)
        if row is None:
            return None
        seconds = row.get("measured_full_schedule_s", row["projected_full_schedule_s"])
        return None if seconds is None else float(seconds)

    report = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "machine": platform.machine(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "data": {"dataset": "breastmnist", "protocol": "lowdata", "n_train": len(train)},
        "timed_epochs": args.epochs,
        "methods": results,
        "targets": {
            **{
                f"{m}_full_schedule_s<={TARGET_FULL_SCHEDULE_S:g}": {
                    "value": full_time(m),
                    "met": None if (seconds := full_time(m)) is None else seconds <= TARGET_FULL_SCHEDULE_S,
                }
                for m in FC
            },
            f"samples_per_s>={TARGET_SAMPLES_PER_S:g}": {
                "value": min(r["samples_per_s"] for r in results.values()),
                "met": min(r["samples_per_s"] for r in results.values()) >= TARGET_SAMPLES_PER_S,
            },
        },
    }
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
