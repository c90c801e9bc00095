"""A time budget for a step of a study (``--time-budget``): no run starts whose estimated duration exceeds the time
left, and at the deadline the runs in flight are abandoned (``Abandoned`` raised where the run computes, or the
pool's workers stopped), so a step ends on its own with every finished run stored."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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
