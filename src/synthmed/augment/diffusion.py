"""Class-conditional denoising diffusion (``ddpm``, ``ddpm-gpu``): DDPM training, DDIM sampling, classifier-free
guidance and an EMA copy of the weights, on MONAI's ``DiffusionModelUNet`` and schedulers.

MONAI provides the network (a UNet over ``len(channels)`` resolution levels, 28 -> 14 -> 7 at 28 px, with a class
embedding) and the noise schedules (``DDPMScheduler`` for training, ``DDIMScheduler`` for sampling). Written here:

- the step-budget training loop (the shared ``TorchGenerator`` loop with ``steps``: small 28 px models need on the
  order of 10k-50k optimisation steps, so the budget is in steps, not epochs; ``epochs`` still converts, as
  ``steps = epochs x batches per epoch``): the epsilon-prediction MSE on a uniformly drawn timestep, with a linear
  learning-rate warm-up;
- classifier-free guidance (Ho & Salimans 2021): during training a label is replaced by the null class with
  probability ``label_dropout``; sampling predicts eps = (1 + w) eps(x, c) - w eps(x, null) at guidance scale ``w``
  (``guidance=0`` is the plainly conditional model and needs one pass per step);
- unlabelled images (``use_unlabelled``, off by default): trained with the null class only, so they teach the
  unconditional score that guidance contrasts with the conditional one, never a class; they fill
  ``unlabelled_share`` of every batch (half by default), so thousands of them do not crowd out a few hundred
  labelled images;
- an EMA of the UNet's weights that sampling uses (``ema``, on by default: the live weights of a short run are noisy);
- deterministic DDIM sampling (eta = 0) from seeded noise in ``ddim_steps`` (10-50) steps, bf16 autocast where the
  hardware runs it fast.

Presets (ours; Dhariwal & Nichol and the DDIM paper give the ranges): ``ddpm`` for a CPU, a UNet of about 1.1M
parameters (channels 32 / 64 / 64, attention at the lowest level, one residual block per level) and 2,500 steps of
batch 64, which fits BreastMNIST's 546 training images in about 30 minutes on one core; ``ddpm-gpu`` wider (64 / 128
/ 128, two blocks) for 30,000 steps of batch 128.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthmed.augment.base import register
from synthmed.augment.generative import UNLABELLED_PARAMS, TorchGenerator
from synthmed.errors import SynthmedError
from synthmed.train.device import resolve_precision

_COMMON: dict[str, Any] = {
    "epochs": None,  # converts to steps over the training subset when given (--generator-epochs)
    "timesteps": 1000,
    "schedule": "linear_beta",
    "ddim_steps": 25,
    "guidance": 1.0,
    "label_dropout": 0.1,
    "warmup": 100,
    "precision": "auto",
    **UNLABELLED_PARAMS,
}
PRESETS: dict[str, dict[str, Any]] = {
    "ddpm": {
        **_COMMON,
        "channels": (32, 64, 64),
        "attention": (False, False, True),
        "res_blocks": 1,
        "norm_groups": 16,
        "head_channels": 32,
        "steps": 2500,
        "batch_size": 64,
        "lr": 5e-4,
        "ema": 0.995,
    },
    "ddpm-gpu": {
        **_COMMON,
        "channels": (64, 128, 128),
        "attention": (False, False, True),
        "res_blocks": 2,
        "norm_groups": 32,
        "head_channels": 32,
        "steps": 30000,
        "batch_size": 128,
        "lr": 2e-4,
        "ema": 0.9995,
    },
}
SCHEDULES = ("linear_beta", "scaled_linear_beta", "sigmoid_beta")


def _monai(module: str) -> Any:
    """A MONAI module, or one line saying how to install it."""
    import importlib

    try:
        return importlib.import_module(f"monai.{module}")
    except ImportError as err:
        raise SynthmedError(f"ddpm needs MONAI and einops ({err.name} is missing): pip install monai einops") from None


class DDPM(TorchGenerator):
    """A class-conditional DDPM on MONAI (see the module docstring)."""

    ema_nets = ("unet",)
    takes_unlabelled = True
    late_params = UNLABELLED_PARAMS

    def check(self) -> None:
        super().check()
        p = self.params
        problems = []
        if not (isinstance(p["ddim_steps"], int) and 1 <= p["ddim_steps"] <= p["timesteps"]):
            problems.append(f"ddim_steps={p['ddim_steps']!r} (1 to timesteps; 10-50 is usual)")
        if isinstance(p["guidance"], bool) or not isinstance(p["guidance"], (int, float)) or p["guidance"] < 0:
            problems.append(f"guidance={p['guidance']!r} (a number >= 0)")
        if not (isinstance(p["label_dropout"], (int, float)) and 0 <= p["label_dropout"] < 1):
            problems.append(f"label_dropout={p['label_dropout']!r} (a probability in [0, 1))")
        if p["schedule"] not in SCHEDULES:
            problems.append(f"schedule={p['schedule']!r} ({' or '.join(SCHEDULES)})")
        if len(p["channels"]) != len(p["attention"]) or any(c % p["norm_groups"] for c in p["channels"]):
            problems.append(
                "channels, attention and norm_groups (one attention flag per level, channels divisible by norm_groups)"
            )
        if p["precision"] not in ("auto", "fp32", "bf16"):
            problems.append(f"precision={p['precision']!r} (auto, fp32 or bf16)")
        if problems:
            raise SynthmedError(f"{self.name}: invalid {problems[0]}")

    def build(self, channels: int, size: int, n_classes: int) -> dict[str, nn.Module]:
        DiffusionModelUNet = _monai("networks.nets").DiffusionModelUNet  # noqa: N806 (a class)

        p = self.params
        factor = 2 ** (len(p["channels"]) - 1)
        if size % factor or size < factor * 4:
            raise SynthmedError(
                f"{self.name}: {size} px images do not fit a UNet of {len(p['channels'])} levels (the "
                f"side must be a multiple of {factor} and at least {factor * 4}); use 28, 64, 128 "
                "or 224 px, or fewer channels levels"
            )
        unet = DiffusionModelUNet(
            spatial_dims=2,
            in_channels=channels,
            out_channels=channels,
            channels=tuple(p["channels"]),
            attention_levels=tuple(p["attention"]),
            num_res_blocks=p["res_blocks"],
            norm_num_groups=p["norm_groups"],
            num_head_channels=p["head_channels"],
            num_class_embeds=n_classes + 1,
        )
        return {"unet": unet}

    def step_budget(self, n_images: int) -> int | None:
        """``steps``, or with ``epochs`` given (``--generator-epochs``) that many passes over the subset."""
        p = self.params
        if p.get("epochs") is not None:
            return int(p["epochs"]) * max(1, math.ceil(n_images / p["batch_size"]))
        return p["steps"]

    def fit(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        seed: int = 0,
        monitor: Any = None,
    ) -> DDPM:
        """Train on the labelled images with their class and, given by ``fit_with_unlabelled`` with
        ``use_unlabelled``, on unlabelled images with the null class only, ``unlabelled_share`` of every batch;
        ``epochs`` then counts passes over the labelled images."""
        schedulers = _monai("networks.schedulers")
        self.scheduler_ = schedulers.DDPMScheduler(
            num_train_timesteps=self.params["timesteps"], schedule=self.params["schedule"]
        )
        super().fit(images, labels, seed=seed, monitor=monitor)
        return self

    def _precision(self) -> str:
        return resolve_precision(self.params["precision"], self.device_)

    def train_step(self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        p = self.params
        optimizer = self.optimizers_["all"]
        for group in optimizer.param_groups:  # linear warm-up of the learning rate
            group["lr"] = p["lr"] * min(1.0, self._step / max(1, p["warmup"]))
        n = len(x)
        null = torch.full((n,), cond.shape[1], dtype=torch.long, device=x.device)
        labels = torch.where(cond.sum(1) > 0, cond.argmax(1), null)  # an unlabelled image: the null class
        drop = torch.rand(n, generator=generator).to(x.device) < p["label_dropout"]
        labels = torch.where(drop, null, labels)
        t = torch.randint(0, p["timesteps"], (n,), generator=generator).to(x.device)
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        noisy = self.scheduler_.add_noise(original_samples=x, noise=noise, timesteps=t)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self._precision() == "bf16"):
            predicted = self.nets_["unet"](noisy, timesteps=t, class_labels=labels)
        return {"loss": self.optimize(optimizer, F.mse_loss(predicted.float(), noise))}

    def sample_inputs(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The starting noise x_T, one image per requested label, from the seeded generator."""
        return torch.randn(len(labels), self._channels(), *self.image_shape_[:2], generator=generator)

    @torch.no_grad()
    def decode(self, inputs: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM from x_T = ``inputs`` to images, with classifier-free guidance."""
        p = self.params
        scheduler = _monai("networks.schedulers").DDIMScheduler(
            num_train_timesteps=p["timesteps"], schedule=p["schedule"], clip_sample=True
        )
        scheduler.set_timesteps(p["ddim_steps"], device=inputs.device)
        unet = self.sampling_net("unet").eval()
        labels = cond.argmax(1)
        null = torch.full_like(labels, cond.shape[1])
        w = float(p["guidance"])
        x = inputs
        for t in scheduler.timesteps:
            steps = torch.full((len(x),), int(t), device=x.device, dtype=torch.long)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self._precision() == "bf16"):
                if w:
                    both = unet(
                        torch.cat([x, x]), timesteps=torch.cat([steps, steps]), class_labels=torch.cat([labels, null])
                    ).float()
                    conditional, unconditional = both.chunk(2)
                    eps = (1 + w) * conditional - w * unconditional
                else:
                    eps = unet(x, timesteps=steps, class_labels=labels).float()
            x, _ = scheduler.step(eps, int(t), x)
        return x.clamp(-1, 1)


for _name, _preset in PRESETS.items():
    register(_name, _preset)(DDPM)
