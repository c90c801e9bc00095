"""``synthmed fidelity``: FID, KID, precision / recall, density / coverage of any synthetic set."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from synthmed.cli import options as opt
from synthmed.cli.app import app, console
from synthmed.cli.generate import cache_root
from synthmed.cli.render import COLUMNS
from synthmed.errors import SynthmedError


def load_real(real: str, size: int, data_root: str | None, verify: bool, classes: list[str] | None):
    """REAL as a dataset name (MedMNIST flag, npz:PATH, folder:PATH) or the path of any MedMNIST-layout npz."""
    from synthmed.data import load_dataset, load_npz

    if real.endswith(".npz") and not real.startswith("npz:"):
        return load_npz(real, classes=classes)
    return load_dataset(real, size=size, data_root=data_root, verify=verify, classes=classes)


def load_synthetic(path: Path):
    """A synthetic set from `synthmed generate` (npz + side-car), or any npz with train_images / train_labels."""
    from synthmed.augment.export import read_synthetic, sidecar_path
    from synthmed.data.dataset import check_split
    from synthmed.data.medmnist import read_npz

    if sidecar_path(path).exists() and "sha256" in sidecar_path(path).read_text():
        return read_synthetic(path)[:2]
    if not path.exists():
        raise SynthmedError(f"{path} does not exist")
    arrays = read_npz(path)
    if "train_images" not in arrays or "train_labels" not in arrays:
        raise SynthmedError(f"{path} lacks train_images / train_labels (the MedMNIST layout synthmed generate writes)")
    labels = arrays["train_labels"]
    split = check_split(path.name, "train", arrays["train_images"], labels, int(labels.max()) + 1, "multi-class")
    return split.images, split.labels


@app.command()
def fidelity(
    real: str = typer.Argument(
        ...,
        help="Real data: a MedMNIST flag (breastmnist), npz:PATH, folder:PATH, or the path of any MedMNIST-layout npz.",
    ),
    synthetic: Path = typer.Argument(..., help="Synthetic set: an npz with train_images / train_labels."),
    features: str = typer.Option(
        "domain",
        "--features",
        help="domain (a ResNet-18 trained on the real training "
        "split, cached) | inception (standard FID Inception from --inception-weights).",
    ),
    inception_weights: Path = typer.Option(
        None, "--inception-weights", help="Local pt_inception-2015-12-05 weights file (never downloaded)."
    ),
    split: str = typer.Option("train", "--split", help="Real split to compare with: train | val | test."),
    domain_epochs: int = typer.Option(30, "--domain-epochs", min=1, help="Epochs of the in-domain extractor."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(None, "--out", "-o", help="Write the full report as JSON here."),
    tsne: Path = typer.Option(None, "--tsne", help="Write a t-SNE PNG of real and synthetic features here."),
    cache_dir: Path = opt.GENERATOR_CACHE,
    device: str = opt.DEVICE,
    size: int = typer.Option(28, "--size", help="Image size of a MedMNIST dataset: 28, 64, 128 or 224."),
    data_root: str = opt.DATA_ROOT,
    no_verify: bool = opt.NO_VERIFY,
    classes: str = opt.CLASSES,
) -> None:
    """FID, KID, precision / recall and density / coverage of a synthetic set, overall and per class."""
    from synthmed.audit.features import DomainFeatures, FeatureExtractor, InceptionFeatures
    from synthmed.audit.synthetic import audit_set
    from synthmed.io import atomic_write_bytes, atomic_write_json
    from synthmed.report.figures import tsne_plot
    from synthmed.spec import coerce

    if features not in ("domain", "inception"):
        raise SynthmedError(f"--features {features!r}: choose domain or inception")
    if split not in ("train", "val", "test"):
        raise SynthmedError(f"--split {split!r}: choose train, val or test")
    images, labels = load_synthetic(synthetic)
    data = load_real(real, coerce("size", size, "--size"), data_root, not no_verify, opt.split_classes(classes))
    extractor: FeatureExtractor
    if features == "inception":
        extractor = InceptionFeatures(inception_weights, device="cpu" if device == "auto" else device)
    else:
        with Progress(*COLUMNS, console=console, transient=True) as progress:
            task = progress.add_task("in-domain extractor (cached after the first time)", total=domain_epochs)
            extractor = DomainFeatures.for_dataset(
                data,
                cache_dir or cache_root(),
                domain_epochs,
                seed,
                device,
                on_epoch=lambda row: progress.advance(task),
            )
    reference = data.split(split)
    with console.status("features and metrics"):
        audit = audit_set(
            images, labels, reference, memorisation=False, extractor=extractor, class_names=data.class_names, seed=seed
        )
    result = (audit.details or {})["distribution"]
    real_feats, synth_feats = audit.real_features, audit.synthetic_features
    assert real_feats is not None and synth_feats is not None  # measured whenever an extractor is given
    table = Table(title=f"{synthetic.name} vs {data.name} {split} ({extractor.name[:60]})")
    for name in ("set", "n real / synth", "FID", "KID (± std)", "precision", "recall", "density", "coverage"):
        table.add_column(name)
    overall = result["overall"]
    scope = "all" if not result["classes_only_real"] else "classes " + ",".join(map(str, overall["real_classes"]))
    rows = [(scope, overall)] + [
        (f"class {r['class']} {r['name'] or ''}"[:28], r) for r in result["per_class"] if "fid" in r
    ]
    for name, m in rows:
        table.add_row(
            name,
            f"{m['n_real']} / {m['n_synthetic']}",
            f"{m['fid']:.2f}",
            f"{m['kid_mean']:.4f} ± {m['kid_std']:.4f}",
            *(f"{m[k]:.3f}" for k in ("precision", "recall", "density", "coverage")),
        )
    Console().print(table)
    console.print(result["note"], soft_wrap=True)
    if out:
        atomic_write_json(out, result)
    if tsne:
        atomic_write_bytes(
            tsne,
            tsne_plot(
                real_feats,
                reference.labels,
                synth_feats,
                labels,
                data.class_names,
                seed=seed,
                title=f"t-SNE · {synthetic.name} vs {data.name} {split}",
            ),
        )
