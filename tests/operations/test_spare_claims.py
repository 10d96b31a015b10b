"""Claiming spares on every master backend: of provisioning jobs running at once, each spare
goes to at most one store (a row lock skipping those others hold on a server master, the one
writer on SQLite), and a job that finds none left takes the clone path. The spares and the
stores' databases are on a registered PostgreSQL server (the only kind that keeps spares)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from tenantry.db import admin, logins
from tenantry.db.engines import make_engine
from tenantry.db.identity import read_identity
from tenantry.db.master.models import SpareDatabase, SpareStatus, Store
from tenantry.db.spares import drop_spare_login
from tenantry.db.urls import parse_url
from tenantry.operations import spare_pool
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services import provisioning, runtime_access, servers, stores
from tenantry.services.connections import tenant_url
from tenantry.services.spares import claim_ready
from tests.conftest import SERVER_URLS, require_server
from tests.platform_fixtures import backend_platform
from tests.store_setup import request_create_new

__all__ = ["backend_platform"]

JOBS = 4
SPARES = 2


@pytest.fixture
def on_server(backend_platform: Platform) -> Iterator[tuple[Platform, str]]:
    """The platform with a PostgreSQL server registered; every database and login its stores
    and spares got there is dropped after the test."""
    require_server("postgresql")
    platform, name = backend_platform, f"pg-{uuid.uuid4().hex[:6]}"
    admin_url = parse_url(SERVER_URLS["postgresql"])
    with platform.sessions.begin() as session:
        servers.add_server(
            session, platform.box, name=name, admin_url=str(SERVER_URLS["postgresql"]), actor="t"
        )
    yield platform, name
    with platform.sessions() as session:
        left = [s.database_name for s in session.scalars(select(SpareDatabase))]
        made = [
            (provisioning.tenant_database_name(s), runtime_access.store_logins(s.slug, s.id))
            for s in session.scalars(select(Store))
        ]
    for spare in left:
        admin.drop_database(admin_url.set(database=spare))
        drop_spare_login(admin_url.set(database=spare))
    for database, names in made:
        admin.drop_database(admin_url.set(database=database))
        for login in names:
            logins.drop_login(admin_url, login)


def test_concurrent_jobs_never_share_a_spare(on_server: tuple[Platform, str]) -> None:
    platform, server_name = on_server
    bound = platform.settings.model_copy(update={"spare_databases": SPARES})
    spec = platform.tenant_spec
    spare_pool.refill(platform.sessions, platform.box, bound, spec)
    job_ids = []
    with platform.sessions.begin() as session:
        for i in range(JOBS):
            slug = f"race-{i}-{uuid.uuid4().hex[:4]}"
            job = request_create_new(session, platform, bound, slug, server_name)
            job_ids.append(job.id)
    outcomes: dict[uuid.UUID, str] = {}
    start = threading.Barrier(JOBS)

    def run(job_id: uuid.UUID) -> None:
        runner = Provisioner(platform.sessions, platform.box, bound, spec, f"w-{job_id.hex[:6]}")
        start.wait()
        outcomes[job_id] = runner.run(job_id)

    threads = [threading.Thread(target=run, args=(j,)) for j in job_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(outcomes.values()) == {"completed"}

    with platform.sessions() as session:
        assert session.scalars(select(SpareDatabase)).all() == []  # both spares were taken
        jobs = [provisioning.get_job(session, j) for j in job_ids]
        claimed = [(j.destination or {}).get("spare") for j in jobs]
        claimed = [name for name in claimed if name]
        assert len(claimed) == SPARES
        assert len(set(claimed)) == SPARES  # no spare went to two stores
        instances = set()
        for job in jobs:
            assert job.store_id is not None
            store = stores.get_store(session, job.store_id)
            config = stores.active_connection(session, store)
            assert config is not None
            engine = make_engine(tenant_url(platform.box, config), pool_size=1)
            try:
                with engine.connect() as conn:
                    identity = read_identity(conn)
            finally:
                engine.dispose()
            assert identity is not None
            assert identity.role == "tenant"
            assert identity.instance_id == config.instance_id
            instances.add(identity.instance_id)
        assert len(instances) == JOBS


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])  # SQLite claims never overlap
def test_a_claim_skips_only_the_spare_another_claim_holds(
    on_server: tuple[Platform, str], backend: str
) -> None:
    # A locking read over the pool (ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) had
    # InnoDB lock every spare it read to sort them: while one claim was open, the next found
    # none, and its job took the clone path with spares ready.
    require_server(backend)
    platform, server_name = on_server
    template = f"tpl_{uuid.uuid4().hex[:8]}"
    with platform.sessions.begin() as session:
        server_id = servers.get_server(session, server_name).id
        for n in range(2):  # rows only: claiming never touches the databases themselves
            session.add(
                SpareDatabase(
                    database_server_id=server_id,
                    database_name=f"{template}_spare_{n}",
                    template=template,
                    status=SpareStatus.READY.value,
                )
            )
    engine = platform.sessions.kw["bind"]
    with engine.connect() as first, engine.connect() as second, first.begin():
        held = claim_ready(first, server_id, template)  # not committed yet
        assert held is not None
        with second.begin():
            other = claim_ready(second, server_id, template)
            assert other is not None, "the second claim found no spare free"
            assert other.id != held.id
            assert claim_ready(second, server_id, template) is None  # both are taken
    with platform.sessions() as session:
        left = session.scalars(select(SpareDatabase).where(SpareDatabase.template == template))
        assert left.all() == []
