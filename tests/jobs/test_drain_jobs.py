"""A drain whose queue message was lost (or whose runner died) is resumed by a worker's
recovery sweep, and runs once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from tenantry.db.master.models import DatabaseServer, Operation
from tenantry.db.types import utcnow
from tenantry.jobs.queue import Queue
from tenantry.operations.server_drain import ServerDrain
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
