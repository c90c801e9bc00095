"""Device and numeric precision choice."""

from __future__ import annotations

import contextlib
import functools
import platform
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

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


def cpu_has_bf16_kernels() -> bool:
    """Whether PyTorch's oneDNN runs bf16 convolutions and matrix products on this CPU (AVX512 or newer). Without
    them (AVX2), PyTorch falls back to reference bf16 kernels about 20x slower than fp32 (a ResNet-18 (28) step of
    64 images, one thread: 50 s against 2.5 s)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or one that no longer has the query
        return cpu_has_fast_bf16()


#: The ops whose bf16 reference kernels are slow on a CPU without oneDNN bf16, with their backward passes.
_PRODUCTS = frozenset(
    {
        torch.ops.aten.convolution.default,
        torch.ops.aten.convolution_backward.default,
        torch.ops.aten.mm.default,
        torch.ops.aten.addmm.default,
        torch.ops.aten.bmm.default,
        torch.ops.aten.baddbmm.default,
    }
)


def _up(value: Any) -> Any:
    return value.float() if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16 else value


def _down(value: Any) -> Any:
    return value.to(torch.bfloat16) if isinstance(value, torch.Tensor) and value.is_floating_point() else value


class Bf16OnFp32Kernels(TorchDispatchMode):
    """Convolutions and matrix products of bf16 operands run by the fp32 kernels, results rounded to bf16. A product
    of two bf16 numbers is exact in fp32 and oneDNN's bf16 kernels accumulate in fp32, so this computes what they
    do, up to the order of summation (which differs between CPUs anyway); every other op runs as it is."""

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _PRODUCTS and any(isinstance(a, torch.Tensor) and a.dtype == torch.bfloat16 for a in args):
            out = func(*map(_up, args), **{k: _up(v) for k, v in kwargs.items()})
            return tuple(map(_down, out)) if isinstance(out, tuple | list) else _down(out)
        return func(*args, **kwargs)


@contextlib.contextmanager
def bf16_kernels(device: torch.device | str) -> Iterator[str | None]:
    """Run the block's bf16 work on this machine's fast kernels, and yield which: "onednn", "fp32" (a CPU without
    oneDNN bf16: ``Bf16OnFp32Kernels``, about as fast as fp32, where PyTorch's reference bf16 kernels are 20x
    slower), or None on a GPU. Wraps a whole run, backward passes included: a study that pins bf16, so that its
    paired runs never mix precisions, then runs on every CPU."""
    if torch.device(device).type != "cpu":
        yield None
    elif cpu_has_bf16_kernels():
        yield "onednn"
    else:
        with Bf16OnFp32Kernels():
            yield "fp32"


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
