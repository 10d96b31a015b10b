"""Helpers shared by tests: schema snapshots that show whether a database changed, and a
connection that keeps writing a database while a test works on it."""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection, Executable, inspect, text
from sqlalchemy.engine import URL

from tenantry.db.admin import create_database
from tenantry.db.engines import make_engine


def schema_snapshot(conn: Connection) -> dict[str, Any]:
    """Every table with its columns, indexes, keys and uniques, plus version-table contents."""
    insp = inspect(conn)
    snap: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        snap[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)
            ],
            "indexes": sorted(
                (i["name"] or "", tuple(i["column_names"]), bool(i["unique"]))
                for i in insp.get_indexes(table)
            ),
            "fks": sorted(
                (f["name"] or "", tuple(f["constrained_columns"]), f["referred_table"])
                for f in insp.get_foreign_keys(table)
            ),
            "uniques": sorted(
                (u["name"] or "", tuple(u["column_names"]))
                for u in insp.get_unique_constraints(table)
            ),
        }
        if table.startswith("tenantry_"):
            rows = conn.execute(text(f"SELECT * FROM {table}")).all()
            snap[table]["rows"] = sorted(tuple(str(v) for v in r) for r in rows)
    return snap


def someone_elses(url: URL) -> None:
    """A database nobody told tenantry about, made at ``url``, holding one row of its own."""
    assert create_database(url)
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE ledger (entry varchar(20))"))
            conn.execute(text("INSERT INTO ledger VALUES ('keep me')"))
    finally:
        engine.dispose()


def still_theirs(url: URL) -> bool:
    """Whether the database :func:`someone_elses` made at ``url`` is there as it was: its one
    table, its row, and no tenantry identity."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return (
                sorted(inspect(conn).get_table_names()) == ["ledger"]
                and conn.scalar(text("SELECT entry FROM ledger")) == "keep me"
            )
    finally:
        engine.dispose()


@contextmanager
def busy_writer(
    url: URL, statement: Executable, *, commit: bool = True
) -> Iterator[Callable[[], int]]:
    """Commit ``statement`` over and over on a connection of its own (a worker writing the
    same database) until the block ends; yields how many commits it has made so far. With
    ``commit`` False each transaction is rolled back instead: the write lock is taken over
    and over, and nothing is ever written."""
    stop = threading.Event()
    writes = 0

    def write() -> None:
        nonlocal writes
        engine = make_engine(url, pooled=False)
        try:
            while not stop.is_set():
                with engine.connect() as conn:
                    conn.execute(statement)
                    if commit:
                        conn.commit()
                    else:
                        conn.rollback()
                writes += 1
        finally:
            engine.dispose()

    thread = threading.Thread(target=write, name="busy-writer", daemon=True)
    thread.start()
    try:
        yield lambda: writes
    finally:
        stop.set()
        thread.join()


def start_worker(env: dict[str, str], log: Path, **extra: str) -> subprocess.Popen[bytes]:
    """A real one-thread ``tenantry worker`` with ``env`` (plus ``extra``) as its whole
    environment, its output appended to ``log``; the caller stops it."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tenantry", "worker", "--workers", "1"],
            env={**env, **extra},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@contextmanager
def running_worker(log_path: Path, *, threads: int = 1) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``tenantry worker`` process on the test's data dir, stopped (SIGTERM, then
    SIGKILL after 20 s) when the block ends; its output goes to ``log_path``."""
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tenantry", "worker", "--workers", str(threads)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
        try:
            yield worker
        finally:
            stop_process(worker)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``proc`` if it still runs: SIGTERM, then SIGKILL after 20 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_output(path: Path, needle: str, proc: subprocess.Popen[bytes], seconds: float) -> str:
    """The output ``proc`` wrote to ``path`` once it holds ``needle``; fails (showing the
    output) when ``proc`` exits first or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if needle in content:
            return content
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    content = path.read_text() if path.exists() else ""
    raise AssertionError(f"{needle!r} not seen within {seconds} s in:\n{content}")


def wait_until_healthy(
    base_url: str, proc: subprocess.Popen[bytes], log_path: Path, seconds: float = 30
) -> None:
    """Wait for ``GET /health`` at ``base_url`` to answer 200; fails (showing the server's
    output) when the server exits first or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    # One client for every poll: a new one loads the CA bundle again (about 20 ms of CPU),
    # which for a server starting in 3 s was more CPU than the polls themselves.
    with httpx.Client(timeout=2) as http:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if http.get(f"{base_url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise AssertionError(
        f"{base_url}/health did not answer 200 within {seconds} s (exit code {proc.poll()}):\n"
        f"{log_path.read_text() if log_path.exists() else ''}"
    )


# Children that die mid-job are forked from a server process that has imported tenantry once,
# instead of each starting a new interpreter (about 1.5 s of imports apiece); the fork server
# starts clean (no threads or connections of the test's process are inherited).
_FORKS = multiprocessing.get_context("forkserver")
_FORKS.set_forkserver_preload(
    ["tenantry.runtime", "tenantry.operations.provision", "tenantry.jobs.queue", "tests.helpers"]
)


def _in_env(env: dict[str, str], target: Callable[..., object], args: tuple[object, ...]) -> None:
    os.environ.clear()
    os.environ.update(env)
    target(*args)


def run_child(
    target: Callable[..., object], *args: object, env: dict[str, str], seconds: float = 120
) -> int | None:
    """Run ``target(*args)`` in a new process whose whole environment is ``env``; its exit
    code (``-9`` when it was SIGKILLed, e.g. by a ``kill`` fail point). ``target`` must be a
    module-level function."""
    proc = _FORKS.Process(target=_in_env, args=(env, target, args))
    proc.start()
    proc.join(seconds)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        raise AssertionError(f"{target.__name__} did not end within {seconds} s")
    return proc.exitcode


def tenantry_command(
    args: list[str], env: dict[str, str], seconds: float = 180
) -> subprocess.CompletedProcess[str]:
    """``python -m tenantry ARGS`` as :func:`subprocess.run` with ``capture_output`` answers
    (``returncode`` -9 when a fail point killed it), run in a child of the fork server: a new
    process that imports the CLI and the app's tenant schema plug-in afresh (``PYTHONPATH`` of
    ``env``), without a new interpreter's start-up."""
    with tempfile.TemporaryDirectory(prefix="tenantry-cli-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        code = run_child(_cli_main, args, str(out), str(err), env=env, seconds=seconds)
        return subprocess.CompletedProcess(
            ["tenantry", *args], code if code is not None else -1, out.read_text(), err.read_text()
        )


def _cli_main(args: list[str], out: str, err: str) -> None:
    """The CLI's ``main`` with ``args``, its output to the files ``out`` and ``err``."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
    os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.argv = ["tenantry", *args]
    from tenantry.cli.main import main

    try:
        main()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def provision_job(job_id: str) -> None:
    """What a worker does with one provisioning job (for :func:`run_child`)."""
    import uuid

    from tenantry.operations.provision import Provisioner
    from tenantry.runtime import Platform
    from tenantry.settings import load_settings

    settings = load_settings()
    platform = Platform.open(settings)
    Provisioner(platform.sessions, platform.box, settings, platform.tenant_spec, "doomed").run(
        uuid.UUID(job_id)
    )


def move_store(slug: str, server: str) -> None:
    """What ``tenantry stores move SLUG --to SERVER`` does (for :func:`run_child`)."""
    from tenantry.operations.move_store import StoreMover
    from tenantry.runtime import Platform
    from tenantry.settings import load_settings

    settings = load_settings()
    platform = Platform.open(settings)
    StoreMover(
        platform.sessions,
        platform.box,
        settings,
        platform.tenant_spec,
        actor="cli:test",
    ).move(slug, server)
