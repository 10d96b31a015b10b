"""A move's write fence, on real SQLite, PostgreSQL (a database of its own, a shared schema)
and MariaDB sources: a write transaction in flight on the source when the move starts is
waited for (as long as it takes) and is in the target; one that never finishes fails the move
after the fence's timeout, rolled back, the store writable again and the writer's own
transaction left to commit; a mover killed right after the fence leaves a source the recovery
sweep makes writable again; a commit to a SQLite source after the fence fails the move before
the switch."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import pytest
from sqlalchemy import func, insert, select, text

from tenantry.db.engines import BUSY_TIMEOUT_ENV, connect, make_engine
from tenantry.db.master.models import StoreMove
from tenantry.db.tenant.store.models import Product
from tenantry.operations.move_store import StoreMover
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.move_progress import MoveProgress, ProgressCallback
from tenantry.services.write_blocks import ensure_writable
from tests.conftest import require_server
from tests.helpers import move_store, run_child
from tests.operations.test_shared_moves import shared_store
from tests.platform_fixtures import platform, settings
from tests.services.test_moves import BATCH, PRODUCTS, cleanup, provision, register, store_url
from tests.shared_schema_fixtures import SharedDb, shared_db

__all__ = ["cleanup", "platform", "settings", "shared_db"]

#: Each source backend, and where its store moves to.
SOURCES = {"sqlite": "pg", "postgresql": "sqlite", "mysql": "sqlite"}
#: How long the in-flight write stays open once the move started waiting for it.
HELD_S = 1.0


class InFlightWrite:
    """A write as the API makes it (through the platform's router onto the store's database),
    flushed (so the source holds it: a transaction id, a write lock) and left uncommitted in a
    thread until :meth:`finish`."""

    def __init__(self, platform: Platform, slug: str, sku: str) -> None:
        self.platform, self.slug, self.sku = platform, slug, sku
        self.flushed = threading.Event()
        self.release = threading.Event()
        self.committed = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="in-flight-write", daemon=True)
        self.thread.start()
        assert self.flushed.wait(30)
        assert self.error is None, self.error

    def _run(self) -> None:
        try:
            with self.platform.sessions() as session:
                store = stores.get_store(session, self.slug)
                with self.platform.router.session(session, store) as tenant:
                    tenant.add(Product(sku=self.sku, slug=self.sku.lower(), name=self.sku))
                    tenant.flush()
                    self.flushed.set()
                    self.release.wait(60)
                    tenant.commit()
                    self.committed = True
        except BaseException as exc:  # told to the test, which asserts there was none
            self.error = exc
            self.flushed.set()

    def finish(self) -> None:
        """Let the write commit, and wait until it did."""
        self.release.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def _on(platform: Platform, backend: str, slug: str) -> None:
    """A store with its database on ``backend`` (a SQLite file, or a registered server), and
    the server its move goes to registered."""
    if backend != "sqlite":
        require_server(backend)
        register(platform, "src", backend)
    target = SOURCES[backend]
    if target != "sqlite":
        require_server("postgresql")
        register(platform, target, "postgresql")
    provision(platform, slug, server="src" if backend != "sqlite" else None)


def _skus(platform: Platform, slug: str) -> list[str]:
    """The products in the store's active database."""
    engine = make_engine(store_url(platform, slug), pooled=False)
    try:
        with connect(engine) as conn:
            return sorted(conn.scalars(select(Product.sku)))
    finally:
        engine.dispose()


def _fence_timeout(
    platform: Platform, seconds: float, on_progress: ProgressCallback | None = None
) -> StoreMover:
    """A mover whose write fence waits at most ``seconds``."""
    settings = platform.settings.model_copy(update={"move_write_fence_seconds": seconds})
    return StoreMover(
        platform.sessions,
        platform.box,
        settings,
        platform.tenant_spec,
        batch_rows=BATCH,
        actor="cli:test",
        on_progress=on_progress,
    )


def _move_while_writing(platform: Platform, slug: str, to: str) -> StoreMove:
    """Move the store to ``to`` while a write is in flight on it: the write commits
    :data:`HELD_S` after the move starts waiting for it, and the move must wait that long."""
    write = InFlightWrite(platform, slug, "IN-FLIGHT")
    waiting_since: list[float] = []

    def meanwhile(state: MoveProgress) -> None:
        # The fence is raised right after this step is reported.
        if state.step == "draining" and not waiting_since:
            waiting_since.append(time.monotonic())
            threading.Timer(HELD_S, write.release.set).start()

    with pytest.MonkeyPatch.context() as patch:
        # The writer's pooled connection keeps a SQLite source open: the move gives up
        # leaving WAL mode after the busy timeout (test_moves covers that); 2 s, not 10.
        patch.setenv(BUSY_TIMEOUT_ENV, "2000")
        moved = _fence_timeout(platform, 30, on_progress=meanwhile).move(slug, to)
    write.finish()

    assert write.error is None, write.error
    assert write.committed
    assert moved.status == "completed", moved.error
    fence = moved.details["write_fence"]
    assert HELD_S * 0.8 <= fence["waited_s"] < 15, fence
    assert "IN-FLIGHT" in _skus(platform, slug)  # the target has it
    return moved


@pytest.mark.parametrize("backend", sorted(SOURCES))
def test_a_write_in_flight_when_the_move_starts_is_waited_for_and_moved(
    platform: Platform, cleanup: None, backend: str
) -> None:
    _on(platform, backend, "inflight")

    moved = _move_while_writing(platform, "inflight", SOURCES[backend])

    assert moved.details["write_fence"]["read_only"] is (backend == "postgresql")
    with platform.sessions() as session:
        store = stores.get_store(session, "inflight")
        assert store.database_type == ("sqlite" if SOURCES[backend] == "sqlite" else "postgresql")
    assert _skus(platform, "inflight") == ["IN-FLIGHT"]


def test_a_write_in_flight_on_a_shared_schema_is_waited_for_and_moved(
    platform: Platform, shared_db: SharedDb, cleanup: None
) -> None:
    slug = shared_store(platform, shared_db.target, "fly")

    moved = _move_while_writing(platform, slug, "sqlite")

    assert moved.details["write_fence"]["read_only"] is True
    assert "revoked" in moved.details["write_fence"]["how"]
    assert len(_skus(platform, slug)) == PRODUCTS + 1


@pytest.mark.parametrize("backend", sorted(SOURCES))
def test_a_writer_that_never_finishes_fails_the_move_after_the_fence_timeout(
    platform: Platform, cleanup: None, backend: str
) -> None:
    _on(platform, backend, "stuck")
    source = store_url(platform, "stuck")
    write = InFlightWrite(platform, "stuck", "STUCK")
    started = time.monotonic()

    moved = _fence_timeout(platform, 1.0).move("stuck", SOURCES[backend])

    took = time.monotonic() - started
    assert moved.status == "rolled_back"
    assert moved.error is not None
    assert "did not finish within the move's write fence timeout of 1 s" in moved.error
    assert "TENANTRY_MOVE_WRITE_FENCE_SECONDS" in moved.error
    assert moved.details["target_created"] is False  # failed before anything was made
    assert 1.0 <= took < 20
    # The writer was never cut off: it commits to the source, still the store's database.
    write.finish()
    assert write.error is None, write.error
    assert write.committed
    with platform.sessions() as session:
        store = stores.get_store(session, "stuck")
        ensure_writable(store)  # the block is lifted
        assert store_url(platform, "stuck") == source
        with platform.router.session(session, store) as tenant:
            tenant.add(Product(sku="AFTER", slug="after", name="After"))
            tenant.commit()
    assert _skus(platform, "stuck") == ["AFTER", "STUCK"]
    if backend == "postgresql":  # made read-only by the fence, writable again
        engine = make_engine(source, pooled=False)
        try:
            with connect(engine) as conn:
                assert conn.scalar(text("SHOW default_transaction_read_only")) == "off"
        finally:
            engine.dispose()


def test_a_mover_killed_after_the_fence_leaves_a_source_the_sweep_makes_writable(
    platform: Platform, cleanup: None
) -> None:
    _on(platform, "postgresql", "fenced")
    source = store_url(platform, "fenced")
    env = {
        **os.environ,
        "TENANTRY_DATA_DIR": str(platform.settings.data_dir),
        "TENANTRY_FAILPOINTS": "move.write_fence=kill",
        "TENANTRY_JOB_LEASE_SECONDS": "1",
    }
    assert run_child(move_store, "fenced", "sqlite", env=env) == -signal.SIGKILL
    engine = make_engine(source, pooled=False)
    try:
        with connect(engine) as conn:  # the fence made it read-only before the kill
            assert conn.scalar(text("SHOW default_transaction_read_only")) == "on"
        with platform.sessions() as session:
            dead = session.scalars(select(StoreMove)).one()
        time.sleep(1.2)  # its lease lapses

        assert _fence_timeout(platform, 30).recover_stalled(dead.id) == "failed"

        with connect(engine, begin=True) as conn:
            assert conn.scalar(text("SHOW default_transaction_read_only")) == "off"
            conn.execute(insert(Product).values(sku="W", slug="w", name="W"))
            assert conn.scalar(select(func.count()).select_from(Product)) == 1
    finally:
        engine.dispose()
    with platform.sessions() as session:
        assert session.get_one(StoreMove, dead.id).status == "rolled_back"
        ensure_writable(stores.get_store(session, "fenced"))


def test_a_commit_reaching_a_sqlite_source_after_the_fence_fails_the_move(
    platform: Platform, cleanup: None
) -> None:
    _on(platform, "sqlite", "late")
    source = store_url(platform, "late")
    late: list[int] = []

    def meanwhile(state: MoveProgress) -> None:
        # A write committed after the fence, one the verification cannot see (it changes no
        # row): SQLite cannot refuse it, so the move must notice it before the switch.
        if state.step == "verify" and not late:
            conn = sqlite3.connect(str(source.database))
            try:
                conn.execute("UPDATE tenantry_identity SET role = role")
                conn.commit()
            finally:
                conn.close()
            late.append(1)

    moved = _fence_timeout(platform, 30, on_progress=meanwhile).move("late", "pg")

    assert late
    assert moved.status == "rolled_back"
    assert moved.error is not None
    assert "a write reached the source" in moved.error
    assert moved.details["verified"] is True  # the rows matched: only the fence saw it
    assert moved.details["target_dropped"] is True
    with platform.sessions() as session:
        store = stores.get_store(session, "late")
        assert store.database_type == "sqlite"
        ensure_writable(store)
