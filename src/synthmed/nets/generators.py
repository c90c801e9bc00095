"""Building blocks for the generative augmenters: fully connected and DCGAN-style encoders and decoders.

Every encoder maps images (N, C, H, W) in [-1, 1], optionally with a condition vector (a one-hot label),
to (N, out_dim); every decoder maps (N, in_dim) codes, optionally with a condition, back to images in
[-1, 1] through tanh. The same two interfaces serve as discriminator / generator of a GAN, encoder /
decoder of an (variational) autoencoder, so each method picks an architecture without caring which.

Convolutional nets follow DCGAN (Radford et al.): 4x4 stride-2 convolutions with LeakyReLU(0.2) on the
encoding side, 4x4 stride-2 transposed convolutions with BatchNorm and ReLU on the decoding side. The
image is halved while its side is even and above 4 (28 -> 14 -> 7, 64 -> 32 -> 16 -> 8 -> 4), and the
decoder retraces the same sizes, so any such square size works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from synthmed.errors import SynthmedError

#: Activations a convolutional net can be built with (Sharma et al. 2022's Table 5 tunes ReLU, ELU and LeakyReLU).
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": nn.ELU,
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise SynthmedError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    return nn.functional.one_hot(labels, n_classes).float()


def _cat(x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    return x if cond is None else torch.cat([x, cond], 1)


def conv_plan(size: int) -> tuple[int, int]:
    """(number of stride-2 stages, side of the smallest feature map) for a square image of side ``size``."""
    stages, side = 0, size
    while side % 2 == 0 and side > 4:
        side //= 2
        stages += 1
    if stages == 0:
        raise SynthmedError(
            f"convolutional generators need an even image side of at least 8, got {size}; "
            "use the fully connected method instead"
        )
    return stages, side


def _widths(width: int, stages: int) -> list[int]:
    """Channels after each stride-2 stage: doubling from ``width``, capped at 8x (DCGAN's 64..512)."""
    return [width * min(2**i, 8) for i in range(stages)]


class FCEncoder(nn.Module):
    """Flattened image (+ condition) -> hidden FC layers with LeakyReLU(0.2) -> ``out_dim``."""

    def __init__(
        self, channels: int, size: int, out_dim: int, hidden: Sequence[int], cond_dim: int = 0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = channels * size * size + cond_dim
        for h in hidden:
            layers += [nn.Linear(dim, h), nn.LeakyReLU(0.2)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            dim = h
        layers.append(nn.Linear(dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(_cat(x.flatten(1), cond))


class FCDecoder(nn.Module):
    """Code (+ condition) -> hidden FC layers with ReLU (optionally BatchNorm) -> image through tanh."""

    def __init__(
        self, in_dim: int, channels: int, size: int, hidden: Sequence[int], cond_dim: int = 0, batchnorm: bool = False
    ) -> None:
        super().__init__()
        self.shape = (channels, size, size)
        layers: list[nn.Module] = []
        dim = in_dim + cond_dim
        for h in hidden:
            layers += [nn.Linear(dim, h, bias=not batchnorm)]
            if batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            dim = h
        layers.append(nn.Linear(dim, channels * size * size))
        self.net = nn.Sequential(*layers)

    def logits(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Pre-tanh output (for losses that want it, e.g. Bernoulli likelihood: tanh(a) = 2 sigmoid(2a) - 1)."""
        return self.net(_cat(z, cond)).view(-1, *self.shape)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tanh(self.logits(z, cond))


class ConvEncoder(nn.Module):
    """DCGAN discriminator body: stride-2 convolutions with LeakyReLU(0.2) (or ``activation``), then one
    linear layer.

    No BatchNorm: a critic's output must not depend on the rest of its batch (gradient-penalty losses
    assume it), and the encoders of the autoencoders do not need it.

    The condition enters as constant extra input channels (one map per label), so every convolution can
    relate the image to its label, as in the conditional DCGANs used for MNIST.
    """

    def __init__(
        self, channels: int, size: int, out_dim: int, width: int = 64, cond_dim: int = 0, activation: str = "leaky_relu"
    ) -> None:
        super().__init__()
        stages, side = conv_plan(size)
        layers: list[nn.Module] = []
        prev = channels + cond_dim
        for w in _widths(width, stages):
            layers += [nn.Conv2d(prev, w, 4, 2, 1), make_activation(activation)]
            prev = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev * side * side, out_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            x = torch.cat([x, cond[:, :, None, None].expand(-1, -1, *x.shape[-2:])], 1)
        return self.head(self.body(x).flatten(1))


class ConvDecoder(nn.Module):
    """DCGAN generator: linear projection to the smallest map, then stride-2 transposed convolutions
    with BatchNorm and ReLU (or ``activation``), and tanh on the last one."""

    def __init__(
        self, in_dim: int, channels: int, size: int, width: int = 64, cond_dim: int = 0, activation: str = "relu"
    ) -> None:
        super().__init__()
        stages, side = conv_plan(size)
        widths = _widths(width, stages)[::-1]
        self.start = (widths[0], side, side)
        self.project = nn.Linear(in_dim + cond_dim, widths[0] * side * side, bias=False)
        layers: list[nn.Module] = [nn.BatchNorm2d(widths[0]), make_activation(activation)]
        for prev, w in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(prev, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), make_activation(activation)]
        layers.append(nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1))
        self.body = nn.Sequential(*layers)

    def logits(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(self.project(_cat(z, cond)).view(-1, *self.start))

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tanh(self.logits(z, cond))


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: N(0, 0.02) weights for (transposed) convolutions, N(1, 0.02) BatchNorm scales."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def spectral_normalize(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al.) on every linear and (transposed) convolution of ``module``.

    Apply it after any initialisation such as ``dcgan_init``: the parametrisation estimates the largest
    singular value from the weights it finds, and re-initialising the weights afterwards would not reach them.
    """
    layers = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
    for m in layers:
        spectral_norm(m)
    return module


def build_encoder(
    arch: str,
    channels: int,
    size: int,
    out_dim: int,
    cond_dim: int = 0,
    *,
    hidden: Sequence[int] = (),
    width: int = 64,
    dropout: float = 0.0,
) -> nn.Module:
    """``arch`` "fc" (uses ``hidden``) or "conv" (uses ``width``)."""
    if arch == "fc":
        return FCEncoder(channels, size, out_dim, hidden, cond_dim, dropout)
    return ConvEncoder(channels, size, out_dim, width, cond_dim)


def build_decoder(
    arch: str,
    in_dim: int,
    channels: int,
    size: int,
    cond_dim: int = 0,
    *,
    hidden: Sequence[int] = (),
    width: int = 64,
    batchnorm: bool = False,
) -> nn.Module:
    """``arch`` "fc" (uses ``hidden``, optional BatchNorm) or "conv" (uses ``width``, always BatchNorm)."""
    if arch == "fc":
        return FCDecoder(in_dim, channels, size, hidden, cond_dim, batchnorm)
    return ConvDecoder(in_dim, channels, size, width, cond_dim)
