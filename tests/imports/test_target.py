"""The tenant database's side of an import (tenantry/imports/target.py), on every backend: the
tables already holding rows and the foreign keys pointing to no row, each found in one query."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text

from tenantry.db.engines import make_engine
from tenantry.db.tenant.store.models import metadata as store_metadata
from tenantry.imports.target import dangling_references, tables_with_rows
from tests.conftest import DbFactory

PRODUCTS = store_metadata.tables["products"]
CATEGORIES = store_metadata.tables["categories"]
LINKS = store_metadata.tables["product_categories"]
TABLES = [PRODUCTS, CATEGORIES, LINKS]


def test_filled_tables_and_dangling_references(backend: str, new_database: DbFactory) -> None:
    url = new_database("target")
    # Not tenantry's engine on SQLite: it turns foreign keys on, and the rows below break them.
    engine = create_engine(url) if backend == "sqlite" else make_engine(url, pool_size=1)
    try:
        with engine.begin() as conn:
            store_metadata.create_all(conn, tables=TABLES)
        with engine.connect() as conn:
            assert tables_with_rows(conn, TABLES) == set()
            assert tables_with_rows(conn, []) == set()
            assert dangling_references(conn, TABLES) == []

        root, lost = uuid.uuid4(), uuid.uuid4()
        with engine.begin() as conn:
            # Rows an app wrote around its foreign keys (a restore, a bug): the verification
            # must find them whatever the database enforces.
            if backend == "postgresql":
                conn.execute(text("SET LOCAL session_replication_role = replica"))
            elif backend == "mysql":
                conn.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
            conn.execute(
                CATEGORIES.insert(),
                [
                    {"id": root, "slug": "root", "name": "Root", "parent_id": None},
                    {"id": uuid.uuid4(), "slug": "child", "name": "Child", "parent_id": root},
                    {"id": uuid.uuid4(), "slug": "lost-1", "name": "Lost", "parent_id": lost},
                    {"id": uuid.uuid4(), "slug": "lost-2", "name": "Lost", "parent_id": lost},
                ],
            )
            conn.execute(LINKS.insert(), [{"product_id": uuid.uuid4(), "category_id": root}])
            if backend == "mysql":
                conn.execute(text("SET FOREIGN_KEY_CHECKS = 1"))
        with engine.connect() as conn:
            assert tables_with_rows(conn, TABLES) == {"categories", "product_categories"}
            # Every foreign key checked, each counted: the parentless root and the links'
            # existing category are fine.
            assert set(dangling_references(conn, TABLES)) == {
                "categories.parent_id: 2 rows point to no row",
                "product_categories.product_id: 1 rows point to no row",
            }
    finally:
        engine.dispose()
