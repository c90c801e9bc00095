"""Files that are never half-written, and checkpoints that never run code.

Every result, artifact and cache entry goes through ``atomic_write_bytes``: a temporary file beside the target,
fsync, rename. A reader never sees half a file. A process killed mid-write (SIGKILL, power loss) can leave its
hidden temporary (``.NAME.xxxx.tmp``) beside the target; ``remove_temporaries`` sweeps them when the same run is
computed again. Checkpoints are read with ``torch.load(weights_only=True)``, so a crafted file cannot execute
anything.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from synthmed.errors import SynthmedError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename; the file gets the usual permissions
    (mkstemp's are owner-only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def remove_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporaries ``atomic_write_bytes`` left under ``folder`` when its writer was killed; returns how
    many. Call it only on a folder this process owns (a run it holds the claim on), since a live writer's temporary
    looks the same."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.rglob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj: object) -> str:
    """Strict JSON for other tools (jq, JavaScript): a missing statistic (NaN, inf) becomes null."""

    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(obj), indent=1, allow_nan=False)


def atomic_write_json(path: str | os.PathLike, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=True))


def save_torch(path: str | Path, payload: dict[str, Any]) -> None:
    """``torch.save`` of tensors and plain containers, written atomically."""
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def save_checkpoint(path: str | Path, model: Any, meta: dict) -> None:
    """A classifier's weights and a JSON-like ``meta``, as ``{"state_dict": ..., "meta": ...}``."""
    save_torch(path, {"state_dict": model.state_dict(), "meta": meta})


def load_checkpoint(path: str | Path) -> dict:
    """A file written by ``save_torch``; anything but tensors and plain containers is refused."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SynthmedError(f"checkpoint {path} does not exist") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SynthmedError(
            f"{path} is not a plain-weights checkpoint ({first}); synthmed only loads "
            "tensors and plain containers, never code"
        ) from None


_LOCK_WAIT = [0.0]  # seconds this process has spent blocked in ``file_lock``


def lock_wait_seconds() -> float:
    """Seconds this process has spent waiting for ``file_lock`` so far: a run takes the difference over its own
    span, so its stored cost can leave out the time it waited for a fit another worker was making."""
    return _LOCK_WAIT[0]


@contextlib.contextmanager
def file_lock(path: str | Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if absent) for the block: processes that need one cache entry
    at the same moment fit it once, the others wait and then load it. ``on_wait`` is called once before blocking,
    only when another holder has the lock (so a progress line can say the run waits, not what it did last). POSIX
    ``flock``; where the platform has none (Windows), the block runs unlocked. The time spent blocked is counted
    (``lock_wait_seconds``)."""
    import time

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        start = time.perf_counter()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        _LOCK_WAIT[0] += time.perf_counter() - start
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
