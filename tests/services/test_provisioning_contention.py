"""Provisioning jobs on a SQLite master that the API keeps writing to at the same time."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update

from tenantry.db.master.models import DatabaseStatus, ProvisioningMode, Store
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services import provisioning, stores
from tests.helpers import busy_writer
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]


def test_jobs_complete_while_another_connection_keeps_writing_master(platform: Platform) -> None:
    """Seen with `tenantry up`: stores created over HTTP while others were provisioned failed
    some jobs with "database is locked" (a transaction that read, then wrote, after the API
    had committed in between)."""
    jobs: list[uuid.UUID] = []
    with platform.sessions.begin() as session:
        other = stores.create_store(session, slug="busy-other", name="Other", actor="cli:test")
        for i in range(6):
            store = stores.create_store(
                session, slug=f"busy-{i}", name=f"Busy {i}", actor="cli:test"
            )
            job = provisioning.request_provisioning(
                session,
                platform.box,
                platform.settings,
                store,
                mode=ProvisioningMode.CREATE_NEW,
                actor="cli:test",
            )
            jobs.append(job.id)
        other_id = other.id
    busy = (
        update(Store).where(Store.id == other_id).values(api_calls_month=Store.api_calls_month + 1)
    )
    with busy_writer(platform.settings.master_url, busy) as writes:
        worker = Provisioner(
            platform.sessions, platform.box, platform.settings, platform.tenant_spec, "w1"
        )
        outcomes = [worker.run(job_id) for job_id in jobs]
        assert writes() > len(jobs)  # master really was written throughout
    assert outcomes == ["completed"] * len(jobs)
    with platform.sessions() as session:
        statuses = session.scalars(select(Store.database_status).where(Store.id != other_id))
        assert set(statuses) == {DatabaseStatus.ACTIVE}
