"""The recovery sweep on a timer, for a period other than the queue's once a minute.

Huey's scheduler looks at periodic tasks once a minute, so a shorter period
(``TENANTRY_RECOVERY_SWEEP_SECONDS``, e.g. in tests that kill a worker) runs the sweep from a
thread of the worker process instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("tenantry.jobs")

#: The period the queue's own schedule runs the sweep at (a crontab of every minute).
SCHEDULED_PERIOD_S = 60


class SweepTimer:
    """Calls ``sweep`` every ``period`` seconds from :meth:`start` until :meth:`stop`."""

    def __init__(self, sweep: Callable[[], object], period: float) -> None:
        self.sweep = sweep
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="tenantry-recovery-sweep", daemon=True
        )

    def start(self) -> None:
        """Start sweeping (the first sweep one period from now)."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.sweep()
            except Exception as exc:  # a master hiccup must not stop the sweeps; next period
                log.warning("recovery sweep failed: %s", type(exc).__name__)

    def stop(self) -> None:
        """Stop sweeping; a sweep under way is waited for."""
        self._stop.set()
        self._thread.join(timeout=30)
