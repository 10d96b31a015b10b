"""A move is a ``move`` operation: listed by ``tenantry ops``, cancellable up to its switch, and
rolled back by the workers' recovery sweep when its mover is killed.

Against a real SQLite source and PostgreSQL target: ``tenantry ops cancel`` of a move while it
copies leaves the store on its source, writable, the target dropped and the operation
``cancelled``; a cancel that comes once the switch began is too late and the move completes; a
mover SIGKILLed mid-move leaves a running operation that the sweep ends ``failed`` with what to
do, the store on its source and the half-made target dropped.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from sqlalchemy import select

from tenantry.db.admin import database_exists
from tenantry.db.master.models import StoreMove
from tenantry.db.urls import parse_url
from tenantry.jobs.queue import Queue
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.move_progress import MoveProgress
from tenantry.services.write_blocks import ensure_writable
from tests.cli.conftest import Invoke, as_json, cli
from tests.conftest import SERVER_URLS, require_server
from tests.helpers import move_store, run_child
from tests.platform_fixtures import platform, settings
from tests.services.test_moves import cleanup, filled, mover, provision, register

__all__ = ["cleanup", "cli", "platform", "settings"]


def _ops(cli: Invoke) -> list[dict[str, Any]]:
    listed = cli("ops", "list", "--kind", "move", "--json")
    assert listed.exit_code == 0, listed.output
    items: list[dict[str, Any]] = as_json(listed)["items"]
    return items


def _running_move_id(platform: Platform) -> str:
    with platform.sessions() as session:
        return str(session.scalars(select(StoreMove.id)).one())


def _target_url(move: StoreMove) -> Any:
    return parse_url(SERVER_URLS["postgresql"]).set(database=move.details["target"]["database"])


def test_ops_cancel_rolls_a_copying_move_back(
    platform: Platform, cleanup: None, cli: Invoke
) -> None:
    require_server("postgresql")
    provision(platform, "halted")
    register(platform, "pg", "postgresql")
    filled(platform, "halted")
    answers: list[str] = []

    def cancel_while_copying(state: MoveProgress) -> None:
        if state.step == "copy" and not answers:
            cancelled = cli("ops", "cancel", _running_move_id(platform), "--json")
            answers.append(as_json(cancelled)["status"])

    moved = mover(platform, on_progress=cancel_while_copying).move("halted", "pg")

    assert answers == ["cancelling"]
    assert moved.status == "rolled_back"
    assert moved.details["target_dropped"] is True
    assert not database_exists(_target_url(moved))
    [op] = _ops(cli)
    assert (op["id"], op["status"], op["target"]) == (str(moved.id), "cancelled", "halted")
    assert "cancelled at step" in op["progress"]["message"]
    with platform.sessions() as session:
        store = stores.get_store(session, "halted")
        assert store.database_type == "sqlite"
        assert store.write_block_reason is None
        ensure_writable(store)
    # Nothing is left in the way: the store moves when asked again.
    again = mover(platform).move("halted", "pg")
    assert again.status == "completed", again.error
    assert [o["status"] for o in _ops(cli)] == ["succeeded", "cancelled"]


def test_a_cancel_once_the_switch_began_is_too_late(
    platform: Platform, cleanup: None, cli: Invoke
) -> None:
    require_server("postgresql")
    provision(platform, "late-cancel")
    register(platform, "pg", "postgresql")
    answers: list[str] = []

    def cancel_at_the_switch(state: MoveProgress) -> None:
        if state.step == "switch" and not answers:
            cancelled = cli("ops", "cancel", _running_move_id(platform), "--json")
            answers.append(as_json(cancelled)["status"])

    moved = mover(platform, on_progress=cancel_at_the_switch).move("late-cancel", "pg")

    assert answers == ["cancelling"]
    assert moved.status == "completed", moved.error
    [op] = _ops(cli)
    assert (op["status"], op["progress"]["step"]) == ("succeeded", "done")
    with platform.sessions() as session:
        assert stores.get_store(session, "late-cancel").database_type == "postgresql"


def test_a_mover_killed_mid_move_is_rolled_back_by_the_recovery_sweep(
    platform: Platform, cleanup: None, cli: Invoke
) -> None:
    require_server("postgresql")
    provision(platform, "swept")
    register(platform, "pg", "postgresql")
    filled(platform, "swept")
    env = {
        **os.environ,
        "TENANTRY_FAILPOINTS": "move.after_copy=kill",
        "TENANTRY_JOB_LEASE_SECONDS": "1",
    }
    assert run_child(move_store, "swept", "pg", env=env) == -signal.SIGKILL
    [op] = _ops(cli)
    assert (op["status"], op["progress"]["step"], op["progress"]["unit"]) == (
        "running",
        "copy",
        "rows",
    )
    with platform.sessions() as session:
        dead = session.scalars(select(StoreMove)).one()
        session.expunge(dead)
    assert database_exists(_target_url(dead))

    time.sleep(1.2)  # the dead mover's lease (and the store's write block) lapses
    queue = Queue(platform.settings)
    try:
        queue.recover()
    finally:
        queue.close()

    [op] = _ops(cli)
    assert op["status"] == "failed"
    assert "stopped at step copy before the switch" in op["error"]
    assert "the store stays on its source database, writable. Run the move again." in op["error"]
    assert not database_exists(_target_url(dead))
    with platform.sessions() as session:
        store = stores.get_store(session, "swept")
        assert store.database_type == "sqlite"
        assert store.write_block_reason is None
        assert session.get_one(StoreMove, dead.id).details["target_dropped"] is True
    moved = mover(platform).move("swept", "pg")
    assert moved.status == "completed", moved.error
