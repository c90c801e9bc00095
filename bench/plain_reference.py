"""Side by side: a plain torchvision training loop against synthmed's trainer, same data, same seeds.

Why: the foundation issue asks that synthmed's trainer be at least as good as a plain reference
(ResNet-18 (28), Adam 1e-3, MultiStepLR x0.1 at 50 % and 75 %, 30 epochs, epoch selected on validation
AUC, official test split). The plain loop here uses nothing from synthmed: numpy reads the official npz,
a DataLoader over a TensorDataset shuffles, and scikit-learn scores AUC. Both run in float32 with the
same thread count, so the only differences left are the ones inside the trainers.

    .venv/bin/python bench/plain_reference.py --impl plain --seeds 0,1,2
    .venv/bin/python bench/plain_reference.py --impl synthmed --seeds 0,1,2

Results are appended, one JSON object per finished run, to bench/results/plain_reference.jsonl.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torchvision import models


def load(flag: str, root: Path) -> dict[str, np.ndarray]:
    with np.load(root / f"{flag}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(images).float().div(255).sub(0.5).div(0.5).unsqueeze(1)
    return x, torch.from_numpy(labels.reshape(-1)).long()


def plain_model(n_classes: int) -> nn.Module:
    model = models.resnet18(weights=None, num_classes=n_classes)
    model.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


@torch.no_grad()
def scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    p = torch.cat([torch.softmax(model(x[i : i + 256]), 1) for i in range(0, len(x), 256)]).numpy()
    auc = roc_auc_score(y.numpy(), p[:, 1]) if p.shape[1] == 2 else roc_auc_score(y.numpy(), p, multi_class="ovr")
    return float(auc), float((p.argmax(1) == y.numpy()).mean())


def run_plain(data: dict, seed: int, epochs: int) -> dict:
    torch.manual_seed(seed)
    x_tr, y_tr = tensors(data["train_images"], data["train_labels"])
    x_va, y_va = tensors(data["val_images"], data["val_labels"])
    x_te, y_te = tensors(data["test_images"], data["test_labels"])
    n_classes = int(y_tr.max()) + 1
    model = plain_model(n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(0.5 * epochs), int(0.75 * epochs)], 0.1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_tr, y_tr), batch_size=128, shuffle=True)
    best_auc, best_state, best_epoch, history = -1.0, None, 0, []
    for epoch in range(1, epochs + 1):
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        sched.step()
        val_auc, val_acc = scores(model, x_va, y_va)
        history.append({"epoch": epoch, "val_auc": val_auc})
        if val_auc > best_auc:
            best_auc, best_state, best_epoch = val_auc, copy.deepcopy(model.state_dict()), epoch
    assert best_state is not None  # the first epoch always beats -1
    model.load_state_dict(best_state)
    test_auc, test_acc = scores(model, x_te, y_te)
    return {
        "best_epoch": best_epoch,
        "val_auc": best_auc,
        "test_auc": test_auc,
        "test_acc": test_acc,
        "history": history,
    }


def run_synthmed(flag: str, root: Path, seed: int, epochs: int) -> dict:
    from synthmed.data.medmnist import load_medmnist
    from synthmed.data.protocol import make_subset
    from synthmed.train.recipes import get_recipe
    from synthmed.train.trainer import TrainConfig, train_classifier

    data = load_medmnist(flag, root=root)
    subset = make_subset(data, "full", seed)
    config = TrainConfig(get_recipe("medmnist", epochs), precision="fp32", device="cpu")
    fit = train_classifier(subset.train, subset.val, data.test, data.n_classes, data.task, config, seed)
    return {
        "best_epoch": fit.best_epoch,
        "val_auc": fit.val["auc"],
        "test_auc": fit.test["auc"],
        "test_acc": fit.test["acc"],
        "history": [{"epoch": r["epoch"], "val_auc": r["val_auc"]} for r in fit.history],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", choices=["plain", "synthmed"], required=True)
    parser.add_argument("--dataset", default="breastmnist")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "plain_reference.jsonl"))
    args = parser.parse_args()
    root = Path(os.environ.get("SYNTHMED_DATA", "/work/shared/data/medmnist"))
    data = load(args.dataset, root) if args.impl == "plain" else None
    for seed in (int(s) for s in args.seeds.split(",")):
        start = time.perf_counter()
        if data is not None:  # --impl plain
            result = run_plain(data, seed, args.epochs)
        else:
            result = run_synthmed(args.dataset, root, seed, args.epochs)
        result.update(
            impl=args.impl,
            dataset=args.dataset,
            seed=seed,
            epochs=args.epochs,
            threads=torch.get_num_threads(),
            seconds=round(time.perf_counter() - start, 1),
            torch=torch.__version__,
        )
        print(json.dumps({k: v for k, v in result.items() if k != "history"}), flush=True)
        with open(args.out, "a") as f:  # append-only log: a killed run loses only itself
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
