"""On a SQLite master every writer queues on one lock (tenantry/db/sqlite_writers.py): a
provisioning job takes it for what it records, not for what it only reads (where its
database goes), which would queue behind the API and the other workers and hold the lock
meanwhile. What the job asks its server before it is claimed never leaves it unexplained."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event, select

from tenantry.db import admin
from tenantry.db.master.models import DatabaseServer, ProvisioningJob
from tenantry.db.urls import parse_url
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services import provisioning, servers
from tenantry.settings import Settings
from tests.conftest import SERVER_URLS, require_server
from tests.platform_fixtures import platform, settings
from tests.store_setup import request_create_new

__all__ = ["platform", "settings"]


@contextmanager
def writer_transactions(platform: Platform) -> Iterator[Callable[[], int]]:
    """How many transactions that take master's writer lock were begun in the block."""
    begun: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement == "BEGIN IMMEDIATE":
            begun.append(statement)

    event.listen(platform.master_engine, "before_cursor_execute", seen)
    try:
        yield lambda: len(begun)
    finally:
        event.remove(platform.master_engine, "before_cursor_execute", seen)


def queued_job(platform: Platform, settings: Settings, server: str, slug: str) -> ProvisioningJob:
    """A create-new job queued for a new store ``slug`` on ``server``, registered here as
    the test's PostgreSQL server (detached)."""
    admin_url = str(SERVER_URLS["postgresql"])
    with platform.sessions.begin() as session:
        servers.add_server(session, platform.box, name=server, admin_url=admin_url, actor="t")
        job = request_create_new(session, platform, settings, slug, server)
        session.flush()
        session.expunge(job)
    return job


def test_a_cold_postgresql_job_takes_the_writer_lock_only_to_record(platform: Platform) -> None:
    """The claim (which records that the job creates its database: it was found missing
    before), the copy made, the completion: three. Reading where the database goes took one
    more, and recording the creation one of its own."""
    require_server("postgresql")
    admin_url = parse_url(SERVER_URLS["postgresql"])
    cold = platform.settings.model_copy(update={"spare_databases": 0})
    slug = f"lock-{uuid.uuid4().hex[:6]}"
    job = queued_job(platform, cold, f"pg-{uuid.uuid4().hex[:6]}", slug)
    assert job.destination is not None
    job_id, database = job.id, job.destination["database"]
    try:
        runner = Provisioner(platform.sessions, platform.box, cold, platform.tenant_spec, "w1")
        with writer_transactions(platform) as count:
            outcome = runner.run(job_id)
        assert outcome == "completed"
        assert admin.database_exists(admin_url.set(database=database))
        assert count() == 3
    finally:
        admin.drop_database(admin_url.set(database=database))


def test_a_job_whose_server_went_away_is_ended_failed_with_the_reason(
    platform: Platform,
) -> None:
    """Asked before the claim whether its database is there, an unreachable server must
    not escape the run: the job is claimed and ends failed, saying what is wrong."""
    require_server("postgresql")
    admin_url = parse_url(SERVER_URLS["postgresql"])
    name = f"pg-{uuid.uuid4().hex[:6]}"
    job_id = queued_job(platform, platform.settings, name, f"gone-{uuid.uuid4().hex[:6]}").id
    with platform.sessions.begin() as session:  # the server moved since it was registered
        server = session.scalars(select(DatabaseServer).where(DatabaseServer.name == name)).one()
        server.admin_url_encrypted = platform.box.seal(
            admin_url.set(port=1).render_as_string(hide_password=False)
        )
    runner = Provisioner(
        platform.sessions, platform.box, platform.settings, platform.tenant_spec, "w1"
    )
    assert runner.run(job_id) == "failed"
    with platform.sessions() as session:
        failed = provisioning.get_job(session, job_id)
        assert failed.attempts == 1
        assert "cannot connect" in str(failed.error)
