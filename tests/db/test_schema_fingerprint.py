"""Schema fingerprints: alike databases share one, any schema change alters it, and drift
found by Alembic's full comparison is still found once a clean fingerprint is remembered."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from sqlalchemy import Connection, Engine, MetaData, event, text
from sqlalchemy.engine import URL

from tenantry.db import migrations
from tenantry.db.schema_fingerprint import fingerprint
from tenantry.db.schemas import SchemaSpec, tenant_schema
from tenantry.db.shared_schemas import schema_url
from tenantry.services import schema_ops
from tests.conftest import DbFactory
from tests.templates import migrated_database


def _store_spec() -> SchemaSpec:
    """The store schema with metadata of its own: what other tests made drift() remember
    about the store schema does not apply to it."""
    spec = tenant_schema("tenantry.db.tenant.store.plugin")
    metadata = MetaData(naming_convention=spec.metadata.naming_convention)
    for table in spec.metadata.sorted_tables:
        table.to_metadata(metadata)
    return replace(spec, metadata=metadata)


@contextmanager
def _counting(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def seen(conn: Connection, cursor: object, statement: str, *_: object) -> None:
        if statement.strip().upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", seen)


def test_alike_databases_share_a_fingerprint_and_are_compared_in_full_once(
    new_database: DbFactory, engines: Callable[[URL], Engine]
) -> None:
    spec = _store_spec()
    first, second = (engines(new_database(name, create=False)) for name in ("fp1", "fp2"))
    for engine in (first, second):
        migrated_database(engine.url, spec)
    # Each has an instance id of its own in its identity row: data is not schema.

    with first.connect() as a, second.connect() as b:
        assert fingerprint(a) == fingerprint(b)
    with _counting(first) as full, first.connect() as conn:
        assert migrations.drift(conn, spec) == []
    with _counting(second) as remembered, second.connect() as conn:
        assert migrations.drift(conn, spec) == []
    assert len(full) > 10  # Alembic reflected every table
    assert len(remembered) == 1  # the fingerprint's one query


def test_a_changed_schema_has_another_fingerprint_and_its_drift_is_still_found(
    new_database: DbFactory, engines: Callable[[URL], Engine], backend: str
) -> None:
    spec = _store_spec()
    clean, changed = (engines(new_database(name, create=False)) for name in ("fp3", "fp4"))
    for engine in (clean, changed):
        migrated_database(engine.url, spec)
    with clean.connect() as conn:
        assert migrations.drift(conn, spec) == []  # its fingerprint is now remembered
        before = fingerprint(conn)

    with changed.begin() as conn:
        conn.execute(text("ALTER TABLE products ADD COLUMN legacy_code VARCHAR(20)"))
    with changed.connect() as conn:
        assert fingerprint(conn) != before
        found = migrations.drift(conn, spec)
    assert [d.kind for d in found] == ["remove_column"]
    assert "products.legacy_code" in found[0].detail


def test_a_dropped_index_changes_the_fingerprint(
    new_database: DbFactory, engines: Callable[[URL], Engine], backend: str
) -> None:
    spec = _store_spec()
    engine = engines(new_database("fp5", create=False))
    migrated_database(engine.url, spec)
    with engine.connect() as conn:
        before = fingerprint(conn)
        assert migrations.drift(conn, spec) == []
    on = " ON products" if backend == "mysql" else ""
    with engine.begin() as conn:
        conn.execute(text(f"DROP INDEX ix_products_status{on}"))
    with engine.connect() as conn:
        assert fingerprint(conn) != before
        kinds = {d.kind for d in migrations.drift(conn, spec)}
    assert "add_index" in kinds


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_alike_schemas_of_one_shared_database_share_a_fingerprint(
    new_database: DbFactory, engines: Callable[[URL], Engine]
) -> None:
    # Stores in schemas of one database (provision --shared): PostgreSQL names the schema in
    # each index definition, which must not make every tenant's schema look different.
    spec = _store_spec()
    url = new_database("fps")
    with engines(url).begin() as conn:
        conn.execute(text("CREATE SCHEMA s_one; CREATE SCHEMA s_two"))
    first, second = (engines(schema_url(url, str(url.database), s)) for s in ("s_one", "s_two"))
    for engine in (first, second):
        with engine.begin() as conn:
            schema_ops.migrate(conn, spec, "test", acting_app="tenantry", owner="tenantry")

    with first.connect() as a, second.connect() as b:
        assert fingerprint(a) == fingerprint(b)
        assert migrations.drift(a, spec) == []
    with _counting(second) as remembered, second.connect() as conn:
        assert migrations.drift(conn, spec) == []
    assert len(remembered) == 1  # the fingerprint's one query, not Alembic's reflection

    with second.begin() as conn:  # a real difference still shows
        conn.execute(text("DROP INDEX ix_products_status"))
    with first.connect() as a, second.connect() as b:
        assert fingerprint(a) != fingerprint(b)
        assert "add_index" in {d.kind for d in migrations.drift(b, spec)}


#: One change of each kind Alembic's comparison reports, applied one after another; each must
#: alter the fingerprint (else a database drifting that way would pass as a clean one). SQLite
#: is left out: its fingerprint is every object's own CREATE statement, verbatim.
_CHANGES = {
    "postgresql": [
        ("a column's type", "ALTER TABLE products ALTER COLUMN weight_grams TYPE BIGINT"),
        ("a column's length", "ALTER TABLE products ALTER COLUMN name TYPE VARCHAR(200)"),
        ("a column's nullability", "ALTER TABLE products ALTER COLUMN description SET NOT NULL"),
        ("a column's default", "ALTER TABLE products ALTER COLUMN weight_grams SET DEFAULT 5"),
        ("a column's comment", "COMMENT ON COLUMN products.name IS 'shown to buyers'"),
        ("a table's comment", "COMMENT ON TABLE products IS 'the catalogue'"),
        ("a unique constraint", "ALTER TABLE products DROP CONSTRAINT uq_products_sku"),
        (
            "an index's columns",
            "DROP INDEX ix_products_status; "
            "CREATE INDEX ix_products_status ON products (status, name)",
        ),
        (
            "a foreign key's action",
            "ALTER TABLE product_categories DROP CONSTRAINT "
            "fk_product_categories_product_id_products; ALTER TABLE product_categories ADD "
            "CONSTRAINT fk_product_categories_product_id_products FOREIGN KEY (product_id) "
            "REFERENCES products (id)",
        ),
        ("a check constraint", "ALTER TABLE products ADD CONSTRAINT ck_w CHECK (weight_grams > 0)"),
        ("a table", "CREATE TABLE legacy (id INTEGER PRIMARY KEY)"),
    ],
    "mysql": [
        ("a column's type", "ALTER TABLE products MODIFY weight_grams BIGINT NULL"),
        ("a column's length", "ALTER TABLE products MODIFY name VARCHAR(200) NOT NULL"),
        ("a column's nullability", "ALTER TABLE products MODIFY description TEXT NOT NULL"),
        ("a column's default", "ALTER TABLE products ALTER weight_grams SET DEFAULT 5"),
        (
            "a column's comment",
            "ALTER TABLE products MODIFY name VARCHAR(200) NOT NULL COMMENT 'shown to buyers'",
        ),
        ("a table's comment", "ALTER TABLE products COMMENT = 'the catalogue'"),
        ("a unique constraint", "ALTER TABLE products DROP INDEX uq_products_sku"),
        (
            "an index's columns",
            "ALTER TABLE products DROP INDEX ix_products_status, "
            "ADD INDEX ix_products_status (status, name)",
        ),
        (
            "a foreign key's action",
            "ALTER TABLE product_categories DROP FOREIGN KEY "
            "fk_product_categories_product_id_products; ALTER TABLE product_categories ADD "
            "CONSTRAINT fk_product_categories_product_id_products FOREIGN KEY (product_id) "
            "REFERENCES products (id)",
        ),
        ("a check constraint", "ALTER TABLE products ADD CONSTRAINT ck_w CHECK (weight_grams > 0)"),
        ("a table", "CREATE TABLE legacy (id INTEGER PRIMARY KEY)"),
    ],
}


@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
def test_each_kind_of_schema_change_changes_the_fingerprint(
    new_database: DbFactory, engines: Callable[[URL], Engine], backend: str
) -> None:
    spec = _store_spec()
    engine = engines(new_database("fpk", create=False))
    migrated_database(engine.url, spec)
    with engine.connect() as conn:
        seen = {fingerprint(conn): "the clean schema"}
        assert migrations.drift(conn, spec) == []  # the clean fingerprint is remembered
    for what, sql in _CHANGES[backend]:
        with engine.begin() as conn:
            for statement in sql.split("; "):
                conn.execute(text(statement))
        with engine.connect() as conn:
            fp = fingerprint(conn)
            assert fp not in seen, f"{what}: the fingerprint of {seen.get(fp)}"
            seen[fp] = what
            assert migrations.drift(conn, spec), what  # not hidden by the remembered one
