"""Dropping the runtime logins a test's stores got on the test servers (logins are server-wide:
dropping a test's databases leaves them behind)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from tenantry.db.master.models import DatabaseServer, Store
from tenantry.errors import DatabaseUnreachable
from tenantry.runtime import Platform
from tenantry.services.connections import server_url
from tenantry.services.runtime_access import drop_store_logins


def drop_logins_of_stores(platform: Platform) -> None:
    """Drop both logins of every store master knows on every registered server."""
    with platform.sessions() as session:
        stores = [(s.slug, s.id) for s in session.scalars(select(Store))]
        servers = [server_url(platform.box, s) for s in session.scalars(select(DatabaseServer))]
    for url in servers:
        try:
            for slug, store_id in stores:
                drop_store_logins(url, slug, store_id)
        except DatabaseUnreachable:  # a server registered with a login the test dropped
            continue


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
