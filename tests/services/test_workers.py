"""Worker heartbeats in master, on every backend: alive while beating, gone when stopped or
silent for too long."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.db.master.models import Worker
from tenantry.db.schemas import master_schema
from tenantry.db.types import utcnow
from tenantry.jobs.heartbeat import Heartbeat
from tenantry.services import workers
from tests.conftest import DbFactory
from tests.templates import migrated_database


@pytest.fixture
def sessions(new_database: DbFactory, engines: Callable[[URL], Engine]) -> sessionmaker[Session]:
    """Sessions on a master database at head on the backend."""
    url = new_database("master", create=False)
    migrated_database(url, master_schema())
    engine = engines(url)
    return sessionmaker(engine, expire_on_commit=False)


def _alive(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return workers.alive_count(session)


def test_a_beating_worker_is_alive_until_it_stops(sessions: sessionmaker[Session]) -> None:
    assert _alive(sessions) == 0
    heartbeat = Heartbeat(sessions)
    heartbeat.start()  # the first beat is recorded before start returns
    try:
        assert _alive(sessions) == 1
        heartbeat.beat()  # a later beat updates the same row
        with sessions() as session:
            [row] = workers.alive(session)
        assert (row.id, row.pid) == (heartbeat.worker_id, heartbeat.pid)
    finally:
        heartbeat.stop()
    assert _alive(sessions) == 0


def test_a_silent_worker_is_not_alive_and_is_forgotten_later(
    sessions: sessionmaker[Session],
) -> None:
    killed, old = uuid.uuid4(), uuid.uuid4()
    now = utcnow()
    with sessions.begin() as session:
        for worker_id in (killed, old):
            workers.beat(session, worker_id, hostname="h", pid=1, started_at=now)
    with sessions.begin() as session:
        session.execute(
            update(Worker)
            .where(Worker.id == killed)
            .values(last_seen_at=now - workers.ALIVE_WITHIN - timedelta(seconds=1))
        )
        session.execute(
            update(Worker)
            .where(Worker.id == old)
            .values(last_seen_at=now - workers.FORGET_AFTER - timedelta(minutes=1))
        )
    assert _alive(sessions) == 0
    with sessions.begin() as session:  # a new worker's first beat clears long-gone rows
        workers.beat(session, uuid.uuid4(), hostname="h" * 300, pid=2, started_at=now)
    with sessions() as session:
        assert session.get(Worker, old) is None
        assert session.get(Worker, killed) is not None
        assert workers.alive_count(session) == 1
