"""Side by side, in one invocation: synthmed's default execution against a plain torchvision loop.

Two workloads on BreastMNIST's official split (546 / 78 / 156), ResNet-18 (28), Adam 1e-3, MultiStepLR, 20 epochs,
epoch selected on validation AUC:

- one ``none`` run;
- a grid of 4 runs (seeds 0-3).

The plain loop (``plain_reference.run_plain``: a DataLoader over tensors, fp32, the machine's default threads, one
run after another) runs in this process; synthmed runs as ``synthmed run`` with its defaults (bf16 where the CPU
has it; for the grid one single-thread worker per core). The wall times and their ratios go to
``bench/results/execution.json``; with CUDA present, the same on the GPU (plain loop on cuda vs
``--device cuda``).

    SYNTHMED_DATA=/path/to/medmnist python bench/execution.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from plain_reference import load  # noqa: E402

from synthmed.io import atomic_write_json  # noqa: E402
from synthmed.train.device import cpu_model  # noqa: E402


def plain_run(data: dict, seed: int, epochs: int, device: str) -> None:
    """The plain loop: a DataLoader over tensors, fp32, model and each batch on ``device``, selection on val AUC."""
    import copy

    from plain_reference import plain_model, scores, tensors

    torch.manual_seed(seed)
    x_tr, y_tr = tensors(data["train_images"], data["train_labels"])
    x_va, y_va = tensors(data["val_images"], data["val_labels"])
    x_te, y_te = tensors(data["test_images"], data["test_labels"])
    model = plain_model(int(y_tr.max()) + 1).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(0.5 * epochs), int(0.75 * epochs)], 0.1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_tr, y_tr), batch_size=128, shuffle=True)
    best, state = -1.0, None
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb.to(device)), yb.to(device)).backward()
            opt.step()
        sched.step()
        auc, _ = scores(model.cpu(), x_va, y_va)
        model.to(device)
        if auc > best:
            best, state = auc, copy.deepcopy(model.state_dict())
    assert state is not None  # the first epoch always beats -1
    model.load_state_dict(state)
    scores(model.cpu(), x_te, y_te)


def plain(data: dict, seeds: list[int], epochs: int, device: str) -> float:
    start = time.perf_counter()
    for seed in seeds:
        plain_run(data, seed, epochs, device)
    return time.perf_counter() - start


def synthmed(seeds: list[int], epochs: int, device: str, root: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            sys.executable,
            "-m",
            "synthmed",
            "run",
            "-d",
            "breastmnist",
            "-m",
            "none",
            "--seeds",
            ",".join(map(str, seeds)),
            "--epochs",
            str(epochs),
            "--device",
            device,
            "--no-report",
            "--out",
            str(Path(tmp) / "out"),
        ]
        env = {**os.environ, "SYNTHMED_DATA": root, "SYNTHMED_OFFLINE": "1"}
        start = time.perf_counter()
        subprocess.run(args, env=env, check=True, capture_output=True, text=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "execution.json"))
    args = parser.parse_args()
    root = os.environ.get("SYNTHMED_DATA", str(Path.home() / ".medmnist"))
    data = load("breastmnist", Path(root))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = []
    for device in devices:
        for name, seeds in (("one run", [0]), ("grid of 4 runs", [0, 1, 2, 3])):
            plain_s = plain(data, seeds, args.epochs, device)
            synthmed_s = synthmed(seeds, args.epochs, device, root)
            results.append(
                {
                    "device": device,
                    "workload": name,
                    "runs": len(seeds),
                    "epochs": args.epochs,
                    "plain_s": round(plain_s, 1),
                    "synthmed_s": round(synthmed_s, 1),
                    "speedup": round(plain_s / synthmed_s, 2),
                }
            )
            print(json.dumps(results[-1]), flush=True)
    atomic_write_json(
        args.out,
        {
            "benchmark": "wall time, plain torchvision loop vs synthmed defaults",
            "dataset": "breastmnist official split",
            "model": "resnet18 (28)",
            "results": results,
            "machine": {
                "cpu": cpu_model(),
                "cores": os.cpu_count(),
                "torch": torch.__version__,
                "torch_threads_default": torch.get_num_threads(),
                "python": platform.python_version(),
                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            },
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


if __name__ == "__main__":
    main()
