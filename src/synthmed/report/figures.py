"""Every figure synthmed draws, as PNG bytes: image grids of real and synthetic images (Chaptoukaev 2021's
Appendix A), generator loss curves, the synthetic images closest to the training set, t-SNE of real and synthetic
features (Sharma et al. 2022's Figure 2), robustness curves and CAM panels (TSynD's Figure 2), and the report's
per-group score plot.

Metrics compute, this module draws: nothing here trains or scores anything except ``gradcam_panel``, which asks
``synthmed.metrics.explain`` for the maps it shows. Image figures draw one mosaic array with a single ``imshow``
instead of one axes per image, so a grid of hundreds of images renders in well under a second; pixels are shown
unsmoothed at their uint8 values (no rescaling, so a dark or washed-out generator looks dark or washed out).
Write the bytes with ``synthmed.io.atomic_write_bytes``.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from synthmed.errors import SynthmedError
from synthmed.spec import method_label

if TYPE_CHECKING:
    import torch

PAD = 2  # pixels between tiles
DPI = 100


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed), imported on use: it is slow to import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ticker():
    """matplotlib.ticker, imported on use like pyplot."""
    import matplotlib.ticker

    return matplotlib.ticker


def png(fig, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def _mosaic(rows: list[np.ndarray], n_cols: int, shape: tuple[int, ...]) -> np.ndarray:
    """Rows of uint8 images (each (k <= n_cols, H, W[, 3])) -> one canvas with white gaps; short rows stay blank."""
    h, w = shape[:2]
    canvas = np.full((len(rows) * (h + PAD) - PAD, n_cols * (w + PAD) - PAD, *shape[2:]), 255, dtype=np.uint8)
    for r, images in enumerate(rows):
        for c, image in enumerate(images[:n_cols]):
            canvas[r * (h + PAD) : r * (h + PAD) + h, c * (w + PAD) : c * (w + PAD) + w] = image
    return canvas


def _show(
    canvas: np.ndarray, tile: int, row_labels: list[str], col_labels: list[str] | None, title: str, rows: int, cols: int
) -> bytes:
    """Draw a mosaic with one label per row (left) and optionally per column (below)."""
    plt = pyplot()
    scale = max(1, 56 // tile)  # small images are enlarged to about 56 screen pixels per tile
    label_w = 0.065 * max((len(label) for label in row_labels), default=0) + 0.25
    title_h = 0.2 + 0.18 * (title.count("\n") + 1)
    fig_w = max(canvas.shape[1] * scale / DPI + label_w + 0.2, 3.0)
    fig_h = canvas.shape[0] * scale / DPI + title_h + 0.1 + (0.3 if col_labels else 0)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    grey = canvas.ndim == 2
    ax.imshow(canvas, cmap="gray" if grey else None, vmin=0, vmax=255, interpolation="nearest")
    step = tile + PAD
    ax.set_yticks([r * step + tile / 2 for r in range(rows)], row_labels, fontsize=8)
    ax.set_xticks(
        [c * step + tile / 2 for c in range(cols)] if col_labels else [], col_labels if col_labels else [], fontsize=7
    )
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=9)
    fig.subplots_adjust(
        left=label_w / fig_w,
        right=1 - 0.1 / fig_w,
        top=1 - title_h / fig_h,
        bottom=(0.35 if col_labels else 0.1) / fig_h,
    )
    return png(fig)


def image_grid(
    real_images: np.ndarray,
    real_labels: np.ndarray,
    synth_images: np.ndarray,
    synth_labels: np.ndarray,
    class_names: list[str],
    n_per_row: int = 10,
    synth_rows: int = 2,
    title: str = "",
    seed: int = 0,
) -> bytes:
    """Per class, one row of real images above ``synth_rows`` rows of synthetic ones (Chaptoukaev 2021, Appendix A).

    Images are drawn at random (seeded) from each class, so the rows show the class, not its first files."""
    rng = np.random.default_rng(seed)

    def pick(images: np.ndarray, labels: np.ndarray, c: int, n: int) -> np.ndarray:
        idx = np.flatnonzero(labels == c)
        return images[np.sort(rng.choice(idx, min(n, len(idx)), replace=False))]

    largest = max(np.bincount(synth_labels, minlength=len(class_names)).max() if len(synth_labels) else 0, 1)
    synth_rows = min(synth_rows, math.ceil(largest / n_per_row))  # no blank rows for small sets
    rows, labels = [], []
    for c, name in enumerate(class_names):
        rows.append(pick(real_images, real_labels, c, n_per_row))
        labels.append(f"{c} {name[:24]} · real")
        if not (synth_labels == c).any():  # e.g. the majority class under --balance: say so, draw no blank rows
            labels[-1] += " (no synthetic images)"
            continue
        synth = pick(synth_images, synth_labels, c, n_per_row * synth_rows)
        for r in range(synth_rows):
            rows.append(synth[r * n_per_row : (r + 1) * n_per_row])
            labels.append("synthetic")
    shape = real_images.shape[1:]
    return _show(
        _mosaic(rows, n_per_row, shape),
        shape[0],
        labels,
        None,
        title or "real (top row) and synthetic images per class",
        len(rows),
        n_per_row,
    )


def closest_pairs(synth: np.ndarray, train: np.ndarray, pairs: list[dict], title: str = "") -> bytes:
    """Each synthetic image (top) above its nearest training image (bottom), labelled with the nearest /
    second-nearest distance ratio (memorised below 1/3, Gu et al.) where the pairs carry it, else the near-copy ratio.

    ``pairs``: ``memorisation(...)["closest"]`` (dicts with ``synthetic``, ``train``, ``ratio`` and ``nn_ratio``)."""
    if not pairs:
        raise ValueError("closest_pairs needs at least one pair")
    top = synth[[p["synthetic"] for p in pairs]]
    bottom = train[[p["train"] for p in pairs]]
    shape = synth.shape[1:]
    return _show(
        _mosaic([top, bottom], len(pairs), shape),
        shape[0],
        ["synthetic", "nearest training"],
        [f"{p.get('nn_ratio', p['ratio']):.2f}" for p in pairs],
        title
        or (
            "synthetic images closest to the training set\nd1 / d2 = nearest over second-nearest training distance "
            "(memorised below 1/3)"
            if "nn_ratio" in pairs[0]
            else "synthetic images closest to the training set\nratio = distance / median nearest-neighbour distance"
        ),
        2,
        len(pairs),
    )


def loss_curves(history: list[dict], title: str) -> bytes:
    """One panel per loss in a generator's per-epoch history; non-finite epochs are marked in red."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    keys = [k for k in (history[0] if history else {}) if k != "epoch"]
    fig, axes = plt.subplots(
        1, max(1, len(keys)), figsize=(3.2 * max(1, len(keys)), 2.8), squeeze=False, constrained_layout=True
    )
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    for ax, key in zip(axes[0], keys):
        values = np.array([row.get(key, math.nan) for row in history], dtype=float)
        ax.plot(epochs, values, lw=1.2)
        bad = ~np.isfinite(values)
        if bad.any():
            for epoch in np.asarray(epochs)[bad]:
                ax.axvline(epoch, color="red", lw=0.8, alpha=0.6)
            key += " (non-finite: red)"
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return png(fig)


def _plot_classes(labels: np.ndarray | None, n: int) -> np.ndarray:
    """Single-label class indices for colouring; -1 (one grey) when labels are absent or multi-label."""
    if labels is None:
        return np.full(n, -1)
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        return np.full(n, -1)
    if len(labels) != n:
        raise SynthmedError(f"{n} feature rows but {len(labels)} labels; give one label per image")
    return labels.astype(int)


def tsne_plot(
    real_feats: np.ndarray,
    real_labels: np.ndarray | None,
    synth_feats: np.ndarray,
    synth_labels: np.ndarray | None,
    class_names: list[str] | None = None,
    seed: int = 0,
    title: str = "",
    embedding: np.ndarray | None = None,
) -> bytes:
    """PNG of a joint t-SNE: real images as hollow circles, synthetic ones as crosses, one colour per class (as
    Sharma et al. 2022's Figure 2, which showed synthetic clusters away from the real data). ``embedding``: a
    precomputed ``tsne_embedding`` of the same rows."""

    from synthmed.metrics.distribution import tsne_embedding

    n_real, n_synth = len(real_feats), len(synth_feats)
    points = tsne_embedding(real_feats, synth_feats, seed) if embedding is None else np.asarray(embedding)
    if points.shape != (n_real + n_synth, 2):
        raise SynthmedError(
            f"the embedding has shape {points.shape}, expected ({n_real + n_synth}, 2) for "
            f"{n_real} real and {n_synth} synthetic rows; compute it with tsne_embedding"
        )
    real_c, synth_c = _plot_classes(real_labels, n_real), _plot_classes(synth_labels, n_synth)
    plt = pyplot()
    from matplotlib.lines import Line2D

    classes = sorted(set(real_c.tolist()) | set(synth_c.tolist()))
    cmap = plt.get_cmap("tab10" if max(classes) < 10 else "tab20")
    fig, ax = plt.subplots(figsize=(6.0, 4.8), constrained_layout=True)
    handles = []
    for c in classes:
        colour = "0.4" if c < 0 else cmap(c % cmap.N)
        real_pts, synth_pts = points[:n_real][real_c == c], points[n_real:][synth_c == c]
        ax.scatter(
            real_pts[:, 0], real_pts[:, 1], s=16, facecolors="none", edgecolors=[colour], linewidths=0.8, alpha=0.8
        )
        ax.scatter(synth_pts[:, 0], synth_pts[:, 1], s=16, marker="x", c=[colour], linewidths=0.8, alpha=0.8)
        if c >= 0:
            label = f"{c} {class_names[c][:24]}" if class_names and c < len(class_names) else f"class {c}"
            handles.append(Line2D([], [], ls="", marker="s", color=colour, label=label))
    handles += [
        Line2D([], [], ls="", marker="o", mfc="none", color="0.3", label=f"real ({n_real})"),
        Line2D([], [], ls="", marker="x", color="0.3", label=f"synthetic ({n_synth})"),
    ]
    ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "t-SNE of real and synthetic features", fontsize=9)
    return png(fig)


def _curve(runs: list[dict], getter: Callable[[dict], list[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = np.array([getter(r) for r in runs], dtype=float)
    return values.mean(0), values.min(0), values.max(0)


def severity_plot(reports: dict[str, list[dict]], title: str = "") -> bytes:
    """PNG of test AUC against MedMNIST-C severity (0 = clean; 1..5 averaged over the set's corruptions), one line
    per method: the mean over its runs, the band their range.

    ``reports``: method name -> list of ``medmnistc_report`` results (one per seed).
    """
    if not reports or not all(reports.values()):
        raise SynthmedError("severity_plot needs at least one report per method; pass {method: [medmnistc_report]}")

    def curve(rep: dict) -> list[float]:
        by_severity = [[c[s]["auc"] for c in rep["corruptions"].values()] for s in range(5)]
        return [rep["clean"]["auc"], *[float(np.mean(v)) for v in by_severity]]

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2), constrained_layout=True)
    xs = list(range(6))
    for method, runs in reports.items():
        mean, low, high = _curve(runs, curve)
        (line,) = ax.plot(xs, mean, marker="o", ms=3, lw=1.2, label=method)
        if len(runs) > 1:
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15, lw=0)
    ax.set_xticks(xs, ["clean", "1", "2", "3", "4", "5"], fontsize=7)
    ax.set_xlabel("MedMNIST-C severity (mean over corruptions)", fontsize=8)
    ax.set_ylabel("test AUC", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(textwrap.fill(title or "AUC under MedMNIST-C corruptions", 60), fontsize=9)  # ~13 characters an inch
    return png(fig)


def robustness_plot(reports: dict[str, dict | list[dict]], title: str = "") -> bytes:
    """PNG of ACC vs strength per perturbation family and ACC vs eps per attack, one line per method.

    ``reports``: method name (e.g. "none", "tsynd") -> one ``robustness_report`` or a list of them (seeds: the line
    is their mean, the band their range). Each curve includes the clean ACC at the identity strength / eps 0.
    """

    from synthmed.metrics.robustness import IDENTITY, shared_attack_eps

    if not reports:
        raise SynthmedError("robustness_plot needs at least one report; pass {method: robustness_report(...)}")
    runs = {m: r if isinstance(r, list) else [r] for m, r in reports.items()}
    first = next(iter(runs.values()))[0]
    shared = shared_attack_eps([rep for method_runs in runs.values() for rep in method_runs])
    panels = [("perturbations", f) for f in first["perturbations"]] + [("attacks", a) for a in shared]
    n_cols = min(4, max(1, len(panels)))
    n_rows = max(1, math.ceil(len(panels) / n_cols))
    plt = pyplot()
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(3.0 * n_cols, 2.6 * n_rows + 0.4), squeeze=False, constrained_layout=True
    )
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    lowest = 1.0
    for ax, (kind, name) in zip(axes.flat, panels):
        for method, method_runs in runs.items():
            if kind == "attacks":
                xs: list = shared[name]

                def attacked(rep: dict, n: str = name) -> list[float]:
                    acc = {p["eps_255"]: p["acc"] for p in rep["attacks"][n]}
                    return [acc[eps] for eps in shared[n]]

                mean, low, high = _curve(method_runs, attacked)
                ax.set_xlabel("eps (x/255, pixel units)", fontsize=8)
            else:
                rows = method_runs[0][kind][name]
                points = [(IDENTITY[name], None)] + [(r["strength"], i) for i, r in enumerate(rows)]
                if name != "flip":
                    points.sort(key=lambda p: p[0])

                def getter(rep: dict, n: str = name, pts: list = points) -> list[float]:
                    return [rep["clean"]["acc"] if i is None else rep["perturbations"][n][i]["acc"] for _, i in pts]

                mean, low, high = _curve(method_runs, getter)
                labels = [p[0] for p in points]
                xs = list(range(len(labels))) if name == "flip" else labels
                if name == "flip":
                    ax.set_xticks(xs, labels, fontsize=7)
                ax.set_xlabel(
                    {
                        "rotation": "degrees",
                        "flip": "",
                        "noise": "sigma (input units)",
                        "blur": "sigma (px)",
                        "contrast": "factor",
                        "brightness": "shift (input units)",
                    }.get(name, "strength"),
                    fontsize=8,
                )
            lowest = min(lowest, float(np.nanmin(low, initial=1.0)))
            (line,) = ax.plot(xs, mean, marker="o", ms=3, lw=1.2, label=method)
            if len(method_runs) > 1:
                ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15, lw=0)
        ax.set_title(name.upper() if kind == "attacks" else name, fontsize=9)
        ax.set_ylabel("ACC", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    # one accuracy scale for every panel, so a flat curve looks flat and panels compare at a glance
    for ax in axes.flat[: len(panels)]:
        ax.set_ylim(max(0.0, lowest - 0.05) - 0.02, 1.02)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title or "accuracy under test-time perturbations and L-inf attacks", fontsize=10)
    return png(fig)


def gradcam_panel(
    models: dict[str, torch.nn.Module],
    images_uint8: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    method: str = "eigengradcam",
    layer: str | None = None,
    difference: bool = False,
    title: str = "",
) -> bytes:
    """PNG: one row per image; columns = the image, then the CAM overlay of each model (TSynD Figure 2 left), then,
    with ``difference``, each model's class-minimising perturbation (Figure 2 right, red = brighter, blue = darker).

    Maps explain each image's true class (multi-label: its first positive label); each overlay is titled with the
    model's probability of that class. ``layer``: a dotted module name (e.g. ``"layer3.1"``), default layer4[-1].
    """
    import torch

    from synthmed.metrics.explain import cam_maps, class_targets, model_device, perturbation_difference
    from synthmed.nets.classifiers import class_probabilities
    from synthmed.tensors import to_tensor

    if not models:
        raise SynthmedError("gradcam_panel needs at least one model; pass {name: model}")
    if images_uint8.dtype != np.uint8 or images_uint8.ndim not in (3, 4) or not len(images_uint8):
        raise SynthmedError("gradcam_panel needs uint8 images (N, H, W) or (N, H, W, 3); convert them first")
    if len(images_uint8) != len(labels):
        raise SynthmedError(f"{len(images_uint8)} images but {len(labels)} labels; pass one label per image")
    labels = np.asarray(labels)
    multi_label = labels.ndim == 2
    targets = class_targets(labels)
    x = to_tensor(images_uint8)
    columns: list[tuple[str, str, np.ndarray, np.ndarray | None]] = []  # (header, kind, per-image arrays, probs)
    for name, model in models.items():
        target_layer = model.get_submodule(layer) if layer else None
        maps = cam_maps(model, x, targets, method, target_layer)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            probs = (
                class_probabilities(
                    model(x.to(model_device(model))).float(),
                    "multi-label, binary-class" if multi_label else "multi-class",
                )
                .cpu()
                .numpy()
            )
        model.train(was_training)
        columns.append((name, "map", maps, probs[np.arange(len(targets)), targets]))
    if difference:
        for name, model in models.items():
            diffs = np.stack(
                [
                    perturbation_difference(model, image, int(t), multi_label=multi_label)
                    for image, t in zip(images_uint8, targets)
                ]
            )
            columns.append((f"{name}\nchange", "diff", diffs, None))

    name = "EigenGradCAM" if method == "eigengradcam" else "GradCAM"
    return panel_from_maps(images_uint8, targets, class_names, columns, title or f"{name} maps of the true class")


def panel_from_maps(
    images_uint8: np.ndarray,
    targets: np.ndarray,
    class_names: list[str],
    columns: list[tuple[str, str, np.ndarray, np.ndarray | None]],
    title: str,
) -> bytes:
    """PNG of precomputed columns ``(header, "map" | "diff", per-image arrays, per-image probability or None)``
    beside the images: lets a report put maps saved by different runs side by side."""

    plt = pyplot()
    n_rows, n_cols = len(images_uint8), 1 + len(columns)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.5 * n_cols + 0.6, 1.5 * n_rows + 0.5), squeeze=False)
    grey = images_uint8.ndim == 3
    for r in range(n_rows):
        image = images_uint8[r]
        name = class_names[targets[r]] if targets[r] < len(class_names) else ""
        axes[r, 0].imshow(image, cmap="gray" if grey else None, vmin=0, vmax=255, interpolation="nearest")
        axes[r, 0].set_ylabel(f"{targets[r]} {name[:18]}".strip(), fontsize=7)
        for c, (header, kind, arrays, probs) in enumerate(columns, start=1):
            ax = axes[r, c]
            if kind == "map" and probs is not None:
                ax.imshow(image, cmap="gray" if grey else None, vmin=0, vmax=255, interpolation="nearest")
                ax.imshow(arrays[r], cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
                ax.set_xlabel(f"p={probs[r]:.2f}", fontsize=7, labelpad=1)
            else:
                diff = arrays[r] if arrays[r].ndim == 2 else arrays[r].mean(-1)
                bound = max(float(np.abs(diff).max()), 1e-8)
                ax.imshow(diff, cmap="bwr", vmin=-bound, vmax=bound, interpolation="nearest")
            if r == 0:
                ax.set_title(header, fontsize=8)
        if r == 0:
            axes[r, 0].set_title("image", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(textwrap.fill(title, width=int(13 * (1.5 * n_cols + 0.6))), fontsize=9)  # ~13 characters per inch
    fig.tight_layout()
    return png(fig)


def method_colours(methods: list[str]) -> dict[str, tuple]:
    """One colour per method: tab10 for up to 10 methods, tab20 (cycled) beyond, so a grid with a ratio sweep
    or many levers still gets a colour for every row."""
    palette = pyplot().get_cmap("tab10" if len(methods) <= 10 else "tab20").colors
    return {method: palette[i % len(palette)] for i, method in enumerate(methods)}


def group_plot(records: list[dict], title: str) -> bytes:
    """Per-seed test AUC and ACC by method (dots on the mean bar) and the validation AUC over epochs (one
    line per run, a ring on the selected epoch), as PNG bytes."""
    plt = pyplot()
    records = [{**r, "method": method_label(r["config"])} for r in records]
    methods = list(dict.fromkeys(r["method"] for r in sorted(records, key=lambda r: r["method"] != "none")))
    colours = method_colours(methods)
    # Row labels stand upright, wrapped, and the figure grows by their length: a long one (a TSynD row with its
    # levers) rotated unwrapped took the whole figure, and the layout collapsed the axes to nothing.
    ticks = [textwrap.fill(method, 28) for method in methods]
    tick_height = 0.05 * max(len(line) for tick in ticks for line in tick.splitlines())
    fig, axes = plt.subplots(
        1,
        3,
        figsize=(max(9.0, 5 + 1.6 * len(methods)), 2.6 + tick_height),
        constrained_layout=True,
        gridspec_kw={"width_ratios": [1, 1, 1.6]},
    )
    for ax, metric in zip(axes[:2], ("test_auc", "test_acc")):
        for i, method in enumerate(methods):
            values = [r[metric] for r in records if r["method"] == method]
            ax.bar(i, np.mean(values), color=colours[method], alpha=0.35, width=0.6)
            ax.scatter(
                np.full(len(values), i) + np.linspace(-0.12, 0.12, len(values)),
                values,
                color=colours[method],
                s=14,
                zorder=3,
            )
        ax.set_xticks(range(len(methods)), ticks, rotation=90, fontsize=7)
        ax.set_ylim(max(0.0, min(r[metric] for r in records) - 0.05), 1.0)
        ax.set_title(metric.replace("_", " "))
        ax.grid(axis="y", alpha=0.3)
    curves = axes[2]
    for r in records:
        history = r.get("history") or []
        if history:
            epochs = [h["epoch"] for h in history]
            curves.plot(epochs, [h["val_auc"] for h in history], color=colours[r["method"]], lw=0.8, alpha=0.7)
            best = history[r["best_epoch"] - 1]
            curves.scatter([best["epoch"]], [best["val_auc"]], facecolors="none", edgecolors=colours[r["method"]])
    for method in methods:
        curves.plot([], [], color=colours[method], label=method)
    curves.set_title("validation AUC per epoch (ring: selected)")
    curves.set_xlabel("epoch")
    curves.legend(fontsize=7)
    curves.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return png(fig, dpi=110)


def curve_plot(curve: dict[int, dict[int, float]], marks: dict[str, tuple[float, float]], title: str) -> bytes:
    """The real-image curve: test AUC of ``none`` against real images per class (log scale), the mean over seeds
    with its range, and each method's mean test AUC marked where it meets the curve (``marks``: label -> (mean
    AUC, equivalent real images per class; +-inf off the curve))."""
    plt = pyplot()
    sizes = sorted(set.intersection(*(set(points) for points in curve.values())))
    values = np.array([[curve[s][n] for n in sizes] for s in sorted(curve)])
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    ax.plot(sizes, values.mean(0), marker="o", color="0.2", label=f"none, real images only ({len(curve)} seeds)")
    if len(values) > 1:
        ax.fill_between(sizes, values.min(0), values.max(0), color="0.6", alpha=0.25, lw=0)
    colours = method_colours(list(marks))
    for label, (auc, n) in marks.items():
        colour = colours[label]
        ax.axhline(auc, color=colour, lw=0.8, ls="--", alpha=0.7, label=f"{label}: {auc:.3f}")
        if math.isfinite(n):
            ax.scatter([n], [auc], color=colour, zorder=3, s=30)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.xaxis.set_minor_formatter(ticker().NullFormatter())  # only the curve's sizes are labelled
    ax.set_xlabel("real training images per class (log scale)")
    ax.set_ylabel("test AUC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", title="method (dashed: its mean test AUC)", title_fontsize=7)
    ax.set_title(title, fontsize=9)
    return png(fig)


def ratio_plot(series: dict[str, list[tuple[float, float, float]]], none: float | None, title: str) -> bytes:
    """Test AUC against the synthetic:real ratio, one line per method (``series``: method -> [(ratio, mean,
    std)]), with ``none``'s mean as a horizontal line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.8), constrained_layout=True)
    for method, points in series.items():
        points = sorted(points)
        xs, means, stds = (np.array(v) for v in zip(*points))
        (line,) = ax.plot(xs, means, marker="o", label=method)
        ax.fill_between(
            xs, means - np.nan_to_num(stds), means + np.nan_to_num(stds), color=line.get_color(), alpha=0.15, lw=0
        )
    if none is not None:
        ax.axhline(none, color="0.3", ls="--", lw=1, label="none")
    ax.set_xscale("log")
    ratios = sorted({x for points in series.values() for x, _, _ in points})
    ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
    ax.xaxis.set_minor_formatter(ticker().NullFormatter())
    ax.set_xlabel("synthetic : real images (log scale)")
    ax.set_ylabel("test AUC (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return png(fig)
