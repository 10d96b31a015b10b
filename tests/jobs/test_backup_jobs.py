"""Backups run by workers: a queued backup whose queue message was lost is taken anyway, and
one handed to two workers is taken once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from tenantry.backup.storage import storage_for
from tenantry.db.master.models import Backup, BackupStatus
from tenantry.db.types import utcnow
from tenantry.jobs.queue import Queue
from tenantry.runtime import Platform
from tenantry.services.backups.taking import queue_backup
from tenantry.services.backups.targets import resolve
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]


def test_a_lost_queued_backup_is_taken_by_the_recovery_sweep(platform: Platform) -> None:
    storage = storage_for(platform.settings)
    with platform.sessions.begin() as session:
        target = resolve(session, platform.box, platform.settings, "billing")
        lost = queue_backup(session, storage, target)  # never enqueued: the message is lost
        fresh = queue_backup(session, storage, target)
    with platform.sessions.begin() as session:
        session.execute(
            update(Backup)
            .where(Backup.id == lost.id)
            .values(started_at=utcnow() - timedelta(minutes=10))
        )
    queue = Queue(platform.settings, immediate=True)
    try:
        assert queue.recover() == 1
        queue.enqueue_backup(lost.id, "billing")  # a duplicate delivery changes nothing
    finally:
        queue.close()
    with platform.sessions() as session:
        assert session.get_one(Backup, lost.id).status == BackupStatus.STORED
        assert session.get_one(Backup, fresh.id).status == BackupStatus.QUEUED
        assert session.query(Backup).filter_by(status=BackupStatus.STORED).count() == 1
