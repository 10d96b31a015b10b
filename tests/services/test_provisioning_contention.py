"""Provisioning jobs on a SQLite master that the API keeps writing to at the same time."""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import select, update

from tenantry.db.engines import make_engine
from tenantry.db.master.models import DatabaseStatus, ProvisioningMode, Store
from tenantry.runtime import Platform
from tenantry.services import provisioning, stores
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]


def test_jobs_complete_while_another_connection_keeps_writing_master(platform: Platform) -> None:
    """Seen with `tenantry up`: stores created over HTTP while others were provisioned failed
    some jobs with "database is locked" (a transaction that read, then wrote, after the API
    had committed in between)."""
    jobs: list[uuid.UUID] = []
    with platform.sessions.begin() as session:
        other = stores.create_store(session, slug="busy-other", name="Other")
        for i in range(6):
            store = stores.create_store(session, slug=f"busy-{i}", name=f"Busy {i}")
            job = provisioning.request_provisioning(
                session, platform.box, platform.settings, store, mode=ProvisioningMode.CREATE_NEW
            )
            jobs.append(job.id)
        other_id = other.id
    stop = threading.Event()
    writes = 0

    def api() -> None:
        nonlocal writes
        engine = make_engine(platform.settings.master_url, pooled=False)
        try:
            while not stop.is_set():
                with engine.begin() as conn:
                    conn.execute(
                        update(Store).where(Store.id == other_id).values(api_calls_month=writes)
                    )
                writes += 1
        finally:
            engine.dispose()

    thread = threading.Thread(target=api, daemon=True)
    thread.start()
    try:
        worker = provisioning.Provisioner(
            platform.sessions, platform.box, platform.settings, platform.tenant_spec, "w1"
        )
        outcomes = [worker.run(job_id) for job_id in jobs]
    finally:
        stop.set()
        thread.join()
    assert writes > len(jobs)  # master really was written throughout
    assert outcomes == ["completed"] * len(jobs)
    with platform.sessions() as session:
        statuses = session.scalars(select(Store.database_status).where(Store.id != other_id))
        assert set(statuses) == {DatabaseStatus.ACTIVE}
