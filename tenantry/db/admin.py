"""Server-level administration: does a database exist, create it, drop it (per backend)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from tenantry.db import sqlite_writers
from tenantry.db.engines import describe_connect_error, server_connect_args, sqlite_path
from tenantry.db.shared_schemas import schema_of
from tenantry.db.tls import check_transport, unreadable_tls_file
from tenantry.db.urls import backend_of, mask, redact, require_driver
from tenantry.errors import ConfigurationError, DatabaseAdminError
from tenantry.files import private_file

# Database names go into DDL as identifiers; accept only what needs no quoting anywhere.
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")


def _checked_name(url: URL) -> str:
    name = url.database or ""
    if not _SAFE_NAME.fullmatch(name):
        raise ConfigurationError(
            f"database name {name!r} is not allowed.",
            "Use 1 to 63 letters, digits, underscores or hyphens, starting with a letter.",
        )
    return name


def _server_url(url: URL) -> URL:
    # URL.set() treats None as "unchanged", so the name is removed with _replace.
    if backend_of(url) == "postgresql":
        return url.set(database="postgres")
    return url._replace(database=None)


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _server_engine(url: URL) -> Engine:
    """One small pooled AUTOCOMMIT engine per server, kept for the process: creating
    databases one after another should not pay a new connection (and dialect set-up) each."""
    require_driver(url)
    check_transport(url)
    server = _server_url(url)
    key = server.render_as_string(hide_password=False)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = create_engine(
                server,
                isolation_level="AUTOCOMMIT",
                pool_size=1,
                max_overflow=4,
                pool_pre_ping=True,
                connect_args=server_connect_args(server),
            )
            _engines[key] = engine
        return engine


def dispose_server_engines() -> None:
    """Close the cached server connections (at shutdown, or before dropping a template)."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


@contextmanager
def server_connection(url: URL) -> Iterator[Connection]:
    """An AUTOCOMMIT connection to the server of ``url`` (PostgreSQL's ``postgres`` database,
    no database on MySQL/MariaDB) from the process's pooled engine for that server, so
    server-level statements (logins, grants of roles) pay no new connection each; an
    unreachable server is :class:`~tenantry.errors.DatabaseUnreachable`."""
    engine = _server_engine(url)
    try:
        conn = engine.connect()
    except (OperationalError, InterfaceError) as exc:
        raise describe_connect_error(_server_url(url), exc) from None
    except FileNotFoundError as exc:
        raise unreadable_tls_file(_server_url(url), exc) from None
    with conn:
        yield conn


def database_exists(url: URL) -> bool:
    """Whether the database ``url`` names exists (for SQLite: whether the file exists)."""
    path = sqlite_path(url)
    if path is not None:
        return path.is_file()
    name = _checked_name(url)
    engine = _server_engine(url)
    try:
        with engine.connect() as conn:
            if backend_of(url) == "postgresql":
                query = text("SELECT 1 FROM pg_database WHERE datname = :n")
            else:
                query = text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n")
            return conn.execute(query, {"n": name}).first() is not None
    except (OperationalError, InterfaceError) as exc:
        raise describe_connect_error(_server_url(url), exc) from None
    except FileNotFoundError as exc:
        raise unreadable_tls_file(_server_url(url), exc) from None


def databases_named(url: URL, prefix: str) -> list[str]:
    """The names of the databases on the server of ``url`` that start with ``prefix``, sorted
    (for SQLite: the stems of the ``.db`` files beside ``url``'s file)."""
    path = sqlite_path(url)
    if path is not None:
        if not path.parent.is_dir():
            return []
        return sorted(p.stem for p in path.parent.glob(f"{prefix}*.db") if p.is_file())
    # LIKE narrows the listing on the server; its wildcards in the prefix (``_``) are escaped,
    # and the exact test is made here.
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if backend_of(url) == "postgresql":
        query = text("SELECT datname FROM pg_database WHERE datname LIKE :p")
    else:
        query = text(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE :p"
        )
    engine = _server_engine(url)
    try:
        with engine.connect() as conn:
            names = [str(n) for n in conn.scalars(query, {"p": pattern})]
    except (OperationalError, InterfaceError) as exc:
        raise describe_connect_error(_server_url(url), exc) from None
    except FileNotFoundError as exc:
        raise unreadable_tls_file(_server_url(url), exc) from None
    return sorted(n for n in names if n.startswith(prefix))


#: How long CREATE/DROP DATABASE wait for another session's lock on MySQL/MariaDB. Their
#: default is a day: a transaction left open on one of the database's tables (a client, a
#: DBA's console) would stall a drop, and the move rollback waiting on it, that long.
#: (PostgreSQL's DROP DATABASE ... WITH (FORCE) ends such sessions instead.)
DDL_LOCK_WAIT_S = 30


def run_server_sql(url: URL, statement: str, *, lock_wait_s: int | None = None) -> None:
    """Run one statement on the server of ``url`` (outside any database's transaction);
    on MySQL/MariaDB, waiting at most ``lock_wait_s`` seconds for other sessions' locks."""
    engine = _server_engine(url)
    try:
        with engine.connect() as conn:
            if lock_wait_s is not None and backend_of(url) == "mysql":
                conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {max(1, lock_wait_s)}")
            conn.exec_driver_sql(statement)
    except (OperationalError, InterfaceError) as exc:
        raise describe_connect_error(_server_url(url), exc) from None
    except FileNotFoundError as exc:
        raise unreadable_tls_file(_server_url(url), exc) from None
    except DBAPIError as exc:
        detail = redact(str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__)
        raise DatabaseAdminError(
            f"the server at {mask(_server_url(url))} refused "
            f"{' '.join(statement.split()[:2])}: {detail}.",
            "Check that the URL's user may create and drop databases.",
        ) from None


def _server_ddl(url: URL, *, postgresql: str, mysql: str) -> None:
    """Run CREATE/DROP DATABASE (``{name}`` is the checked, quoted name) on the server."""
    name = _checked_name(url)
    quoted = _server_engine(url).dialect.identifier_preparer.quote_identifier(name)
    statement = postgresql if backend_of(url) == "postgresql" else mysql
    run_server_sql(url, statement.format(name=quoted), lock_wait_s=DDL_LOCK_WAIT_S)


def create_database(url: URL) -> bool:
    """Create the database ``url`` names unless it exists; True when it was created."""
    path = sqlite_path(url)
    if path is not None:
        # Private from the start: SQLite gives -wal/-shm/-journal the main file's mode.
        return private_file(path)
    if database_exists(url):
        return False
    _server_ddl(
        url,
        postgresql="CREATE DATABASE {name} ENCODING 'UTF8'",
        mysql="CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
    )
    return True


def drop_database(url: URL) -> bool:
    """Drop the database ``url`` names if it exists; True when something was dropped."""
    path = sqlite_path(url)
    if path is not None:
        found = path.exists()
        for suffix in ("", "-wal", "-shm", "-journal", sqlite_writers.LOCK_SUFFIX):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        return found
    if (schema := schema_of(url)) is not None:
        # A store in one schema of a shared database: dropping "its database" would drop
        # every other store's schema with it.
        raise DatabaseAdminError(
            f"refusing to drop {mask(url)}: it is shared by several stores (this one lives "
            f"in schema {schema}); nothing was dropped.",
            "Drop the store's schema instead (tenantry stores delete SLUG --drop-database).",
        )
    if not database_exists(url):
        return False
    _server_ddl(
        url,
        postgresql="DROP DATABASE IF EXISTS {name} WITH (FORCE)",
        mysql="DROP DATABASE IF EXISTS {name}",
    )
    return True
