"""A pooled SQLite engine keeps the connections its callers used at once: opening one costs
its PRAGMAs, reading the schema and preparing every statement again, so closing them on
return (SQLAlchemy's default past 5) made a busy API open one on most requests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, make_url, text
from sqlalchemy.pool import QueuePool

from tenantry.db.engines import SQLITE_POOL_SIZE, make_engine
from tenantry.db.urls import parse_url


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = make_engine(parse_url(f"sqlite:///{tmp_path / 'pool.db'}"))
    with made.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    made.dispose()  # the tests count every connection from none
    yield made
    made.dispose()


def _count_connects(engine: Engine) -> list[Any]:
    opened: list[Any] = []
    event.listen(engine, "connect", lambda dbapi_conn, record: opened.append(dbapi_conn))
    return opened


def _use_at_once(engine: Engine, n: int) -> None:
    held: list[Connection] = [engine.connect() for _ in range(n)]
    for conn in held:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0
    for conn in held:
        conn.close()


def test_connections_used_at_once_are_kept_and_reused(engine: Engine) -> None:
    opened = _count_connects(engine)
    for _ in range(5):  # SQLAlchemy's default kept 5: 12 at once opened 7 anew every round
        _use_at_once(engine, 12)
    assert len(opened) == 12
    # Each is still the connection it was: its PRAGMAs are not run again.
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert len(opened) == 12


def test_more_than_it_keeps_never_wait_for_the_pool(engine: Engine) -> None:
    # SQLAlchemy's default made the 16th caller wait up to 30 s for one to come back; SQLite's
    # own locks order connections, so the pool opens another at once and closes the extra
    # ones on return.
    opened = _count_connects(engine)
    started = time.monotonic()
    _use_at_once(engine, SQLITE_POOL_SIZE + 5)
    assert time.monotonic() - started < 10
    assert len(opened) == SQLITE_POOL_SIZE + 5
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    assert pool.checkedin() == SQLITE_POOL_SIZE


def test_an_unpooled_or_in_memory_engine_keeps_nothing(tmp_path: Path) -> None:
    unpooled = make_engine(parse_url(f"sqlite:///{tmp_path / 'once.db'}"), pooled=False)
    opened = _count_connects(unpooled)
    for _ in range(3):
        with unpooled.connect() as conn:
            conn.execute(text("SELECT 1"))
    assert len(opened) == 3
    unpooled.dispose()
    memory = make_engine(make_url("sqlite://"))  # one connection per thread, as before
    with memory.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    memory.dispose()
