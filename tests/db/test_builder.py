"""Tenant databases made from templates: the PostgreSQL template is built from scratch in
every run (a template left on the server by an earlier run would hide its building code), two
first uses at once both get a clone, and a clone has exactly the tables a migrated database has."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from tenantry.db import builder, migrations
from tenantry.db.admin import database_exists, drop_database
from tenantry.db.engines import make_engine
from tenantry.db.identity import identity_table
from tenantry.db.schemas import SchemaSpec, tenant_schema
from tenantry.db.urls import parse_url
from tests.conftest import SERVER_URLS, DbFactory, require_server
from tests.helpers import schema_snapshot

STORE = "tenantry.db.tenant.store.plugin"


def _fresh_spec() -> SchemaSpec:
    """The store schema under a name no template exists for yet (this run's own)."""
    return dataclasses.replace(tenant_schema(STORE), name=f"tst{uuid.uuid4().hex[:10]}")


def _snapshot(url: URL) -> dict[str, object]:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return schema_snapshot(conn)
    finally:
        engine.dispose()


@pytest.fixture
def pg_server() -> Iterator[tuple[URL, list[URL]]]:
    """The PostgreSQL test server, and a list of databases to drop after the test."""
    require_server("postgresql")
    made: list[URL] = []
    yield parse_url(SERVER_URLS["postgresql"]), made
    for url in made:
        drop_database(url)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_the_postgres_template_is_built_on_first_use_by_two_clones_at_once(
    pg_server: tuple[URL, list[URL]], new_database: DbFactory, backend: str
) -> None:
    server, made = pg_server
    spec = _fresh_spec()
    template = server.set(database=builder.template_name(spec))
    made.append(template)
    assert not database_exists(template)
    names = [f"tt_clone_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    made.extend(server.set(database=name) for name in names)
    results: dict[str, bool] = {}
    errors: list[BaseException] = []

    def clone(name: str) -> None:
        try:
            results[name] = builder.clone_postgres_template(server, spec, name)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=clone, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert results == dict.fromkeys(names, True)
    assert database_exists(template)

    migrated = new_database("migrated")
    engine = make_engine(migrated, pool_size=1)
    try:
        with engine.begin() as conn:
            migrations.upgrade(conn, spec, "head")
            identity_table.create(conn)
    finally:
        engine.dispose()
    expected = _snapshot(migrated)
    for name in names:
        assert _snapshot(server.set(database=name)) == expected
    # The template is compacted (what each clone copies): smaller than the same schema built
    # the plain way, with no visibility map left beside any of its tables.
    sizes = {
        url.database: _scalar(server, "SELECT pg_database_size(:d)", d=url.database)
        for url in (template, migrated)
    }
    assert sizes[template.database] < 0.95 * sizes[migrated.database], sizes
    assert _scalar(template, _WITH_VISIBILITY_MAPS) == 0
    assert _scalar(migrated, _WITH_VISIBILITY_MAPS) > 0  # what the compaction removes


#: The tables of a database (not the cluster's shared catalogs) with a visibility map.
_WITH_VISIBILITY_MAPS = (
    "SELECT count(*) FROM pg_class WHERE relkind = 'r' "
    "AND NOT relisshared AND pg_relation_size(oid, 'vm') > 0"
)


def _scalar(url: URL, sql: str, **params: object) -> int:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql), params).scalar_one())
    finally:
        engine.dispose()


def test_the_sqlite_template_is_built_once_and_copied(tmp_path: Path) -> None:
    spec = _fresh_spec()
    templates = tmp_path / "templates"
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    assert builder.copy_sqlite_template(templates, spec, first)
    built = (templates / f"{builder.template_name(spec)}.db").stat().st_mtime_ns
    assert builder.copy_sqlite_template(templates, spec, second)
    assert (templates / f"{builder.template_name(spec)}.db").stat().st_mtime_ns == built
    assert [p.name for p in templates.iterdir()] == [f"{builder.template_name(spec)}.db"]
    sqlite = "sqlite+pysqlite"
    assert _snapshot(URL.create(sqlite, database=str(first))) == _snapshot(
        URL.create(sqlite, database=str(second))
    )
    assert "products" in _snapshot(URL.create(sqlite, database=str(first)))
