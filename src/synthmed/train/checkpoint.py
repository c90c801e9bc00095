"""Classifier checkpoints: written atomically, read with ``weights_only=True`` so a crafted file cannot run
code."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch

from synthmed.errors import SynthmedError
from synthmed.experiment.files import atomic_write_bytes


def save_checkpoint(path: str | Path, model: torch.nn.Module, meta: dict) -> None:
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "meta": meta}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict:
    """``{"state_dict": ..., "meta": ...}``; anything but tensors and plain containers is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SynthmedError(f"checkpoint {path} does not exist") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SynthmedError(f"{path} is not a plain-weights checkpoint ({first}); synthmed only loads "
                            "tensors and plain containers, never code") from None
