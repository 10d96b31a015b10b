"""A request whose query runs past TENANTRY_STATEMENT_TIMEOUT_MS gets a 503 that says so
(with Retry-After) instead of hanging, on PostgreSQL and MariaDB: the store's products table
is held locked by another session, so the API's read waits until the server cancels it."""

from __future__ import annotations

import time

import pytest

from tenantry.db.engines import make_engine
from tests.api.conftest import Api
from tests.conftest import DbFactory

LOCK = {
    "postgresql": "LOCK TABLE products IN ACCESS EXCLUSIVE MODE",
    "mysql": "LOCK TABLES products WRITE",
}


@pytest.fixture(autouse=True)
def _short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTRY_STATEMENT_TIMEOUT_MS", "500")


@pytest.mark.server
@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
def test_a_query_past_the_timeout_is_a_503_not_a_hang(
    backend: str, api: Api, new_database: DbFactory
) -> None:
    url = new_database("slow")
    plain = url.render_as_string(hide_password=False)
    result = api.provisioned_store("slow", mode="connect_existing", url=plain)
    assert result["job"]["status"] == "completed", result["job"]
    assert api.client.get("/stores/slow/products", headers=api.admin).status_code == 200

    locker = make_engine(url, pooled=False)
    try:
        with locker.connect() as conn:
            conn.exec_driver_sql(LOCK[backend])
            started = time.monotonic()
            response = api.client.get("/stores/slow/products", headers=api.admin)
            waited = time.monotonic() - started
            conn.rollback()
            if backend == "mysql":
                conn.exec_driver_sql("UNLOCK TABLES")
    finally:
        locker.dispose()
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["type"] == "StatementTimeout"
    assert "statement timeout" in error["message"]
    assert "TENANTRY_STATEMENT_TIMEOUT_MS" in error["hint"]
    assert response.headers["Retry-After"]
    assert waited < 10
    # Once the lock is gone the same request works again.
    assert api.client.get("/stores/slow/products", headers=api.admin).status_code == 200
