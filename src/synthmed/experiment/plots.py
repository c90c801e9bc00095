"""PNG figures of a synthetic set: per-class image grids (seed 000's Appendix A), generator loss curves, and the
synthetic images closest to the training set beside their nearest training image.

Each function returns PNG bytes (write them with ``synthmed.experiment.files.atomic_write_bytes``). Image
figures draw one mosaic array with a single ``imshow`` instead of one axes per image, so a grid of hundreds of
images renders in well under a second; pixels are shown unsmoothed at their uint8 values (no rescaling, so a
dark or washed-out generator looks dark or washed out).
"""

from __future__ import annotations

import io
import math

import numpy as np

PAD = 2  # pixels between tiles
DPI = 100


def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed), imported on use: it is slow to import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def _mosaic(rows: list[np.ndarray], n_cols: int, shape: tuple[int, ...]) -> np.ndarray:
    """Rows of uint8 images (each (k <= n_cols, H, W[, 3])) -> one canvas with white gaps; short rows stay blank."""
    h, w = shape[:2]
    canvas = np.full((len(rows) * (h + PAD) - PAD, n_cols * (w + PAD) - PAD, *shape[2:]), 255, dtype=np.uint8)
    for r, images in enumerate(rows):
        for c, image in enumerate(images[:n_cols]):
            canvas[r * (h + PAD):r * (h + PAD) + h, c * (w + PAD):c * (w + PAD) + w] = image
    return canvas


def _show(canvas: np.ndarray, tile: int, row_labels: list[str], col_labels: list[str] | None, title: str,
          rows: int, cols: int) -> bytes:
    """Draw a mosaic with one label per row (left) and optionally per column (below)."""
    plt = _pyplot()
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
    ax.set_xticks([c * step + tile / 2 for c in range(cols)] if col_labels else [],
                  col_labels if col_labels else [], fontsize=7)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=9)
    fig.subplots_adjust(left=label_w / fig_w, right=1 - 0.1 / fig_w, top=1 - title_h / fig_h,
                        bottom=(0.35 if col_labels else 0.1) / fig_h)
    return _png(fig)


def image_grid(real_images: np.ndarray, real_labels: np.ndarray, synth_images: np.ndarray,
               synth_labels: np.ndarray, class_names: list[str], n_per_row: int = 10, synth_rows: int = 2,
               title: str = "", seed: int = 0) -> bytes:
    """Per class, one row of real images above ``synth_rows`` rows of synthetic ones (seed 000, Appendix A).

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
            rows.append(synth[r * n_per_row:(r + 1) * n_per_row])
            labels.append("synthetic")
    shape = real_images.shape[1:]
    return _show(_mosaic(rows, n_per_row, shape), shape[0], labels, None, title or "real (top row) and synthetic "
                 "images per class", len(rows), n_per_row)


def closest_pairs(synth: np.ndarray, train: np.ndarray, pairs: list[dict], title: str = "") -> bytes:
    """Each synthetic image (top) above its nearest training image (bottom), labelled with their distance ratio.

    ``pairs``: ``memorisation(...)["closest"]`` (dicts with ``synthetic``, ``train`` and ``ratio``)."""
    if not pairs:
        raise ValueError("closest_pairs needs at least one pair")
    top = synth[[p["synthetic"] for p in pairs]]
    bottom = train[[p["train"] for p in pairs]]
    shape = synth.shape[1:]
    return _show(_mosaic([top, bottom], len(pairs), shape), shape[0], ["synthetic", "nearest training"],
                 [f"{p['ratio']:.2f}" for p in pairs], title or "synthetic images closest to the training set\nratio = "
                 "distance / median nearest-neighbour distance in the training set", 2, len(pairs))


def loss_curves(history: list[dict], title: str) -> bytes:
    """One panel per loss in a generator's per-epoch history; non-finite epochs are marked in red."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    keys = [k for k in (history[0] if history else {}) if k != "epoch"]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(3.2 * max(1, len(keys)), 2.8), squeeze=False,
                             constrained_layout=True)
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
    return _png(fig)
