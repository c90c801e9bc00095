"""A time budget for a step of a study (``--time-budget``): no run starts whose estimated duration exceeds the time
left, and at the deadline the runs in flight are abandoned (``Abandoned`` raised where the run computes, or the
pool's workers stopped), so a step ends on its own with every finished run stored."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthmed.errors import SynthmedError

#: Seconds a run is assumed to take under a time budget while the store holds no run of its dataset, protocol and
#: method: conservative (the slowest stored study run, a ddpm on 2 CPU cores, took 66 minutes).
#: ``SYNTHMED_RUN_SECONDS`` overrides it.
DEFAULT_RUN_SECONDS = 3600.0


@dataclass
class Budget:
    """A time budget (``--time-budget``) from ``started`` (a ``time.monotonic()`` value): no run starts that it
    cannot fit, and the runs in flight at its end are abandoned. Shared by the rounds of ``--seeds auto``."""

    seconds: float
    default_run_seconds: float | None = None  # None: $SYNTHMED_RUN_SECONDS, else DEFAULT_RUN_SECONDS
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise SynthmedError(f"--time-budget {self.seconds:g} s must be more than 0")
        if self.default_run_seconds is None:
            self.default_run_seconds = float(os.environ.get("SYNTHMED_RUN_SECONDS", DEFAULT_RUN_SECONDS))

    @property
    def deadline(self) -> float:
        return self.started + self.seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


@contextlib.contextmanager
def alarm(deadline: float | None) -> Iterator[None]:
    """Raise ``Abandoned`` in this (main) thread at ``deadline``, wherever the run computing in this process is."""
    from synthmed.experiment.backends import Abandoned

    usable = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if deadline is None or not usable:
        yield
        return

    def ring(signum: int, frame: Any) -> None:
        raise Abandoned()

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def longest_runs(records: Iterable[dict]) -> dict[tuple[str, str, str], float]:
    """The longest ``total_time`` of each (dataset, protocol, method) among ``records``: what a time budget (and
    ``experiment status``) expects a run to take, as ``ResultStore.durations`` does for a store."""
    longest: dict[tuple[str, str, str], float] = {}
    for r in records:
        if r.get("total_time") is not None:
            key = (r["dataset"], r["protocol"], r["method"])
            longest[key] = max(longest.get(key, 0.0), float(r["total_time"]))
    return longest


def longest_stored(store_path: Path, exported: Iterable[dict] = ()) -> dict[tuple[str, str, str], float]:
    """``longest_runs`` over a store (if there is one) and an export's records together."""
    from synthmed.store import ResultStore

    longest = longest_runs(exported)
    if store_path.exists():
        with ResultStore(store_path) as store:
            for key, seconds in store.durations().items():
                longest[key] = max(seconds, longest.get(key, 0.0))
    return longest


@dataclass(frozen=True)
class Estimate:
    """What the pending runs of a grid are expected to cost, from the longest stored run of each (dataset,
    protocol, method); runs of a method with no stored run are counted apart (``unknown``), not guessed."""

    seconds: float
    known: int
    unknown: dict[str, int]  # method: pending runs that nothing stored can estimate

    def line(self, workers: int) -> str:
        """One line for ``experiment status``: CPU time, and the wall time at ``workers`` single-CPU runs."""
        workers = max(workers, 1)
        text = (
            f"the {self.known} pending run(s) with a stored run of their dataset, protocol and method take about "
            f"{_spoken(self.seconds)} of CPU ({_spoken(self.seconds / workers)} at {workers} worker(s); each run "
            "costed as the longest stored one, fits included)"
        )
        if self.unknown:
            methods = ", ".join(f"{m} ({n})" for m, n in sorted(self.unknown.items()))
            text += f"; not costed, nothing stored for them yet: {methods}"
        return text


def estimate(keys: Iterable[tuple[str, str, str]], longest: dict[tuple[str, str, str], float]) -> Estimate:
    """Cost the runs named by their (dataset, protocol, method) keys with ``longest``."""
    seconds, known, unknown = 0.0, 0, Counter[str]()
    for key in keys:
        if key in longest:
            seconds, known = seconds + longest[key], known + 1
        else:
            unknown[key[2]] += 1
    return Estimate(seconds, known, dict(unknown))


def _spoken(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
