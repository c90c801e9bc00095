"""The one conversion between the uint8 arrays data travels in and the float tensors networks see.

Images are uint8 (N, H, W) for grey and (N, H, W, 3) for colour everywhere outside a network; inside, float
(N, C, H, W) in [-1, 1], as MedMNIST's ``Normalize(0.5, 0.5)``. Both directions live here, below every user.
"""

from __future__ import annotations

import numpy as np
import torch

from synthmed.errors import SynthmedError


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W[, 3]) -> float (N, C, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [-1, 1] -> uint8 (N, H, W) or (N, H, W, 3): the inverse of ``to_tensor``."""
    if not bool(torch.isfinite(x).all()):
        raise SynthmedError("the generator produced NaN or infinite pixels; retrain it with a lower learning rate")
    u = x.detach().float().cpu().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
    u = u[:, 0] if u.shape[1] == 1 else u.permute(0, 2, 3, 1)
    return np.ascontiguousarray(u.numpy())
