"""What bf16 costs on this CPU, side by side in one process, as JSON: a training step (forward under autocast,
backward, optimizer) of ResNet-18 (28) and of the ddpm UNet (cpu preset), in fp32, in bf16 on the kernels PyTorch
picks (oneDNN's where the CPU has them, its reference kernels elsewhere), and in bf16 on fp32 kernels
(``synthmed.train.device.bf16_kernels``: what a run that pins bf16 uses on a CPU without oneDNN bf16), with the
difference of the last step's loss from bf16 as PyTorch runs it.

On an AVX2 CPU the reference kernels are the slow path the study files met before (a run pinned to bf16 then took
about 20x longer); on an AVX512 or AMX CPU the emulation is measured all the same, for the comparison.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bf16_kernels.py            # one thread, as a study's worker runs
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

from synthmed.io import atomic_write_json
from synthmed.nets.classifiers import build_classifier
from synthmed.train.device import Bf16OnFp32Kernels, cpu_has_bf16_kernels, cpu_model

BATCH = 64


def resnet_step() -> Callable[[bool], float]:
    torch.manual_seed(0)
    model = build_classifier("resnet18", in_channels=1, n_outputs=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(BATCH, 1, 28, 28), torch.randint(0, 2, (BATCH,))

    def step(bf16: bool) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def unet_step() -> Callable[[bool], float]:
    from synthmed.augment import create_augmenter
    from synthmed.augment.generative import TorchGenerator

    torch.manual_seed(0)
    ddpm = create_augmenter("ddpm")
    assert isinstance(ddpm, TorchGenerator)  # a generator with networks to build
    unet = ddpm.build(channels=1, size=28, n_classes=2)["unet"]
    optimizer = torch.optim.Adam(unet.parameters(), lr=5e-4)
    x, t, c = torch.randn(BATCH, 1, 28, 28), torch.randint(0, 1000, (BATCH,)), torch.randint(0, 3, (BATCH,))

    def step(bf16: bool) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            predicted = unet(x, timesteps=t, class_labels=c)
        loss = F.mse_loss(predicted.float(), x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def timed(make: Callable[[], Callable[[bool], float]], bf16: bool, emulate: bool, steps: int) -> dict:
    """Seconds per step (the best of ``steps`` after one warm-up) and the last step's loss, from a fresh model (the
    UNet's first loss says nothing: its output layer starts at zero)."""
    step, times, losses = make(), [], []
    for _ in range(steps + 1):
        start = time.perf_counter()
        if emulate:
            with Bf16OnFp32Kernels():
                losses.append(step(bf16))
        else:
            losses.append(step(bf16))
        times.append(time.perf_counter() - start)
    return {
        "seconds_per_step": round(min(times[1:]), 3),
        "images_per_s": round(BATCH / min(times[1:]), 1),
        "last_loss": losses[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2, help="timed steps per case (after one warm-up)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bf16_kernels.json"))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    nets: dict[str, dict] = {}
    for name, make in (("resnet18", resnet_step), ("ddpm_unet", unet_step)):
        cases = {
            "fp32": timed(make, False, False, args.steps),
            "bf16_as_pytorch_runs_it": timed(make, True, False, args.steps),
            "bf16_on_fp32_kernels": timed(make, True, True, args.steps),
        }
        pytorch, emulated = cases["bf16_as_pytorch_runs_it"], cases["bf16_on_fp32_kernels"]
        nets[name] = {
            **cases,
            "speedup_of_fp32_kernels_over_pytorch_bf16": round(
                pytorch["seconds_per_step"] / emulated["seconds_per_step"], 2
            ),
            "last_loss_difference_bf16": abs(pytorch["last_loss"] - emulated["last_loss"]),
            "last_loss_difference_fp32": abs(pytorch["last_loss"] - cases["fp32"]["last_loss"]),
        }
        print(name, {k: v for k, v in nets[name].items() if not isinstance(v, dict)}, flush=True)
    atomic_write_json(
        Path(args.out),
        {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_bf16": cpu_has_bf16_kernels(),
            "machine": platform.machine(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "batch": BATCH,
            "nets": nets,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
