"""Ending a pooled connection's server session the moment a transaction takes it: what a
move's write fence, a restore's swap or a credential rotation can do between the pool's ping
and the transaction's first statement (:mod:`tenantry.db.tenant_sessions`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import URL

from tenantry.db.engines import make_engine
from tenantry.db.urls import parse_url
from tests.conftest import SERVER_URLS


def end_session(url: URL, dbapi_conn: Any) -> None:
    """End the server session of ``dbapi_conn`` (a DBAPI connection, or SQLAlchemy's adapter
    of an async one) from another connection (admin ``url``) and wait until the server has
    let it go."""
    if url.get_backend_name() == "postgresql":
        ask, end = "SELECT pg_backend_pid()", "SELECT pg_terminate_backend(:id)"
        left = "SELECT count(*) FROM pg_stat_activity WHERE pid = :id"
    else:
        ask, end = "SELECT CONNECTION_ID()", "KILL CONNECTION :id"
        left = "SELECT count(*) FROM information_schema.processlist WHERE id = :id"
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(ask)
        pid = int(cursor.fetchone()[0])
    finally:
        cursor.close()
    dbapi_conn.rollback()  # idle again, as the pool handed it out
    admin = make_engine(url, pool_size=1)
    try:
        with admin.connect() as conn:
            conn.execute(text(end), {"id": pid})
            deadline = time.monotonic() + 10
            while conn.scalar(text(left), {"id": pid}) and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        admin.dispose()


@contextmanager
def ended_at_next_checkout(engine: Engine) -> Iterator[list[int]]:
    """For the block: the first connection ``engine``'s pool hands out has its server session
    ended after the pool's ping found it alive. Yields a list that holds one item once that
    has happened."""
    admin_url = parse_url(SERVER_URLS[engine.dialect.name])
    ended: list[int] = []

    def end_once(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if not ended:
            ended.append(1)
            end_session(admin_url, dbapi_conn)

    event.listen(engine, "checkout", end_once)
    try:
        yield ended
    finally:
        event.remove(engine, "checkout", end_once)
