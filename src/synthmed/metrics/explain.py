"""Class-activation maps (GradCAM, EigenGradCAM) and class-minimising perturbations, as in TSynD's Figure 2.

TSynD (Niemeijer et al. 2024) shows EigenGradCAM maps of a baseline classifier beside one trained with TSynD
(Figure 2 left) and the change of an image after minimising the probability of its class (Figure 2 right). This
module computes both; ``synthmed.report.figures`` draws them.

Implementation: our own ~40 lines, following pytorch-grad-cam's definitions (``GradCAM`` and ``EigenGradCAM`` of
the ``grad-cam`` package, v1.5). That package installs with ``--no-deps`` but imports OpenCV (``cv2``, a ~50 MB
wheel, only for resizing) and ``ttach`` at import time, which would be two new runtime dependencies for CI to
install for a few array operations; so it is not used. Definitions (activations A of the target layer, shape
(K, h, w); gradients G = d score / d A, where score is the target class's logit):

- GradCAM: ReLU(sum_k mean_hw(G_k) A_k);
- EigenGradCAM: ReLU of the projection of (G * A) (centred over positions) on its first right-singular vector,
  computed with NumPy's SVD as the package does (the SVD sign is arbitrary but deterministic).

The map is upsampled bilinearly (align_corners=False, as cv2.resize) to the input size and min-max normalised to
[0, 1] per image (an all-zero map stays zero): the same result as the package's normalise-resize-normalise.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from synthmed.errors import SynthmedError
from synthmed.tensors import to_tensor

METHODS = ("gradcam", "eigengradcam")
NORM_EPS = 1e-7  # pytorch-grad-cam's guard against dividing by a zero range


def _default_layer(model: torch.nn.Module) -> torch.nn.Module:
    if hasattr(model, "layer4"):
        return list(model.get_submodule("layer4").children())[-1]
    raise SynthmedError("no target layer given and the model has no layer4 (not a ResNet); pass layer=...")


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _activations_and_grads(
    model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The layer's output, the gradient of the target logits w.r.t. it, and the logits (model in eval mode)."""
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # so activations carry a graph even if parameters are frozen
            logits = model(x)
            score = logits.float().gather(1, targets.view(-1, 1)).sum()
            (grads,) = torch.autograd.grad(score, captured[-1])
    finally:
        handle.remove()
    return captured[-1].detach().float(), grads.float(), logits.detach().float()


def _eigen_projection(weighted: torch.Tensor) -> torch.Tensor:
    """(N, K, h, w) -> (N, h, w): projection on the first principal component over positions (pytorch-grad-cam)."""
    values = np.nan_to_num(weighted.cpu().numpy().astype(np.float32))
    n, k, h, w = values.shape
    flat = values.reshape(n, k, h * w).transpose(0, 2, 1)  # (N, positions, channels)
    flat = flat - flat.mean(axis=1, keepdims=True)
    _, _, vt = np.linalg.svd(flat, full_matrices=True)
    projection = np.einsum("npk,nk->np", flat, vt[:, 0, :]).reshape(n, h, w)
    return torch.from_numpy(projection.astype(np.float32))


def cam_maps(
    model: torch.nn.Module,
    x: torch.Tensor,
    targets: np.ndarray | torch.Tensor | None = None,
    method: str = "gradcam",
    layer: torch.nn.Module | None = None,
) -> np.ndarray:
    """Maps in [0, 1], float32 (N, H, W) at the input size, for float inputs ``x`` (N, C, H, W) in [-1, 1].

    ``targets``: class (or, multi-label, label) index per image; default the predicted class. ``layer`` defaults
    to ``model.layer4[-1]`` (ResNet). The model is put in eval mode and restored; no parameter gradients are kept.
    """
    if method not in METHODS:
        raise SynthmedError(f"unknown CAM method {method!r}; choose {' or '.join(METHODS)}")
    layer = _default_layer(model) if layer is None else layer
    device = model_device(model)
    x = x.to(device)
    was_training = model.training
    model.eval()
    try:
        if targets is None:
            with torch.no_grad():
                targets = model(x).argmax(1)
        targets = torch.as_tensor(
            np.asarray(targets.cpu() if torch.is_tensor(targets) else targets), dtype=torch.long, device=device
        ).view(-1)
        if len(targets) != len(x):
            raise SynthmedError(f"{len(targets)} targets for {len(x)} images; pass one target class per image")
        acts, grads, _ = _activations_and_grads(model, layer, x, targets)
    finally:
        model.train(was_training)
    if acts.ndim != 4:
        raise SynthmedError(f"target layer output has shape {tuple(acts.shape)}, not (N, C, h, w); pick a conv layer")
    if method == "gradcam":
        cam = (grads.mean(dim=(2, 3), keepdim=True) * acts).sum(1)
    else:
        cam = _eigen_projection(grads * acts)
    cam = F.relu(cam.cpu())
    cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    low = cam.amin(dim=(1, 2), keepdim=True)
    high = cam.amax(dim=(1, 2), keepdim=True)
    return ((cam - low) / (high - low + NORM_EPS)).clamp_(0, 1).numpy().astype(np.float32)


def class_targets(labels: np.ndarray) -> np.ndarray:
    """The class each image is explained for: its label; for multi-label rows, the first positive label (else 0)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return np.where(labels.any(1), labels.argmax(1), 0)
    return labels.reshape(-1).astype(np.int64)


def perturbation_difference(
    model: torch.nn.Module,
    image: np.ndarray,
    target_class: int,
    steps: int = 10,
    eps: float = 2 / 255,
    multi_label: bool = False,
) -> np.ndarray:
    """TSynD Figure 2 right: the image after ``steps`` gradient steps that lower the probability of
    ``target_class``, minus the image, in [0, 1] pixel units, float32 shaped like ``image`` ((H, W) or (H, W, 3)).

    Each step moves the most sensitive pixel by ``eps`` (pixel units) and the others in proportion to their gradient
    (L-inf-normalised gradient descent on the class log-probability), so the difference shows where the classifier
    looks rather than the uniform +-eps pattern of a signed (PGD) step. Values are clamped to the valid range.
    """
    if steps < 1 or eps <= 0:
        raise SynthmedError(f"perturbation_difference needs steps >= 1 and eps > 0, got {steps} and {eps}")
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise SynthmedError("perturbation_difference takes one uint8 image (H, W) or (H, W, 3)")
    device = model_device(model)
    start = to_tensor(image[None]).to(device)
    x = start.clone()
    was_training = model.training
    model.eval()
    try:
        for _ in range(steps):
            x.requires_grad_(True)
            with torch.enable_grad():
                logits = model(x).float()
                if multi_label:
                    log_p = F.logsigmoid(logits)[0, target_class]
                else:
                    log_p = F.log_softmax(logits, 1)[0, target_class]
                (grad,) = torch.autograd.grad(log_p, x)
            scale = grad.abs().max()
            if scale == 0:
                break
            x = (x.detach() - 2.0 * eps * grad / scale).clamp_(-1.0, 1.0)
    finally:
        model.train(was_training)
    diff = ((x.detach() - start) / 2.0)[0].cpu()  # input units -> pixel units
    diff = diff[0] if diff.shape[0] == 1 else diff.permute(1, 2, 0)
    return diff.numpy().astype(np.float32)
