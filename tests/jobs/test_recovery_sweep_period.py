"""TENANTRY_RECOVERY_SWEEP_SECONDS: the recovery sweep each minute on the queue's schedule by
default, on a timer of the worker's own for any other period."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from itertools import pairwise

import pytest

from tenantry.errors import ConfigurationError
from tenantry.jobs.queue import Queue
from tenantry.jobs.sweep_timer import SweepTimer
from tenantry.settings import Settings, load_settings
from tests.platform_fixtures import settings

__all__ = ["settings"]


def _periodic_names(queue: Queue) -> set[str]:
    return {t.name for t in queue.huey.read_periodic(datetime(2026, 1, 1, 10, 1))}


def test_the_default_period_is_the_queues_minute_schedule(settings: Settings) -> None:
    assert settings.recovery_sweep_seconds == 60
    queue = Queue(settings, immediate=True)
    try:
        assert "tenantry.recover" in _periodic_names(queue)
    finally:
        queue.close()


def test_another_period_leaves_the_schedule_to_the_workers_timer(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTRY_RECOVERY_SWEEP_SECONDS", "2")
    short = load_settings()
    assert short.recovery_sweep_seconds == 2
    queue = Queue(short, immediate=True)
    try:
        names = _periodic_names(queue)
        assert "tenantry.recover" not in names
        assert "tenantry.spares" in names  # the other minutely tasks stay scheduled
    finally:
        queue.close()


def test_the_timer_sweeps_each_period_and_survives_a_failing_sweep() -> None:
    calls: list[float] = []
    third = threading.Event()

    def sweep() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("master unreachable")  # logged; the next period sweeps again
        if len(calls) >= 3:
            third.set()

    timer = SweepTimer(sweep, 0.2)
    started = time.monotonic()
    timer.start()
    try:
        assert third.wait(10), calls
    finally:
        timer.stop()
    assert calls[0] - started >= 0.2  # the first sweep one period after start
    assert all(b - a >= 0.19 for a, b in pairwise(calls))
    count = len(calls)
    time.sleep(0.5)
    assert len(calls) == count  # stopped


def test_a_period_outside_its_bounds_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTRY_RECOVERY_SWEEP_SECONDS", "0")
    with pytest.raises(ConfigurationError, match="TENANTRY_RECOVERY_SWEEP_SECONDS"):
        load_settings()
