"""TSynD speed on this CPU: autoencoder fit, time per targeted-synthesis round and per full run on BreastMNIST
(lowdata = the official 546 / 78 split), as JSON. Target (issue): a full TSynD run of that protocol in under
20 minutes on 2 cores.

A full run = the autoencoder's fit + the classifier's training with the medmnist recipe (``--epochs``, 30 by
default) with a round every ``every`` epochs, dropout 0.2, then the single test evaluation. ``--epochs 5`` gives
a quick figure; the JSON then also projects the full run from the measured per-epoch and per-round times.

    .venv/bin/python bench/tsynd.py               # full run
    .venv/bin/python bench/tsynd.py --epochs 5    # quick: measured + projected
"""

from __future__ import annotations

import argparse
import json
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
from synthmed.train.recipes import get_recipe
from synthmed.train.trainer import TrainConfig, train_classifier

TARGET_S = 1200.0
FULL_EPOCHS = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=FULL_EPOCHS)
    parser.add_argument("--method", default="tsynd", choices=["tsynd", "random-latent"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "tsynd.json"))
    args = parser.parse_args()
    data = load_dataset("breastmnist", data_root=os.environ.get("SYNTHMED_DATA", "/work/shared/data/medmnist"))
    subset = make_subset(data, "lowdata", seed=0)
    augmenter: Any = create_augmenter(args.method, device="cpu")  # a TSynD: its round hook is wrapped below
    start = time.perf_counter()
    augmenter.fit(subset.train.images, subset.train.labels, seed=0)
    ae_seconds = time.perf_counter() - start

    round_seconds: list[float] = []
    original = augmenter.on_epoch_end

    def timed(classifier, epoch):
        t0 = time.perf_counter()
        out = original(classifier, epoch)
        if out is not None:
            round_seconds.append(time.perf_counter() - t0)
        return out

    augmenter.on_epoch_end = timed
    config = TrainConfig(get_recipe("medmnist", args.epochs), dropout=0.2)
    start = time.perf_counter()
    fit = train_classifier(
        subset.train, subset.val, subset.test, data.n_classes, data.task, config, seed=0, augmenter=augmenter
    )
    train_seconds = time.perf_counter() - start
    per_round = sum(round_seconds) / max(1, len(round_seconds))
    per_epoch = (train_seconds - sum(round_seconds)) / fit.epochs_run
    full_rounds = FULL_EPOCHS // augmenter.params["every"]
    projected = ae_seconds + FULL_EPOCHS * per_epoch * 1.3 + full_rounds * per_round  # 1.3: the set grows
    measured_full = ae_seconds + train_seconds if args.epochs >= FULL_EPOCHS else None
    report = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "machine": platform.machine(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "precision": fit.precision,
        },
        "method": args.method,
        "params": augmenter.params,
        "epochs": args.epochs,
        "autoencoder_fit_s": ae_seconds,
        "rounds": len(round_seconds),
        "seconds_per_round": per_round,
        "classifier_seconds_per_epoch_excl_rounds": per_epoch,
        "train_s": train_seconds,
        "measured_full_run_s": measured_full,
        "projected_full_run_s": projected,
        "test": {"auc": fit.test["auc"], "acc": fit.test["acc"]},
        "round_stats": augmenter.rounds_,
        "target": {
            f"full_run_s<={TARGET_S:g}": {
                "value": measured_full or projected,
                "measured": measured_full is not None,
                "met": (measured_full or projected) <= TARGET_S,
            }
        },
    }
    print(json.dumps({k: v for k, v in report.items() if k not in ("round_stats", "params")}, indent=1))
    atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
