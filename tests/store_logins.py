"""Dropping the runtime logins a test's stores got on the test servers (logins are server-wide:
dropping a test's databases leaves them behind)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select, text

from tenantry.db import logins
from tenantry.db.engines import make_engine
from tenantry.db.master.models import DatabaseServer, IntegrationConfig, ProvisioningJob, Store
from tenantry.db.urls import parse_url
from tenantry.errors import DatabaseUnreachable
from tenantry.runtime import Platform
from tenantry.services.connections import server_url
from tenantry.services.runtime_access import drop_store_logins
from tests.conftest import SERVER_URLS


def drop_logins_of_stores(platform: Platform) -> None:
    """Drop both logins of every store on every registered server it was provisioned on or
    moved to."""
    with platform.sessions() as session:
        # Every server a store was (or was being) provisioned or moved to.
        rows = [
            *session.execute(
                select(Store.slug, Store.id, IntegrationConfig.database_server_id).join(
                    IntegrationConfig, IntegrationConfig.store_id == Store.id
                )
            ),
            *session.execute(
                select(Store.slug, Store.id, ProvisioningJob.database_server_id).join(
                    ProvisioningJob, ProvisioningJob.store_id == Store.id
                )
            ),
        ]
        servers = {
            s.id: server_url(platform.box, s) for s in session.scalars(select(DatabaseServer))
        }
    for slug, store_id, server_id in {tuple(row) for row in rows}:
        url = servers.get(server_id) if server_id is not None else None
        if url is None:
            continue
        try:
            drop_store_logins(url, slug, store_id)
        except DatabaseUnreachable:  # a server registered with a login the test dropped
            continue


def drop_logins_named(backend: str, prefix: str) -> None:
    """Drop every login on ``backend``'s test server whose name starts with ``prefix``
    (a test's own, unique prefix: a CLI test's stores live in a master of its own)."""
    admin = parse_url(SERVER_URLS[backend])
    if backend == "postgresql":
        query = "SELECT rolname FROM pg_roles WHERE starts_with(rolname, :p)"
    else:
        query = "SELECT User FROM mysql.user WHERE LEFT(User, CHAR_LENGTH(:p)) = :p"
    engine = make_engine(admin, pooled=False)
    try:
        with engine.connect() as conn:
            names = [str(n) for n in conn.execute(text(query), {"p": prefix}).scalars()]
    finally:
        engine.dispose()
    for name in names:
        logins.drop_login(admin, name)


@pytest.fixture(params=("postgresql", "mysql"))
def server(request: pytest.FixtureRequest, platform: Platform) -> Iterator[str]:
    """The local ``postgresql`` or ``mysql`` server, registered as ``db1``; every database and
    login the test's stores got there is dropped after the test."""
    from tests.conftest import require_server
    from tests.services.test_moves import drop_server_databases, register

    require_server(request.param)
    register(platform, "db1", request.param)
    yield str(request.param)
    drop_server_databases(platform)  # and the stores' logins
