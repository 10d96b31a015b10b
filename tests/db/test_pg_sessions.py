"""Ending a PostgreSQL database's sessions opened before a moment, on a real server: an idle
session is ended at once, a reader after the grace, a writer waited for (then ended once it
committed) or, when the caller does not wait for writers, ended after the grace; sessions of
another database, or opened after the moment, are untouched; a writer outlasting the wait is
handed back, not ended."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tenantry.db.engines import make_engine
from tenantry.db.pg_sessions import EndedSessions, end_sessions_before
from tests.conftest import DbFactory

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)

#: How long the writer keeps its transaction open once the helper runs.
HELD_S = 0.6


@contextmanager
def _engine(url: URL) -> Iterator[Engine]:
    engine = make_engine(url, pooled=False)
    try:
        yield engine
    finally:
        engine.dispose()


def _alive(conn: Connection) -> bool:
    """Whether ``conn``'s session still answers (it was not ended)."""
    try:
        conn.execute(text("SELECT 1"))
    except DBAPIError:
        return False
    conn.rollback()
    return True


def _end(
    engine: Engine, *, grace_s: float, give_up_s: float, wait_for_writers: bool
) -> tuple[EndedSessions, float]:
    """Run the helper from an admin session of its own, for the sessions opened so far; what
    it did, and how long it took."""
    with engine.connect() as admin:
        admin = admin.execution_options(isolation_level="AUTOCOMMIT")
        since = admin.execute(text("SELECT clock_timestamp()")).scalar_one()
        started = time.monotonic()
        done = end_sessions_before(
            admin,
            since,
            grace_until=started + grace_s,
            give_up_at=started + give_up_s,
            wait_for_writers=wait_for_writers,
            poll_s=0.01,
        )
        return done, time.monotonic() - started


def _table(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id int)"))


def _rows(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.scalars(text("SELECT id FROM t ORDER BY id")))


def test_a_writer_is_waited_for_then_ended_and_idle_sessions_ended_at_once(
    backend: str, new_database: DbFactory
) -> None:
    url, elsewhere = new_database("sessions"), new_database("sessions_other")
    with _engine(url) as engine, _engine(elsewhere) as other_engine:
        _table(engine)
        with (
            engine.connect() as writer,
            engine.connect() as idle,
            other_engine.connect() as other,
        ):
            idle.execute(text("SELECT 1"))
            idle.commit()
            other.execute(text("SELECT 1"))
            other.commit()
            writer.execute(text("INSERT INTO t VALUES (1)"))  # left uncommitted
            committed: list[bool] = []

            def commit() -> None:
                writer.commit()
                committed.append(True)

            timer = threading.Timer(HELD_S, commit)
            timer.start()
            try:
                done, took = _end(engine, grace_s=0, give_up_s=30, wait_for_writers=True)
            finally:
                timer.join(10)

            assert committed  # the writer was never cut off ...
            assert took >= HELD_S * 0.8  # ... but waited for
            assert done.left == ()
            assert done.writers == 1
            assert done.ended >= 2  # the idle session, and the writer once it committed
            assert not _alive(writer)
            assert not _alive(idle)
            assert _alive(other)  # another database's session is none of its business
        assert _rows(engine) == [1]


def test_a_reader_is_given_the_grace_then_ended_and_later_sessions_are_kept(
    backend: str, new_database: DbFactory
) -> None:
    url = new_database("sessions_reader")
    with _engine(url) as engine:
        _table(engine)
        with engine.connect() as reader:
            reader.execute(text("SELECT count(*) FROM t"))  # a read, its transaction open
            with engine.connect() as admin:
                admin = admin.execution_options(isolation_level="AUTOCOMMIT")
                since = admin.execute(text("SELECT clock_timestamp()")).scalar_one()
                with engine.connect() as later:
                    later.execute(text("SELECT 1"))
                    later.commit()
                    started = time.monotonic()
                    done = end_sessions_before(
                        admin,
                        since,
                        grace_until=started + 0.5,
                        give_up_at=started + 30,
                        wait_for_writers=True,
                        poll_s=0.01,
                    )
                    took = time.monotonic() - started
                    assert _alive(later)  # opened after the moment: already as wanted
            assert 0.5 <= took < 10
            assert (done.writers, done.left) == (0, ())
            assert done.ended >= 1
            assert not _alive(reader)


def test_a_writer_outlasting_the_wait_is_handed_back_not_ended(
    backend: str, new_database: DbFactory
) -> None:
    url = new_database("sessions_stuck")
    with _engine(url) as engine:
        _table(engine)
        with engine.connect() as writer:
            writer.execute(text("INSERT INTO t VALUES (2)"))
            done, took = _end(engine, grace_s=0.2, give_up_s=0.5, wait_for_writers=True)

            assert 0.5 <= took < 10
            assert len(done.left) == 1
            assert done.left[0].writing
            assert done.left[0].xact_start is not None
            writer.commit()  # still its own to commit
        assert _rows(engine) == [2]


def test_without_waiting_for_writers_a_writer_is_ended_after_the_grace(
    backend: str, new_database: DbFactory
) -> None:
    url = new_database("sessions_end")
    with _engine(url) as engine:
        _table(engine)
        with engine.connect() as writer:
            writer.execute(text("INSERT INTO t VALUES (3)"))
            done, took = _end(engine, grace_s=0.3, give_up_s=0.3, wait_for_writers=False)

            assert 0.3 <= took < 10
            assert done.ended >= 1
            assert done.writers == 1
            assert not _alive(writer)
        assert _rows(engine) == []  # its transaction was rolled back with it


def test_give_up_before_the_grace_is_refused(backend: str, new_database: DbFactory) -> None:
    url = new_database("sessions_args")
    with _engine(url) as engine, pytest.raises(ValueError, match="give_up_at"):
        _end(engine, grace_s=1, give_up_s=0.5, wait_for_writers=True)
