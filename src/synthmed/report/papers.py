"""Published numbers from the implemented papers, shown beside ours (test AUC / ACC, single runs)."""

from __future__ import annotations

#: Chaptoukaev 2021, Table 2: ~150 images per class, ResNet-18 (28), "best test accuracy in 100 epochs".
CHAPTOUKAEV_TABLE2 = {
    "pathmnist": {"none": (0.936, 0.740), "ae": (0.924, 0.708), "cvae": (0.887, 0.614)},
    "dermamnist": {"none": (0.843, 0.698), "ae": (0.832, 0.682), "cvae": (0.820, 0.686)},
    "octmnist": {"none": (0.791, 0.501), "ae": (0.833, 0.564), "cvae": (0.813, 0.543), "cgan": (0.803, 0.557)},
    "pneumoniamnist": {"none": (0.942, 0.845), "ae": (0.949, 0.842), "cvae": (0.942, 0.859), "cgan": (0.948, 0.856)},
    "breastmnist": {"none": (0.872, 0.807), "ae": (0.885, 0.833), "cvae": (0.901, 0.864), "cgan": (0.850, 0.796)},
    "organamnist": {"none": (0.971, 0.781), "ae": (0.978, 0.819), "cvae": (0.981, 0.810), "cgan": (0.972, 0.783)},
    "organcmnist": {"none": (0.976, 0.824), "ae": (0.982, 0.844), "cvae": (0.982, 0.842), "cgan": (0.979, 0.845)},
    "organsmnist": {"none": (0.940, 0.641), "ae": (0.939, 0.659), "cvae": (0.928, 0.644), "cgan": (0.931, 0.652)},
}

#: MedMNIST v2 official benchmark, ResNet-18 (28), full training data (mean of >= 3 runs).
MEDMNIST_V2_RESNET18_28 = {
    "pathmnist": (0.983, 0.907),
    "dermamnist": (0.917, 0.735),
    "octmnist": (0.943, 0.743),
    "pneumoniamnist": (0.944, 0.854),
    "retinamnist": (0.717, 0.524),
    "breastmnist": (0.901, 0.863),
    "bloodmnist": (0.998, 0.958),
    "organamnist": (0.997, 0.935),
    "organcmnist": (0.992, 0.900),
    "organsmnist": (0.972, 0.782),
}


def published(dataset: str, protocol: str, method: str) -> tuple[str, tuple[float, float]] | None:
    """The published ResNet-18 (28) figure comparable to (dataset, protocol, method), with its source, if any.
    ``protocol`` is the report's label: only the default ``lowdata`` (150 per class) and ``full`` at 28 px
    match the papers' settings."""
    if protocol == "lowdata" and method in CHAPTOUKAEV_TABLE2.get(dataset, {}):
        return "Chaptoukaev 2021, Table 2, test-selected", CHAPTOUKAEV_TABLE2[dataset][method]
    if protocol == "full" and method == "none" and dataset in MEDMNIST_V2_RESNET18_28:
        return "MedMNIST v2 ResNet-18 (28)", MEDMNIST_V2_RESNET18_28[dataset]
    return None
