"""``synthmed generate``: fit a generative method on a real subset, sample and audit a synthetic set."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.progress import Progress

from synthmed.cli import options as opt
from synthmed.cli.app import app, console, warn
from synthmed.cli.render import COLUMNS
from synthmed.errors import SynthmedError
from synthmed.record import SyntheticAudit
from synthmed.spec import SYNTHESIS_FIELDS

#: The schema fields ``generate`` takes: one dataset, method and seed (no sweeps), the protocol and the levers.
FIELDS = [
    "dataset",
    "method",
    "protocol",
    "real_per_class",
    "fraction",
    "stratified",
    "size",
    "seed",
    "method_params",
    "precision",
    *[
        f
        for f in SYNTHESIS_FIELDS
        if f
        not in (
            "synthetic_weight",
            "finetune_epochs",
            "generator_seed",
            "generator_seeds",
            "tstr",
            "pretrain_on_synthetic",
        )
    ],
]
SINGLE = {
    name: opt.Override(sweep=False)
    for name in (
        "protocol",
        "fraction",
        "synthetic_per_class",
        "synthetic_ratio",
        "min_confidence",
        "teacher_threshold",
        "method_params",
    )
}
#: In ``generate``, the old ``--per-class`` counted synthetic images and ``--per-class-train`` real ones.
ALIASES = {"per_class": "synthetic_per_class", "per_class_train": "real_per_class"}
OVERRIDES = {
    **SINGLE,
    "dataset": opt.Override(sweep=False, default=..., help="A MedMNIST flag, npz:PATH or folder:PATH."),
    "method": opt.Override(
        flag="--method", sweep=False, default=..., help="A method that adds a synthetic set (see `synthmed list`)."
    ),
    "seed": opt.Override(
        flag="--seed", sweep=False, help="Seed of the subset draw, the generator's training and sampling."
    ),
    "real_per_class": opt.Override(aliases=("per_class_train",)),
    "synthetic_per_class": opt.Override(sweep=False, aliases=("per_class",)),
    "fidelity": opt.Override(
        default=False,
        help="Also measure class fidelity and in-domain FID / KID with a "
        "reference ResNet-18 trained on the real subset (cached, minutes on a CPU).",
    ),
}


def cache_root() -> Path:
    """$XDG_CACHE_HOME/synthmed, else ~/.cache/synthmed: reference classifiers are reused across output folders."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "synthmed"


@app.command()
@opt.with_parameters(opt.schema_parameters(FIELDS, OVERRIDES))
def generate(
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="The synthetic set FILE.npz; FILE.json (provenance), "
        "FILE_grid.png, FILE_losses.png, FILE_closest.png and FILE_audit.json go beside it.",
    ),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Override the method's number of training epochs."),
    cache_dir: Path = opt.GENERATOR_CACHE,
    device: str = opt.DEVICE,
    data_root: str = opt.DATA_ROOT,
    no_verify: bool = opt.NO_VERIFY,
    classes: str = opt.CLASSES,
    **options: Any,
) -> None:
    """Fit a generative method on a real training subset, sample a synthetic set and audit it."""
    from synthmed.augment import Kind, available, create_augmenter, method_class
    from synthmed.data import load_dataset, make_subset
    from synthmed.experiment.grid import parse_method_params
    from synthmed.experiment.synthetic_set import synthesise, write_artifacts
    from synthmed.spec import SyntheticLevers, coerce
    from synthmed.train.device import resolve_device

    opt.take_deprecated(options, warn, ALIASES)
    if out.suffix != ".npz":
        raise SynthmedError(f"--out {out} must end in .npz (the synthetic set is a MedMNIST-layout npz file)")
    method = coerce("method", options["method"], "--method")
    params = {}
    for key, values in parse_method_params(options["method_params"] or []).items():
        if len(values) != 1:
            raise SynthmedError(f"-p {key}: generate fits one generator; give one value (a sweep is for `run`)")
        params[key] = values[0]
    if epochs is not None:
        params["epochs"] = epochs
    if method_class(method).kind is not Kind.SET:
        raise SynthmedError(
            f"method {method!r} does not generate images on its own; choose one of {', '.join(available(Kind.SET))}"
        )
    create_augmenter(method, **params).check()
    resolve_device(device)
    levers = SyntheticLevers(**{k: coerce(k, options[k]) for k in SYNTHESIS_FIELDS if k in options})
    levers.check()
    seed = coerce("seed", options["seed"], "--seed")
    protocol = coerce("protocol", options["protocol"], "--protocol")
    data = load_dataset(
        coerce("dataset", options["dataset"], "--dataset"),
        size=coerce("size", options["size"]),
        data_root=data_root,
        verify=not no_verify,
        seed=seed,
        classes=opt.split_classes(classes),
    )
    subset = make_subset(
        data,
        protocol,
        seed=seed,
        per_class=coerce("real_per_class", options["real_per_class"]),
        fraction=coerce("fraction", options["fraction"]),
        stratified=options["stratified"],
    )
    console.print(f"{data.name} {protocol}: {len(subset.train)} real training images, {len(subset.val)} validation")
    with Progress(*COLUMNS, console=console, transient=True) as progress:
        task = progress.add_task("", total=levers.fidelity_epochs)
        result = synthesise(
            data,
            subset,
            method,
            params,
            levers,
            seed,
            cache_dir or cache_root(),
            device,
            coerce("precision", options["precision"]),
            on_status=lambda text: progress.update(task, description=text),
            on_reference_epoch=lambda row: progress.advance(task),
        )
    write_artifacts(out.with_suffix(""), result, data, subset, seed, f"{data.name} {protocol} · {method} · seed {seed}")
    _print_summary(out, result.audit, levers)


def _print_summary(out: Path, audit: SyntheticAudit, levers: Any) -> None:
    """What the audit found, from the same figures a run records."""
    console.print(
        f"{audit.n} synthetic images -> {out} (+ .json, _grid.png, _losses.png, _closest.png, "
        "_audit.json)" + (" · generator reloaded from the cache" if audit.generator_cached else ""),
        soft_wrap=True,
    )
    diversity = "n/a" if audit.min_diversity is None else f"{audit.min_diversity:.2f}"
    console.print(
        f"near-copies: {audit.near_copy_share or 0:.1%} (real validation images: "
        f"{audit.held_out_near_copy_share or 0:.1%})"
        + (" - reconstructions by design" if audit.reconstructions_by_design else "")
        + f"; diversity vs real (min over classes): {diversity}",
        soft_wrap=True,
    )
    if audit.kept_share is not None:
        console.print(
            f"confidence filter >= {levers.min_confidence}: kept {audit.kept_share:.0%} of the requested images",
            soft_wrap=True,
        )
    if audit.fidelity is not None:
        console.print(
            f"class fidelity: {audit.fidelity:.3f} (reference test ACC "
            f"{audit.reference_test_acc or 0:.3f}); in-domain FID {audit.fid or 0:.2f}, KID "
            f"{audit.kid or 0:.4f}, precision {audit.precision or 0:.2f}, recall {audit.recall or 0:.2f}",
            soft_wrap=True,
        )
    if audit.flags:
        console.print(
            f"[bold yellow]warning:[/] failed checks: {', '.join(audit.flags)}; see "
            f"{out.with_suffix('').name}_audit.json before using this set",
            highlight=False,
            soft_wrap=True,
        )
