"""FID / KID of a generator's samples over its training epochs, in the in-domain feature space, and the choice
of the checkpoint with the lowest validation FID (``--track-fid-every``, ``--select-generator fid``)."""

from __future__ import annotations

import copy

import numpy as np

from synthmed.audit.features import FeatureExtractor
from synthmed.augment.generative import TorchGenerator


class FidTracker:
    """A ``TorchGenerator.fit`` monitor: every ``every`` epochs (and at the last), FID and KID of ``per_class``
    samples per class in the in-domain feature space, against the real training subset (Sharma et al. 2022,
    Table 4) and against the real validation split. With ``select``, it keeps the weights of the checkpoint with
    the lowest validation FID and restores them when training ends (never the test split)."""

    def __init__(
        self,
        extractor: FeatureExtractor,
        real_images: np.ndarray,
        real_labels: np.ndarray,
        every: int,
        per_class: int = 100,
        seed: int = 0,
        val_images: np.ndarray | None = None,
        select: bool = False,
    ) -> None:
        self.extractor, self.every, self.seed, self.select = extractor, every, seed, select
        self.real = extractor.features(real_images)
        self.val = extractor.features(val_images) if val_images is not None and len(val_images) > 1 else None
        self.counts = {int(c): per_class for c in np.unique(real_labels)}
        self.best: tuple[float, int, dict] | None = None  # (validation FID, epoch, weights)

    def __call__(self, model: TorchGenerator, epoch: int, last: bool = False) -> dict | None:
        if epoch % self.every and not last:
            return None
        from synthmed.metrics.distribution import distribution_metrics, fid

        images, _ = model.sample(self.counts, seed=self.seed)
        synth = self.extractor.features(images)
        m = distribution_metrics(self.real, synth, kid_subsets=20, seed=self.seed)
        row = {"fid": m["fid"], "kid": m["kid_mean"], "kid_std": m["kid_std"]}
        if self.val is not None:
            row["val_fid"] = fid(self.val, synth)
            if self.select and (self.best is None or row["val_fid"] < self.best[0]):
                self.best = (row["val_fid"], epoch, copy.deepcopy(model.nets_.state_dict()))
        return row

    def finish(self, model: TorchGenerator) -> None:
        """Restore the selected checkpoint's weights and mark it in the model's FID history."""
        if not self.select or self.best is None:
            return
        _, epoch, state = self.best
        model.nets_.load_state_dict(state)
        for row in model.monitor_history_:
            row["selected"] = row["epoch"] == epoch
