"""DiffAugment: random, differentiable augmentation in front of a GAN discriminator.

Zhao, Liu, Lin, Zhu and Han, "Differentiable Augmentation for Data-Efficient GAN Training" (NeurIPS 2020).
The same family of transforms is applied to real and to generated images, in the discriminator step and in
the generator step, so a discriminator trained on a small set cannot simply memorise it, while the generator
still receives gradients through the transforms. The three policies follow the definitions of the paper's
official implementation:

- ``color``: brightness (add a per-image offset drawn from U(-0.5, 0.5)), saturation (scale the deviation
  from the per-pixel channel mean by U(0, 2); skipped for grey images, where it is the identity), contrast
  (scale the deviation from the image mean over C, H, W by U(0.5, 1.5)), in that order;
- ``translation``: an integer shift per image, independently along H and W, of at most round(r * H) resp.
  round(r * W) pixels (r = 0.125); pixels shifted in from outside are 0;
- ``cutout``: a (round(r * H), round(r * W)) patch (r = 0.5) set to 0, its centre uniform per image so the
  patch may be cut by the border.

``round`` is round-half-up (``int(v + 0.5)``) as in the official code, not Python's round-half-even.

Sampling and applying are separate so one draw can transform several batches alike
(``p = aug.sample(real, g); aug.apply(real, p); aug.apply(fake, p)``). All random numbers come from a CPU
``torch.Generator``, so a seed reproduces a run on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from synthmed.errors import SynthmedError

POLICIES = ("color", "translation", "cutout")

_NONE = "none"
_FLOAT_KEYS = frozenset({"brightness", "saturation", "contrast"})  # the others are pixel indices


def parse_policy(text: str | Sequence[str]) -> tuple[str, ...]:
    """A policy as a validated tuple in the canonical order (the transforms always run in that order, so the
    spelling in a config cannot change the result): ``"translation, color"`` -> ``("color", "translation")``.

    ``""`` and ``"none"`` (or an empty sequence) mean no augmentation. Names are case-insensitive; unknown
    names, empty items and duplicates are refused with a one-line ``SynthmedError``.
    """
    if isinstance(text, str):
        items = [] if text.strip() == "" else text.split(",")
    elif isinstance(text, Sequence) and all(isinstance(item, str) for item in text):
        items = list(text)
    else:
        raise SynthmedError(f"DiffAugment policy must be a comma-separated string or a sequence of names, got {text!r}")
    names = [item.strip().lower() for item in items]
    if names == [_NONE]:
        return ()
    valid = ", ".join(POLICIES)
    seen: set[str] = set()
    for name in names:
        if name not in POLICIES:
            what = "an empty name" if name == "" else f"unknown policy {name!r}"
            raise SynthmedError(
                f"DiffAugment policy {text!r} has {what}; valid: {valid} (comma-separated), or 'none' alone"
            )
        if name in seen:
            raise SynthmedError(f"DiffAugment policy {text!r} names {name!r} twice; give each of {valid} at most once")
        seen.add(name)
    return tuple(name for name in POLICIES if name in seen)


def _round_half_up(value: float) -> int:
    """Round like the official code (``int(v + 0.5)``), so 20 px * 0.125 = 2.5 gives 3, not Python's 2."""
    return int(math.floor(value + 0.5))


def _check_ratio(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise SynthmedError(f"DiffAugment {name} must be a number in (0, 1], got {value!r}")
    return float(value)


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        what = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise SynthmedError(f"DiffAugment needs a float image batch shaped (N, C, H, W), got {what}")


class DiffAugment:
    """The paper's differentiable augmentation for a given policy (see the module docstring).

    ``sample`` draws a batch's random parameters, ``apply`` applies given parameters, ``__call__`` does both.
    The parameters are a dict of per-image tensors of shape (N,) on the batch's device:

    - ``brightness`` (float, offset added), ``saturation`` (float, factor; only when C > 1),
      ``contrast`` (float, factor) for ``color``;
    - ``translation_y``, ``translation_x`` (int64): the content moves this many pixels down (along H)
      resp. right (along W); negative values move it up resp. left;
    - ``cutout_y``, ``cutout_x`` (int64): the patch centre's row and column; the patch covers rows
      ``cutout_y - h // 2`` up to ``cutout_y - h // 2 + h - 1`` (h its height), clipped at the border,
      and likewise for columns.
    """

    def __init__(
        self, policy: str | Sequence[str], translation_ratio: float = 0.125, cutout_ratio: float = 0.5
    ) -> None:
        self.policy = parse_policy(policy)
        self.translation_ratio = _check_ratio("translation_ratio", translation_ratio)
        self.cutout_ratio = _check_ratio("cutout_ratio", cutout_ratio)

    def __repr__(self) -> str:
        policy = ",".join(self.policy) or _NONE
        return (
            f"DiffAugment(policy={policy!r}, translation_ratio={self.translation_ratio}, "
            f"cutout_ratio={self.cutout_ratio})"
        )

    # -- sizes -------------------------------------------------------------------------------------------

    def max_shift(self, height: int, width: int) -> tuple[int, int]:
        """The largest translation (rows, columns) for an image of this size."""
        return _round_half_up(self.translation_ratio * height), _round_half_up(self.translation_ratio * width)

    def cutout_size(self, height: int, width: int) -> tuple[int, int]:
        """The cutout patch (rows, columns) for an image of this size."""
        return _round_half_up(self.cutout_ratio * height), _round_half_up(self.cutout_ratio * width)

    def expected_keys(self, x: torch.Tensor) -> tuple[str, ...]:
        """The keys ``sample`` draws for a batch shaped like ``x`` (grey images have no saturation)."""
        keys: list[str] = []
        if "color" in self.policy:
            keys += ["brightness", "saturation", "contrast"] if x.shape[1] > 1 else ["brightness", "contrast"]
        if "translation" in self.policy:
            keys += ["translation_y", "translation_x"]
        if "cutout" in self.policy:
            keys += ["cutout_y", "cutout_x"]
        return tuple(keys)

    # -- random parameters -------------------------------------------------------------------------------

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Draw the random parameters for a batch shaped like ``x``, all from ``generator`` (a CPU generator, so
        the draws, and thus a seeded run, do not depend on the device), then move them to ``x.device``."""
        _check_images(x)
        if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
            raise SynthmedError(
                "DiffAugment draws from a CPU torch.Generator (reproducible on any device); "
                f"got {generator!r}, create one with torch.Generator().manual_seed(seed)"
            )
        n, c, h, w = x.shape
        params: dict[str, torch.Tensor] = {}
        if "color" in self.policy:
            # Drawn in float32 whatever x's dtype, so one seed gives the same parameters for any precision.
            params["brightness"] = torch.rand(n, generator=generator) - 0.5
            if c > 1:
                params["saturation"] = torch.rand(n, generator=generator) * 2
            params["contrast"] = torch.rand(n, generator=generator) + 0.5
        if "translation" in self.policy:
            shift_h, shift_w = self.max_shift(h, w)
            params["translation_y"] = torch.randint(-shift_h, shift_h + 1, (n,), generator=generator)
            params["translation_x"] = torch.randint(-shift_w, shift_w + 1, (n,), generator=generator)
        if "cutout" in self.policy:
            size_h, size_w = self.cutout_size(h, w)
            # An even-sized patch's centre may also sit one past the last pixel: the patch then overhangs each
            # border by at most half its size, symmetrically (the official code's range).
            params["cutout_y"] = torch.randint(0, h + 1 - size_h % 2, (n,), generator=generator)
            params["cutout_x"] = torch.randint(0, w + 1 - size_w % 2, (n,), generator=generator)
        return {key: value.to(x.device) for key, value in params.items()}

    # -- transforms --------------------------------------------------------------------------------------

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Transform ``x`` with the given parameters (from ``sample`` on a batch of the same shape, or built by
        hand); differentiable with respect to ``x``. An empty policy returns ``x`` itself."""
        _check_images(x)
        expected = self.expected_keys(x)
        if not isinstance(params, dict) or set(params) != set(expected):
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise SynthmedError(
                f"{self!r} on a batch with {x.shape[1]} channel(s) needs params with keys {list(expected)}, "
                f"got {got}: sample them with this augmenter on a batch of the same shape"
            )
        n = x.shape[0]
        for key in expected:
            value = params[key]
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != (n,):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise SynthmedError(f"DiffAugment param {key!r} must be a tensor of shape ({n},), got {shape}")
            if value.is_floating_point() != (key in _FLOAT_KEYS):
                kind = "a float" if key in _FLOAT_KEYS else "an integer"
                raise SynthmedError(f"DiffAugment param {key!r} must be {kind} tensor, got {value.dtype}")
        if "color" in self.policy:
            x = self._color(x, params)
        if "translation" in self.policy:
            x = self._translate(x, params["translation_y"], params["translation_x"])
        if "cutout" in self.policy:
            x = self._cutout(x, params["cutout_y"], params["cutout_x"])
        return x

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator | None, params: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Augment ``x``: with ``params`` if given (``generator`` may then be None), else with a fresh draw."""
        if params is None:
            if generator is None:
                raise SynthmedError("DiffAugment needs a torch.Generator to draw from, or params to apply")
            params = self.sample(x, generator)
        return self.apply(x, params)

    @staticmethod
    def _per_image(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return value.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)

    def _color(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        x = x + self._per_image(params["brightness"], x)
        if "saturation" in params:
            channel_mean = x.mean(dim=1, keepdim=True)
            x = (x - channel_mean) * self._per_image(params["saturation"], x) + channel_mean
        image_mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - image_mean) * self._per_image(params["contrast"], x) + image_mean

    @staticmethod
    def _translate(x: torch.Tensor, shift_y: torch.Tensor, shift_x: torch.Tensor) -> torch.Tensor:
        """out[n, :, i, j] = x[n, :, i - dy, j - dx], and 0 where that source pixel lies outside the image."""
        n, c, h, w = x.shape
        rows = torch.arange(h, device=x.device).view(1, h) - shift_y.to(x.device).view(n, 1)  # (N, H) sources
        cols = torch.arange(w, device=x.device).view(1, w) - shift_x.to(x.device).view(n, 1)  # (N, W)
        inside = ((rows >= 0) & (rows < h)).view(n, 1, h, 1) & ((cols >= 0) & (cols < w)).view(n, 1, 1, w)
        out = x.gather(2, rows.clamp(0, h - 1).view(n, 1, h, 1).expand(n, c, h, w))
        out = out.gather(3, cols.clamp(0, w - 1).view(n, 1, 1, w).expand(n, c, h, w))
        return out.masked_fill(~inside, 0)

    def _cutout(self, x: torch.Tensor, centre_y: torch.Tensor, centre_x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        size_h, size_w = self.cutout_size(h, w)
        top = (centre_y.to(x.device) - size_h // 2).view(n, 1)
        left = (centre_x.to(x.device) - size_w // 2).view(n, 1)
        rows = torch.arange(h, device=x.device).view(1, h)
        cols = torch.arange(w, device=x.device).view(1, w)
        in_rows = (rows >= top) & (rows < top + size_h)  # (N, H)
        in_cols = (cols >= left) & (cols < left + size_w)  # (N, W)
        patch = in_rows.view(n, 1, h, 1) & in_cols.view(n, 1, 1, w)
        return x.masked_fill(patch, 0)
