"""What a run's robustness scoring costs (``--robustness medmnistc``: the perturbation suite, FGSM and PGD, the
MedMNIST-C benchmark), with the trained model as it is and with ``scoring_copy`` (BatchNorm folded, channels-last, no
parameter gradients), side by side in one process, as JSON.

The two hot loops are timed on PneumoniaMNIST's test split: forward passes (bf16, as a bf16 run scores) and PGD's
fp32 input gradients; a run's scoring is projected from the counts its report makes (forward passes of every
suite strength and MedMNIST-C point, gradients of every attack step). ``--full`` also times the two reports
themselves with the copy (several minutes).

    .venv/bin/python bench/robustness.py            # hot loops, projected per run
    .venv/bin/python bench/robustness.py --full     # and the measured reports
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
from torch import nn

from synthmed.data import load_dataset
from synthmed.io import atomic_write_json
from synthmed.metrics.corruptions import SEVERITIES, corruption_set
from synthmed.metrics.robustness import (
    EPS,
    PERTURBATIONS,
    PGD_STEPS,
    RUN_ATTACK_IMAGES,
    medmnistc_report,
    pgd,
    robustness_report,
    scoring_copy,
)
from synthmed.nets.classifiers import build_classifier, predict
from synthmed.tensors import to_tensor


def best_of(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="pneumoniamnist")
    parser.add_argument("--full", action="store_true", help="also time the two reports with the copy")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "robustness.json"))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    data = load_dataset(args.dataset, data_root=os.environ.get("SYNTHMED_DATA", "/work/shared/data/medmnist"))
    images, labels = data.test.images, data.test.labels
    torch.manual_seed(0)
    model = build_classifier("resnet18", data.n_channels, data.n_classes, data.size)
    for module in model.modules():  # trained-like statistics, so folding them is real work
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None  # tracked by default
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = to_tensor(images)
    attacked = min(RUN_ATTACK_IMAGES, len(images))
    xa, ya = x[:attacked], torch.from_numpy(labels[:attacked].reshape(-1)).long()
    n_points = sum(len(s) for s in PERTURBATIONS.values()) + 1  # the suite and the clean score
    _, table = corruption_set(args.dataset)
    n_points += len(table) * len(SEVERITIES) + 1  # MedMNIST-C and its clean score
    attack_steps = sum(1 for e in EPS if e) * (PGD_STEPS + 1)  # PGD's steps and FGSM's one, per eps > 0
    one_eps_steps = PGD_STEPS + 1  # --attack-eps: one eps > 0
    variants = {"model": model, "scoring_copy": scoring_copy(model)}
    result: dict = {}
    for name, net in variants.items():
        forward = best_of(lambda net=net: predict(net, x, data.task, "bf16", batch=256)) / len(x)
        gradient = best_of(lambda net=net: pgd(net, xa, ya, data.task, 2 / 255, steps=2), 2) / (2 * attacked)
        result[name] = {
            "forward_images_per_s": 1 / forward,
            "pgd_image_steps_per_s": 1 / gradient,
            "projected_run_s": n_points * len(x) * forward + attack_steps * attacked * gradient,
            "projected_run_one_eps_s": n_points * len(x) * forward + one_eps_steps * attacked * gradient,
        }
    result["speedup"] = result["model"]["projected_run_s"] / result["scoring_copy"]["projected_run_s"]
    if args.full:
        start = time.perf_counter()
        robustness_report(model, images, labels, data.task, "bf16", attack_images=RUN_ATTACK_IMAGES)
        suite = time.perf_counter() - start
        start = time.perf_counter()
        medmnistc_report(model, images, labels, data.task, args.dataset, "bf16")
        result["measured_reports_s"] = {"robustness_report": suite, "medmnistc_report": time.perf_counter() - start}
    report = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "machine": platform.machine(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "dataset": args.dataset,
        "test_images": len(images),
        "attack_images": attacked,
        "forward_passes_per_image": n_points,
        "gradient_steps_per_attacked_image": attack_steps,
        "gradient_steps_per_attacked_image_one_eps": one_eps_steps,
        **result,
    }
    print(json.dumps(report, indent=1))
    atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
