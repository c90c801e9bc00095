"""Networks that embed images for the fidelity metrics of ``synthmed.metrics.distribution``.

Two extractors, each naming itself in every result computed from its features (``name``):

- ``DomainFeatures`` (the default): the 512-d penultimate layer (global average pool) of a ResNet-18 with the
  28-px stem, trained with the ``medmnist`` recipe on the dataset's *real* training split. It is the reference
  classifier of ``synthmed.audit.reference`` (same training, same on-disk cache), so it sees what distinguishes
  the classes of this dataset. Its FIDs are not comparable with published (Inception) FIDs, nor with in-domain
  FIDs of another dataset, seed, epoch count or training split, because each of those is another network.
- ``InceptionFeatures``: the standard FID Inception-v3 (``pt_inception-2015-12-05``, pool3, 2048-d) through
  torch-fidelity, from a local weights file only; synthmed never downloads weights. Use it to relate to the
  literature, knowing it is a poor proxy on medical images.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from synthmed.audit.reference import REFERENCE_CLASSIFIER, REFERENCE_EPOCHS, reference_classifier
from synthmed.data.dataset import Dataset
from synthmed.data.protocol import Subset, make_subset
from synthmed.errors import SynthmedError
from synthmed.io import load_checkpoint
from synthmed.metrics.distribution import K_NEIGHBOURS, KID_SUBSETS, fidelity_from_features
from synthmed.tensors import to_tensor
from synthmed.train.device import resolve_device

#: The FID Inception weights (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``, the same file as
#: torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``): torch.hub names files by their SHA-256 prefix.
INCEPTION_NAME = "pt_inception-2015-12-05"
INCEPTION_SHA256_PREFIX = "6726825d"


def check_images(images: np.ndarray, what: str = "images") -> np.ndarray:
    """Refuse anything but uint8 (N, H, W) or (N, H, W, 3) with N >= 1, as a one-line error."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
        raise SynthmedError(
            f"{what} must be uint8 (N, H, W) or (N, H, W, 3), got {images.dtype} {images.shape}; "
            "convert them to 0-255 uint8 first"
        )
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
        raise SynthmedError(
            f"{type(model).__name__} has no linear head to take the embedding from; "
            "give a classifier built with synthmed.nets.classifiers.build_classifier"
        )
    return linears[-1]


def _in_channels(model: torch.nn.Module) -> int:
    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 1


class DomainFeatures(FeatureExtractor):
    """The input of a trained classifier's final linear layer (for ResNet-18: the 512-d global-average-pooled
    embedding), in eval mode, so a batch's features do not depend on the other images in it."""

    def __init__(
        self,
        model: torch.nn.Module,
        name: str | None = None,
        batch_size: int = 512,
        meta: dict | None = None,
        cached: bool = False,
    ) -> None:
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
    def for_dataset(
        cls,
        data: Dataset,
        cache_dir: str | Path,
        epochs: int = REFERENCE_EPOCHS,
        seed: int = 0,
        device: str = "auto",
        precision: str = "auto",
        subset: Subset | None = None,
        on_epoch: Callable[[dict], None] | None = None,
    ) -> DomainFeatures:
        """The reference ResNet-18 of ``data`` trained on its real official training split (selected on the
        official validation split), or on ``subset``'s real images; cached under ``cache_dir`` by
        ``synthmed.audit.reference.reference_classifier`` (keyed by dataset name, MD5, size, split indices,
        seed, epochs, recipe), so a second call loads the weights instead of training."""
        subset = subset if subset is not None else make_subset(data, "full", seed=seed)
        ref = reference_classifier(
            data, subset, seed, cache_dir, epochs=epochs, device=device, precision=precision, on_epoch=on_epoch
        )
        name = (
            f"domain:{data.name} {REFERENCE_CLASSIFIER} (real {subset.protocol} training split, "
            f"{len(subset.train)} images, {data.size} px, seed {seed}, {epochs} epochs, {ref.path.stem})"
        )
        return cls(ref.model, name=name, meta=ref.meta, cached=ref.cached)

    @torch.no_grad()
    def features(self, images: np.ndarray) -> np.ndarray:
        images = check_images(images)
        grey = images.ndim == 3
        if not grey and self.channels == 1:
            raise SynthmedError(
                f"{self.name} takes grey images but got RGB {images.shape}; convert them to grey "
                "(or use an extractor trained on RGB images)"
            )
        self.model.eval()
        device = next(self.model.parameters()).device
        captured: list[torch.Tensor] = []
        hook = self.head.register_forward_pre_hook(lambda _module, args: captured.append(args[0].float().cpu()))
        try:
            for i in range(0, len(images), self.batch_size):
                x = to_tensor(images[i : i + self.batch_size])
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
            raise SynthmedError(
                "Inception features need torch-fidelity, which is not installed; run "
                "`pip install torch-fidelity` (or use the in-domain DomainFeatures)"
            ) from None
        if weights_path is None or not Path(weights_path).is_file():
            problem = (
                "no Inception weights file was given"
                if weights_path is None
                else f"Inception weights file {weights_path} does not exist"
            )
            raise SynthmedError(
                f"{problem}; synthmed never downloads, so "
                f"copy {INCEPTION_NAME}-{INCEPTION_SHA256_PREFIX}.pth (pytorch-fid / torch-fidelity's "
                "FID Inception weights) to this machine and give its path"
            )
        path = Path(weights_path)
        load_checkpoint(path)  # refuses anything but tensors and plain containers
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        try:
            extractor = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path)
            )
        except (RuntimeError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise SynthmedError(
                f"{path} does not hold FID Inception-v3 weights ({first[:200]}); give the {INCEPTION_NAME} weights file"
            ) from None
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
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + self.batch_size]))
            x = x.unsqueeze(1).expand(-1, 3, -1, -1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
            out.append(self.model(x.contiguous().to(device))[0].float().cpu())
        return torch.cat(out).numpy()


def feature_fidelity(
    real_images: np.ndarray,
    real_labels: np.ndarray,
    synth_images: np.ndarray,
    synth_labels: np.ndarray,
    extractor: FeatureExtractor,
    class_names: list[str] | None = None,
    k: int = K_NEIGHBOURS,
    kid_subsets: int = KID_SUBSETS,
    seed: int = 0,
) -> tuple[dict, np.ndarray, np.ndarray]:
    """FID, KID, precision / recall / density / coverage of a synthetic set against real images, overall and per
    class (classes present in both sets), in ``extractor``'s feature space (plain JSON values), with the real and
    synthetic features it measured them on (a t-SNE figure, the memorisation check in feature space reuse them)."""
    real_feats = extractor.features(check_images(real_images, "real images"))
    synth_feats = extractor.features(check_images(synth_images, "synthetic images"))
    report = fidelity_from_features(
        real_feats, real_labels, synth_feats, synth_labels, extractor.name, class_names, k, kid_subsets, seed
    )
    return report, real_feats, synth_feats
