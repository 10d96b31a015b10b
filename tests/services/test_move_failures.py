"""The risky ends of `stores move`, against real SQLite, PostgreSQL and MariaDB databases.

- A move onto MariaDB (whose DDL is not transactional: the tables it made stay made) that
  fails after the copy is rolled back: the target database is gone from the server, the
  source serves and takes writes again, the store's status and connection are unchanged.
- A rollback that cannot drop the target (the move's login no longer owns it) keeps the
  store on its source, names the leftover database so an operator can remove it, and never
  reports the move as done. On MariaDB a session holding a lock on the target cannot stall
  the rollback's DROP DATABASE for the server's default day: the wait is bounded.
- A switch that committed but whose answer was lost (the mover raised, or was killed, right
  after the commit) is a completed move: the store is on the target, which is never dropped,
  the source is kept read-only as documented, and a second run does not switch again.
"""

from __future__ import annotations

import os
import signal
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select, text
from sqlalchemy.engine import URL

from tenantry.db import admin
from tenantry.db.admin import database_exists, drop_database
from tenantry.db.engines import connect, make_engine
from tenantry.db.master.models import AuditLog, IntegrationConfig, StoreMove
from tenantry.db.tenant.store.models import Product
from tenantry.db.urls import parse_url
from tenantry.runtime import Platform
from tenantry.services import servers, stores
from tenantry.services.move_leftovers import kept_sources
from tenantry.services.move_progress import MoveProgress
from tests.cli.conftest import Invoke, as_json, cli
from tests.conftest import SERVER_URLS, require_server
from tests.helpers import move_store, run_child
from tests.pg_roles import unprivileged_login
from tests.platform_fixtures import platform, settings
from tests.services.test_moves import (
    PRODUCTS,
    cleanup,
    digests,
    filled,
    mover,
    provision,
    register,
    store_url,
)

__all__ = ["cleanup", "cli", "platform", "settings"]


def _state(platform: Platform, slug: str) -> tuple[object, ...]:
    """What a rollback must leave as it was: the store's status, engine, connection version,
    write block and active connection, and how many connections master knows."""
    with platform.sessions() as session:
        store = stores.get_store(session, slug)
        active = stores.active_connection(session, store)
        assert active is not None
        return (
            store.database_status,
            store.database_type,
            store.connection_version,
            store.write_block_reason,
            active.id,
            session.scalar(select(func.count()).select_from(IntegrationConfig)),
        )


def _write_through_router(platform: Platform, slug: str, sku: str) -> None:
    """A write the API would make: through master's router onto the store's database."""
    with platform.sessions() as session:
        store = stores.get_store(session, slug)
        with platform.router.session(session, store) as tenant:
            tenant.add(Product(sku=sku, slug=sku.lower(), name=sku))
            tenant.commit()


def _target(moved: StoreMove, backend: str) -> URL:
    return parse_url(SERVER_URLS[backend]).set(database=moved.details["target"]["database"])


class TargetSeen:
    """Progress callback: whether the target database existed, with tables, mid-move."""

    def __init__(self, platform: Platform, backend: str) -> None:
        self.platform = platform
        self.backend = backend
        self.tables: int | None = None

    def __call__(self, state: MoveProgress) -> None:
        if self.tables is not None or state.step != "copy":
            return
        with self.platform.sessions() as session:
            name = session.scalars(select(StoreMove)).one().details["target"]["database"]
        engine = make_engine(parse_url(SERVER_URLS[self.backend]).set(database=name))
        try:
            with connect(engine) as conn:
                self.tables = len(
                    conn.execute(
                        text(
                            "SELECT table_name FROM information_schema.tables "
                            "WHERE table_schema = :s"
                        ),
                        {"s": name},
                    ).all()
                )
        finally:
            engine.dispose()


# --------------------------------------------------------------------------- onto MariaDB


@pytest.mark.parametrize(
    ("source", "point"),
    [
        ("sqlite", "move.copy.orders"),
        ("sqlite", "move.after_copy"),
        ("sqlite", "move.before_switch"),
        ("sqlite", "move.source_read_only"),
        ("postgresql", "move.after_copy"),
        ("postgresql", "move.source_read_only"),
    ],
)
def test_a_failed_move_onto_mariadb_is_rolled_back(
    platform: Platform,
    cleanup: None,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    point: str,
) -> None:
    require_server("mysql")
    register(platform, "maria", "mysql")
    if source == "postgresql":
        require_server("postgresql")
        register(platform, "pg", "postgresql")
    provision(platform, "onto-maria", server="pg" if source == "postgresql" else None)
    filled(platform, "onto-maria")
    source_url = store_url(platform, "onto-maria")
    before, state = digests(source_url, platform), _state(platform, "onto-maria")
    seen = TargetSeen(platform, "mysql")
    monkeypatch.setenv("TENANTRY_FAILPOINTS", f"{point}=raise")

    moved = mover(platform, on_progress=seen).move("onto-maria", "maria")

    assert moved.status == "rolled_back"
    assert moved.error == f"FailPointError: fail point {point} reached"
    assert moved.to_config_id is None
    # The target existed with its tables mid-move (MariaDB's CREATE TABLEs committed on
    # their own); the rollback dropped the whole database.
    assert seen.tables is not None
    assert seen.tables > 0
    assert moved.details["target_dropped"] is True
    assert not database_exists(_target(moved, "mysql"))
    if point == "move.source_read_only":  # the source had been made read-only: undone
        assert moved.details["source_read_only"] == {"applied": False, "how": "undone"}
    assert _state(platform, "onto-maria") == state
    assert digests(source_url, platform) == before
    _write_through_router(platform, "onto-maria", "AFTER-1")
    assert digests(source_url, platform)["products"][0] == PRODUCTS + 1
    if source == "sqlite":
        assert stat.S_IMODE(Path(str(source_url.database)).stat().st_mode) == 0o600
    else:
        engine = make_engine(source_url, pooled=False)
        try:
            with connect(engine) as conn:
                assert conn.scalar(text("SHOW default_transaction_read_only")) == "off"
        finally:
            engine.dispose()


# --------------------------------------------------------------------------- undroppable


def test_a_target_the_rollback_cannot_drop_is_named_for_an_operator(
    platform: Platform, cleanup: None, monkeypatch: pytest.MonkeyPatch, cli: Invoke
) -> None:
    with unprivileged_login() as login:
        with platform.sessions.begin() as session:
            servers.add_server(
                session,
                platform.box,
                name="pg-login",
                admin_url=login.url("postgres").render_as_string(hide_password=False),
                actor="cli:test",
            )
        provision(platform, "stuck")
        filled(platform, "stuck")
        source_url = store_url(platform, "stuck")
        state = _state(platform, "stuck")
        taken: list[str] = []

        def take_ownership(progress: MoveProgress) -> None:
            # Mid-move, the target database passes to another role (an operator's grant
            # changes, a DBA's tooling): the move's login can no longer drop it.
            if progress.step != "verify" or taken:
                return
            with platform.sessions() as session:
                taken.append(session.scalars(select(StoreMove)).one().details["target"]["database"])
            login.as_admin(f'ALTER DATABASE "{taken[0]}" OWNER TO postgres', "postgres")

        monkeypatch.setenv("TENANTRY_FAILPOINTS", "move.before_switch=raise")
        try:
            moved = mover(platform, on_progress=take_ownership).move("stuck", "pg-login")
            leftover = login.admin.set(database=taken[0])

            assert moved.status == "rolled_back"
            assert moved.to_config_id is None
            assert moved.details["target_dropped"] is False
            assert "must be owner" in moved.details["target_drop_error"]
            assert moved.error is not None
            assert moved.error.startswith("FailPointError: fail point move.before_switch reached")
            # The leftover named (without the login's password), with why and what to do.
            assert f"/{leftover.database} could not be dropped" in moved.error
            assert "must be owner of database" in moved.error
            assert "drop it by hand" in moved.error
            assert login.password not in moved.error
            assert database_exists(leftover)  # still there: the operator removes it
            assert _state(platform, "stuck") == state
            with platform.sessions() as session:
                actions = session.scalars(select(AuditLog.action)).all()
                assert "store.move.rolled_back" in actions
                assert "store.move" not in actions
            _write_through_router(platform, "stuck", "AFTER-1")
            assert digests(source_url, platform)["products"][0] == PRODUCTS + 1
            # The CLI shows the store still on its source, with no server.
            shown = as_json(cli("stores", "show", "stuck", "--json"))
            assert shown["database_type"] == "sqlite"
            assert shown["connection"]["server"] is None
        finally:
            for name in taken:  # owned by the superuser now: the login's clean-up skips it
                drop_database(login.admin.set(database=name))


def test_a_lock_held_on_a_mariadb_target_cannot_stall_the_rollback(
    platform: Platform, cleanup: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_server("mysql")
    register(platform, "maria", "mysql")
    provision(platform, "locked")
    filled(platform, "locked")
    source_url = store_url(platform, "locked")
    state = _state(platform, "locked")
    # MariaDB's DROP DATABASE waits for other sessions' metadata locks (a day, by default);
    # the bound tenantry sets is shortened so the test does not wait its 30 s.
    monkeypatch.setattr(admin, "DDL_LOCK_WAIT_S", 1)
    holders: list[Connection] = []

    def hold_a_lock(progress: MoveProgress) -> None:
        # A session (a client, a DBA's console) reading the new database in a transaction
        # it leaves open: it holds a metadata lock on the table it read.
        if progress.step != "verify" or holders:
            return
        with platform.sessions() as session:
            name = session.scalars(select(StoreMove)).one().details["target"]["database"]
        engine = make_engine(parse_url(SERVER_URLS["mysql"]).set(database=name), pooled=False)
        holders.append(engine.connect())
        holders[0].execute(text("SELECT COUNT(*) FROM products")).scalar()

    monkeypatch.setenv("TENANTRY_FAILPOINTS", "move.before_switch=raise")
    finished: list[StoreMove] = []
    worker = threading.Thread(
        target=lambda: finished.append(
            mover(platform, on_progress=hold_a_lock).move("locked", "maria")
        ),
        daemon=True,
    )
    worker.start()
    try:
        worker.join(timeout=60)
        assert finished, "the rollback is still waiting for the lock on the target"
    finally:
        for held in holders:  # let a stalled drop through, so the thread ends
            held.rollback()
            held.close()
        worker.join(timeout=60)
    moved = finished[0]

    assert moved.status == "rolled_back"
    assert moved.details["target_dropped"] is False
    assert moved.error is not None
    target = _target(moved, "mysql")
    assert f"/{target.database} could not be dropped" in moved.error
    assert "Lock wait timeout" in moved.error
    assert "drop it by hand" in moved.error
    assert database_exists(target)  # left for the operator (the cleanup fixture drops it)
    assert _state(platform, "locked") == state
    _write_through_router(platform, "locked", "AFTER-1")
    assert digests(source_url, platform)["products"][0] == PRODUCTS + 1


# --------------------------------------------------------------------------- answer lost


def _on_target(platform: Platform, slug: str, moved: StoreMove) -> None:
    with platform.sessions() as session:
        store = stores.get_store(session, slug)
        active = stores.active_connection(session, store)
        assert active is not None
        assert active.id == moved.to_config_id
        assert store.database_type == "postgresql"
        assert store.write_block_reason is None
        assert session.scalar(select(func.count()).select_from(IntegrationConfig)) == 2
        assert (
            session.scalar(
                select(func.count()).select_from(AuditLog).where(AuditLog.action == "store.move")
            )
            == 1
        )
        assert (
            session.scalar(
                select(func.count())
                .select_from(AuditLog)
                .where(AuditLog.action == "store.move.rolled_back")
            )
            == 0
        )


def test_a_switch_whose_answer_was_lost_is_a_completed_move(
    platform: Platform, cleanup: None, monkeypatch: pytest.MonkeyPatch, cli: Invoke
) -> None:
    require_server("postgresql")
    register(platform, "pg", "postgresql")
    provision(platform, "lost-answer")
    filled(platform, "lost-answer")
    source_url = store_url(platform, "lost-answer")
    before = digests(source_url, platform)
    with platform.sessions() as session:
        version = stores.get_store(session, "lost-answer").connection_version
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "move.switched=raise")

    moved = mover(platform).move("lost-answer", "pg")

    monkeypatch.delenv("TENANTRY_FAILPOINTS")
    assert moved.status == "completed", moved.error
    assert moved.error is None
    target = _target(moved, "postgresql")
    assert database_exists(target)  # the rollback never drops the store's database
    assert "target_dropped" not in moved.details
    _on_target(platform, "lost-answer", moved)
    with platform.sessions() as session:
        assert stores.get_store(session, "lost-answer").connection_version == version + 1
    assert digests(target, platform) == before
    _write_through_router(platform, "lost-answer", "AFTER-1")
    assert digests(target, platform)["products"][0] == PRODUCTS + 1
    # The source is kept read-only, as after any completed move.
    assert stat.S_IMODE(Path(str(source_url.database)).stat().st_mode) == 0o400


def test_a_mover_killed_right_after_the_switch_commit_leaves_the_store_moved(
    platform: Platform, cleanup: None, cli: Invoke
) -> None:
    require_server("postgresql")
    register(platform, "pg", "postgresql")
    provision(platform, "killed-after")
    filled(platform, "killed-after")
    source_url = store_url(platform, "killed-after")
    before = digests(source_url, platform)
    env = {
        **os.environ,
        "TENANTRY_DATA_DIR": str(platform.settings.data_dir),
        "TENANTRY_FAILPOINTS": "move.switched=kill",
    }
    assert run_child(move_store, "killed-after", "pg", env=env) == -signal.SIGKILL

    with platform.sessions() as session:
        moved = session.scalars(select(StoreMove)).one()
        session.expunge(moved)
    # Killed before it could write "done": the switch's own commit says completed.
    assert (moved.status, moved.step) == ("completed", "switched")
    _on_target(platform, "killed-after", moved)
    target = _target(moved, "postgresql")
    assert digests(target, platform) == before
    shown = as_json(cli("stores", "show", "killed-after", "--json"))
    assert shown["database_type"] == "postgresql"
    assert shown["connection"]["server"] == "pg"
    assert shown["connection"]["id"] == str(moved.to_config_id)
    assert shown["connection"]["config_data"]["database"] == target.database

    # Run again: refused, nothing switched twice, nothing rolled back.
    again = cli("stores", "move", "killed-after", "--to-server", "pg", "--yes", "--json")
    assert again.exit_code == 1
    assert "already lives on server 'pg'" in as_json(again)["error"]["message"]
    _on_target(platform, "killed-after", moved)
    with platform.sessions() as session:
        assert session.scalar(select(func.count()).select_from(StoreMove)) == 1
        kept = kept_sources(session, platform.box, stores.get_store(session, "killed-after").id)
    # The source is kept (read-only, until keep_source_until), to be dropped with the store.
    assert [(k.url.database, k.droppable) for k in kept] == [(source_url.database, True)]
    assert moved.keep_source_until is not None
    assert stat.S_IMODE(Path(str(source_url.database)).stat().st_mode) == 0o400
    _write_through_router(platform, "killed-after", "AFTER-1")
    assert digests(target, platform)["products"][0] == PRODUCTS + 1
