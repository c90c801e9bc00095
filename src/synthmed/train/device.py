"""Device and numeric precision choice."""

from __future__ import annotations

import functools
import platform

import torch

from synthmed.errors import SynthmedError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SynthmedError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise SynthmedError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


@functools.lru_cache
def _cpuinfo() -> str:
    """Linux's /proc/cpuinfo ("" elsewhere)."""
    try:
        with open("/proc/cpuinfo") as handle:
            return handle.read()
    except OSError:
        return ""


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX or AVX512-BF16, where oneDNN runs bf16 convolutions several times faster."""
    flags = _cpuinfo()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cpu_model() -> str:
    """The CPU's marketing name (for the report header), else what the platform module knows."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` = bf16 mixed precision where the hardware runs it fast, else fp32."""
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if name not in ("fp32", "bf16"):
        raise SynthmedError(f"unknown precision {name!r}; choose auto, fp32 or bf16")
    return name
