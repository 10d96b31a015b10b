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
from tenantry.db.master.models import DatabaseServer, ProvisioningMode
from tenantry.db.urls import parse_url
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services import provisioning, servers, stores
from tests.conftest import SERVER_URLS, require_server
from tests.platform_fixtures import platform, settings

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


def test_a_cold_postgresql_job_takes_the_writer_lock_only_to_record(platform: Platform) -> None:
    """The claim (which records that the job creates its database: it was found missing
    before), the copy made, the completion: three. Reading where the database goes took one
    more, and recording the creation one of its own."""
    require_server("postgresql")
    admin_url = parse_url(SERVER_URLS["postgresql"])
    cold = platform.settings.model_copy(update={"spare_databases": 0})
    name = f"pg-{uuid.uuid4().hex[:6]}"
    with platform.sessions.begin() as session:
        servers.add_server(session, platform.box, name=name, admin_url=str(admin_url), actor="t")
        store = stores.create_store(
            session, slug=f"lock-{uuid.uuid4().hex[:6]}", name="Lock", actor="t"
        )
        job = provisioning.request_provisioning(
            session,
            platform.box,
            cold,
            store,
            mode=ProvisioningMode.CREATE_NEW,
            server=servers.get_server(session, name),
            actor="cli:test",
        )
        job_id, database = job.id, provisioning.tenant_database_name(store)
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
    with platform.sessions.begin() as session:
        servers.add_server(session, platform.box, name=name, admin_url=str(admin_url), actor="t")
        store = stores.create_store(
            session, slug=f"gone-{uuid.uuid4().hex[:6]}", name="Gone", actor="t"
        )
        job = provisioning.request_provisioning(
            session,
            platform.box,
            platform.settings,
            store,
            mode=ProvisioningMode.CREATE_NEW,
            server=servers.get_server(session, name),
            actor="cli:test",
        )
        job_id = job.id
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
