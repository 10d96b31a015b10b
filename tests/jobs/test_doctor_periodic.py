"""The worker's queue runs the doctor's checks every few minutes and logs what fails."""

from __future__ import annotations

import logging
from datetime import datetime

import pytest

from tenantry.jobs.queue import DOCTOR_EVERY_MIN, Queue
from tenantry.runtime import Platform
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]


def test_the_doctor_is_a_periodic_task_whose_tick_logs_failing_checks(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    queue = Queue(platform.settings, immediate=True)
    try:
        due = {t.name for t in queue.huey.read_periodic(datetime(2026, 1, 1, 10, DOCTOR_EVERY_MIN))}
        assert "tenantry.doctor" in due
        not_due = {t.name for t in queue.huey.read_periodic(datetime(2026, 1, 1, 10, 1))}
        assert "tenantry.doctor" not in not_due
        assert "tenantry.recover" in not_due  # (every minute)
        caplog.set_level(logging.INFO, logger="tenantry.doctor")
        queue.doctor_tick()
    finally:
        queue.close()
    by_check = {getattr(r, "check", None): r for r in caplog.records if r.name == "tenantry.doctor"}
    # A fresh install: no worker alive and no backup yet.
    assert by_check["worker"].levelno == logging.ERROR
    assert by_check["backup master"].levelno == logging.ERROR
    assert "tenantry backup run --db master --verify" in by_check["backup master"].getMessage()
    assert all(r.levelno >= logging.WARNING for r in caplog.records if r.name == "tenantry.doctor")
