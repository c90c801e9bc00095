"""Distribution-level fidelity over pre-extracted features: FID, KID, precision / recall, density / coverage,
per class, and a t-SNE embedding. Plain functions over (N, D) arrays, as MONAI's metrics; the networks that embed
images (in-domain or Inception) are in ``synthmed.audit.features``, because the in-domain one is trained.

Every number depends on the network that embedded the images, so every result names it (``"features"``); compare
methods only under the same string. In-domain FIDs are **not comparable with published FIDs**, which use
ImageNet's Inception-v3 and give 130 to 1000+ on medical images (Sharma et al. 2022).

**Metrics.** FID is the Fréchet distance between Gaussians fitted to the two feature sets; the matrix square root
is SciPy's ``scipy.linalg.sqrtm`` in float64, following pytorch-fid's ``calculate_frechet_distance`` (with its
small diagonal offset when the product is singular); for sets small beside the feature width, the trace of that
root is computed exactly and faster from the features themselves (see ``fid``). FID is biased upward at small n,
and with fewer images than feature dimensions its covariances are singular, so per-class FIDs of small classes are
only comparable at equal n. KID (Bińkowski et al. 2018) is the unbiased MMD² with the cubic polynomial kernel
``(x.y / d + 1)^3``, averaged over random subsets, with torch-fidelity's estimator and subset draws (seeded, so it
matches ``torch_fidelity.metric_kid``); its subset size adapts to small sets: ``min(1000, n_real, n_synth)``
(torch-fidelity's fixed 1000 fails below 1000 images). When the subset is both whole sets, every subset is the
same, so one is used and the std is 0. Precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem
et al. 2020) use k-nearest-neighbour balls (closed balls, ``<=``, as Kynkäänniemi's and torch-fidelity's code), k =
5 lowered to ``min(n) - 1`` for small sets; distances are float64 ``torch.cdist`` over chunks of rows. t-SNE is
scikit-learn's, after a PCA to 50 dimensions, with the perplexity lowered for small sets."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from synthmed.errors import SynthmedError

K_NEIGHBOURS = 5
KID_MAX_SUBSET = 1000
KID_SUBSETS = 100
CHUNK = 1024
TSNE_PERPLEXITY = 30.0
TSNE_PCA_DIMS = 50
COMPARABILITY_NOTE = (
    "FID / KID values are only comparable between results with the same 'features' string; "
    "in-domain (domain:...) values are not comparable with published ImageNet-Inception FIDs"
)


# ------------------------------------------------------------------------------------------------------ metrics


def _features(values: np.ndarray, what: str, minimum: int = 1) -> np.ndarray:
    feats = np.asarray(values, dtype=np.float64)
    if feats.ndim != 2:
        raise SynthmedError(f"{what} features must be a 2-D array (N, D), got shape {feats.shape}")
    if len(feats) < minimum:
        raise SynthmedError(
            f"{what} has {len(feats)} images and this measure needs at least {minimum} per set; give more images"
        )
    if not np.isfinite(feats).all():
        raise SynthmedError(f"{what} features contain NaN or infinite values; check the images and the extractor")
    return feats


def _pair(real: np.ndarray, synth: np.ndarray, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = _features(real, "the real set", minimum), _features(synth, "the synthetic set", minimum)
    if x.shape[1] != y.shape[1]:
        raise SynthmedError(
            f"real and synthetic features differ in width ({x.shape[1]} vs {y.shape[1]}); "
            "embed both sets with the same extractor"
        )
    return x, y


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), as pytorch-fid computes it (SciPy's sqrtm,
    a diagonal offset ``eps`` if the product is singular, the rounding-level imaginary part dropped); clipped at
    0, since a negative value is rounding."""
    import scipy.linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise SynthmedError(
            f"Gaussian statistics do not match: means {mu1.shape} and {mu2.shape}, covariances "
            f"{sigma1.shape} and {sigma2.shape}; give (D,) means and (D, D) covariances"
        )
    with warnings.catch_warnings():
        # With fewer images than dimensions the product is always singular and SciPy warns; checked against the
        # exact value (nuclear norm of the centred cross-product) on 512-d features of 20 to 150 images, the
        # result is within 1e-4 relative, so the warning would only be noise in every small-set report.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(mu1)) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(np.real(covmean))
    return max(0.0, float(value))


def fid(real: np.ndarray, synth: np.ndarray) -> float:
    """FID between two feature sets (N, D); each needs at least 2 rows for a covariance.

    For sets small beside the width (n_real * n_synth <= D², our usual case: a few hundred images, 512-d), the
    trace of the covariances' matrix square root is computed exactly from the centred features, as the nuclear
    norm of ``X Y^T / sqrt((n_x - 1)(n_y - 1))``: an SVD of an n_x x n_y matrix instead of SciPy's ``sqrtm`` of a
    singular D x D product (7 ms instead of 370 ms for 150 x 100 images at 512-d; FID is tracked every few
    generator epochs). Larger sets take ``frechet_distance``."""
    x, y = _pair(real, synth, 2)
    x, y = x.astype(np.float64), y.astype(np.float64)
    if len(x) * len(y) > x.shape[1] ** 2:
        return frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    mu_x, mu_y = x.mean(0), y.mean(0)
    xc, yc = x - mu_x, y - mu_y
    trace_x, trace_y = (xc**2).sum() / (len(x) - 1), (yc**2).sum() / (len(y) - 1)
    cross = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt((len(x) - 1) * (len(y) - 1))
    diff = mu_x - mu_y
    return max(0.0, float(diff @ diff + trace_x + trace_y - 2.0 * cross))


def kid(
    real: np.ndarray,
    synth: np.ndarray,
    subset_size: int | None = None,
    subsets: int = KID_SUBSETS,
    seed: int = 0,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
) -> dict:
    """KID: mean and std over ``subsets`` random subsets of the unbiased MMD² with the polynomial kernel
    ``(gamma x.y + coef0)^degree`` (gamma = 1/D), as torch-fidelity with ``rng_seed=seed``. The subset size
    defaults to ``min(1000, n_real, n_synth)``; when that is both whole sets, one subset is used (std 0)."""
    x, y = _pair(real, synth, 2)
    n1, n2 = len(x), len(y)
    m = min(KID_MAX_SUBSET, n1, n2) if subset_size is None else int(subset_size)
    if not 2 <= m <= min(n1, n2):
        raise SynthmedError(
            f"KID subset size {m} must be between 2 and the smaller set's size {min(n1, n2)}; "
            "leave it unset to adapt it to the sets"
        )
    if subsets < 1:
        raise SynthmedError(f"KID needs at least 1 subset, got {subsets}")
    if m == n1 == n2:
        subsets = 1  # every subset would be the same pair of whole sets
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for s in range(subsets):  # one subset at a time keeps memory at three m x m kernels
        a = x[rng.choice(n1, m, replace=False)]
        b = y[rng.choice(n2, m, replace=False)]
        k_xx = (a @ a.T * gamma + coef0) ** degree
        k_yy = (b @ b.T * gamma + coef0) ** degree
        k_xy = (a @ b.T * gamma + coef0) ** degree
        within = k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)
        mmds[s] = within / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m)
    return {"mean": float(mmds.mean()), "std": float(mmds.std()), "subset_size": m, "subsets": subsets}


def _cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b).clamp_min_(0.0)


def _kth_neighbour(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row (the (k+1)-th smallest, the row itself included)."""
    return torch.cat([_cdist(x[i : i + chunk], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), chunk)])


def prdc(real: np.ndarray, synth: np.ndarray, k: int = K_NEIGHBOURS, chunk: int = CHUNK) -> dict:
    """Precision, recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020) with k-NN balls.

    precision: share of synthetic points inside some real point's k-NN ball; recall: share of real points inside
    some synthetic point's ball; density: mean number of real balls holding a synthetic point, divided by k
    (about 1 for matching distributions, can exceed 1); coverage: share of real points whose ball holds a
    synthetic point. ``k`` is lowered to ``min(n_real, n_synth) - 1`` for small sets (reported as ``k``)."""
    x_np, y_np = _pair(real, synth, 2)
    if k < 1:
        raise SynthmedError(f"k must be at least 1, got {k}")
    k = min(k, len(x_np) - 1, len(y_np) - 1)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    r_real, r_synth = _kth_neighbour(x, k, chunk), _kth_neighbour(y, k, chunk)
    in_real_balls = torch.zeros(len(y), dtype=torch.int64)  # per synthetic point: real balls holding it
    real_covered = torch.zeros(len(x), dtype=torch.bool)
    real_recalled = torch.zeros(len(x), dtype=torch.bool)
    for i in range(0, len(x), chunk):
        d = _cdist(x[i : i + chunk], y)  # (real chunk, synthetic)
        inside = d <= r_real[i : i + chunk, None]
        in_real_balls += inside.sum(0)
        real_covered[i : i + chunk] = d.min(1).values <= r_real[i : i + chunk]
        real_recalled[i : i + chunk] = (d <= r_synth[None, :]).any(1)
    return {
        "precision": float((in_real_balls > 0).double().mean()),
        "recall": float(real_recalled.double().mean()),
        "density": float(in_real_balls.double().mean() / k),
        "coverage": float(real_covered.double().mean()),
        "k": k,
    }


def distribution_metrics(
    real: np.ndarray, synth: np.ndarray, k: int = K_NEIGHBOURS, kid_subsets: int = KID_SUBSETS, seed: int = 0
) -> dict:
    """FID, KID, precision / recall / density / coverage of two feature sets, as one flat JSON-ready dict."""
    x, y = _pair(real, synth, 2)
    kid_result = kid(x, y, subsets=kid_subsets, seed=seed)
    return {
        "n_real": len(x),
        "n_synthetic": len(y),
        "fid": fid(x, y),
        "kid_mean": kid_result["mean"],
        "kid_std": kid_result["std"],
        "kid_subset_size": kid_result["subset_size"],
        "kid_subsets": kid_result["subsets"],
        **prdc(x, y, k),
    }


def _class_masks(labels: np.ndarray, n: int, what: str) -> tuple[np.ndarray, list[int]]:
    """Labels as a boolean (N, classes) membership matrix (one-hot for single-label, as is for multi-label)."""
    labels = np.asarray(labels)
    if len(labels) != n:
        raise SynthmedError(f"{what} has {n} images but {len(labels)} labels; give one label per image")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim == 1:
        if labels.size and labels.min() < 0:
            raise SynthmedError(f"{what} labels must be class indices >= 0, got {labels.min()}")
        classes = np.unique(labels).astype(int).tolist()
        return labels[:, None] == np.arange(max(classes, default=-1) + 1)[None, :], classes
    if labels.ndim == 2:
        member = labels.astype(bool)
        return member, np.flatnonzero(member.any(0)).tolist()
    raise SynthmedError(f"{what} labels must be (N,) class indices or (N, L) 0/1, got shape {labels.shape}")


def fidelity_from_features(
    real_feats: np.ndarray,
    real_labels: np.ndarray,
    synth_feats: np.ndarray,
    synth_labels: np.ndarray,
    features: str,
    class_names: list[str] | None = None,
    k: int = K_NEIGHBOURS,
    kid_subsets: int = KID_SUBSETS,
    seed: int = 0,
) -> dict:
    """``audit.features.feature_fidelity`` on features already extracted (``features`` names the extractor)."""
    x, y = _pair(real_feats, synth_feats, 2)
    real_member, real_classes = _class_masks(real_labels, len(x), "the real set")
    synth_member, synth_classes = _class_masks(synth_labels, len(y), "the synthetic set")
    shared = sorted(set(real_classes) & set(synth_classes))
    rows = []
    for c in shared:
        xc, yc = x[real_member[:, c]], y[synth_member[:, c]]
        row = {"class": c, "name": class_names[c] if class_names and c < len(class_names) else None}
        if min(len(xc), len(yc)) < 2:
            row.update(n_real=len(xc), n_synthetic=len(yc), note="fewer than 2 images in a set: no metrics")
        else:
            row.update(distribution_metrics(xc, yc, k, kid_subsets, seed))
        rows.append(row)
    # A set that fills only some classes (e.g. minority classes up to the majority) is compared, as a whole,
    # with the real images of the classes it has: against all real images its FID would measure the absent
    # classes, not the generator.
    scope = real_member[:, shared].any(1) if shared and set(real_classes) - set(synth_classes) else slice(None)
    overall = {**distribution_metrics(x[scope], y, k, kid_subsets, seed), "real_classes": shared}
    return {
        "features": features,
        "feature_dim": int(x.shape[1]),
        "n_real": len(x),
        "n_synthetic": len(y),
        "overall": overall,
        "per_class": rows,
        "classes_only_real": sorted(set(real_classes) - set(synth_classes)),
        "classes_only_synthetic": sorted(set(synth_classes) - set(real_classes)),
        "settings": {"k": k, "kid_subsets": kid_subsets, "kid_max_subset_size": KID_MAX_SUBSET, "seed": seed},
        "note": COMPARABILITY_NOTE,
    }


# -------------------------------------------------------------------------------------------------------- t-SNE


def tsne_embedding(
    real_feats: np.ndarray, synth_feats: np.ndarray, seed: int = 0, perplexity: float | None = None
) -> np.ndarray:
    """2-D t-SNE of the real rows followed by the synthetic rows (one joint embedding, so they share axes).

    The features are first reduced to 50 dimensions by PCA (the usual t-SNE preprocessing, also much faster);
    the perplexity is 30 or ``(N - 1) / 3`` for small sets, the largest that Barnes-Hut t-SNE accepts."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x, y = _pair(real_feats, synth_feats, 1)
    joint = np.concatenate([x, y])
    if len(joint) < 5:
        raise SynthmedError(f"t-SNE needs at least 5 images in all, got {len(joint)}; give more images")
    dims = min(TSNE_PCA_DIMS, joint.shape[1], len(joint))
    if joint.shape[1] > dims:
        joint = PCA(n_components=dims, random_state=seed).fit_transform(joint)
    perplexity = perplexity if perplexity is not None else min(TSNE_PERPLEXITY, max(1.0, (len(joint) - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    return tsne.fit_transform(joint).astype(np.float64)
