"""Dump and restore one database with its own tools.

PostgreSQL: ``pg_dump --format=custom`` in a snapshot exported by a repeatable-read
transaction (the row counts come from the same snapshot), restored by ``pg_restore
--single-transaction``. MySQL/MariaDB: ``mariadb-dump --single-transaction`` (or
``mysqldump``), restored by the ``mariadb`` (or ``mysql``) client. SQLite: the online backup
API, restored through the same API so a live target changes in one step.

Credentials reach the tools through the environment (``PGPASSWORD``) or a 0600 option file,
never the command line, and never appear in an error: a tool's stderr is scrubbed of the
password before it is shown.
"""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tenantry.db.engines import connect, make_engine, sqlite_busy_timeout_ms, sqlite_path
from tenantry.db.urls import backend_of, mask, redact
from tenantry.errors import ConfigurationError, TenantryError
from tenantry.files import private_dir, private_file

CHUNK = 1 << 20


class BackupToolError(TenantryError):
    """A dump or restore tool failed (its exit status and scrubbed stderr say why)."""


@dataclass(frozen=True)
class DumpInfo:
    """What a dump knows about the database it was taken from."""

    row_counts: dict[str, int]
    #: True when the counts come from the dump's own snapshot (PostgreSQL, SQLite); MySQL's
    #: are read in a separate consistent snapshot just before the dump.
    exact_counts: bool
    server_version: str
    tool: str
    tool_version: str


def count_rows(conn: Connection) -> dict[str, int]:
    """Rows per table of the database behind ``conn`` (every table, tenantry's included)."""
    preparer = conn.dialect.identifier_preparer
    counts: dict[str, int] = {}
    for table in sorted(inspect(conn).get_table_names()):
        quoted = preparer.quote(table)
        counts[table] = int(conn.execute(text(f"SELECT COUNT(*) FROM {quoted}")).scalar_one())
    return counts


def _scrub(message: str, url: URL) -> str:
    # By structure (see redact): never by searching for the password, which would spell out
    # a short one. The tools get the password from the environment, not their arguments.
    return redact(message).strip()


def _tool(*candidates: str) -> str:
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    raise ConfigurationError(
        f"none of {', '.join(candidates)} is installed.",
        "Install the database's client tools (Debian: postgresql-client or mariadb-client) "
        "on the machine that runs backups.",
    )


@functools.cache
def _version(tool: str) -> str:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "?"


class _Process:
    """A tool run with its stderr in a temp file (a pipe could fill up and deadlock it)."""

    def __init__(self, args: list[str], env: dict[str, str], url: URL, *, stdin: bool) -> None:
        self.url = url
        self.name = Path(args[0]).name
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finish()/kill()
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if stdin else subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, **env},
        )

    def finish(self, action: str) -> None:
        """Wait for the tool; a non-zero exit raises with its scrubbed stderr."""
        code = self.proc.wait()
        self._stderr.seek(0)
        err = self._stderr.read().decode("utf-8", "replace")
        self._stderr.close()
        if code != 0:
            detail = _scrub(err, self.url)[-2000:] or "(no message)"
            raise BackupToolError(
                f"{self.name} failed to {action} {mask(self.url)} (exit status {code}): {detail}",
                "Fix the cause above and run the command again; nothing was recorded as good.",
            )

    def kill(self) -> None:
        """Stop the tool (after a failure on our side of the pipe)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._stderr.close()


@contextmanager
def _dump_output(process: _Process) -> Iterator[IO[bytes]]:
    """The dump tool's output; leaving the block waits for it and checks its exit status,
    an error inside the block kills it."""
    assert process.proc.stdout is not None
    try:
        yield process.proc.stdout
    except BaseException:
        process.kill()
        raise
    process.finish("dump")


def feed(stream: IO[bytes], sink: IO[bytes]) -> int:
    """Copy ``stream`` into ``sink`` in chunks; the number of bytes copied."""
    total = 0
    while chunk := stream.read(CHUNK):
        sink.write(chunk)
        total += len(chunk)
    return total


@dataclass(frozen=True)
class IntegrityReport:
    """What an engine's integrity check found, and what it could not check (and why)."""

    problems: list[str] = field(default_factory=list)
    #: Checks that did not run, e.g. ``amcheck skipped: permission denied …``; not damage.
    skipped: list[str] = field(default_factory=list)


class BackupEngine(ABC):
    """Dump and restore for one backend."""

    backend: str
    #: The artifact's extension before ``.zst``.
    extension: str

    @abstractmethod
    @contextmanager
    def dump(self, url: URL) -> Iterator[tuple[IO[bytes], DumpInfo]]:
        """The dump of ``url`` as a stream; leaving the block checks the tool's exit status."""

    @abstractmethod
    def restore(self, url: URL, stream: IO[bytes]) -> None:
        """Load a dump into the database at ``url`` (new and empty, or SQLite: replaced)."""

    @abstractmethod
    def integrity_check(self, url: URL) -> IntegrityReport:
        """What the engine's own integrity check finds wrong in the database at ``url``."""

    def row_counts(self, url: URL) -> dict[str, int]:
        """Rows per table of the database at ``url``."""
        engine = make_engine(url, pooled=False)
        try:
            with connect(engine) as conn:
                return count_rows(conn)
        finally:
            engine.dispose()


# --------------------------------------------------------------------------- PostgreSQL


def _pg_env(url: URL) -> dict[str, str]:
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
    for key, variable in (("sslmode", "PGSSLMODE"), ("sslrootcert", "PGSSLROOTCERT")):
        if key in url.query:
            env[variable] = str(url.query[key])
    return env


class PostgresEngine(BackupEngine):
    """``pg_dump -Fc`` within an exported snapshot; ``pg_restore --single-transaction``."""

    backend = "postgresql"
    extension = "pgdump"

    @contextmanager
    def dump(self, url: URL) -> Iterator[tuple[IO[bytes], DumpInfo]]:
        pg_dump = _tool("pg_dump")
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
                    info = DumpInfo(counts, True, server, "pg_dump", _version(pg_dump))
                    # Compression is zstd's job downstream; -Z0 keeps pg_dump's CPU free.
                    args = [pg_dump, "--format=custom", "--compress=0", f"--snapshot={snapshot}"]
                    with _dump_output(_Process(args, _pg_env(url), url, stdin=False)) as out:
                        yield out, info
        finally:
            engine.dispose()

    def restore(self, url: URL, stream: IO[bytes]) -> None:
        pg_restore = _tool("pg_restore")
        args = [
            pg_restore,
            "--exit-on-error",
            "--single-transaction",
            "--no-owner",
            "--no-privileges",
            f"--dbname={url.database}",
        ]
        process = _Process(args, _pg_env(url), url, stdin=True)
        _pipe_into(process, stream, "restore into")

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


def _pipe_into(process: _Process, stream: IO[bytes], action: str) -> None:
    assert process.proc.stdin is not None
    try:
        feed(stream, process.proc.stdin)
        process.proc.stdin.close()
    except BrokenPipeError:
        pass  # the tool stopped early: its exit status and stderr say why
    except BaseException:
        process.kill()
        raise
    process.finish(action)


# --------------------------------------------------------------------------- MySQL / MariaDB


@contextmanager
def _mysql_options(url: URL) -> Iterator[list[str]]:
    """Connection options for the MySQL tools; the password goes in a 0600 option file."""
    with tempfile.NamedTemporaryFile("w", prefix="tenantry-my-", suffix=".cnf") as options:
        os.chmod(options.name, 0o600)
        options.write("[client]\n")
        if url.password is not None:
            escaped = str(url.password).replace("\\", "\\\\").replace('"', '\\"')
            options.write(f'password="{escaped}"\n')
        options.flush()
        args = [
            f"--defaults-extra-file={options.name}",
            f"--host={url.host or '127.0.0.1'}",
            f"--port={url.port or 3306}",
            "--default-character-set=utf8mb4",
        ]
        if url.username:
            args.append(f"--user={url.username}")
        yield args


class MySQLEngine(BackupEngine):
    """``mariadb-dump --single-transaction``; restored by the ``mariadb`` client."""

    backend = "mysql"
    extension = "sql"

    @contextmanager
    def dump(self, url: URL) -> Iterator[tuple[IO[bytes], DumpInfo]]:
        tool = _tool("mariadb-dump", "mysqldump")
        engine = make_engine(url, pooled=False)
        try:
            with connect(engine) as conn:
                conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                counts = count_rows(conn)
                server = str(conn.execute(text("SELECT VERSION()")).scalar_one())
                conn.rollback()
        finally:
            engine.dispose()
        info = DumpInfo(counts, False, server, Path(tool).name, _version(tool))
        with _mysql_options(url) as options:
            args = [
                tool,
                *options,
                "--single-transaction",
                "--quick",
                "--routines",
                "--triggers",
                "--hex-blob",
                "--no-tablespaces",
                "--skip-lock-tables",
                str(url.database),
            ]
            with _dump_output(_Process(args, {}, url, stdin=False)) as out:
                yield out, info

    def restore(self, url: URL, stream: IO[bytes]) -> None:
        client = _tool("mariadb", "mysql")
        with _mysql_options(url) as options:
            args = [client, *options, "--batch", "--init-command=SET autocommit=0"]
            process = _Process([*args, str(url.database)], {}, url, stdin=True)
            _pipe_into(process, stream, "restore into")

    def integrity_check(self, url: URL) -> IntegrityReport:
        engine = make_engine(url, pooled=False)
        problems: list[str] = []
        try:
            with connect(engine) as conn:
                tables = inspect(conn).get_table_names()
                if not tables:
                    return IntegrityReport()
                quoted = ", ".join(conn.dialect.identifier_preparer.quote(t) for t in tables)
                for row in conn.exec_driver_sql(f"CHECK TABLE {quoted}"):
                    table, _op, kind, message = row[0], row[1], row[2], row[3]
                    if str(kind).lower() == "error" or (
                        str(kind).lower() == "status" and str(message).lower() != "ok"
                    ):
                        problems.append(f"{table}: {message}")
        finally:
            engine.dispose()
        return IntegrityReport(problems)


# --------------------------------------------------------------------------- SQLite


def _sqlite_file(url: URL) -> Path:
    path = sqlite_path(url)
    if path is None:
        raise ConfigurationError(f"{mask(url)} is not a SQLite file.", "Give a sqlite:/// URL.")
    return path


class SQLiteEngine(BackupEngine):
    """The online backup API, both ways."""

    backend = "sqlite"
    extension = "sqlite"

    @contextmanager
    def dump(self, url: URL) -> Iterator[tuple[IO[bytes], DumpInfo]]:
        source_path = _sqlite_file(url)
        if not source_path.is_file():
            raise ConfigurationError(f"the SQLite database {source_path} does not exist.")
        with tempfile.TemporaryDirectory(dir=source_path.parent, prefix=".backup-") as tmp:
            copy = Path(tmp) / "copy.db"
            source = sqlite3.connect(source_path)
            target = sqlite3.connect(copy)
            try:
                # One consistent copy even while others write (the API restarts on change).
                source.backup(target)
                counts = _sqlite_counts(target)
                # A self-contained file: no WAL to carry along.
                target.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.Error as exc:
                raise BackupToolError(
                    f"the SQLite backup of {source_path} failed: {exc}.",
                    "Check the file's permissions and free disk space, then run again.",
                ) from None
            finally:
                source.close()
                target.close()
            info = DumpInfo(
                counts, True, sqlite3.sqlite_version, "sqlite3", "SQLite online backup API"
            )
            with copy.open("rb") as stream:
                yield stream, info

    def restore(self, url: URL, stream: IO[bytes]) -> None:
        target_path = _sqlite_file(url)
        private_dir(target_path.parent)
        with tempfile.TemporaryDirectory(dir=target_path.parent, prefix=".restore-") as tmp:
            staged = Path(tmp) / "restored.db"
            with staged.open("wb") as sink:
                feed(stream, sink)
            replace_sqlite(staged, target_path)

    def integrity_check(self, url: URL) -> IntegrityReport:
        conn = sqlite3.connect(_sqlite_file(url))
        try:
            return IntegrityReport(_sqlite_integrity(conn))
        except sqlite3.DatabaseError as exc:
            return IntegrityReport([str(exc)])
        finally:
            conn.close()


def replace_sqlite(source_path: Path, target_path: Path) -> None:
    """Replace the SQLite database at ``target_path`` with a checked copy of ``source_path``.

    The backup API replaces the target's pages in one locked step, so other connections see
    the old database or the new one, never a mix (a file rename would strand them).
    """
    source = sqlite3.connect(source_path)
    try:
        problems = _sqlite_integrity(source)
        if problems:
            raise BackupToolError(
                f"the backup is not a sound SQLite database: {'; '.join(problems)}.",
                "Restore another backup; this one is damaged.",
            )
        private_file(target_path)  # sqlite3 would create a missing target with the umask's mode
        # A live target may be busy with another process's write: wait for it as the
        # engines do (the busy timeout) rather than the driver's 5 s.
        target = sqlite3.connect(target_path, timeout=sqlite_busy_timeout_ms() / 1000)
        try:
            source.backup(target)
        finally:
            target.close()
    except sqlite3.DatabaseError as exc:
        raise BackupToolError(
            f"cannot restore into {target_path}: {exc}.",
            "Restore another backup, or check the target file's permissions.",
        ) from None
    finally:
        source.close()


def _sqlite_counts(conn: sqlite3.Connection) -> dict[str, int]:
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    return {n: int(conn.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0]) for n in names}


def _sqlite_integrity(conn: sqlite3.Connection) -> list[str]:
    rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall()]
    return [] if rows == ["ok"] else rows


ENGINES: dict[str, BackupEngine] = {
    "postgresql": PostgresEngine(),
    "mysql": MySQLEngine(),
    "sqlite": SQLiteEngine(),
}


def engine_for(url: URL) -> BackupEngine:
    """The backup engine of ``url``'s backend."""
    return ENGINES[backend_of(url)]


def database_label(url: URL) -> str:
    """A database's name for catalogs and manifests: never a URL, never a credential."""
    if backend_of(url) == "sqlite":
        return _sqlite_file(url).name
    return str(url.database)
