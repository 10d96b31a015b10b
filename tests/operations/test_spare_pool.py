"""The spare database pool: provisioning claims a spare, which is never routed to, the pool is
refilled to its bound and never past it, a schema change retires spares, a crash between claim
and stamp leaks nothing, and ``TENANTRY_SPARE_DATABASES=0`` means no spares. On a PostgreSQL
server; MySQL/MariaDB get no spares (no template copy, no database rename), nor does SQLite
(a store's file is the template copied with its identity and data in one step, faster than a
spare), whose leftover spare files from an earlier version a refill drops."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session

from tenantry.db import admin, builder, logins
from tenantry.db.engines import make_engine
from tenantry.db.identity import SPARE_ROLE, Identity, expect, guard, read_identity, stamp_spare
from tenantry.db.master.models import (
    AccessMode,
    DatabaseServer,
    IntegrationConfig,
    Operation,
    ProvisioningMode,
    SpareDatabase,
    Store,
)
from tenantry.db.spares import drop_spare_login, new_spare_name, spare_url
from tenantry.db.types import utcnow
from tenantry.db.urls import parse_url
from tenantry.errors import WrongDatabase
from tenantry.operations import provision_spare, spare_pool, work
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services import provisioning, runtime_access, servers, spares, stores
from tenantry.services.connections import server_url, tenant_url
from tenantry.settings import Settings
from tests.conftest import SERVER_URLS, require_server
from tests.helpers import provision_job, run_child, someone_elses, still_theirs
from tests.platform_fixtures import platform, settings
from tests.store_logins import drop_logins_of_stores

__all__ = ["platform", "settings"]


@pytest.fixture(params=["postgresql"])
def pool_backend(request: pytest.FixtureRequest) -> str:
    """Each backend a pool is kept for."""
    require_server(request.param)
    return str(request.param)


@pytest.fixture
def pooled(platform: Platform, pool_backend: str) -> Iterator[tuple[Platform, str | None]]:
    """The platform and the server its stores go to (None: SQLite files); every spare and
    store database the test made is dropped after it."""
    server = None
    if pool_backend == "postgresql":
        server = f"pg-{uuid.uuid4().hex[:6]}"
        with platform.sessions.begin() as session:
            servers.add_server(
                session,
                platform.box,
                name=server,
                admin_url=SERVER_URLS["postgresql"],
                actor="cli:test",
            )
    yield platform, server
    with platform.sessions() as session:
        names = [
            (spare.database_name, spare.database_server_id is not None)
            for spare in session.scalars(select(SpareDatabase))
        ]
        urls = [stores.active_connection(session, s) for s in session.scalars(select(Store))]
        made = [tenant_url(platform.box, c) for c in urls if c is not None]
    for name, on_server in names:
        admin.drop_database(_spare(platform, name, on_server))
        drop_spare_login(_spare(platform, name, on_server))
    for url in made:  # through the admin URL: the store's own login may not drop it
        on_server = url.get_backend_name() != "sqlite"
        admin_url = _parse(SERVER_URLS["postgresql"]).set(database=url.database)
        admin.drop_database(admin_url if on_server else url)
    drop_logins_of_stores(platform)  # a claimed spare's login became its store's


@pytest.fixture(autouse=True)
def spares_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool at its default bound (the test suite keeps it off elsewhere)."""
    monkeypatch.setenv("TENANTRY_SPARE_DATABASES", "2")


def _spare(platform: Platform, name: str, on_server: bool) -> URL:
    admin_url = SERVER_URLS["postgresql"] if on_server else None
    return spare_url(
        None if admin_url is None else _parse(admin_url), platform.settings.data_dir, name
    )


def _parse(raw: str) -> URL:
    return parse_url(raw)


def _with(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update=changes)


def _refill(platform: Platform, settings: Settings | None = None) -> spare_pool.RefillReport:
    return spare_pool.refill(
        platform.sessions, platform.box, settings or platform.settings, platform.tenant_spec
    )


def _spares(platform: Platform, server: str | None) -> list[SpareDatabase]:
    with platform.sessions() as session:
        server_id = servers.get_server(session, server).id if server else None
        rows = [
            s for s in session.scalars(select(SpareDatabase)) if s.database_server_id == server_id
        ]
        session.expunge_all()
        return rows


def _request(platform: Platform, server: str | None, slug: str) -> uuid.UUID:
    with platform.sessions.begin() as session:
        store = stores.create_store(session, slug=slug, name=slug.title(), actor="cli:test")
        target = servers.get_server(session, server) if server else None
        job = provisioning.request_provisioning(
            session,
            platform.box,
            platform.settings,
            store,
            mode=ProvisioningMode.CREATE_NEW,
            server=target,
            actor="cli:test",
        )
        return job.id


def _provision(
    platform: Platform, server: str | None, slug: str, settings: Settings | None = None
) -> tuple[str, uuid.UUID]:
    job_id = _request(platform, server, slug)
    runner = Provisioner(
        platform.sessions, platform.box, settings or platform.settings, platform.tenant_spec, "w1"
    )
    outcome = runner.run(job_id)
    if outcome == "failed":
        with platform.sessions() as session:
            print("job error:", provisioning.get_job(session, job_id).error)
    return outcome, job_id


def _identity_of(url: URL) -> Identity | None:
    engine: Engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return read_identity(conn)
    finally:
        engine.dispose()


def _store_database(platform: Platform, slug: str) -> tuple[URL, IntegrationConfig]:
    with platform.sessions() as session:
        store = stores.get_store(session, slug)
        config = stores.active_connection(session, store)
        assert config is not None
        session.expunge_all()
        return tenant_url(platform.box, config), config


def _exists(platform: Platform, spare: SpareDatabase) -> bool:
    return admin.database_exists(
        _spare(platform, spare.database_name, spare.database_server_id is not None)
    )


def test_provisioning_takes_a_spare_stamped_with_the_store_identity(
    pooled: tuple[Platform, str | None],
) -> None:
    platform, server = pooled
    report = _refill(platform)
    assert sum(report.made.values()) >= 2
    before = _spares(platform, server)
    assert len(before) == platform.settings.spare_databases == 2
    assert all(_exists(platform, s) for s in before)
    made = {s.id: _made_as(platform, s) for s in before}

    outcome, _ = _provision(platform, server, f"warm-{uuid.uuid4().hex[:6]}")
    assert outcome == "completed"

    after = _spares(platform, server)
    assert len(after) == 1  # one was claimed
    taken = next(s for s in before if s.id not in {a.id for a in after})
    assert not _exists(platform, taken)  # renamed to the store's name, not left behind
    slug = next(iter(_slugs(platform)))
    url, config = _store_database(platform, slug)
    # No copy was made for the store: its database is the very one the spare was (the same
    # PostgreSQL database oid, the same SQLite file), only renamed.
    assert _database_id(url) == made[taken.id]
    identity = _identity_of(url)
    assert identity is not None
    assert identity.role == "tenant"
    assert identity.instance_id == config.instance_id
    # The spare's id, kept: the job recorded it, so it can always tell this database apart.
    assert identity.instance_id == str(taken.id)
    if server is not None:  # the spare's login, renamed: the store's, granted service only
        with platform.sessions() as session:
            store = stores.get_store(session, slug)
            expected = runtime_access.store_logins(store.slug, store.id)[0]
        assert config.config_data["username"] == expected
        assert config.access_mode == AccessMode.RUNTIME_LOGIN
        admin_url = _parse(SERVER_URLS["postgresql"])
        assert not logins.login_exists(admin_url, taken.database_name)
        engine = make_engine(url, pool_size=1)
        try:
            with engine.connect() as conn:
                assert conn.scalar(text("SELECT count(*) FROM categories")) == 2
                with pytest.raises(ProgrammingError):
                    conn.execute(text("CREATE TABLE intruder (id int)"))
        finally:
            engine.dispose()


def _database_id(url: URL) -> int:
    """What stays when a database is renamed and changes when it is copied: the oid of a
    PostgreSQL database, the inode of a SQLite file."""
    if url.get_backend_name() == "sqlite":
        return os.stat(str(url.database)).st_ino
    engine = make_engine(_parse(SERVER_URLS["postgresql"]), pool_size=1)
    try:
        with engine.connect() as conn:
            oid = conn.scalar(
                text("SELECT oid FROM pg_database WHERE datname = :n"), {"n": url.database}
            )
    finally:
        engine.dispose()
    assert oid is not None, url.database
    return int(oid)


def _made_as(platform: Platform, spare: SpareDatabase) -> int:
    on_server = spare.database_server_id is not None
    return _database_id(_spare(platform, spare.database_name, on_server))


def _slugs(platform: Platform) -> list[str]:
    with platform.sessions() as session:
        return list(session.scalars(select(Store.slug)))


def test_a_job_refills_the_pool_after_it_only_once_no_other_job_is_queued(
    pooled: tuple[Platform, str | None],
) -> None:
    platform, server = pooled
    _refill(platform)
    first = _request(platform, server, f"burst-{uuid.uuid4().hex[:6]}")
    waiting = _request(platform, server, f"burst-{uuid.uuid4().hex[:6]}")
    runner = Provisioner(
        platform.sessions, platform.box, platform.settings, platform.tenant_spec, "w1"
    )
    assert runner.run(first) == "completed"
    assert len(_spares(platform, server)) == 1  # the first job took a spare
    # Another job is queued: the pool is left short until the backlog is worked off.
    assert work.spare_tick_after_job(platform) is None
    assert len(_spares(platform, server)) == 1
    assert runner.run(waiting) == "completed"
    # The last job of the backlog refills the pool to its bound.
    report = work.spare_tick_after_job(platform)
    assert report is not None
    assert sum(report.made.values()) == 2  # the second job took the other spare
    assert len(_spares(platform, server)) == platform.settings.spare_databases == 2


def test_a_spare_is_refused_by_the_identity_guard(pooled: tuple[Platform, str | None]) -> None:
    platform, server = pooled
    _refill(platform)
    spare = _spares(platform, server)[0]
    url = _spare(platform, spare.database_name, server is not None)
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            identity = read_identity(conn)
            assert identity is not None
            assert identity.role == SPARE_ROLE
            with pytest.raises(WrongDatabase, match="spare database"):
                expect(conn, platform.tenant_spec, where="a store's database")
            with pytest.raises(WrongDatabase):
                guard(conn, platform.tenant_spec)
    finally:
        engine.dispose()


def test_two_racing_refills_fill_the_pool_to_its_bound_and_never_above(
    pooled: tuple[Platform, str | None],
) -> None:
    platform, server = pooled
    bound = _with(platform.settings, spare_databases=3)
    reports: list[spare_pool.RefillReport] = []
    threads = [
        threading.Thread(target=lambda: reports.append(_refill(platform, bound))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(_spares(platform, server)) == 3
    again = _refill(platform, bound)
    assert again.made == {}
    assert again.dropped == {}
    assert len(_spares(platform, server)) == 3
    assert all(_exists(platform, s) for s in _spares(platform, server))


def test_a_schema_change_retires_the_stale_spares(pooled: tuple[Platform, str | None]) -> None:
    platform, server = pooled
    _refill(platform)
    old = _spares(platform, server)
    with platform.sessions.begin() as session:  # as if cloned before a new head revision
        session.execute(update(SpareDatabase).values(template="tenantry_tpl_store_0000"))
    outcome, _ = _provision(platform, server, f"cold-{uuid.uuid4().hex[:6]}")
    assert outcome == "completed"
    assert [s.id for s in _spares(platform, server)] == [s.id for s in old]  # none claimed

    report = _refill(platform)
    assert report.dropped.get(server or "sqlite") == 2
    assert not any(_exists(platform, s) for s in old)
    fresh = _spares(platform, server)
    assert len(fresh) == 2
    assert not {s.id for s in fresh} & {s.id for s in old}


def test_a_crash_between_claim_and_stamp_leaks_no_spare(
    pooled: tuple[Platform, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    platform, server = pooled
    _refill(platform)
    before = _spares(platform, server)

    monkeypatch.setattr(provision_spare, "stamp_and_seed", _killed)
    with pytest.raises(SystemExit):
        _provision(platform, server, f"crash-{uuid.uuid4().hex[:6]}")
    monkeypatch.undo()
    slug = _slugs(platform)[0]
    with platform.sessions() as session:
        store = stores.get_store(session, slug)
        assert stores.active_connection(session, store) is None  # no store points at it
        job = provisioning.list_jobs(session, store=store)[0][0]
        job_id = job.id
        assert job.destination is not None
        assert job.destination["spare"]
    claimed = next(s for s in before if s.id not in {a.id for a in _spares(platform, server)})

    _lapse_lease(platform, job_id)
    runner = Provisioner(
        platform.sessions, platform.box, platform.settings, platform.tenant_spec, "w2"
    )
    assert runner.run(job_id) == "completed"
    assert not _exists(platform, claimed)
    url, config = _store_database(platform, slug)
    identity = _identity_of(url)
    assert identity is not None
    assert identity.role == "tenant"
    assert identity.instance_id == config.instance_id
    for spare in _spares(platform, server):  # what is left in the pool is still unassigned
        found = _identity_of(_spare(platform, spare.database_name, server is not None))
        assert found is not None
        assert found.role == SPARE_ROLE


def test_a_failed_job_drops_the_spare_it_claimed(
    pooled: tuple[Platform, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    platform, server = pooled
    _refill(platform)
    before = {s.id: s for s in _spares(platform, server)}
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "provision.spare.claimed=raise")
    outcome, _ = _provision(platform, server, f"fail-{uuid.uuid4().hex[:6]}")
    assert outcome == "failed"
    left = {s.id for s in _spares(platform, server)}
    claimed = [s for i, s in before.items() if i not in left]
    assert len(claimed) == 1
    assert not _exists(platform, claimed[0])


def _killed(*args: object) -> None:
    """Stands in for a step the worker dies in: not an Exception, so nothing records or
    cleans up."""
    raise SystemExit("worker killed")


def _lapse_lease(platform: Platform, job_id: uuid.UUID) -> None:
    """The dead worker's lease on ``job_id`` runs out."""
    with platform.sessions.begin() as session:
        session.execute(
            update(Operation)
            .where(Operation.id == job_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def _target(platform: Platform, job_id: uuid.UUID) -> URL:
    """Where the store's database of create-new job ``job_id`` goes."""
    with platform.sessions() as session:
        return provisioning.new_database_url(
            session, platform.box, provisioning.get_job(session, job_id)
        )


def test_a_database_already_at_the_store_name_is_left_alone_and_the_job_says_so(
    pooled: tuple[Platform, str | None],
) -> None:
    # The job does not ask the server before it claims a spare: renaming the spare onto
    # the store's name is what finds the other database there.
    platform, server = pooled
    _refill(platform)
    before = _spares(platform, server)
    job_id = _request(platform, server, f"taken-{uuid.uuid4().hex[:6]}")
    url = _target(platform, job_id)
    someone_elses(url)
    try:
        runner = Provisioner(
            platform.sessions, platform.box, platform.settings, platform.tenant_spec, "w1"
        )
        assert runner.run(job_id) == "failed"
        with platform.sessions() as session:
            error = provisioning.get_job(session, job_id).error or ""
        assert "exists already and this job did not create it" in error
        assert "--connect" in error
        assert still_theirs(url)  # not stamped, not dropped, not renamed away
        # The spare it claimed is gone with the failed job, not left under any name.
        left = {s.id for s in _spares(platform, server)}
        for spare in before:
            if spare.id not in left:
                assert not _exists(platform, spare)
    finally:
        admin.drop_database(url)


def test_a_resumed_job_leaves_a_database_put_at_the_store_name_after_its_crash(
    pooled: tuple[Platform, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker claimed a spare and died before renaming it; meanwhile someone made a
    # database at the store's name. The job's record says it creates that database, but the
    # database does not carry the claimed spare's id: the resumed job must not take it (nor,
    # failing, drop it).
    platform, server = pooled
    _refill(platform)
    before = _spares(platform, server)

    monkeypatch.setattr(provision_spare, "move_into_place", _killed)
    job_id = _request(platform, server, f"moved-{uuid.uuid4().hex[:6]}")
    runner = Provisioner(
        platform.sessions, platform.box, platform.settings, platform.tenant_spec, "w1"
    )
    with pytest.raises(SystemExit):
        runner.run(job_id)
    monkeypatch.undo()
    claimed = next(s for s in before if s.id not in {a.id for a in _spares(platform, server)})
    url = _target(platform, job_id)
    someone_elses(url)
    try:
        _lapse_lease(platform, job_id)
        rescuer = Provisioner(
            platform.sessions, platform.box, platform.settings, platform.tenant_spec, "w2"
        )
        assert rescuer.run(job_id) == "failed"
        with platform.sessions() as session:
            job = provisioning.get_job(session, job_id)
            assert "exists already and this job did not create it" in (job.error or "")
            assert job.store_id is not None
            store = stores.get_store(session, job.store_id)
            assert stores.active_connection(session, store) is None
        assert still_theirs(url)
        assert not _exists(platform, claimed)  # the claimed spare went with the job
    finally:
        admin.drop_database(url)


def test_no_spares_when_the_bound_is_zero(pooled: tuple[Platform, str | None]) -> None:
    platform, server = pooled
    _refill(platform)
    had = _spares(platform, server)
    off = _with(platform.settings, spare_databases=0)
    report = _refill(platform, off)
    assert report.made == {}
    assert _spares(platform, server) == []
    assert not any(_exists(platform, s) for s in had)
    outcome, _ = _provision(platform, server, f"off-{uuid.uuid4().hex[:6]}", off)
    assert outcome == "completed"
    _refill(platform, off)
    assert _spares(platform, server) == []


def test_mysql_servers_get_no_spares(platform: Platform) -> None:
    require_server("mysql")
    with platform.sessions.begin() as session:
        servers.add_server(
            session, platform.box, name="maria", admin_url=SERVER_URLS["mysql"], actor="cli:test"
        )
    report = _refill(platform)
    assert "maria" not in report.made
    with platform.sessions() as session:
        server = session.scalars(select(DatabaseServer)).one()
        assert server_url(platform.box, server).get_backend_name() == "mysql"
        assert spare_pool_rows(session, server.id) == 0
    _refill(platform, _with(platform.settings, spare_databases=0))  # the SQLite pool's


def test_sqlite_keeps_no_spares_and_a_refill_drops_an_earlier_versions(
    platform: Platform,
) -> None:
    """A spare file an earlier version made (ready, in the SQLite pool) is dropped by the next
    refill, none is made, and a new SQLite store is the template's prepared copy, not a
    spare."""
    spec, data_dir = platform.tenant_spec, platform.settings.data_dir
    name = new_spare_name()
    with platform.sessions.begin() as session:
        spare_id = spares.reserve(session, None, name, builder.template_name(spec))
    leftover = spare_url(None, data_dir, name)
    os.makedirs(os.path.dirname(str(leftover.database)), exist_ok=True)
    assert builder.create_tenant_database(leftover, spec, data_dir / "templates")
    engine = make_engine(leftover, pool_size=1)
    try:
        with engine.begin() as conn:
            stamp_spare(conn, spec, platform.settings.tenant_owner, str(spare_id))
    finally:
        engine.dispose()
    with platform.sessions.begin() as session:
        assert spares.mark_ready(session, spare_id, None)

    report = _refill(platform)
    assert report.dropped == {"sqlite": 1}
    assert "sqlite" not in report.made
    assert not admin.database_exists(leftover)
    assert _spares(platform, None) == []

    outcome, job_id = _provision(platform, None, f"file-{uuid.uuid4().hex[:6]}")
    assert outcome == "completed"
    with platform.sessions() as session:
        assert not (provisioning.get_job(session, job_id).destination or {}).get("spare")
    assert _spares(platform, None) == []


def spare_pool_rows(session: Session, server_id: uuid.UUID) -> int:
    return len(
        list(
            session.scalars(
                select(SpareDatabase).where(SpareDatabase.database_server_id == server_id)
            )
        )
    )


@pytest.mark.parametrize("point", ["provision.spare.claimed", "provision.seed"])
def test_a_worker_killed_after_the_claim_leaves_a_job_the_next_completes(
    pooled: tuple[Platform, str | None], point: str
) -> None:
    """SIGKILL after the claim (the spare still under its own name) or after the rename (the
    store's database still unassigned): the next worker drops it and completes the job; the
    claimed spare is nowhere, and the store's database is stamped and seeded once."""
    platform, server = pooled
    _refill(platform)
    before = _spares(platform, server)
    job_id = _request(platform, server, f"kill-{uuid.uuid4().hex[:6]}")
    env = {
        **os.environ,
        "TENANTRY_DATA_DIR": str(platform.settings.data_dir),
        "TENANTRY_FAILPOINTS": f"{point}=kill",
        "TENANTRY_JOB_LEASE_SECONDS": "0.3",
    }
    assert run_child(provision_job, str(job_id), env=env) == -signal.SIGKILL
    claimed = next(s for s in before if s.id not in {a.id for a in _spares(platform, server)})
    time.sleep(0.5)  # the dead worker's lease lapses
    rescuer = Provisioner(
        platform.sessions, platform.box, platform.settings, platform.tenant_spec, "rescuer"
    )
    assert rescuer.run(job_id) == "completed"
    assert not _exists(platform, claimed)
    if server is not None:
        assert not logins.login_exists(_parse(SERVER_URLS["postgresql"]), claimed.database_name)
    slug = _slugs(platform)[0]
    url, config = _store_database(platform, slug)
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            identity = read_identity(conn)
            assert identity is not None
            assert identity.role == "tenant"
            assert identity.instance_id == config.instance_id
            assert conn.scalar(text("SELECT count(*) FROM tenantry_identity")) == 1
            assert conn.scalar(text("SELECT count(*) FROM categories")) == 2
    finally:
        engine.dispose()
