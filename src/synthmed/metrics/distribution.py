"""Distribution-level fidelity: how close is a synthetic set to the real one as a whole? FID, KID,
precision / recall, density / coverage, per class, and a t-SNE picture, all in the space of a feature extractor.

**Which features.** Every number depends on the network that embeds the images, and every result names it
(``"features"``). Two extractors are offered:

- ``DomainFeatures`` (the default): the 512-d penultimate layer (global average pool) of a ResNet-18 with the
  28-px stem, trained with the ``medmnist`` recipe on the dataset's *real* training split. It is the reference
  classifier of ``synthmed.metrics.fidelity`` (same training, same on-disk cache), so it sees what distinguishes
  the classes of this dataset. Its FIDs are **not comparable with published FIDs**, which use ImageNet's
  Inception-v3 and give 130 to 1000+ on medical images (seed 002); nor with in-domain FIDs of another dataset,
  seed, epoch count or training split, because each of those is another network. Compare methods only under the
  same ``"features"`` string.
- ``InceptionFeatures``: the standard FID Inception-v3 (``pt_inception-2015-12-05``, pool3, 2048-d) through
  torch-fidelity, from a local weights file only; synthmed never downloads weights. Use it to relate to the
  literature, knowing it is a poor proxy on medical images.

**Metrics.** FID is the Fréchet distance between Gaussians fitted to the two feature sets; the matrix square
root is SciPy's ``scipy.linalg.sqrtm`` in float64, following pytorch-fid's ``calculate_frechet_distance``
(with its small diagonal offset when the product is singular). FID is biased upward at small n, and with fewer
images than feature dimensions its covariances are singular, so per-class FIDs of small classes are only
comparable at equal n. KID (Bińkowski et al. 2018) is the unbiased MMD² with the cubic polynomial kernel
``(x.y / d + 1)^3``, averaged over random subsets, with torch-fidelity's estimator and subset draws (seeded, so it
matches ``torch_fidelity.metric_kid``); its subset size adapts to small sets: ``min(1000, n_real, n_synth)``
(torch-fidelity's fixed 1000 fails below 1000 images). When the subset is both whole sets, every subset is the
same, so one is used and the std is 0. Precision / recall (Kynkäänniemi et al. 2019) and density / coverage
(Naeem et al. 2020) use k-nearest-neighbour balls (closed balls, ``<=``, as Kynkäänniemi's and torch-fidelity's
code), k = 5 lowered to ``min(n) - 1`` for small sets; distances are float64 ``torch.cdist`` over chunks of rows.
t-SNE is scikit-learn's, after a PCA to 50 dimensions, with the perplexity lowered for small sets.
"""

from __future__ import annotations

import abc
import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from synthmed.data.dataset import Dataset
from synthmed.data.protocol import Subset, make_subset
from synthmed.errors import SynthmedError
from synthmed.metrics.fidelity import REFERENCE_CLASSIFIER, REFERENCE_EPOCHS, reference_classifier
from synthmed.train.checkpoint import load_checkpoint
from synthmed.train.device import resolve_device
from synthmed.train.trainer import to_tensor

K_NEIGHBOURS = 5
KID_MAX_SUBSET = 1000
KID_SUBSETS = 100
CHUNK = 1024
TSNE_PERPLEXITY = 30.0
TSNE_PCA_DIMS = 50
#: The FID Inception weights (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``, the same file as
#: torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``): torch.hub names files by their SHA-256 prefix.
INCEPTION_NAME = "pt_inception-2015-12-05"
INCEPTION_SHA256_PREFIX = "6726825d"
COMPARABILITY_NOTE = ("FID / KID values are only comparable between results with the same 'features' string; "
                      "in-domain (domain:...) values are not comparable with published ImageNet-Inception FIDs")


# --------------------------------------------------------------------------------------------- feature extractors

def check_images(images: np.ndarray, what: str = "images") -> np.ndarray:
    """Refuse anything but uint8 (N, H, W) or (N, H, W, 3) with N >= 1, as a one-line error."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
        raise SynthmedError(f"{what} must be uint8 (N, H, W) or (N, H, W, 3), got {images.dtype} {images.shape}; "
                            "convert them to 0-255 uint8 first")
    if len(images) == 0:
        raise SynthmedError(f"{what} are empty; give at least one image")
    return images


class FeatureExtractor(abc.ABC):
    """Maps uint8 images to one feature vector each. ``name`` goes into every result computed from them."""

    name: str

    @abc.abstractmethod
    def features(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W) or (N, H, W, 3) -> float (N, D), computed in batches."""


def _last_linear(model: torch.nn.Module) -> torch.nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise SynthmedError(f"{type(model).__name__} has no linear head to take the embedding from; "
                            "give a classifier built with synthmed.nets.classifiers.build_classifier")
    return linears[-1]


def _in_channels(model: torch.nn.Module) -> int:
    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 1


class DomainFeatures(FeatureExtractor):
    """The input of a trained classifier's final linear layer (for ResNet-18: the 512-d global-average-pooled
    embedding), in eval mode, so a batch's features do not depend on the other images in it."""

    def __init__(self, model: torch.nn.Module, name: str | None = None, batch_size: int = 512,
                 meta: dict | None = None, cached: bool = False) -> None:
        # One memory format for every model (the trainer's), so a freshly trained and a reloaded model run the
        # same convolution kernels and give bit-identical features.
        self.model = model.to(memory_format=torch.channels_last).eval()
        self.head = _last_linear(model)
        self.dim = self.head.in_features
        self.channels = _in_channels(model)
        self.batch_size = batch_size
        self.name = name or f"domain:custom {type(model).__name__.lower()} {self.dim}-d"
        self.meta = meta or {}
        self.cached = cached

    @classmethod
    def for_dataset(cls, data: Dataset, cache_dir: str | Path, epochs: int = REFERENCE_EPOCHS, seed: int = 0,
                    device: str = "auto", precision: str = "auto", subset: Subset | None = None,
                    on_epoch: Callable[[dict], None] | None = None) -> DomainFeatures:
        """The reference ResNet-18 of ``data`` trained on its real official training split (selected on the
        official validation split), or on ``subset``'s real images; cached under ``cache_dir`` by
        ``synthmed.metrics.fidelity.reference_classifier`` (keyed by dataset name, MD5, size, split indices,
        seed, epochs, recipe), so a second call loads the weights instead of training."""
        subset = subset if subset is not None else make_subset(data, "full", seed=seed)
        ref = reference_classifier(data, subset, seed, cache_dir, epochs=epochs, device=device,
                                   precision=precision, on_epoch=on_epoch)
        name = (f"domain:{data.name} {REFERENCE_CLASSIFIER} (real {subset.protocol} training split, "
                f"{len(subset.train)} images, {data.size} px, seed {seed}, {epochs} epochs, {ref.path.stem})")
        return cls(ref.model, name=name, meta=ref.meta, cached=ref.cached)

    @torch.no_grad()
    def features(self, images: np.ndarray) -> np.ndarray:
        images = check_images(images)
        grey = images.ndim == 3
        if not grey and self.channels == 1:
            raise SynthmedError(f"{self.name} takes grey images but got RGB {images.shape}; convert them to grey "
                                "(or use an extractor trained on RGB images)")
        self.model.eval()
        device = next(self.model.parameters()).device
        captured: list[torch.Tensor] = []
        hook = self.head.register_forward_pre_hook(lambda _module, args: captured.append(args[0].float().cpu()))
        try:
            for i in range(0, len(images), self.batch_size):
                x = to_tensor(images[i:i + self.batch_size])
                if grey and self.channels == 3:  # a grey set embedded by an RGB network: same grey in each channel
                    x = x.expand(-1, 3, -1, -1)
                self.model(x.to(device).contiguous(memory_format=torch.channels_last))
        finally:
            hook.remove()
        return torch.cat(captured).reshape(len(images), -1).numpy()


class InceptionFeatures(FeatureExtractor):
    """The standard FID Inception-v3 pool3 features (2048-d) through torch-fidelity, from a local weights file.

    Grey images are repeated to 3 channels; torch-fidelity resizes uint8 (N, 3, H, W) to 299 px with its
    TensorFlow-compatible bilinear interpolation, as for published FIDs. The file is first read with
    ``weights_only=True`` (synthmed's checkpoint loader), so a file holding code is refused before
    torch-fidelity (which loads it without that guard) sees it. Nothing is ever downloaded."""

    def __init__(self, weights_path: str | Path | None, device: str = "cpu", batch_size: int = 32) -> None:
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError:
            raise SynthmedError("Inception features need torch-fidelity, which is not installed; run "
                                "`pip install torch-fidelity` (or use the in-domain DomainFeatures)") from None
        if weights_path is None or not Path(weights_path).is_file():
            problem = ("no Inception weights file was given" if weights_path is None
                       else f"Inception weights file {weights_path} does not exist")
            raise SynthmedError(f"{problem}; synthmed never downloads, so "
                                f"copy {INCEPTION_NAME}-{INCEPTION_SHA256_PREFIX}.pth (pytorch-fid / torch-fidelity's "
                                "FID Inception weights) to this machine and give its path")
        path = Path(weights_path)
        load_checkpoint(path)  # refuses anything but tensors and plain containers
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        try:
            extractor = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                    feature_extractor_weights_path=str(path))
        except (RuntimeError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise SynthmedError(f"{path} does not hold FID Inception-v3 weights ({first[:200]}); give the "
                                f"{INCEPTION_NAME} weights file") from None
        self.model = extractor.to(resolve_device(device)).eval()
        self.batch_size = batch_size
        self.sha256 = sha256
        self.path = path
        official = sha256.startswith(INCEPTION_SHA256_PREFIX)
        self.name = f"inception:{INCEPTION_NAME}" if official else f"inception:{path.name} sha256 {sha256[:12]}"

    @torch.no_grad()
    def features(self, images: np.ndarray) -> np.ndarray:
        images = check_images(images)
        device = next(self.model.parameters()).device
        out = []
        for i in range(0, len(images), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + self.batch_size]))
            x = x.unsqueeze(1).expand(-1, 3, -1, -1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
            out.append(self.model(x.contiguous().to(device))[0].float().cpu())
        return torch.cat(out).numpy()


# ------------------------------------------------------------------------------------------------------ metrics

def _features(values: np.ndarray, what: str, minimum: int = 1) -> np.ndarray:
    feats = np.asarray(values, dtype=np.float64)
    if feats.ndim != 2:
        raise SynthmedError(f"{what} features must be a 2-D array (N, D), got shape {feats.shape}")
    if len(feats) < minimum:
        raise SynthmedError(f"{what} has {len(feats)} images and this measure needs at least {minimum} per set; "
                            "give more images")
    if not np.isfinite(feats).all():
        raise SynthmedError(f"{what} features contain NaN or infinite values; check the images and the extractor")
    return feats


def _pair(real: np.ndarray, synth: np.ndarray, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = _features(real, "the real set", minimum), _features(synth, "the synthetic set", minimum)
    if x.shape[1] != y.shape[1]:
        raise SynthmedError(f"real and synthetic features differ in width ({x.shape[1]} vs {y.shape[1]}); "
                            "embed both sets with the same extractor")
    return x, y


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), as pytorch-fid computes it (SciPy's sqrtm,
    a diagonal offset ``eps`` if the product is singular, the rounding-level imaginary part dropped); clipped at
    0, since a negative value is rounding."""
    import scipy.linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise SynthmedError(f"Gaussian statistics do not match: means {mu1.shape} and {mu2.shape}, covariances "
                            f"{sigma1.shape} and {sigma2.shape}; give (D,) means and (D, D) covariances")
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
    """FID between two feature sets (N, D); each needs at least 2 rows for a covariance."""
    x, y = _pair(real, synth, 2)
    return frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))


def kid(real: np.ndarray, synth: np.ndarray, subset_size: int | None = None, subsets: int = KID_SUBSETS,
        seed: int = 0, degree: int = 3, gamma: float | None = None, coef0: float = 1.0) -> dict:
    """KID: mean and std over ``subsets`` random subsets of the unbiased MMD² with the polynomial kernel
    ``(gamma x.y + coef0)^degree`` (gamma = 1/D), as torch-fidelity with ``rng_seed=seed``. The subset size
    defaults to ``min(1000, n_real, n_synth)``; when that is both whole sets, one subset is used (std 0)."""
    x, y = _pair(real, synth, 2)
    n1, n2 = len(x), len(y)
    m = min(KID_MAX_SUBSET, n1, n2) if subset_size is None else int(subset_size)
    if not 2 <= m <= min(n1, n2):
        raise SynthmedError(f"KID subset size {m} must be between 2 and the smaller set's size {min(n1, n2)}; "
                            "leave it unset to adapt it to the sets")
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
    return torch.cat([_cdist(x[i:i + chunk], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), chunk)])


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
        d = _cdist(x[i:i + chunk], y)  # (real chunk, synthetic)
        inside = d <= r_real[i:i + chunk, None]
        in_real_balls += inside.sum(0)
        real_covered[i:i + chunk] = d.min(1).values <= r_real[i:i + chunk]
        real_recalled[i:i + chunk] = (d <= r_synth[None, :]).any(1)
    return {"precision": float((in_real_balls > 0).double().mean()), "recall": float(real_recalled.double().mean()),
            "density": float(in_real_balls.double().mean() / k), "coverage": float(real_covered.double().mean()),
            "k": k}


def distribution_metrics(real: np.ndarray, synth: np.ndarray, k: int = K_NEIGHBOURS, kid_subsets: int = KID_SUBSETS,
                         seed: int = 0) -> dict:
    """FID, KID, precision / recall / density / coverage of two feature sets, as one flat JSON-ready dict."""
    x, y = _pair(real, synth, 2)
    kid_result = kid(x, y, subsets=kid_subsets, seed=seed)
    return {"n_real": len(x), "n_synthetic": len(y), "fid": fid(x, y), "kid_mean": kid_result["mean"],
            "kid_std": kid_result["std"], "kid_subset_size": kid_result["subset_size"],
            "kid_subsets": kid_result["subsets"], **prdc(x, y, k)}


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


def fidelity_from_features(real_feats: np.ndarray, real_labels: np.ndarray, synth_feats: np.ndarray,
                           synth_labels: np.ndarray, features: str, class_names: list[str] | None = None,
                           k: int = K_NEIGHBOURS, kid_subsets: int = KID_SUBSETS, seed: int = 0) -> dict:
    """``fidelity_report`` on features already extracted (``features`` names the extractor)."""
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
    return {"features": features, "feature_dim": int(x.shape[1]), "n_real": len(x), "n_synthetic": len(y),
            "overall": overall, "per_class": rows,
            "classes_only_real": sorted(set(real_classes) - set(synth_classes)),
            "classes_only_synthetic": sorted(set(synth_classes) - set(real_classes)),
            "settings": {"k": k, "kid_subsets": kid_subsets, "kid_max_subset_size": KID_MAX_SUBSET, "seed": seed},
            "note": COMPARABILITY_NOTE}


def fidelity_report(real_images: np.ndarray, real_labels: np.ndarray, synth_images: np.ndarray,
                    synth_labels: np.ndarray, extractor: FeatureExtractor, class_names: list[str] | None = None,
                    k: int = K_NEIGHBOURS, kid_subsets: int = KID_SUBSETS, seed: int = 0) -> dict:
    """FID, KID, precision / recall / density / coverage of a synthetic set against real images, overall and per
    class (classes present in both sets), in ``extractor``'s feature space; plain JSON values only."""
    real_feats = extractor.features(check_images(real_images, "real images"))
    synth_feats = extractor.features(check_images(synth_images, "synthetic images"))
    return fidelity_from_features(real_feats, real_labels, synth_feats, synth_labels, extractor.name, class_names,
                                  k, kid_subsets, seed)


# -------------------------------------------------------------------------------------------------------- t-SNE

def tsne_embedding(real_feats: np.ndarray, synth_feats: np.ndarray, seed: int = 0,
                   perplexity: float | None = None) -> np.ndarray:
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


def tsne_plot(real_feats: np.ndarray, real_labels: np.ndarray | None, synth_feats: np.ndarray,
              synth_labels: np.ndarray | None, class_names: list[str] | None = None, seed: int = 0, title: str = "",
              embedding: np.ndarray | None = None) -> bytes:
    """PNG of a joint t-SNE: real images as hollow circles, synthetic ones as crosses, one colour per class (as
    seed 002's Figure 2, which showed synthetic clusters away from the real data). ``embedding``: a precomputed
    ``tsne_embedding`` of the same rows."""
    from synthmed.experiment.plots import _png, _pyplot

    n_real, n_synth = len(real_feats), len(synth_feats)
    points = tsne_embedding(real_feats, synth_feats, seed) if embedding is None else np.asarray(embedding)
    if points.shape != (n_real + n_synth, 2):
        raise SynthmedError(f"the embedding has shape {points.shape}, expected ({n_real + n_synth}, 2) for "
                            f"{n_real} real and {n_synth} synthetic rows; compute it with tsne_embedding")
    real_c, synth_c = _plot_classes(real_labels, n_real), _plot_classes(synth_labels, n_synth)
    plt = _pyplot()
    from matplotlib.lines import Line2D

    classes = sorted(set(real_c.tolist()) | set(synth_c.tolist()))
    cmap = plt.get_cmap("tab10" if max(classes) < 10 else "tab20")
    fig, ax = plt.subplots(figsize=(6.0, 4.8), constrained_layout=True)
    handles = []
    for c in classes:
        colour = "0.4" if c < 0 else cmap(c % cmap.N)
        real_pts, synth_pts = points[:n_real][real_c == c], points[n_real:][synth_c == c]
        ax.scatter(real_pts[:, 0], real_pts[:, 1], s=16, facecolors="none", edgecolors=[colour], linewidths=0.8,
                   alpha=0.8)
        ax.scatter(synth_pts[:, 0], synth_pts[:, 1], s=16, marker="x", c=[colour], linewidths=0.8, alpha=0.8)
        if c >= 0:
            label = f"{c} {class_names[c][:24]}" if class_names and c < len(class_names) else f"class {c}"
            handles.append(Line2D([], [], ls="", marker="s", color=colour, label=label))
    handles += [Line2D([], [], ls="", marker="o", mfc="none", color="0.3", label=f"real ({n_real})"),
                Line2D([], [], ls="", marker="x", color="0.3", label=f"synthetic ({n_synth})")]
    ax.legend(handles=handles, fontsize=7, loc="best", framealpha=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "t-SNE of real and synthetic features", fontsize=9)
    return _png(fig)
