"""Epistemic uncertainty of a classifier: MC dropout and deep ensembles, predictive entropy and mutual
information (BALD), per image.

For T stochastic predictions p_1..p_T of an image (dropout masks, or ensemble members):

- predictive entropy  H[mean_t p_t]                 total uncertainty, up to log C;
- expected entropy    mean_t H[p_t]                 aleatoric part;
- mutual information  H[mean_t p_t] - mean_t H[p_t] epistemic part (BALD, Houlsby et al. 2011): 0 when all
  samples agree, high when confident samples disagree, i.e. where the training data leave the model free.

MC dropout here keeps BatchNorm in eval mode and samples dropout only; with dropout before the head
(``build_classifier(..., dropout=p)``) the backbone runs once per image and only the head is sampled, which
makes T = 20 samples cost about one forward pass. Everything is differentiable, so TSynD can ascend it.
"""

from __future__ import annotations

import torch
from torch import nn

from synthmed.errors import SynthmedError

EPS = 1e-12


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) over the last axis."""
    return -(probs * probs.clamp_min(EPS).log()).sum(-1)


def predictive_entropy(samples: torch.Tensor) -> torch.Tensor:
    """(T, N, C) sampled class probabilities -> (N,) entropy of their mean."""
    return entropy(samples.mean(0))


def mutual_information(samples: torch.Tensor) -> torch.Tensor:
    """(T, N, C) -> (N,) BALD mutual information; >= 0 up to rounding, 0 for identical samples."""
    return (predictive_entropy(samples) - entropy(samples).mean(0)).clamp_min(0.0)


def uncertainty(samples: torch.Tensor, kind: str) -> torch.Tensor:
    """``mi`` (mutual information) or ``entropy`` (predictive entropy) per image."""
    if kind == "mi":
        return mutual_information(samples)
    if kind == "entropy":
        return predictive_entropy(samples)
    raise SynthmedError(f"unknown uncertainty {kind!r}; choose mi or entropy")


def split_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(backbone, head) of a torchvision ResNet or DenseNet from ``build_classifier``: backbone(x) gives the
    pooled features, head(features) the logits (including its dropout layer, if any)."""
    head: nn.Module
    if hasattr(model, "fc"):
        head = model.get_submodule("fc")
        backbone = nn.Sequential(*[m for name, m in model.named_children() if name != "fc"], nn.Flatten(1))
    elif hasattr(model, "classifier") and hasattr(model, "features"):
        head = model.get_submodule("classifier")
        backbone = nn.Sequential(model.get_submodule("features"), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    else:
        raise SynthmedError(
            f"cannot find the head of a {type(model).__name__}; MC dropout supports ResNet and "
            "DenseNet classifiers (use mc_dropout_samples(..., head_only=False) otherwise)"
        )
    return backbone, head


def has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())


def _dropout_train(model: nn.Module, active: bool) -> None:
    model.eval()
    if active:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.train()


def mc_dropout_samples(
    model: nn.Module, x: torch.Tensor, samples: int = 20, head_only: bool = True, multi_label: bool = False
) -> torch.Tensor:
    """(T, N, C) class probabilities from T forward passes with dropout active and BatchNorm frozen.
    Differentiable in ``x``; the model is left in eval mode."""
    if not has_dropout(model):
        raise SynthmedError(
            "MC dropout needs a classifier with dropout; build it with dropout > 0 (synthmed run --dropout 0.2)"
        )
    if samples < 1:
        raise SynthmedError(f"MC dropout needs at least 1 sample, got {samples}")
    squash = torch.sigmoid if multi_label else (lambda z: torch.softmax(z, -1))
    try:
        _dropout_train(model, True)
        if head_only:
            backbone, head = split_head(model)
            features = backbone(x)
            return torch.stack([squash(head(features)) for _ in range(samples)])
        return torch.stack([squash(model(x)) for _ in range(samples)])
    finally:
        model.eval()


def ensemble_samples(models: list[nn.Module], x: torch.Tensor, multi_label: bool = False) -> torch.Tensor:
    """(M, N, C) class probabilities of a deep ensemble's members (each in eval mode)."""
    if not models:
        raise SynthmedError("a deep ensemble needs at least one member")
    squash = torch.sigmoid if multi_label else (lambda z: torch.softmax(z, -1))
    out = []
    for m in models:
        m.eval()
        out.append(squash(m(x)))
    return torch.stack(out)


@torch.no_grad()
def image_uncertainty(
    model: nn.Module | list[nn.Module], x: torch.Tensor, samples: int = 20, batch: int = 512
) -> dict[str, torch.Tensor]:
    """Per image: predictive entropy, expected entropy and mutual information, from MC dropout (one model) or
    a deep ensemble (a list), in batches."""
    parts: dict[str, list[torch.Tensor]] = {"entropy": [], "expected_entropy": [], "mi": []}
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        s = ensemble_samples(model, xb) if isinstance(model, list) else mc_dropout_samples(model, xb, samples)
        parts["entropy"].append(predictive_entropy(s))
        parts["expected_entropy"].append(entropy(s).mean(0))
        parts["mi"].append(mutual_information(s))
    return {k: torch.cat(v) for k, v in parts.items()}
