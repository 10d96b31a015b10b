"""SQLite writers queue on a lock file: held for exactly a writer transaction, given back
however it ends, never waited on longer than the busy timeout."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from tenantry.db import sqlite_writers
from tenantry.db.admin import drop_database
from tenantry.db.engines import immediate_transaction, make_engine, writer
from tenantry.db.urls import parse_url


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Engine, Path]]:
    monkeypatch.setenv("TENANTRY_SQLITE_BUSY_TIMEOUT_MS", "500")
    path = tmp_path / "w.db"
    engine = make_engine(parse_url(f"sqlite:///{path}"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
    yield engine, path
    engine.dispose()


def _held(path: Path) -> bool:
    """Whether some writer holds ``path``'s lock (tried from a descriptor of our own)."""
    fd = os.open(sqlite_writers.lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_the_lock_is_held_for_a_writer_transaction_only(db: tuple[Engine, Path]) -> None:
    engine, path = db
    with writer(engine).begin() as conn:
        conn.execute(text("INSERT INTO t (v) VALUES ('a')"))
        assert _held(path)
    assert not _held(path)
    with engine.begin() as conn:  # a plain (deferred) transaction does not queue
        conn.execute(text("SELECT 1"))
        assert not _held(path)

    def fails_inside() -> None:
        with writer(engine).begin() as conn:
            conn.execute(text("INSERT INTO t (v) VALUES ('rolled back')"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fails_inside()
    assert not _held(path)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT v FROM t")).scalars().all() == ["a"]


def test_a_connection_returned_with_its_transaction_open_gives_the_lock_back(
    db: tuple[Engine, Path],
) -> None:
    engine, path = db
    conn = writer(engine).connect()
    conn.begin()
    conn.execute(text("INSERT INTO t (v) VALUES ('never committed')"))
    assert _held(path)
    conn.close()  # back to the pool, rolled back there
    assert not _held(path)
    with engine.connect() as check:
        assert check.execute(text("SELECT count(*) FROM t")).scalar() == 0


def test_a_waiting_writer_goes_as_soon_as_the_holder_commits(db: tuple[Engine, Path]) -> None:
    engine, _ = db
    holder_in = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def holder() -> None:
        with writer(engine).begin() as conn:
            conn.execute(text("INSERT INTO t (v) VALUES ('first')"))
            holder_in.set()
            release.wait(5)
            order.append("first")

    thread = threading.Thread(target=holder)
    thread.start()
    assert holder_in.wait(5)
    threading.Timer(0.2, release.set).start()
    with writer(engine).begin() as conn:  # waits for the holder, within the 500 ms timeout
        conn.execute(text("INSERT INTO t (v) VALUES ('second')"))
        order.append("second")
    thread.join()
    assert order == ["first", "second"]


def test_a_writer_held_too_long_is_refused_after_the_busy_timeout(db: tuple[Engine, Path]) -> None:
    engine, path = db
    held = sqlite_writers.acquire(path, 1000)  # another writer, stuck
    try:
        started = time.monotonic()
        # As SQLite's own busy timeout is raised: SQLAlchemy's OperationalError, which the
        # API answers with a 503 to retry (the driver's own error would be a 500).
        with (
            pytest.raises(OperationalError, match="database is locked"),
            writer(engine).begin() as conn,
        ):
            conn.execute(text("INSERT INTO t (v) VALUES ('x')"))
        assert 0.4 < time.monotonic() - started < 5
    finally:
        sqlite_writers.release(held)
    with writer(engine).begin() as conn:  # and the lock works again afterwards
        conn.execute(text("INSERT INTO t (v) VALUES ('y')"))


def test_a_connection_waits_for_the_lock_as_long_as_its_own_busy_timeout_says(
    db: tuple[Engine, Path],
) -> None:
    # A migration sets its lock wait on its connection (PRAGMA busy_timeout, at least a
    # second on SQLite); the writer queue must not wait the engine's longer default instead.
    engine, path = db
    held = sqlite_writers.acquire(path, 1000)  # another writer, stuck
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout=1500")  # the engine's is 500 ms
            conn.rollback()
            started = time.monotonic()
            with (
                pytest.raises(OperationalError, match="database is locked"),
                immediate_transaction(conn),
            ):
                conn.execute(text("INSERT INTO t (v) VALUES ('x')"))
            waited = time.monotonic() - started
        assert 1.4 < waited < 4, f"waited {waited:.1f} s, not the connection's 1.5 s"
    finally:
        sqlite_writers.release(held)


def test_only_the_immediate_transaction_takes_the_lock_not_the_next_one_on_its_connection(
    db: tuple[Engine, Path],
) -> None:
    # A fleet run migrates in one immediate transaction, then reads and restores settings on
    # the same connection: those must not queue behind another process's writer.
    engine, path = db
    with engine.connect() as conn:
        with immediate_transaction(conn):
            conn.execute(text("INSERT INTO t (v) VALUES ('a')"))
            assert _held(path)
        assert not _held(path)
        held = sqlite_writers.acquire(path, 1000)  # another writer, stuck
        try:
            started = time.monotonic()
            with conn.begin():
                assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
            assert time.monotonic() - started < 0.3, "the read waited for the write lock"
        finally:
            sqlite_writers.release(held)


def test_dropping_the_database_removes_its_lock_file(db: tuple[Engine, Path]) -> None:
    engine, path = db
    with writer(engine).begin() as conn:
        conn.execute(text("INSERT INTO t (v) VALUES ('a')"))
    engine.dispose()
    assert sqlite_writers.lock_path(path).exists()
    drop_database(parse_url(f"sqlite:///{path}"))
    assert not path.exists()
    assert not sqlite_writers.lock_path(path).exists()


def test_one_engine_over_many_files_locks_the_file_it_writes(tmp_path: Path) -> None:
    # The fleet's shared engine opens every tenant file through one engine: each writer must
    # queue on its own file's lock, not on the first file the engine ever opened.
    from tenantry.db.server_connections import ServerConnections

    files = [tmp_path / "first" / "a.db", tmp_path / "second" / "b.db"]
    shared = ServerConnections()
    try:
        for path in files:
            path.parent.mkdir()
            with shared.connect(parse_url(f"sqlite:///{path}")) as conn, conn.begin():
                conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        first, second = files
        first.unlink()  # the first file's directory may even be gone
        first.parent.rmdir()
        with shared.connect(parse_url(f"sqlite:///{second}")) as conn:
            with immediate_transaction(conn):
                conn.execute(text("INSERT INTO t (id) VALUES (1)"))
                assert _held(second)
            assert not _held(second)
    finally:
        shared.dispose()


def test_many_waiting_writers_of_one_process_leave_the_cpu_to_the_holder(
    db: tuple[Engine, Path],
) -> None:
    # An API answering many clients has tens of writers waiting at once. Each wait must not
    # poll on its own: every poll takes the GIL, which the writer holding the lock needs.
    engine, path = db
    other = os.open(sqlite_writers.lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(other, fcntl.LOCK_EX)  # another process's writer, for 0.3 s (timeout 0.5 s)
    written: list[int] = []

    def write(i: int) -> None:
        with writer(engine).begin() as conn:
            conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": str(i)})
        written.append(i)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(30)]
    try:
        for thread in threads:
            thread.start()
        cpu_before = time.thread_time(), time.process_time()
        time.sleep(0.3)
        busy = time.process_time() - cpu_before[1] - (time.thread_time() - cpu_before[0])
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)
    for thread in threads:
        thread.join(10)
    assert sorted(written) == list(range(30))  # every waiter wrote once the lock was free
    # One poller at most every millisecond costs a few ms of CPU in 0.3 s; thirty polling on
    # their own cost about a hundred.
    assert busy < 0.05, f"30 waiting writers used {busy * 1000:.0f} ms of CPU in 300 ms"
