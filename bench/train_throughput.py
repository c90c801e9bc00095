"""Training-throughput benchmark: how close do the classifiers get to this machine's matmul peak (CPU, or one CUDA
GPU with ``--device cuda``)?

Measures matmul GFLOP/s (fp32, bf16), training images/s and model FLOP/s of the project's classifiers
with the trainer's exact step, and the peak RSS of a short real BreastMNIST run; writes one JSON file.

torch is imported only after the memory run: Linux folds the parent's RSS high-water mark into a child's
``ru_maxrss`` at exec, so a parent that already holds torch (~0.7 GB) would inflate the child's figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

BATCH, IMAGE, CLASSES, FLOP_BATCH = 128, 28, 2, 16
DEFAULT_STEPS = {"resnet18": 8, "densenet121": 4}  # DenseNet-121 trains at ~8 img/s fp32 on 2 cores
TARGETS = {"resnet18": 0.6, "densenet121": 0.4}  # minimum utilisation, from the project issue
MEMORY_TARGET_MB = 2048.0
PRECISIONS = ("fp32", "bf16")


def peak_memory() -> dict[str, Any]:
    """Peak RSS of a real 2-epoch BreastMNIST run, in a child process so its memory is isolated."""
    root = Path(os.environ.get("SYNTHMED_DATA", "~/.medmnist")).expanduser()
    if not (root / "breastmnist.npz").exists():
        return {"skipped": f"breastmnist.npz not found in {root} (set SYNTHMED_DATA)"}
    parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable,
            "-c",
            "from synthmed.cli import main; main()",
            "run",
            "-d",
            "breastmnist",
            "-m",
            "none",
            "--seeds",
            "0",
            "--epochs",
            "2",
            "--out",
            out,
            "--no-report",
        ]
        env = {**os.environ, "SYNTHMED_DATA": str(root), "SYNTHMED_OFFLINE": "1"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KB on Linux
    result: dict[str, Any] = {
        "peak_rss_mb": round(child_mb, 1),
        "parent_rss_at_spawn_mb": round(parent_mb, 1),
        "command": " ".join(cmd[3:]),
    }
    if proc.returncode:
        result["error"] = f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-500:]}"
    return result


def synchronize(device: str) -> None:
    """Wait for queued GPU work: CUDA calls return before the kernels ran, so a timer must wait for them."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(dtype: torch.dtype, device: str = "cpu", n: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` torch.mm rate: the practical peak the models are measured against."""
    import torch

    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)  # warm-up: oneDNN/MKL (cuBLAS) pick and cache kernels on first call
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def train_step(
    model: torch.nn.Module, opt: torch.optim.Optimizer | None, x: torch.Tensor, y: torch.Tensor, precision: str
) -> None:
    """One step exactly as synthmed.train.trainer runs it (minus augmentation and sample weights).

    ``opt=None`` skips the update, for FLOP counting: Adam's element-wise update is not model FLOPs.
    """
    import torch
    import torch.nn.functional as F

    x = x.contiguous(memory_format=torch.channels_last)  # a no-op here, kept to match the trainer
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    if opt is not None:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    if opt is not None:
        opt.step()


def setup(name: str, size: int, device: str = "cpu") -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A fresh model placed as the trainer places it, and a random batch (speed ignores pixel values) already on
    ``device``, as the trainer keeps its training set there."""
    import torch

    from synthmed.nets.classifiers import build_classifier

    torch.manual_seed(0)
    model = build_classifier(name, 1, CLASSES, image_size=IMAGE).to(device).to(memory_format=torch.channels_last)
    x = torch.randn(size, 1, IMAGE, IMAGE, device=device)
    return model, x, torch.randint(0, CLASSES, (size,), device=device)


def gflop_per_image(name: str) -> float:
    """Forward+backward FLOPs per image; conv/matmul FLOPs are linear in batch, so a small batch suffices."""
    from torch.utils.flop_counter import FlopCounterMode

    model, x, y = setup(name, FLOP_BATCH)
    with FlopCounterMode(display=False) as counter:
        train_step(model, None, x, y, "fp32")
    return counter.get_total_flops() / FLOP_BATCH / 1e9


def images_per_s(
    name: str, precision: str, steps: int, device: str = "cpu", batch: int = BATCH, warmup: int = 2
) -> float:
    import torch

    model, x, y = setup(name, batch, device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(warmup):  # first steps pay for oneDNN kernel selection and Adam state allocation
        train_step(model, opt, x, y, precision)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, opt, x, y, precision)
    synchronize(device)
    return batch * steps / (time.perf_counter() - start)


def machine_info(device: str = "cpu") -> dict[str, Any]:
    import torch

    cpu = None
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((ln.split(":", 1)[1].strip() for ln in handle if ln.startswith("model name")), None)
    except OSError:
        pass
    return {
        "machine": platform.machine(),
        "cpu": cpu,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        **({"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda} if device == "cuda" else {}),
    }


def measure(
    names: list[str], steps: int | None, device: str = "cpu", n: int = 2048, batch: int = BATCH
) -> dict[str, Any]:
    """Matmul peaks, per-model throughput and utilisation; utilisation compares like with like precision."""
    import torch

    peak = {"fp32": matmul_gflops(torch.float32, device, n), "bf16": matmul_gflops(torch.bfloat16, device, n)}
    models: dict[str, dict[str, Any]] = {}
    for name in names:
        gflop, models[name] = gflop_per_image(name), {}
        for precision in PRECISIONS:
            n_steps = steps or DEFAULT_STEPS[name]
            ips = images_per_s(name, precision, n_steps, device, batch)
            achieved = gflop * ips
            entry = {
                "steps": n_steps,
                "images_per_s": round(ips, 2),
                "gflop_per_image": round(gflop, 4),
                "achieved_gflops": round(achieved, 2),
                "utilisation": round(achieved / peak[precision], 3),
            }
            if precision == "bf16":
                entry["utilisation_vs_fp32_matmul"] = round(achieved / peak["fp32"], 3)
            models[name][precision] = entry
    return {"matmul_gflops": {k: round(v, 1) for k, v in peak.items()}, "models": models}


def check_targets(models: dict[str, Any], memory: dict[str, Any], precision: str) -> dict[str, Any]:
    """Targets from the project issue, judged at each precision against the same precision's matmul peak
    (the issue's reference figures are fp32); ``precision`` is what ``--precision auto`` picks here."""
    targets: dict[str, Any] = {}
    for name, minimum in TARGETS.items():
        for prec in PRECISIONS:
            got = models.get(name, {}).get(prec, {}).get("utilisation")
            targets[f"{name}_utilisation_{prec}"] = {
                "target": f">= {minimum}",
                "precision": prec,
                "auto_precision": prec == precision,
                "value": got,
                "met": None if got is None else got >= minimum,
            }
    rss = None if "error" in memory else memory.get("peak_rss_mb")
    targets["breastmnist_peak_rss_mb"] = {
        "target": f"<= {MEMORY_TARGET_MB:g}",
        "value": rss,
        "met": None if rss is None else rss <= MEMORY_TARGET_MB,
    }
    return targets


def print_summary(report: dict[str, Any]) -> None:
    peak, memory = report["matmul_gflops"], report["peak_memory"]
    threads = report["machine"]["threads"]
    print(f"matmul GFLOP/s: fp32 {peak['fp32']}  bf16 {peak['bf16']}  ({threads} threads)")
    header = ("model", "prec", "img/s", "GFLOP/img", "GFLOP/s", "util", "vs fp32 mm")
    print("{:<12} {:<5} {:>8} {:>10} {:>9} {:>6} {:>10}".format(*header))
    for name, by_precision in report["models"].items():
        for precision, e in by_precision.items():
            vs32 = e.get("utilisation_vs_fp32_matmul", e["utilisation"])
            print(
                f"{name:<12} {precision:<5} {e['images_per_s']:>8.1f} {e['gflop_per_image']:>10.3f} "
                f"{e['achieved_gflops']:>9.1f} {e['utilisation']:>6.3f} {vs32:>10.3f}"
            )
    rss = f"{memory['peak_rss_mb']} MB" if "peak_rss_mb" in memory else f"skipped ({memory['skipped']})"
    print(f"BreastMNIST peak RSS: {rss}" + (f" (error: {memory['error']})" if "error" in memory else ""))
    for key, t in report["targets"].items():
        print(f"target {key} {t['target']}: {t['value']} -> {'n/a' if t['met'] is None else t['met']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="timed steps per model [8; densenet121: 4]")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "train_throughput.json"
    )
    parser.add_argument("--models", default="resnet18,densenet121", help="comma-separated")
    parser.add_argument("--skip-memory", action="store_true", help="skip the BreastMNIST peak-RSS run")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the models train")
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the timed matmuls (a smoke test: 256)")
    parser.add_argument("--batch", type=int, default=BATCH, help="images per timed step (a smoke test: 8)")
    args = parser.parse_args()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown := sorted(set(names) - set(DEFAULT_STEPS)):
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(DEFAULT_STEPS)}")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1")

    memory = {"skipped": "--skip-memory"} if args.skip_memory else peak_memory()  # before importing torch
    import torch

    from synthmed.train.device import resolve_precision

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible")
    auto = resolve_precision("auto", torch.device(args.device))
    measured = measure(names, args.steps, args.device, args.matmul_size, args.batch)
    report = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(args.device),
        "device": args.device,
        "batch": args.batch,
        "auto_precision": auto,
        **measured,
        "peak_memory": memory,
        "targets": check_targets(measured["models"], memory, auto),
    }

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=args.out.parent, suffix=".tmp", delete=False) as tmp:
        json.dump(report, tmp, indent=2)
    os.chmod(tmp.name, 0o644)  # NamedTemporaryFile creates 0600
    os.replace(tmp.name, args.out)
    print_summary(report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
