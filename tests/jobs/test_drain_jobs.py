"""A drain or a rebalance whose queue message was lost (or whose runner died) is resumed by a
worker's recovery sweep, runs once, and moves as many stores at once as it was asked."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import update

from tenantry.db.master.models import DatabaseServer, Operation, StoreMove
from tenantry.db.types import utcnow
from tenantry.jobs.queue import Queue
from tenantry.operations.server_drain import ServerDrain
from tenantry.operations.server_rebalance import Rebalance
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.move_history import list_moves
from tests.conftest import require_server
from tests.platform_fixtures import platform, settings
from tests.services.test_moves import cleanup, provision, register

__all__ = ["cleanup", "platform", "settings"]


def _server_of(platform: Platform, slug: str) -> str:
    with platform.sessions() as session:
        config = stores.active_connection(session, stores.get_store(session, slug))
        assert config is not None
        server = session.get(DatabaseServer, config.database_server_id)
        assert server is not None
        return server.name


def test_a_lost_drain_is_resumed_by_the_recovery_sweep_once(
    platform: Platform, cleanup: None, server_slug: str
) -> None:
    require_server("postgresql")
    register(platform, "old", "postgresql")
    register(platform, "new", "postgresql")
    slugs = [f"{server_slug}-a", f"{server_slug}-b"]
    for slug in slugs:
        provision(platform, slug, server="old")
    started = ServerDrain(platform, "cli:test").start("old")  # recorded; its message lost
    assert started.operation_id is not None
    with platform.sessions.begin() as session:
        session.execute(
            update(Operation)
            .where(Operation.id == started.operation_id)
            .values(created_at=utcnow() - timedelta(minutes=5))
        )
    queue = Queue(platform.settings, immediate=True)  # tasks run right here, as a worker
    try:
        assert queue.recover() >= 1

        with platform.sessions() as session:
            drain = session.get_one(Operation, started.operation_id)
            assert (drain.status, drain.progress_current, drain.attempts) == ("succeeded", 2, 1)
            moves = list_moves(session, parent_id=started.operation_id)
        assert sorted(m.slug or "" for m in moves) == slugs
        assert {m.status for m in moves} == {"completed"}
        assert all(m.details["verified"] for m in moves)
        assert {_server_of(platform, slug) for slug in slugs} == {"new"}
        queue.recover()  # nothing left to resume: the drain is not run again
        with platform.sessions() as session:
            assert len(list_moves(session, parent_id=started.operation_id)) == 2
            assert session.get_one(Operation, started.operation_id).attempts == 1
    finally:
        queue.close()


def _lose(platform: Platform, operation_id: uuid.UUID) -> None:
    """Age a recorded operation past the queued grace: its queue message was lost."""
    with platform.sessions.begin() as session:
        session.execute(
            update(Operation)
            .where(Operation.id == operation_id)
            .values(created_at=utcnow() - timedelta(minutes=5))
        )


def _most_at_once(moves: list[StoreMove]) -> int:
    """The most of ``moves`` that were running at the same moment."""
    edges = []
    for m in moves:
        assert m.started_at is not None
        assert m.finished_at is not None
        edges += [(m.started_at, 1), (m.finished_at, -1)]
    running = most = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        running += step
        most = max(most, running)
    return most


def test_a_resumed_drain_keeps_the_concurrency_it_was_asked_with(
    platform: Platform, cleanup: None, server_slug: str
) -> None:
    require_server("postgresql")
    register(platform, "old", "postgresql")
    register(platform, "new", "postgresql")
    slugs = [f"{server_slug}-{n}" for n in "abcd"]
    for slug in slugs:
        provision(platform, slug, server="old")
    started = ServerDrain(platform, "cli:test").start("old", concurrency=2)
    assert started.operation_id is not None
    _lose(platform, started.operation_id)
    queue = Queue(platform.settings, immediate=True)  # tasks run right here, as a worker
    try:
        assert queue.recover() >= 1
    finally:
        queue.close()

    with platform.sessions() as session:
        drain = session.get_one(Operation, started.operation_id)
        assert drain.params == {"concurrency": 2}
        assert (drain.status, drain.progress_current, drain.progress_total) == ("succeeded", 4, 4)
        moves = list_moves(session, parent_id=started.operation_id)
    assert sorted(m.slug or "" for m in moves) == slugs
    assert {m.status for m in moves} == {"completed"}
    assert _most_at_once(moves) == 2  # two at a time, as asked (a worker used to take one)
    assert {_server_of(platform, slug) for slug in slugs} == {"new"}


def test_a_lost_rebalance_is_resumed_by_a_worker_with_its_skew_and_concurrency(
    platform: Platform, cleanup: None, server_slug: str
) -> None:
    require_server("postgresql")
    register(platform, "old", "postgresql")
    register(platform, "new", "postgresql")
    slugs = [f"{server_slug}-{n}" for n in "abcd"]
    for slug in slugs:
        provision(platform, slug, server="old")
    runner = Rebalance(platform, "cli:test")
    started = runner.start("0", concurrency=2)
    assert started.operation_id is not None
    assert len(started.plan.moves) == 2
    again = runner.start("0", concurrency=2)  # one rebalance at a time: the same one
    assert (again.operation_id, again.resumed) == (started.operation_id, True)
    _lose(platform, started.operation_id)
    queue = Queue(platform.settings, immediate=True)
    try:
        assert queue.recover() >= 1
        queue.recover()  # over: not run again
    finally:
        queue.close()

    with platform.sessions() as session:
        op = session.get_one(Operation, started.operation_id)
        assert op.params == {"max_skew": "0", "concurrency": 2}
        assert (op.status, op.attempts) == ("succeeded", 1)
        assert (op.progress_current, op.progress_total, op.progress_unit) == (2, 2, "databases")
        assert op.message == "2 of 2 store(s) moved"
        moves = list_moves(session, parent_id=started.operation_id)
    assert len(moves) == 2
    assert {m.status for m in moves} == {"completed"}
    assert all(m.details["verified"] for m in moves)
    assert _most_at_once(moves) == 2
    on = [_server_of(platform, slug) for slug in slugs]
    assert (on.count("old"), on.count("new")) == (2, 2)
