"""A provisioning job that fails at any step cleans up after itself, on every backend.

Create-new: whatever step raises, the job ends ``failed`` with the fail point named in its
error, the store is not active, no database of the store is left on the server (checked with
the server's own catalog: ``pg_database`` / ``information_schema.schemata``, or the SQLite file)
and provisioning the store again succeeds. Connect-existing: the database the user gave is
never dropped, whatever step fails.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from tenantry.db.admin import drop_database
from tenantry.db.master.models import (
    DatabaseServer,
    IntegrationConfig,
    ProvisioningMode,
    lifecycle_status,
)
from tenantry.db.urls import parse_url
from tenantry.jobs.queue import Queue
from tenantry.operations.kit import OperationKit
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services import provisioning, servers, stores
from tests.conftest import SERVER_URLS, DbFactory, require_server, server_has_database
from tests.helpers import provision_job, run_child, someone_elses, still_theirs
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]

# Every fail point a create-new job passes; PostgreSQL and SQLite copy a template, so only
# MariaDB passes the table-by-table ones.
CREATE_POINTS = [
    "provision.connect",
    "provision.create_database",
    "provision.inspect",
    "provision.migrate",
    "provision.seed",
    "provision.save_connection",
]
MYSQL_ONLY = ["provision.table.5", "provision.indexes.7"]
# The points after the job has made its database: cleanup has something to remove.
AFTER_CREATE = {"provision.inspect", "provision.migrate", "provision.seed"} | {
    "provision.save_connection",
    *MYSQL_ONLY,
}


def _run(platform: Platform, job_id: uuid.UUID, worker: str = "w") -> str:
    return Provisioner(
        platform.sessions, platform.box, platform.settings, platform.tenant_spec, worker
    ).run(job_id)


def _request(
    platform: Platform,
    slug: str,
    *,
    mode: ProvisioningMode,
    server: DatabaseServer | None = None,
    url: str | None = None,
) -> uuid.UUID:
    with platform.sessions.begin() as session:
        store = stores.get_store(session, slug)
        job = provisioning.request_provisioning(
            session,
            platform.box,
            platform.settings,
            store,
            mode=mode,
            server=server,
            url=url,
            actor="cli:test",
        )
        return job.id


@pytest.mark.parametrize("point", CREATE_POINTS)
def test_failed_create_new_leaves_no_database_and_can_be_provisioned_again(
    platform: Platform, backend: str, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_then_provision_again(platform, backend, point, monkeypatch)


@pytest.mark.parametrize("point", MYSQL_ONLY)
def test_failed_table_by_table_build_on_mariadb_leaves_no_database(
    platform: Platform, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_server("mysql")
    _fail_then_provision_again(platform, "mysql", point, monkeypatch)


def _fail_then_provision_again(
    platform: Platform, backend: str, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail a create-new job of a new store at ``point``, check nothing is left, provision
    the store again."""
    slug = f"f-{uuid.uuid4().hex[:8]}"
    with platform.sessions.begin() as session:
        store = stores.create_store(session, slug=slug, name=slug, actor="cli:test")
        server = None
        if backend != "sqlite":
            server, _ = servers.add_server(
                session,
                platform.box,
                name=backend,
                admin_url=SERVER_URLS[backend],
                actor="cli:test",
            )
        name = provisioning.tenant_database_name(store)
        path = provisioning.tenant_sqlite_path(platform.settings, store)
        server_id = server.id if server else None

    def database_left() -> bool:
        if backend == "sqlite":
            return path.exists()
        return server_has_database(backend, name)

    try:
        monkeypatch.setenv("TENANTRY_FAILPOINTS", f"{point}=raise")
        with platform.sessions() as session:
            chosen = session.get(DatabaseServer, server_id) if server_id else None
        job_id = _request(platform, slug, mode=ProvisioningMode.CREATE_NEW, server=chosen)
        assert _run(platform, job_id) == "failed"

        with platform.sessions() as session:
            job = provisioning.get_job(session, job_id)
            assert job.status == "failed"
            assert job.error == f"FailPointError: fail point {point} reached"
            assert job.finished_at is not None
            assert job.lease_expires_at is None
            if point in AFTER_CREATE:
                assert job.message == "failed (the database it created was removed)"
            else:
                assert job.message == "failed"
            store = stores.get_store(session, slug)
            assert store.database_status == "failed"
            assert stores.active_connection(session, store) is None
        assert not database_left(), f"{point}: the half-made database is still there"
        if backend == "sqlite":
            leftovers = list(path.parent.glob(f"{path.stem}*")) if path.parent.exists() else []
            assert leftovers == []

        # The same store, the same database name: a leftover would make this a Conflict.
        monkeypatch.delenv("TENANTRY_FAILPOINTS")
        job_id = _request(platform, slug, mode=ProvisioningMode.CREATE_NEW, server=chosen)
        assert _run(platform, job_id) == "completed"
        with platform.sessions() as session:
            store = stores.get_store(session, slug)
            assert store.database_status == "active"
            configs = session.scalars(
                select(IntegrationConfig).where(IntegrationConfig.store_id == store.id)
            ).all()
            assert len(configs) == 1
        assert database_left()
    finally:
        if backend != "sqlite":
            drop_database(parse_url(SERVER_URLS[backend]).set(database=name))


CONNECT_POINTS = [
    "provision.connect",
    "provision.inspect",
    "provision.table.3",
    "provision.migrate",
    "provision.seed",
    "provision.save_connection",
]


@pytest.mark.parametrize("point", CONNECT_POINTS)
def test_failed_connect_existing_never_drops_the_database(
    platform: Platform,
    backend: str,
    new_database: DbFactory,
    point: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = new_database("mine")
    with platform.sessions.begin() as session:
        stores.create_store(session, slug="linked", name="Linked", actor="cli:test")
    monkeypatch.setenv("TENANTRY_FAILPOINTS", f"{point}=raise")
    job_id = _request(
        platform,
        "linked",
        mode=ProvisioningMode.CONNECT_EXISTING,
        url=url.render_as_string(hide_password=False),
    )
    assert _run(platform, job_id) == "failed"
    with platform.sessions() as session:
        job = provisioning.get_job(session, job_id)
        assert job.error == f"FailPointError: fail point {point} reached"
        assert job.message == "failed"  # never "removed"
        store = stores.get_store(session, "linked")
        assert store.database_status == "failed"
        assert stores.active_connection(session, store) is None
    if backend == "sqlite":
        assert Path(str(url.database)).is_file()
    else:
        assert server_has_database(backend, str(url.database))

    # The user's database is still usable: provisioning it again completes.
    monkeypatch.delenv("TENANTRY_FAILPOINTS")
    job_id = _request(
        platform,
        "linked",
        mode=ProvisioningMode.CONNECT_EXISTING,
        url=url.render_as_string(hide_password=False),
    )
    assert _run(platform, job_id) == "completed"


def _died_and_cancelled(
    platform: Platform, slug: str, point: str = "provision.seed"
) -> tuple[uuid.UUID, Path]:
    """A create-new job whose worker was SIGKILLed at ``point`` (by default after making the
    database), then cancelled; returns once the dead worker's (1 s) lease has run out."""
    with platform.sessions.begin() as session:
        store = stores.create_store(session, slug=slug, name=slug.title(), actor="cli:test")
        path = provisioning.tenant_sqlite_path(platform.settings, store)
    job_id = _request(platform, slug, mode=ProvisioningMode.CREATE_NEW)
    env = {
        **os.environ,
        "TENANTRY_DATA_DIR": str(platform.settings.data_dir),
        "TENANTRY_FAILPOINTS": f"{point}=kill",
        "TENANTRY_JOB_LEASE_SECONDS": "1",
    }
    assert run_child(provision_job, str(job_id), env=env) == -signal.SIGKILL
    assert path.exists() == (point == "provision.seed")  # made before the worker died
    with platform.writer_sessions.begin() as session:
        provisioning.cancel_job(session, provisioning.get_job(session, job_id), actor="cli:test")
    time.sleep(1.1)
    return job_id, path


def test_a_new_job_takes_over_the_database_a_cancelled_dead_job_left(platform: Platform) -> None:
    cancelled, path = _died_and_cancelled(platform, "orphan")
    job_id = _request(platform, "orphan", mode=ProvisioningMode.CREATE_NEW)
    assert _run(platform, job_id) == "completed"
    assert path.exists()
    with platform.sessions() as session:
        old = provisioning.get_job(session, str(cancelled))
        assert (old.status, old.database_created) == ("cancelled", False)
        assert provisioning.get_job(session, str(job_id)).database_created
        store = stores.get_store(session, "orphan")
        assert store.database_status == "active"


def test_a_new_job_never_takes_over_a_database_the_dead_job_did_not_make(
    platform: Platform,
) -> None:
    # The dead job recorded that it creates the file and died before making it; someone else
    # put a database there. The next job of the store must not take it over (and drop it).
    _died_and_cancelled(platform, "orphan", point="provision.create_database")
    with platform.sessions() as session:
        store = stores.get_store(session, "orphan")
        path = provisioning.tenant_sqlite_path(platform.settings, store)
    theirs = parse_url(f"sqlite:///{path}")
    someone_elses(theirs)
    job_id = _request(platform, "orphan", mode=ProvisioningMode.CREATE_NEW)
    assert _run(platform, job_id) == "failed"
    with platform.sessions() as session:
        error = provisioning.get_job(session, str(job_id)).error or ""
    assert "exists already and this job did not create it" in error
    assert still_theirs(theirs)


def test_the_recovery_sweep_drops_what_a_cancelled_dead_job_left(platform: Platform) -> None:
    cancelled, path = _died_and_cancelled(platform, "swept")
    queue = Queue(platform.settings, immediate=True)
    try:
        queue.recover()
        assert not path.exists()
        queue.recover()  # nothing left to do: a second sweep changes nothing
    finally:
        queue.close()
    with platform.sessions() as session:
        job = provisioning.get_job(session, str(cancelled))
        assert (job.status, job.database_created) == ("cancelled", False)
        assert "removed" in (job.message or "")
    job_id = _request(platform, "swept", mode=ProvisioningMode.CREATE_NEW)
    assert _run(platform, job_id) == "completed"


def test_a_cancelled_job_of_a_deleted_store_ends_instead_of_stalling(platform: Platform) -> None:
    with platform.sessions.begin() as session:
        store = stores.create_store(session, slug="gone-shop", name="Gone", actor="cli:test")
    job_id = _request(platform, "gone-shop", mode=ProvisioningMode.CREATE_NEW)
    dying = OperationKit(platform.sessions, lease_seconds=0.2)  # a worker about to die
    assert dying.claim(job_id) is not None
    with platform.writer_sessions.begin() as session:
        provisioning.cancel_job(session, provisioning.get_job(session, job_id), actor="cli:test")
    with platform.writer_sessions.begin() as session:  # no active job: deleting is allowed
        store = stores.get_store(session, "gone-shop")
        stores.delete_store(
            session,
            store,
            stores.plan_delete(session, store, drop_database=False),
            actor="cli:test",
        )
    time.sleep(0.3)
    with platform.sessions() as session:
        assert provisioning.recoverable_jobs(session) == [job_id]
    queue = Queue(platform.settings, immediate=True)
    try:
        assert queue.recover() == 1
        assert queue.recover() == 0  # over: the sweep does not take it up again
    finally:
        queue.close()
    operation = OperationKit(platform.sessions, lease_seconds=30).get(job_id)
    assert (operation.kind, lifecycle_status(operation)) == ("provision", "cancelled")
