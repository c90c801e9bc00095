"""Classical, on-the-fly augmentation, applied to whole batches of tensors (no per-image PIL)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from synthmed.augment.base import Augmenter, register
from synthmed.errors import SynthmedError


def random_flips(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image horizontally and, independently, vertically with probability 1/2."""
    n = batch.shape[0]
    horizontal = torch.rand(n, generator=generator) < 0.5
    vertical = torch.rand(n, generator=generator) < 0.5
    batch = torch.where(horizontal.view(-1, 1, 1, 1).to(batch.device), batch.flip(-1), batch)
    return torch.where(vertical.view(-1, 1, 1, 1).to(batch.device), batch.flip(-2), batch)


@register("flip")
class Flip(Augmenter):
    """Random horizontal and vertical flips: Sharma et al. 2022's classical baseline."""

    def transform_batch(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_flips(batch, generator)


#: Classic's preset (ours): rotations up to +-10 degrees and shifts up to 10 % of the side.
CLASSIC = {"degrees": 10.0, "shift": 0.1}


@register("classic", CLASSIC)
class Classic(Augmenter):
    """Flips plus a small random rotation and shift per image, in one batched affine resampling."""

    def check(self) -> None:
        for key in ("degrees", "shift"):
            value = self.params[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 180:
                raise SynthmedError(f"classic: {key}={value!r} is invalid; expected a number >= 0")

    def transform_batch(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        batch = random_flips(batch, generator)
        n = batch.shape[0]
        angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(self.params["degrees"])
        offset = (torch.rand(n, 2, generator=generator) * 2 - 1) * self.params["shift"] * 2  # grid units span 2
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack([torch.stack([cos, -sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)], 1)
        grid = F.affine_grid(theta.to(batch), list(batch.shape), align_corners=False)
        # Pad with the image minimum (-1 = black), as a scanner's background.
        return F.grid_sample(batch + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
