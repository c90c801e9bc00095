"""Claims on runs in a results store, so several processes on one folder (a SLURM job array, two terminals) split a
grid: each run is claimed just before it starts and its lease renewed while it computes; a holder that stops
renewing (a killed job) loses its claims, and a holder on this machine whose process is gone loses them at once."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from pathlib import Path

from synthmed.store import ResultStore

#: Seconds a claim lasts without renewal (``SYNTHMED_LEASE_SECONDS`` overrides, e.g. for tests); renewed every third.
LEASE_SECONDS = 300.0
#: Seconds between looks at the store while only runs held by other processes are left: short, so a process that
#: finished its share reports moments after the last run lands (a 30 s poll cost a 2-process grid 25 % of its wall).
POLL_SECONDS = 3.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class Claims:
    """This process's leases on runs of one store, renewed by a background thread while they compute."""

    def __init__(self, store_path: Path, lease: float | None = None) -> None:
        self.store_path = store_path
        self.lease = float(os.environ.get("SYNTHMED_LEASE_SECONDS", LEASE_SECONDS)) if lease is None else lease
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True)

    def __enter__(self) -> Claims:
        self.drop_dead_holders()
        self._thread.start()
        return self

    def drop_dead_holders(self) -> None:
        """Release the claims of processes on this machine that no longer run (a killed or crashed driver), so
        the same command resumes at once instead of waiting for their leases to expire."""
        host = socket.gethostname()
        with self._lock, ResultStore(self.store_path) as store:
            for holder in store.holders():
                name, _, rest = holder.partition(":")
                pid = rest.partition(":")[0]
                if name == host and pid.isdigit() and holder != self.holder and not _alive(int(pid)):
                    store.drop_holder(holder)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock, ResultStore(self.store_path) as store:
            for run_id in self.held:
                store.release(run_id, self.holder)
            self.held.clear()

    def take(self, run_id: str) -> bool:
        with self._lock, ResultStore(self.store_path) as store:
            taken = store.claim(run_id, self.holder, self.lease)
        if taken:
            with self._lock:
                self.held.add(run_id)
        return taken

    def release(self, run_id: str) -> None:
        with self._lock, ResultStore(self.store_path) as store:
            store.release(run_id, self.holder)
            self.held.discard(run_id)

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3):
            with self._lock:
                held = list(self.held)
            if held:
                with ResultStore(self.store_path) as store:
                    store.renew(held, self.holder, self.lease)
