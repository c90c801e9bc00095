"""Weight averages of a classifier during training: an EMA of the weights and SWA over the last epochs.

Both are torch's ``AveragedModel`` (``torch.optim.swa_utils``), so the averaging is the library's. They differ in
what happens to BatchNorm: the EMA averages the running statistics too (``use_buffers``), so the averaged
network is scored with statistics that moved with its weights; SWA averages the weights only, and its statistics
are recomputed at the end by one pass over the training images (``update_bn``), since the average of the
weights is a network no batch has been normalised for.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn


class WeightEMA:
    """An exponential moving average of the weights and BatchNorm buffers, updated after every optimizer step:
    ``avg = decay * avg + (1 - decay) * live``; at decay 0 it is the live network."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    def step(self, model: nn.Module) -> None:
        self.module.update_parameters(model)

    def network(self) -> nn.Module:
        """The averaged network (what is scored)."""
        return self.module.module


class WeightSWA:
    """Stochastic weight averaging (Izmailov et al. 2018): the equal average of the weights at the end of each of
    the last ``ceil(fraction * epochs)`` epochs; ``finish`` recomputes its BatchNorm statistics."""

    def __init__(self, model: nn.Module, fraction: float, epochs: int) -> None:
        self.first_epoch = epochs - max(1, math.ceil(fraction * epochs)) + 1
        self.module = AveragedModel(model)
        self.averaged = 0

    def epoch_end(self, model: nn.Module, epoch: int) -> None:
        if epoch >= self.first_epoch:
            self.module.update_parameters(model)
            self.averaged += 1

    def finish(self, batches: Iterator[torch.Tensor], device: torch.device) -> nn.Module:
        """The averaged network with BatchNorm statistics of ``batches`` (the training images)."""
        update_bn(batches, self.module, device=device)
        return self.module.module

    def network(self) -> nn.Module:
        return self.module.module


def batches(x: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """``x`` in channels-last batches, for ``update_bn``."""
    for i in range(0, len(x), batch_size):
        yield x[i : i + batch_size].contiguous(memory_format=torch.channels_last)
