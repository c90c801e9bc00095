"""Chaptoukaev 2021's deep autoencoder (``ae``) and its convolutional variant (``conv-ae``).

An autoencoder cannot draw new images from a prior; as in the paper, its augmentation is the
reconstruction of real training images, each keeping its source's label. ``sample`` therefore draws
source images per class (each used once before any is reused) and returns their reconstructions, so
the training images are saved with the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthmed.augment.base import register
from synthmed.augment.generative import TorchGenerator
from synthmed.nets.generators import build_decoder, build_encoder
from synthmed.tensors import to_tensor

#: Chaptoukaev 2021, section 3.2: 300 epochs, Adam lr 1e-3, batch 128; the FC model has 4 hidden layers each side.
#: Widths and the latent size are not given in the paper: ours halve from 512 down to a 32-d code. ``conv-ae``
#: (ours) is the DCGAN-style convolutional encoder / decoder on the same schedule.
PRESETS: dict[str, dict[str, Any]] = {
    "ae": {"arch": "fc", "epochs": 300, "lr": 1e-3, "batch_size": 128, "latent_dim": 32, "hidden": (512, 256, 128, 64)},
    "conv-ae": {"arch": "conv", "epochs": 300, "lr": 1e-3, "batch_size": 128, "latent_dim": 32, "width": 32},
}


class Autoencoder(TorchGenerator):
    """Encoder -> latent code -> decoder, trained with pixel MSE (the paper's equation 3)."""

    reconstructs = True

    def build(self, channels: int, size: int, n_classes: int) -> dict[str, nn.Module]:
        p, z = self.params, self.params["latent_dim"]
        hidden, width = tuple(p.get("hidden", ())), p.get("width", 64)
        return {
            "encoder": build_encoder(p["arch"], channels, size, z, hidden=hidden, width=width),
            "decoder": build_decoder(p["arch"], z, channels, size, hidden=hidden[::-1], width=width),
        }

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.nets_["decoder"](self.nets_["encoder"](x))

    def train_step(self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        loss = F.mse_loss(self.reconstruct(x), x)
        return {"loss": self.optimize(self.optimizers_["all"], loss)}

    def fit(self, images: np.ndarray, labels: np.ndarray, *, seed: int = 0, monitor: Any = None) -> Autoencoder:
        super().fit(images, labels, seed=seed, monitor=monitor)
        self.source_images_ = torch.from_numpy(np.array(images, dtype=np.uint8))
        self.source_labels_ = torch.from_numpy(np.asarray(labels).astype(np.int64))
        return self

    def sample_inputs(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Source images for the requested labels: without replacement up to the class size, then whole
        extra permutations, so every image of a class is used floor(n/size) or ceil(n/size) times."""
        picks = []
        classes, counts = torch.unique_consecutive(labels, return_counts=True)
        for c, n in zip(classes.tolist(), counts.tolist()):
            pool = torch.nonzero(self.source_labels_ == c).flatten()
            rounds, rest = divmod(n, len(pool))
            orders = [torch.randperm(len(pool), generator=generator) for _ in range(rounds)]
            orders.append(torch.randperm(len(pool), generator=generator)[:rest])
            picks.append(pool[torch.cat(orders)])
        idx = torch.cat(picks) if picks else torch.empty(0, dtype=torch.int64)
        return to_tensor(self.source_images_[idx].numpy())

    def decode(self, inputs: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(inputs)

    def extra_state(self) -> dict[str, Any]:
        return {"images": self.source_images_, "labels": self.source_labels_}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.source_images_, self.source_labels_ = state["images"], state["labels"]


for _name, _preset in PRESETS.items():
    register(_name, _preset)(Autoencoder)
