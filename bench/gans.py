"""GAN-family speed on this CPU: seconds per generator step of every Sharma et al. 2022 method at 28 and 64 px, and the
time of FID / KID / precision-recall for 1,000 vs 1,000 images (in-domain features and metrics separately).

Each method trains on BreastMNIST's 546 training images (64 px needs the official breastmnist_64.npz; the committed
64-px figures were measured on the 28-px file upsampled, which synthmed no longer does) for ``--steps`` generator
steps after one warm-up epoch; a generator step includes its
``n_critic`` critic updates. Results go to bench/results/gans.json (atomic). Run on an otherwise idle machine.

    .venv/bin/python bench/gans.py                    # all methods, 28 and 64 px
    .venv/bin/python bench/gans.py --methods dcgan,wgan-gp --sizes 28 --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from synthmed.augment import create_augmenter
from synthmed.data import load_dataset
from synthmed.io import atomic_write_json

METHODS = ("dcgan", "wgan", "wgan-gp", "lsgan", "sngan", "bagan-gp")


def seconds_per_step(method: str, images: np.ndarray, labels: np.ndarray, steps: int) -> dict:
    """One timed epoch of ``steps`` generator steps (batches of the preset's size) after a warm-up fit.
    bagan-gp's figure includes one autoencoder pre-training epoch over the same images."""
    probe = create_augmenter(method)
    batch = probe.params["batch_size"]
    x, y = images[: batch * steps], labels[: batch * steps]
    extra = {"ae_epochs": 1} if method == "bagan-gp" else {}
    create_augmenter(method, epochs=1, device="cpu", **extra).fit(x[:batch], y[:batch], seed=0)  # warm-up
    model = create_augmenter(method, epochs=1, device="cpu", **extra)
    start = time.perf_counter()
    model.fit(x, y, seed=0)
    return {
        "batch": batch,
        "n_critic": probe.params.get("n_critic", 1),
        "steps": steps,
        "seconds_per_step": (time.perf_counter() - start) / steps,
        "includes_autoencoder_epoch": method == "bagan-gp",
    }


def fid_timing(images: np.ndarray, labels: np.ndarray) -> dict:
    from synthmed.audit.features import DomainFeatures
    from synthmed.metrics.distribution import distribution_metrics
    from synthmed.nets.classifiers import build_classifier

    rng = np.random.default_rng(0)
    real = images[rng.integers(0, len(images), 1000)]
    synth = np.clip(real.astype(int) + rng.integers(-20, 21, real.shape), 0, 255).astype(np.uint8)
    extractor = DomainFeatures(build_classifier("resnet18", 1, 2))
    start = time.perf_counter()
    a, b = extractor.features(real), extractor.features(synth)
    features = time.perf_counter() - start
    start = time.perf_counter()
    distribution_metrics(a, b)
    return {"n": 1000, "feature_seconds_2000_images": features, "metric_seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--sizes", default="28,64")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gans.json"))
    args = parser.parse_args()
    root = os.environ.get("SYNTHMED_DATA", "/work/shared/data/medmnist")
    results: dict = {}
    for size in (int(s) for s in args.sizes.split(",")):
        data = load_dataset("breastmnist", size=size, data_root=root)
        images = np.concatenate([data.train.images] * 2)  # enough images for the steps at batch 128
        labels = np.concatenate([data.train.labels] * 2)
        for method in args.methods.split(","):
            row = seconds_per_step(method, images, labels, args.steps)
            results.setdefault(method, {})[f"{size}px"] = row
            print(method, size, json.dumps(row), flush=True)
    data = load_dataset("breastmnist", data_root=root)
    report = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "machine": platform.machine(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "steps": args.steps,
        "methods": results,
        "fid_kid": fid_timing(data.train.images, data.train.labels),
    }
    print(json.dumps(report["fid_kid"]))
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
