"""Classifiers for small images: torchvision's ResNet-18 and DenseNet-121 with a 28-px stem.

At 28 px the ImageNet stem (7x7 stride-2 convolution plus max-pool) would shrink the image to 7x7
before the first block, so, as MedMNIST's 28-px model, the stem becomes a 3x3 stride-1 convolution and
the max-pool is dropped. For inputs of 64 px and more the standard stem is kept.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models

from synthmed.data.dataset import MULTI_LABEL
from synthmed.data.flips import flip
from synthmed.errors import SynthmedError

CLASSIFIERS = ("resnet18", "densenet121")


def check_classifier(name: str) -> str:
    if name not in CLASSIFIERS:
        raise SynthmedError(f"unknown classifier {name!r}; choose one of {', '.join(CLASSIFIERS)}")
    return name


def build_classifier(
    name: str, in_channels: int, n_outputs: int, image_size: int = 28, dropout: float = 0.0
) -> nn.Module:
    """A freshly initialised classifier; ``dropout`` > 0 inserts dropout before the head (for MC dropout)."""
    check_classifier(name)
    small = image_size < 64
    if name == "resnet18":
        model = models.resnet18(weights=None, num_classes=n_outputs)
        if small:
            model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            model.maxpool = nn.Identity()
        elif in_channels != 3:
            model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if dropout:
            model.fc = nn.Sequential(nn.Dropout(dropout), model.fc)
    else:
        model = models.densenet121(weights=None, num_classes=n_outputs)
        if small:
            model.features.conv0 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            model.features.pool0 = nn.Identity()
        elif in_channels != 3:
            model.features.conv0 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if dropout:
            model.classifier = nn.Sequential(nn.Dropout(dropout), model.classifier)
    return model


def class_probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Sigmoid per label for multi-label tasks, softmax over classes otherwise."""
    return torch.sigmoid(logits) if task == MULTI_LABEL else torch.softmax(logits, 1)


@torch.no_grad()
def predict(
    model: nn.Module, x: torch.Tensor, task: str, precision: str, batch: int = 512, flips: tuple[str, ...] = ()
) -> tuple:
    """Probabilities and logits (both float32, on the CPU) for a whole tensor, in batches, in eval mode.

    With ``flips`` (test-time augmentation), the probabilities are the mean over the image and its flipped
    copies, and the logits those of the mean (log-probabilities, or the logit of each label's mean probability),
    so a loss computed from them is the loss of the averaged prediction."""
    model.eval()
    device = next(model.parameters()).device

    def forward(xs: torch.Tensor) -> torch.Tensor:
        outs = []
        for i in range(0, len(xs), batch):
            xb = xs[i : i + batch].to(device).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                outs.append(model(xb).float())
        return torch.cat(outs)

    logits = forward(x)
    if not flips:
        return class_probabilities(logits, task).cpu(), logits.cpu()
    probs = class_probabilities(logits, task)
    for name in flips:
        probs = probs + class_probabilities(forward(flip(x, name)), task)
    probs = probs / (1 + len(flips))
    eps = torch.finfo(probs.dtype).tiny
    mean_logits = torch.logit(probs, eps=1e-7) if task == MULTI_LABEL else torch.log(probs.clamp_min(eps))
    return probs.cpu(), mean_logits.cpu()
