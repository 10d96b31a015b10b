"""Fail points: named places where a test can make the process die or fail on purpose.

Inactive unless ``TENANTRY_FAILPOINTS`` is set, e.g.
``TENANTRY_FAILPOINTS="provision.seed=kill,provision.table.3=raise"``. ``kill`` sends SIGKILL
to the process itself (nothing is flushed, no handler runs: a real crash); ``raise`` raises
:class:`FailPointError`; ``sleep:SECONDS`` pauses there (so two processes are surely in flight
at the same step, or a test can cancel a job while a worker is between two steps). This is how the
resume-after-SIGKILL guarantees are tested against real databases at exact points instead of
by racing a timer.
"""

from __future__ import annotations

import os
import signal
import time


class FailPointError(RuntimeError):
    """Raised at a fail point set to ``raise``."""


def _active() -> dict[str, str]:
    spec = os.environ.get("TENANTRY_FAILPOINTS", "")
    points: dict[str, str] = {}
    for item in spec.split(","):
        name, _, action = item.strip().partition("=")
        if name:
            points[name] = action or "raise"
    return points


def failpoint(name: str) -> None:
    """Die or raise here if the fail point ``name`` is set; otherwise do nothing."""
    if "TENANTRY_FAILPOINTS" not in os.environ:
        return
    action = _active().get(name, "")
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "raise":
        raise FailPointError(f"fail point {name} reached")
    elif action.startswith("sleep:"):
        time.sleep(float(action.removeprefix("sleep:")))
