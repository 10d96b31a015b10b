"""PostgreSQL: ``pg_dump --format=custom`` in a snapshot exported by a repeatable-read
transaction (the row counts come from the same snapshot), restored by ``pg_restore
--single-transaction``, checked by amcheck when the server has it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tenantry.backup.dump_tools.base import (
    BackupEngine,
    DumpInfo,
    IntegrityReport,
    ToolProcess,
    count_rows,
    dump_output,
    find_tool,
    pipe_into,
    tool_version,
)
from tenantry.db.engines import connect, make_engine
from tenantry.db.shared_schemas import schema_of
from tenantry.db.tls import check_transport, pg_tool_env


def _pg_env(url: URL) -> dict[str, str]:
    check_transport(url)  # the tools connect on their own: the same policy as engines
    env = {
        "PGHOST": url.host or "localhost",
        "PGPORT": str(url.port or 5432),
        "PGDATABASE": url.database or "",
        "PGCONNECT_TIMEOUT": "10",
    }
    if url.username:
        env["PGUSER"] = url.username
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    env.update(pg_tool_env(url))
    return env


class PostgresEngine(BackupEngine):
    """``pg_dump -Fc`` within an exported snapshot; ``pg_restore --single-transaction``."""

    backend = "postgresql"
    extension = "pgdump"

    @contextmanager
    def dump(self, url: URL) -> Iterator[tuple[IO[bytes], DumpInfo]]:
        pg_dump = find_tool("pg_dump")
        engine = make_engine(url, pooled=False)
        try:
            with connect(engine) as conn:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    # The exporting transaction stays open until pg_dump is done, so the
                    # counts and the dump see exactly the same data.
                    snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                    counts = count_rows(conn)
                    server = str(conn.execute(text("SHOW server_version")).scalar_one())
                    info = DumpInfo(counts, True, server, "pg_dump", tool_version(pg_dump))
                    # Compression is zstd's job downstream; -Z0 keeps pg_dump's CPU free.
                    args = [pg_dump, "--format=custom", "--compress=0", f"--snapshot={snapshot}"]
                    if (schema := schema_of(url)) is not None:
                        # One store's schema of a shared database: never its neighbours'.
                        args.append(f"--schema={schema}")
                    with dump_output(ToolProcess(args, _pg_env(url), url, stdin=False)) as out:
                        yield out, info
        finally:
            engine.dispose()

    def restore(self, url: URL, stream: IO[bytes]) -> None:
        pg_restore = find_tool("pg_restore")
        args = [
            pg_restore,
            "--exit-on-error",
            "--single-transaction",
            "--no-owner",
            "--no-privileges",
            f"--dbname={url.database}",
        ]
        process = ToolProcess(args, _pg_env(url), url, stdin=True)
        pipe_into(process, stream, "restore into")

    def integrity_check(self, url: URL) -> IntegrityReport:
        # pg_restore --exit-on-error already refused anything it could not load; amcheck
        # (when the server has it) then checks every B-tree index's structure. The scratch
        # database is tenantry's own, so adding the extension there touches nothing.
        # heapallindexed (every row found in every index) would cost as much again as the
        # restore of an indexed table; the row counts already cover lost rows.
        engine = make_engine(url, pooled=False)
        try:
            with connect(engine) as conn:
                return _amcheck(conn)
        finally:
            engine.dispose()


#: SQLSTATE of "permission denied" (insufficient_privilege): amcheck needs a superuser to
#: create it and, by default, to run its functions.
_INSUFFICIENT_PRIVILEGE = "42501"


def _amcheck(conn: Connection) -> IntegrityReport:
    """Every public B-tree index checked by amcheck, or why amcheck could not run.

    A login that may not create the extension or call its functions (a non-superuser) is
    not damage: the check is skipped and says why, and the restore and row counts still stand.
    """
    available = conn.execute(
        text("SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck'")
    ).first()
    if available is None:
        return IntegrityReport(skipped=["amcheck skipped: the server has no amcheck extension"])
    try:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS amcheck"))
        conn.commit()
    except DBAPIError as exc:
        conn.rollback()
        return IntegrityReport(skipped=[f"amcheck skipped: {_first_line(exc)}"])
    indexes = conn.execute(
        text(
            "SELECT c.oid, c.relname FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE a.amname = 'btree' AND n.nspname = 'public'"
        )
    ).all()
    problems: list[str] = []
    for oid, name in indexes:
        try:
            conn.execute(text("SELECT bt_index_check(:oid, false)"), {"oid": oid})
        except DBAPIError as exc:  # reported, not raised
            conn.rollback()
            if _sqlstate(exc) == _INSUFFICIENT_PRIVILEGE:
                return IntegrityReport(problems, [f"amcheck skipped: {_first_line(exc)}"])
            problems.append(f"index {name}: {_first_line(exc)}")
    return IntegrityReport(problems)


def _sqlstate(exc: DBAPIError) -> str | None:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return str(code) if code else None


def _first_line(exc: DBAPIError) -> str:
    # The server's own message (not SQLAlchemy's wrapper with the statement and a link).
    text_ = str(exc.orig if exc.orig is not None else exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__
