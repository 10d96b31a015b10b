"""A worker killed with SIGKILL at any step leaves a job the next worker completes, with the
same result: one database, every table once, the seed once, one saved connection."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from sqlalchemy import func, select, text

from tenantry.db import migrations
from tenantry.db.admin import database_exists, drop_database
from tenantry.db.engines import make_engine
from tenantry.db.identity import read_identity
from tenantry.db.master.models import IntegrationConfig, ProvisioningMode, Store
from tenantry.db.tenant.store.models import Category, Setting
from tenantry.db.urls import parse_url
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services import provisioning, servers, stores
from tenantry.services.connections import tenant_url
from tenantry.settings import Settings
from tests.conftest import SERVER_URLS, DbFactory, require_server
from tests.helpers import provision_job, run_child, someone_elses, still_theirs
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]

LEASE_S = 0.3


def _run_child(settings: Settings, job_id: uuid.UUID, failpoint: str) -> int:
    env = {
        **os.environ,
        "TENANTRY_DATA_DIR": str(settings.data_dir),
        "TENANTRY_FAILPOINTS": f"{failpoint}=kill",
        "TENANTRY_JOB_LEASE_SECONDS": str(LEASE_S),
    }
    code = run_child(provision_job, str(job_id), env=env)
    assert code == -signal.SIGKILL
    return code


def _request(
    platform: Platform,
    slug: str,
    mode: ProvisioningMode,
    *,
    server: str | None = None,
    url: str | None = None,
) -> uuid.UUID:
    with platform.sessions.begin() as session:
        store = stores.create_store(session, slug=slug, name=slug, actor="cli:test")
        registered = None
        if server:
            registered, _ = servers.add_server(
                session, platform.box, name=server, admin_url=SERVER_URLS[server], actor="cli:test"
            )
        job = provisioning.request_provisioning(
            session,
            platform.box,
            platform.settings,
            store,
            mode=mode,
            server=registered,
            url=url,
            actor="cli:test",
        )
        return job.id


def _resume_and_check(platform: Platform, job_id: uuid.UUID) -> None:
    time.sleep(LEASE_S + 0.2)
    with platform.sessions() as session:
        job = provisioning.get_job(session, job_id)
        assert job.status == "running"  # the dead worker's lease is all that is left
        assert job_id in provisioning.recoverable_jobs(session)
    outcome = Provisioner(
        platform.sessions, platform.box, platform.settings, platform.tenant_spec, "rescuer"
    ).run(job_id)
    assert outcome == "completed"
    with platform.sessions() as session:
        job = provisioning.get_job(session, job_id)
        assert job.status == "completed"
        assert job.progress == 100
        assert job.attempts == 2
        assert job.tables_created == job.total_tables == 15
        store = session.get(Store, job.store_id)
        assert store is not None
        assert store.database_status == "active"
        configs = session.scalars(
            select(IntegrationConfig).where(IntegrationConfig.store_id == store.id)
        ).all()
        assert len(configs) == 1
        url = tenant_url(platform.box, configs[0])
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            identity = read_identity(conn)
            assert identity is not None
            assert identity.instance_id == configs[0].instance_id
            assert migrations.drift(conn, platform.tenant_spec) == []
            assert migrations.current(conn, platform.tenant_spec) == migrations.head(
                platform.tenant_spec
            )
            assert conn.scalar(select(func.count()).select_from(Category)) == 2
            assert conn.scalar(select(func.count()).select_from(Setting)) == 5
            assert conn.scalar(text("SELECT COUNT(*) FROM tenantry_identity")) == 1
    finally:
        engine.dispose()


CREATE_POINTS = [
    "provision.connect",
    "provision.create_database",
    "provision.inspect",
    "provision.migrate",
    "provision.seed",
    "provision.save_connection",
]


@pytest.mark.parametrize("point", CREATE_POINTS)
def test_create_new_sqlite_resumes_after_sigkill(platform: Platform, point: str) -> None:
    job_id = _request(platform, "killed", mode=ProvisioningMode.CREATE_NEW)
    _run_child(platform.settings, job_id, point)
    _resume_and_check(platform, job_id)
    files = list((platform.settings.data_dir / "tenants").glob("killed-*.db"))
    assert len(files) == 1


# PostgreSQL clones a template database, so it has no table-by-table step to die in.
SERVER_POINTS = [("postgresql", p) for p in CREATE_POINTS] + [
    ("mysql", p) for p in [*CREATE_POINTS, "provision.table.5", "provision.indexes.7"]
]


@pytest.mark.parametrize(("server", "point"), SERVER_POINTS)
def test_create_new_on_server_resumes_after_sigkill(
    platform: Platform, server: str, point: str
) -> None:
    require_server(server)
    slug = f"k-{uuid.uuid4().hex[:6]}"
    job_id = _request(platform, slug, mode=ProvisioningMode.CREATE_NEW, server=server)
    _run_child(platform.settings, job_id, point)
    try:
        _resume_and_check(platform, job_id)
        with platform.sessions() as session:
            store = stores.get_store(session, slug)
            name = provisioning.tenant_database_name(store)
        admin = parse_url(SERVER_URLS[server])
        assert database_exists(admin.set(database=name))
    finally:
        with platform.sessions() as session:
            store = stores.get_store(session, slug)
            drop_database(
                parse_url(SERVER_URLS[server]).set(
                    database=provisioning.tenant_database_name(store)
                )
            )


@pytest.mark.parametrize("point", ["provision.table.5", "provision.indexes.7", "provision.migrate"])
def test_connect_existing_resumes_after_sigkill(
    platform: Platform, new_database: DbFactory, point: str
) -> None:
    url = new_database("tenant")
    job_id = _request(
        platform,
        "linked",
        mode=ProvisioningMode.CONNECT_EXISTING,
        url=url.render_as_string(hide_password=False),
    )
    _run_child(platform.settings, job_id, point)
    _resume_and_check(platform, job_id)


def test_failed_create_new_removes_only_what_it_created(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "provision.seed=raise")
    job_id = _request(platform, "doomed", mode=ProvisioningMode.CREATE_NEW)
    outcome = Provisioner(
        platform.sessions, platform.box, platform.settings, platform.tenant_spec, "w"
    ).run(job_id)
    assert outcome == "failed"
    with platform.sessions() as session:
        job = provisioning.get_job(session, job_id)
        assert "fail point provision.seed" in (job.error or "")
        assert "removed" in (job.message or "")
        assert stores.get_store(session, "doomed").database_status == "failed"
    assert list((platform.settings.data_dir / "tenants").glob("doomed-*.db")) == []


def test_failed_connect_existing_never_drops(
    platform: Platform, new_database: DbFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = new_database("tenant")
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "provision.seed=raise")
    job_id = _request(
        platform,
        "kept",
        mode=ProvisioningMode.CONNECT_EXISTING,
        url=url.render_as_string(hide_password=False),
    )
    assert (
        Provisioner(
            platform.sessions, platform.box, platform.settings, platform.tenant_spec, "w"
        ).run(job_id)
        == "failed"
    )
    assert database_exists(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT COUNT(*) FROM products")) == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"])
def test_a_resumed_job_never_takes_a_database_someone_put_at_its_name(
    platform: Platform, backend: str
) -> None:
    # The worker recorded that it creates the store's database and died before making it;
    # meanwhile someone made a database of their own at that name. The resumed job must not
    # build its tables in it, stamp it or (failing) drop it: it is not the one the job made.
    server = None if backend == "sqlite" else backend
    if server is not None:
        require_server(server)
    slug = f"t-{uuid.uuid4().hex[:6]}"
    job_id = _request(platform, slug, mode=ProvisioningMode.CREATE_NEW, server=server)
    _run_child(platform.settings, job_id, "provision.create_database")
    with platform.sessions() as session:
        job = provisioning.get_job(session, job_id)
        assert job.database_created  # recorded before the database was made
        url = provisioning.new_database_url(session, platform.box, job)
    assert not database_exists(url)
    someone_elses(url)
    try:
        time.sleep(LEASE_S + 0.2)
        outcome = Provisioner(
            platform.sessions, platform.box, platform.settings, platform.tenant_spec, "rescuer"
        ).run(job_id)
        assert outcome == "failed"
        with platform.sessions() as session:
            job = provisioning.get_job(session, job_id)
            assert "exists already and this job did not create it" in (job.error or "")
            assert stores.get_store(session, slug).database_status == "failed"
        assert still_theirs(url)  # no tables added, no identity, not dropped
    finally:
        drop_database(url)
