"""Database and table sizes as each backend measures them."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from tenantry.db.sizes import database_bytes, table_sizes
from tests.conftest import DbFactory


def test_sizes_grow_with_the_rows_written(
    new_database: DbFactory, engines: Callable[[URL], Engine], backend: str
) -> None:
    engine = engines(new_database("sizes"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE big (id INTEGER PRIMARY KEY, body VARCHAR(2000))"))
        conn.execute(text("CREATE TABLE small (id INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO small (id) VALUES (1)"))
    with engine.connect() as conn:
        empty = database_bytes(conn)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO big (id, body) VALUES (:id, :body)"),
            [{"id": i, "body": "x" * 1900} for i in range(2000)],
        )
        if backend == "postgresql":
            conn.execute(text("ANALYZE big"))
        elif backend == "mysql":
            conn.execute(text("ANALYZE TABLE big"))
    with engine.connect() as conn:
        full = database_bytes(conn)
        tables = table_sizes(conn)

    # 2,000 rows of 1.9 kB: the database grew by at least most of that.
    assert full - empty > 2_000_000
    assert [t.name for t in tables][:2] == ["big", "small"]
    big = tables[0]
    assert big.bytes > 2_000_000
    # Exact on SQLite, the server's estimate after ANALYZE elsewhere.
    assert 1_500 <= big.rows <= 2_500
    assert {t.name for t in tables} == {"big", "small"}
