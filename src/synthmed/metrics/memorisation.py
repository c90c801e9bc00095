"""Is a synthetic set new, varied and trained without numerical failure? Memorisation, collapse, loss checks.

All distances are L2 distances between images flattened to pixel vectors in [0, 1] (every channel), computed
with ``torch.cdist`` over chunks of rows, so memory stays bounded and no Python loop runs over images.

**Memorisation.** Each synthetic image's distance to its nearest training image is divided by the median
nearest-neighbour distance inside the training set (each training image to its nearest *other* training image,
self-matches excluded by index). The ratio is scale free: about 1 for a new image as far from the training set
as real images are from each other, 0 for an exact copy. An image is a *near-copy* when its ratio is below
``NEAR_COPY_RATIO`` = 0.1. Calibration on BreastMNIST and PneumoniaMNIST (lowdata, seed 0): a training image
with Gaussian pixel noise of sigma = 2 grey levels (invisible) has a ratio of 0.07-0.09, sigma = 5 gives about
0.2, held-out test images have a median of 0.95-0.98, uniform noise about 3. So below 0.1 means "a training
image up to imperceptible noise".

Real data are not free of near-copies: BreastMNIST holds near-duplicate scans, and about 6 % of its test
images have a ratio below 0.1 to its training split. A generator that sampled the real distribution perfectly
would reproduce that share, so when real held-out images are given (the validation split; never the test
split) their share is measured the same way, and the set is flagged only when its near-copy share exceeds
the held-out share by more than ``NEAR_COPY_EXCESS`` = 5 percentage points (the sampling noise of the held-out
share on a 78-image validation set at a 6 % rate is about 3 points).

**Memorised share (Gu et al., TMLR 2025).** A generated image is *memorised* when its nearest training image is
closer than 1/3 of its second-nearest (``nn_ratio`` below ``MEMORISED_RATIO``): a criterion the literature shares,
measured here in pixel space and, where the run has the in-domain features, in that feature space too. Real
validation images are measured the same way, as the level a perfect sampler would show; the closest-pairs figure
shows the images with the lowest ratio. A set is flagged when either share (near-copies or memorised) exceeds its
real level by more than 5 points.

**Collapse.** Per class, the *diversity* is the median pairwise distance among the synthetic images of that
class divided by the median pairwise distance among the real training images of that class. A generator is
flagged as collapsed when any class has a diversity below ``COLLAPSE_RATIO`` = 0.1: its samples differ from
each other by a tenth of what real images of the class do, i.e. they are visually the same image. For
reference on BreastMNIST: identical samples give 0, the FC cVAE after 2 epochs 0.23-0.25 (blurry class
means), after 30 epochs 0.45-0.5, the FC cGAN after 30 epochs 0.86-0.91. The median detects collapse to one
mode (or two, since half the pairs then match); partial loss of modes needs a coverage measure instead.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from synthmed.errors import SynthmedError

NEAR_COPY_RATIO = 0.1
#: Gu et al. (TMLR 2025): a generated image is memorised when its nearest training image is closer than 1/3 of its
#: second-nearest (the ratio d1 / d2 below 1/3).
MEMORISED_RATIO = 1 / 3
NEAR_COPY_EXCESS = 0.05
COLLAPSE_RATIO = 0.1
#: Training images used as queries for the median nearest-neighbour distance (their neighbours are searched
#: in the whole training set); the median of 2,000 is within about 2 % of the full one.
MAX_QUERIES = 2000
#: Images per class for the pairwise-distance medians of ``collapse`` (1,000 give ~500,000 pairs).
MAX_PER_CLASS = 1000
CHUNK = 1024


def _flat(images: np.ndarray) -> torch.Tensor:
    """uint8 images of any layout -> float (N, pixels) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images).reshape(len(images), -1)).float().div_(255.0)


def nearest(
    query: np.ndarray, reference: np.ndarray, query_index: np.ndarray | None = None, chunk: int = CHUNK
) -> tuple[np.ndarray, np.ndarray]:
    """For each query image, the L2 distance to its nearest reference image and that image's index.

    ``query_index[i]`` (optional) is query i's own index in ``reference``, excluded as a self-match. The
    search uses cdist's fast matrix-product form; the winning pair's distance is then recomputed directly,
    so an exact copy has distance 0, not float32 rounding noise.
    """
    n_ref = len(reference)
    best_d = torch.full((len(query),), math.inf)
    best_i = torch.zeros(len(query), dtype=torch.int64)
    own = torch.from_numpy(np.asarray(query_index, dtype=np.int64)) if query_index is not None else None
    for q0 in range(0, len(query), chunk):
        q = _flat(query[q0 : q0 + chunk])
        for r0 in range(0, n_ref, 4 * chunk):
            d = torch.cdist(q, _flat(reference[r0 : r0 + 4 * chunk]))
            if own is not None:
                ref_idx = torch.arange(r0, r0 + d.shape[1])
                d[own[q0 : q0 + chunk, None] == ref_idx[None, :]] = math.inf
            value, index = d.min(1)
            better = value < best_d[q0 : q0 + chunk]
            best_d[q0 : q0 + chunk] = torch.where(better, value, best_d[q0 : q0 + chunk])
            best_i[q0 : q0 + chunk] = torch.where(better, index + r0, best_i[q0 : q0 + chunk])
    for q0 in range(0, len(query), chunk):  # exact distances of the selected pairs
        idx = best_i[q0 : q0 + chunk].numpy()
        best_d[q0 : q0 + chunk] = (_flat(query[q0 : q0 + chunk]) - _flat(reference[idx])).norm(dim=1)
    return best_d.numpy().astype(np.float64), best_i.numpy()


def nn_ratio(query: np.ndarray, reference: np.ndarray, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the distance to its nearest reference row over the distance to its second-nearest
    (Gu et al.'s memorisation ratio), and the nearest row's index. Rows are feature vectors (N, D) or images (any
    layout, compared as pixel vectors in [0, 1]). An exact copy of a reference row gives 0; a query as far from
    two rows as they are from each other gives about 1. Needs at least two reference rows."""
    q = _rows(query)
    r = _rows(reference)
    if len(r) < 2:
        raise SynthmedError(f"the nearest / second-nearest ratio needs at least 2 reference rows, got {len(r)}")
    ratios, nearest_index = np.empty(len(q)), np.empty(len(q), dtype=np.int64)
    for i in range(0, len(q), chunk):
        rows = q[i : i + chunk]
        _, index = torch.cdist(rows, r).topk(2, dim=1, largest=False)
        # the winning pairs' distances recomputed directly: cdist's matrix-product form leaves ~1e-8 for a copy
        d1, d2 = ((rows - r[index[:, k]]).norm(dim=1) for k in (0, 1))
        ratios[i : i + chunk] = torch.where(d2 > 0, d1 / d2.clamp_min(1e-12), torch.zeros_like(d1)).numpy()
        nearest_index[i : i + chunk] = index[:, 0].numpy()
    return ratios, nearest_index


def _rows(values: np.ndarray) -> torch.Tensor:
    """uint8 images -> pixel rows in [0, 1]; float arrays (features) -> float64 rows as they are."""
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return _flat(values).double()
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64).reshape(len(values), -1))


def memorised_share(
    query: np.ndarray, reference: np.ndarray, held_out: np.ndarray | None = None, threshold: float = MEMORISED_RATIO
) -> dict:
    """Share of query rows with nearest / second-nearest ratio below ``threshold`` (Gu et al.: memorised), beside
    the same share for real held-out rows (the level a perfect sampler of the real distribution would show)."""
    ratio, index = nn_ratio(query, reference)
    held = None
    if held_out is not None and len(held_out):
        held = float((nn_ratio(held_out, reference)[0] < threshold).mean())
    return {
        "threshold": threshold,
        "share": float((ratio < threshold).mean()) if len(ratio) else 0.0,
        "held_out_share": held,
        "stats": _stats(ratio),
        "ratio": ratio.tolist(),
        "nearest": index.tolist(),
    }


def _stats(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {key: None for key in ("min", "p05", "median", "mean", "max")}
    return {
        "min": float(values.min()),
        "p05": float(np.quantile(values, 0.05)),
        "median": float(np.median(values)),
        "mean": float(values.mean()),
        "max": float(values.max()),
    }


def train_nn_median(train: np.ndarray, max_queries: int = MAX_QUERIES, seed: int = 0) -> tuple[float, int]:
    """Median distance from a training image to its nearest other training image, and the number of queries.

    If more than half the training images have an exact duplicate the median is 0; the median of the
    non-zero distances is used then, so ratios stay finite.
    """
    if len(train) < 2:
        raise SynthmedError(f"memorisation needs at least 2 training images, got {len(train)}")
    rng = np.random.default_rng(seed)
    queries = (
        np.sort(rng.choice(len(train), max_queries, replace=False))
        if len(train) > max_queries
        else np.arange(len(train))
    )
    dist, _ = nearest(train[queries], train, query_index=queries)
    median = float(np.median(dist))
    if median == 0.0 and (dist > 0).any():
        median = float(np.median(dist[dist > 0]))
    return median, len(queries)


def memorisation(
    synthetic: np.ndarray,
    train: np.ndarray,
    threshold: float = NEAR_COPY_RATIO,
    held_out: np.ndarray | None = None,
    n_pairs: int = 8,
    max_queries: int = MAX_QUERIES,
    seed: int = 0,
) -> dict:
    """Per-image nearest-training-image ratio, near-copy share, summary and closest pairs (module docstring).

    ``held_out``: real images not in ``train`` (the validation split), measured the same way as a baseline.
    Everything returned is a plain Python value, ready for JSON.
    """
    median, n_queries = train_nn_median(train, max_queries, seed)
    dist, index = nearest(synthetic, train)
    ratio = dist / median if median > 0 else np.where(dist > 0, math.inf, 0.0)
    share = float((ratio < threshold).mean()) if len(ratio) else 0.0
    baseline = None
    if held_out is not None and len(held_out):
        held_dist, _ = nearest(held_out, train)
        baseline = float((held_dist / median < threshold).mean()) if median > 0 else float((held_dist == 0).mean())
    gu = memorised_share(synthetic, train, held_out)
    # the closest pairs: the lowest nearest / second-nearest ratio first (Gu et al.), ties by distance
    order = np.lexsort((ratio, np.asarray(gu["ratio"])))[:n_pairs]
    return {
        "threshold": threshold,
        "n_synthetic": len(synthetic),
        "n_train": len(train),
        "train_nn_median": median,
        "train_nn_queries": n_queries,
        "ratio_stats": _stats(ratio),
        "near_copy_share": share,
        "n_near_copies": int((ratio < threshold).sum()),
        "held_out_near_copy_share": baseline,
        "n_held_out": None if held_out is None else len(held_out),
        "flagged": share > (baseline or 0.0) + NEAR_COPY_EXCESS
        or gu["share"] > (gu["held_out_share"] or 0.0) + NEAR_COPY_EXCESS,
        "memorised": {k: v for k, v in gu.items() if k not in ("ratio", "nearest")},
        "nn_ratio": gu["ratio"],
        "closest": [
            {
                "synthetic": int(i),
                "train": int(index[i]),
                "distance": float(dist[i]),
                "ratio": float(ratio[i]),
                "nn_ratio": float(gu["ratio"][i]),
            }
            for i in order
        ],
        "ratio": ratio.tolist(),
        "nearest": index.tolist(),
    }


def collapse(
    synthetic: np.ndarray,
    synthetic_labels: np.ndarray,
    real: np.ndarray,
    real_labels: np.ndarray,
    threshold: float = COLLAPSE_RATIO,
    max_per_class: int = MAX_PER_CLASS,
    seed: int = 0,
) -> dict:
    """Per-class diversity of the synthetic images relative to the real ones; flags a collapsed generator."""
    rng = np.random.default_rng(seed)

    def median_pairwise(images: np.ndarray) -> float | None:
        if len(images) < 2:
            return None
        if len(images) > max_per_class:
            images = images[np.sort(rng.choice(len(images), max_per_class, replace=False))]
        return float(torch.pdist(_flat(images)).median())

    rows = []
    for c in np.unique(synthetic_labels).tolist():
        synth_median = median_pairwise(synthetic[synthetic_labels == c])
        real_median = median_pairwise(real[real_labels == c])
        diversity = synth_median / real_median if synth_median is not None and real_median else None
        rows.append(
            {
                "class": int(c),
                "n": int((synthetic_labels == c).sum()),
                "diversity": diversity,
                "synthetic_median": synth_median,
                "real_median": real_median,
            }
        )
    scored = [r["diversity"] for r in rows if r["diversity"] is not None]
    n_unique = (
        len(np.unique(np.ascontiguousarray(synthetic).reshape(len(synthetic), -1), axis=0)) if len(synthetic) else 0
    )
    collapsed = [r["class"] for r in rows if r["diversity"] is not None and r["diversity"] < threshold]
    return {
        "threshold": threshold,
        "per_class": rows,
        "min_diversity": min(scored) if scored else None,
        "duplicate_share": 1 - n_unique / len(synthetic) if len(synthetic) else 0.0,
        "collapsed_classes": collapsed,
        "flagged": bool(collapsed),
    }


def check_losses(history: list[dict]) -> dict:
    """Flag NaN or infinite values in a generator's per-epoch loss history, so they are never silently used."""
    bad = [
        {"epoch": row.get("epoch"), "loss": key, "value": str(value)}
        for row in history
        for key, value in row.items()
        if key != "epoch" and isinstance(value, numbers.Real) and not math.isfinite(value)
    ]
    return {"epochs": len(history), "nonfinite": bad, "flagged": bool(bad)}


def audit(
    synthetic: np.ndarray,
    synthetic_labels: np.ndarray,
    train: np.ndarray,
    train_labels: np.ndarray,
    history: list[dict],
    held_out: np.ndarray | None = None,
    reconstructions: bool = False,
    seed: int = 0,
    also_seen: np.ndarray | None = None,
) -> dict:
    """Memorisation, collapse and loss checks of one synthetic set, with the list of failed checks. ``also_seen``:
    images the generator learnt from besides ``train`` (unlabelled ones), which memorisation is measured against
    too (appended after ``train``, so a closest pair's index past ``len(train)`` is one of them)."""
    seen = train if also_seen is None or not len(also_seen) else np.concatenate([train, also_seen])
    mem = memorisation(synthetic, seen, held_out=held_out, seed=seed)
    mem["n_unlabelled_seen"] = 0 if also_seen is None else len(also_seen)
    if reconstructions:
        mem["flagged"] = False
        mem["note"] = (
            "reconstructions of training images by design (autoencoder, as Chaptoukaev 2021): closeness "
            "to the training set is expected and not a memorisation failure"
        )
    parts = {
        "memorisation": mem,
        "collapse": collapse(synthetic, synthetic_labels, train, train_labels, seed=seed),
        "losses": check_losses(history),
    }
    flags = [name for name, part in parts.items() if part["flagged"]]
    return {**parts, "reconstructions_by_design": reconstructions, "flags": flags, "ok": not flags}
