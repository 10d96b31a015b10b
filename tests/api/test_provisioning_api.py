"""Provisioning over HTTP on SQLite, PostgreSQL and MariaDB, and what it refuses."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import Connection, MetaData, inspect, select
from sqlalchemy.engine import URL

from tenantry.db.admin import drop_database
from tenantry.db.engines import make_engine
from tenantry.db.identity import read_identity
from tenantry.db.tenant.store.models import Category, Product
from tenantry.db.urls import parse_url
from tests.api.conftest import Api
from tests.conftest import SERVER_URLS, DbFactory, require_server, server_databases


def _plain(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def test_connect_existing_empty_database(api: Api, new_database: DbFactory) -> None:
    url = new_database("tenant")
    result = api.provisioned_store("linked", mode="connect_existing", url=_plain(url))
    assert result["job"]["status"] == "completed", result["job"]
    product = api.client.post(
        "/stores/linked/products", json={"sku": "P1", "name": "P"}, headers=api.admin
    )
    assert product.status_code == 201
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            identity = read_identity(conn)
            assert identity is not None
            assert identity.role == "tenant"
            assert conn.scalars(select(Product.sku)).all() == ["P1"]
            assert sorted(conn.scalars(select(Category.slug))) == ["featured", "uncategorized"]
    finally:
        engine.dispose()
    shown = api.client.get("/stores/linked", headers=api.admin).json()
    assert shown["database_type"] == url.get_backend_name().replace("mariadb", "mysql")


@pytest.mark.parametrize("server", ["postgresql", "mysql"])
def test_create_new_on_a_registered_server(api: Api, server: str, server_slug: str) -> None:
    require_server(server)
    admin_url = SERVER_URLS[server]
    added = api.client.post(
        "/database-servers",
        json={"name": f"{server[:2]}-main", "url": admin_url},
        headers=api.admin,
    )
    assert added.status_code == 201, added.text
    assert "url" not in added.json()
    result = api.provisioned_store(server_slug, mode="create_new", server=f"{server[:2]}-main")
    assert result["job"]["status"] == "completed", result["job"]
    store = api.client.get(f"/stores/{server_slug}", headers=api.admin).json()
    tenant_db = f"t_{server_slug.replace('-', '_')}_{store['id'].replace('-', '')[:8]}"
    assert server_databases(server, f"t_{server_slug.replace('-', '_')}_") == [tenant_db]
    made = api.client.post(
        f"/stores/{server_slug}/products", json={"sku": "X", "name": "X"}, headers=api.admin
    )
    assert made.status_code == 201


def _failed_job(api: Api, slug: str, url: str) -> dict[str, object]:
    result = api.provisioned_store(slug, mode="connect_existing", url=url)
    job = result["job"]
    assert job["status"] == "failed", job
    store = api.client.get(f"/stores/{slug}", headers=api.admin).json()
    assert store["status"] == "failed"
    return dict(job)


def test_master_and_billing_urls_are_refused_by_identity(api: Api) -> None:
    settings = api.platform.settings
    master_before = _snapshot(settings.master_url)
    job = _failed_job(api, "on-master", _plain(settings.master_url))
    assert "found a master database" in str(job["error"])
    billing = _failed_job(api, "on-billing", _plain(settings.billing_url))
    assert "found a billing database" in str(billing["error"])
    after = _snapshot(settings.master_url)
    assert set(after) == set(master_before)  # no tenant table landed in master


def _snapshot(url: URL) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_another_stores_database_is_refused(api: Api, new_database: DbFactory) -> None:
    url = _plain(new_database("tenant"))
    assert (
        api.provisioned_store("first", mode="connect_existing", url=url)["job"]["status"]
        == "completed"
    )
    job = _failed_job(api, "second", url)
    assert "already the database of store 'first'" in str(job["error"])


def test_database_with_foreign_tables_is_refused_untouched(
    api: Api, new_database: DbFactory
) -> None:
    url = new_database("legacy")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE gauges (id INTEGER PRIMARY KEY)")
        job = _failed_job(api, "legacy-shop", _plain(url))
        assert "gauges" in str(job["error"])
        with engine.connect() as conn:
            assert _tables(conn) == ["gauges"]
    finally:
        engine.dispose()


def _tables(conn: Connection) -> list[str]:
    return sorted(inspect(conn).get_table_names())


def test_wrong_credentials_and_unreachable_servers_fail_without_secrets(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    unreachable = _failed_job(api, "nowhere", "postgresql://app:hunter2-pw@127.0.0.1:1/shop")
    assert "cannot connect" in str(unreachable["error"])
    texts = [str(unreachable)]
    require_server("mysql")
    wrong = _failed_job(api, "wrong-pw", "mysql://root:hunter2-pw@127.0.0.1:3306/mysql")
    assert "Access denied" in str(wrong["error"])
    texts.append(str(wrong))
    texts.append(api.client.get("/stores/wrong-pw", headers=api.admin).text)
    texts.append(caplog.text)
    texts.extend(_master_text(api))
    assert not [t for t in texts if "hunter2-pw" in t]


def _master_text(api: Api) -> list[str]:
    """Every text and JSON value in every master table."""
    out: list[str] = []
    with api.platform.master_engine.connect() as conn:
        meta = MetaData()
        meta.reflect(conn)
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                out.extend(str(v) for v in row if v is not None)
    return out


def test_server_passwords_are_stored_encrypted_only(api: Api) -> None:
    require_server("postgresql")
    # Trust auth ignores the password, so this one is accepted and must be kept secret.
    url = "postgresql://postgres:s3cr3t-admin-pw@127.0.0.1:5432/postgres"
    added = api.client.post(
        "/database-servers", json={"name": "pg-secret", "url": url}, headers=api.admin
    )
    assert added.status_code == 201
    assert "s3cr3t" not in added.text
    assert "s3cr3t" not in api.client.get("/database-servers", headers=api.admin).text
    result = api.provisioned_store("secret-shop", mode="create_new", server="pg-secret")
    assert result["job"]["status"] == "completed", result["job"]
    try:
        assert not [t for t in _master_text(api) if "s3cr3t-admin-pw" in t]
        assert "s3cr3t" not in str(result)
    finally:
        store = api.client.get("/stores/secret-shop", headers=api.admin).json()
        drop_database(
            parse_url(SERVER_URLS["postgresql"]).set(
                database=f"t_secret_shop_{store['id'].replace('-', '')[:8]}"
            )
        )
