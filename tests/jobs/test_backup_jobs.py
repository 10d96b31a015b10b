"""Backups run by workers: a queued backup whose queue message was lost is taken anyway, and
one handed to two real worker processes at once is taken once."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from tenantry.backup.storage import storage_for
from tenantry.db.master.models import Backup, BackupStatus, Operation
from tenantry.db.types import utcnow
from tenantry.jobs.queue import Queue
from tenantry.runtime import Platform
from tenantry.services.backups.taking import queue_backup
from tenantry.services.backups.targets import resolve
from tests.helpers import running_worker
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]


def test_a_lost_queued_backup_is_taken_by_the_recovery_sweep(platform: Platform) -> None:
    storage = storage_for(platform.settings)
    with platform.sessions.begin() as session:
        target = resolve(session, platform.box, platform.settings, "billing")
        lost = queue_backup(
            session, storage, target, actor="cli:test"
        )  # never enqueued: the message is lost
        fresh = queue_backup(session, storage, target, actor="cli:test")
    with platform.sessions.begin() as session:
        session.execute(
            update(Backup)
            .where(Backup.id == lost.id)
            .values(started_at=utcnow() - timedelta(minutes=10))
        )
        # Queued long ago: its operation too (the sweep asks the operations).
        session.execute(
            update(Operation)
            .where(Operation.id == lost.id)
            .values(created_at=utcnow() - timedelta(minutes=10))
        )
    queue = Queue(platform.settings, immediate=True)
    try:
        assert queue.recover() == 1
    finally:
        queue.close()
    with platform.sessions() as session:
        assert session.get_one(Backup, lost.id).status == BackupStatus.STORED
        assert session.get_one(Backup, fresh.id).status == BackupStatus.QUEUED
        assert session.query(Backup).filter_by(status=BackupStatus.STORED).count() == 1


TAKEN = {BackupStatus.STORED, BackupStatus.VERIFIED}


def test_a_backup_handed_to_two_workers_at_once_is_taken_once(
    platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker that claims the backup pauses after writing it, so the other worker surely
    # receives its copy of the message while the first is still in flight.
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "backup.written=sleep:2")
    storage = storage_for(platform.settings)
    with platform.sessions.begin() as session:
        target = resolve(session, platform.box, platform.settings, "billing")
        queued = queue_backup(session, storage, target, actor="cli:test")
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    with running_worker(logs[0]), running_worker(logs[1]):
        queue = Queue(platform.settings)
        try:
            queue.enqueue_backup(queued.id, "billing")
            queue.enqueue_backup(queued.id, "billing")  # a duplicate delivery
        finally:
            queue.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            texts = [log.read_text() for log in logs]
            if all(f"backup {queued.id} of billing: " in text for text in texts):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"both workers did not run the backup within 60 s: {texts}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with platform.sessions() as session:
                if session.get_one(Backup, queued.id).status in TAKEN:
                    break
            time.sleep(0.2)
    texts = [log.read_text() for log in logs]
    assert sum(f"backup {queued.id} of billing: stored" in text for text in texts) == 1, texts
    assert sum(f"backup {queued.id} of billing: skipped" in text for text in texts) == 1, texts
    with platform.sessions() as session:
        # A worker's scheduler may already have test-restored it ("verified").
        assert session.get_one(Backup, queued.id).status in TAKEN
        # (The workers' scheduler may have taken master's due backup meanwhile.)
        assert session.query(Backup).filter_by(role="billing").count() == 1
        artifact = session.get_one(Backup, queued.id).artifact_key
    assert storage.size(artifact), "the backup's artifact is in storage"
