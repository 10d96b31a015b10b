"""Database logins and their access levels on PostgreSQL and MySQL/MariaDB.

Every function takes an admin URL of the server (a superuser, or a login that may create
roles and grant on the databases concerned) and runs the DDL through it. A login gets one of
three levels on a database:

``readonly``
    SELECT on every table.
``service``
    SELECT, INSERT, UPDATE, DELETE on every table and the use of sequences: what a running
    application needs, and no DDL (no CREATE, ALTER, DROP, TRUNCATE).
``admin``
    every privilege on the database. On PostgreSQL that is every privilege on the database,
    schema public and its tables (CREATE TABLE, TRUNCATE, ...), but not ownership: altering
    or dropping a table the migrator made stays with the migrator, as granting membership in
    the migrator's role (often a superuser) would reach every database it owns.

On PostgreSQL the grants also cover tables the migrator (by default the admin URL's user)
creates later (``ALTER DEFAULT PRIVILEGES``); CONNECT on the database is taken from PUBLIC so
that only the logins granted on it (and its owner and superusers) may connect, and CREATE on
schema ``public`` is taken from PUBLIC. On MySQL/MariaDB a login is ``'name'@'%'`` and its
grants are on ``database.*`` with ``_``/``%`` escaped, so they match that database alone.

Login names are checked (lower-case letters, digits, underscores) and quoted; passwords are
checked and never sent in clear where the server accepts a hash: PostgreSQL gets a
SCRAM-SHA-256 verifier and MariaDB a native-password hash, so neither a statement log nor an
error message can contain the password.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Literal, get_args

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from tenantry.db.engines import describe_connect_error, make_engine
from tenantry.db.login_secrets import (
    check_password,
    generate_password,
    native_password_hash,
    scram_verifier,
)
from tenantry.db.urls import backend_of, mask, redact
from tenantry.errors import DatabaseAdminError, DatabaseUnreachable, InvalidInput

Level = Literal["readonly", "service", "admin"]
#: The access levels, least privilege first.
LEVELS: tuple[Level, ...] = get_args(Level)

#: MySQL 5.7/8 allow 32 characters in a user name, PostgreSQL 63 bytes: the smaller bound.
MAX_LOGIN_NAME = 32
_LOGIN_NAME = re.compile(rf"[a-z][a-z0-9_]{{0,{MAX_LOGIN_NAME - 1}}}")
_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,62}")

_TABLES: dict[Level, str] = {
    "readonly": "SELECT",
    "service": "SELECT, INSERT, UPDATE, DELETE",
    "admin": "ALL PRIVILEGES",
}
_SEQUENCES: dict[Level, str] = {
    "readonly": "SELECT",
    "service": "USAGE, SELECT",
    "admin": "ALL PRIVILEGES",
}
_MYSQL_NO_SUCH_GRANT = 1141
_MYSQL_UNKNOWN_THREAD = 1094


def check_login_name(name: str) -> str:
    """``name`` when it may be used as a login name, else :class:`InvalidInput`."""
    if not _LOGIN_NAME.fullmatch(name):
        raise InvalidInput(
            f"login name {name[:40]!r} is not allowed.",
            f"Use 1 to {MAX_LOGIN_NAME} lower-case letters, digits or underscores, "
            "starting with a letter.",
        )
    return name


def check_level(level: str) -> Level:
    """``level`` as a :data:`Level`, else :class:`InvalidInput` naming the levels."""
    for known in LEVELS:
        if level == known:
            return known
    raise InvalidInput(
        f"access level {level[:40]!r} is unknown.", f"Use one of: {', '.join(LEVELS)}."
    )


def _check_database(database: str) -> str:
    if not _DATABASE_NAME.fullmatch(database):
        raise InvalidInput(
            f"database name {database[:70]!r} is not allowed.",
            "Use 1 to 63 letters, digits, underscores or hyphens, starting with a letter.",
        )
    return database


def _backend(admin_url: URL) -> str:
    backend = backend_of(admin_url)
    if backend == "sqlite":
        raise InvalidInput(
            "database logins do not apply to SQLite: a SQLite file has no users or grants.",
            "Protect the file with file-system permissions instead.",
        )
    return backend


@contextmanager
def admin_connection(admin_url: URL, database: str | None = None) -> Iterator[Connection]:
    """An AUTOCOMMIT connection as the admin, in ``database`` (PostgreSQL) or none: without
    one, a connection of the server's pooled admin engine (logins are made, renamed and
    dropped one after another; each would otherwise open and close a session)."""
    if database is None:
        # Imported here: tenantry.db.admin imports shared_schemas, which imports this module.
        from tenantry.db.admin import server_connection

        with server_connection(admin_url) as pooled:
            yield pooled
        return
    if backend_of(admin_url) == "postgresql":
        url = admin_url.set(database=database or "postgres")
    else:
        url = admin_url._replace(database=None)
    engine = make_engine(url, pooled=False)
    try:
        try:
            conn = engine.connect()
        except (OperationalError, InterfaceError) as exc:
            raise describe_connect_error(url, exc) from None
        with conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            if backend_of(url) == "postgresql":
                # A database a move left read-only (kept as its source) still has logins'
                # privileges to revoke: read-only guards the app's writes, not the admin's.
                conn.exec_driver_sql("SET default_transaction_read_only = off")
            yield conn
    finally:
        engine.dispose()


def _execute(
    conn: Connection, statements: Sequence[str], *, secret: bool = False, what: str = ""
) -> None:
    """Run ``statements`` in order; a refusal becomes :class:`DatabaseAdminError`."""
    try:
        for statement in statements:
            conn.exec_driver_sql(_literal(conn, statement))
    except DBAPIError as exc:
        raise _refused(conn, exc, what, secret=secret) from None


def _literal(conn: Connection, statement: str) -> str:
    # PyMySQL formats every statement with %: the host '%' of an account must be doubled.
    return statement.replace("%", "%%") if conn.dialect.name != "postgresql" else statement


def _refused(
    conn: Connection, exc: DBAPIError, what: str, *, secret: bool = False
) -> DatabaseUnreachable | DatabaseAdminError:
    """The error to raise for ``exc``; the server's message is left out when the statement
    carried a password hash (a syntax error would quote it)."""
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return describe_connect_error(conn.engine.url, exc)
    detail = (
        type(exc.orig).__name__
        if secret or exc.orig is None
        else redact(str(exc.orig).strip().splitlines()[0])
    )
    return DatabaseAdminError(
        f"the server at {mask(conn.engine.url)} refused to {what}: {detail}.",
        "Check that the admin URL's user may create roles and grant privileges.",
    )


@contextmanager
def _transaction(conn: Connection) -> Iterator[None]:
    # The connection is in AUTOCOMMIT: BEGIN/COMMIT make PostgreSQL's grants all-or-nothing.
    conn.exec_driver_sql("BEGIN")
    try:
        yield
    except BaseException:
        with suppress(DBAPIError):
            conn.exec_driver_sql("ROLLBACK")
        raise
    conn.exec_driver_sql("COMMIT")


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(name)


def _mysql_account(name: str) -> str:
    return f"'{check_login_name(name)}'@'%'"


def _mysql_escaped(database: str) -> str:
    # In a database-level GRANT, _ and % are wildcards: escaped, the grant names one database.
    return _check_database(database).replace("_", "\\_").replace("%", "\\%")


def _mysql_database(database: str) -> str:
    return f"`{_mysql_escaped(database)}`.*"


def _is_mariadb(conn: Connection) -> bool:
    return "mariadb" in str(conn.exec_driver_sql("SELECT VERSION()").scalar()).lower()


def _mysql_identified(conn: Connection, password: str) -> str:
    if _is_mariadb(conn):
        return f"IDENTIFIED BY PASSWORD '{native_password_hash(password)}'"
    # MySQL 8 stores caching_sha2 hashes it makes itself; it masks passwords in its logs.
    return f"IDENTIFIED BY '{password}'"


def _refuse_admin(admin_url: URL, login: str) -> None:
    if login == admin_url.username:
        raise InvalidInput(
            f"login {login!r} is the admin URL's own user.",
            "Tenantry manages only the logins it creates; choose another name.",
        )


def login_exists(admin_url: URL, login: str) -> bool:
    """Whether the server has the login ``login`` (on MySQL/MariaDB: ``'login'@'%'``)."""
    check_login_name(login)
    backend = _backend(admin_url)
    with admin_connection(admin_url) as conn:
        if backend == "postgresql":
            query = text("SELECT 1 FROM pg_roles WHERE rolname = :n")
        else:
            query = text("SELECT 1 FROM mysql.user WHERE User = :n AND Host = '%'")
        return conn.execute(query, {"n": login}).first() is not None


def create_login(admin_url: URL, login: str, password: str | None = None) -> str:
    """Create the login ``login`` without any privilege (no superuser, no CREATEDB, no
    CREATEROLE) and return its password (``password``, or a generated one)."""
    check_login_name(login)
    _refuse_admin(admin_url, login)
    password = check_password(password) if password is not None else generate_password()
    backend = _backend(admin_url)
    with admin_connection(admin_url) as conn:
        if backend == "postgresql":
            statement = (
                f"CREATE ROLE {_quote(conn, login)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                f"NOREPLICATION NOBYPASSRLS PASSWORD '{scram_verifier(password)}'"
            )
        else:
            statement = f"CREATE USER {_mysql_account(login)} {_mysql_identified(conn, password)}"
        _execute(conn, [statement], secret=True, what=f"create login {login}")
    return password


def set_password(admin_url: URL, login: str, password: str | None = None) -> str:
    """Give the existing login ``login`` a new password (``password``, or a generated one)
    and return it. Sessions already open stay open; new ones need the new password."""
    check_login_name(login)
    _refuse_admin(admin_url, login)
    password = check_password(password) if password is not None else generate_password()
    backend = _backend(admin_url)
    with admin_connection(admin_url) as conn:
        if backend == "postgresql":
            statement = f"ALTER ROLE {_quote(conn, login)} PASSWORD '{scram_verifier(password)}'"
        else:
            statement = f"ALTER USER {_mysql_account(login)} {_mysql_identified(conn, password)}"
        _execute(conn, [statement], secret=True, what=f"set the password of login {login}")
    return password


def drop_login(admin_url: URL, login: str) -> bool:
    """Drop the login ``login`` with every privilege it holds, ending its sessions; what it
    owns on PostgreSQL is given to the admin first, never dropped. True when it existed."""
    check_login_name(login)
    _refuse_admin(admin_url, login)
    if not login_exists(admin_url, login):
        return False
    if _backend(admin_url) == "postgresql":
        _drop_pg_login(admin_url, login)
    else:
        _drop_mysql_login(admin_url, login)
    return True


def _drop_pg_login(admin_url: URL, login: str) -> None:
    with admin_connection(admin_url) as conn:
        _act_as(conn, login)
        # Privileges and ownership live in each database (pg_shdepend says which); DROP
        # OWNED in one of them also revokes those on shared objects (CONNECT on databases).
        databases = [
            str(name)
            for name in conn.execute(
                text(
                    "SELECT DISTINCT d.datname FROM pg_shdepend s "
                    "JOIN pg_database d ON d.oid = s.dbid "
                    "JOIN pg_roles r ON r.oid = s.refobjid "
                    "WHERE s.refclassid = 'pg_authid'::regclass AND r.rolname = :n"
                ),
                {"n": login},
            ).scalars()
        ]
    for database in [*databases, None]:
        with admin_connection(admin_url, database) as conn:
            role = _quote(conn, login)
            _execute(
                conn,
                [f"REASSIGN OWNED BY {role} TO CURRENT_USER", f"DROP OWNED BY {role}"],
                what=f"drop the privileges of login {login}",
            )
    with admin_connection(admin_url) as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :n"),
            {"n": login},
        )
        _execute(conn, [f"DROP ROLE IF EXISTS {_quote(conn, login)}"], what=f"drop {login}")


def _act_as(conn: Connection, login: str) -> None:
    """Give a non-superuser admin (CREATEROLE, as on managed servers such as RDS) the
    privileges of ``login``: PostgreSQL lets only a member reassign or drop what a role owns
    and end its sessions. A superuser needs nothing."""
    held = conn.execute(
        text(
            "SELECT rolsuper OR pg_has_role(current_user, :n, 'USAGE') "
            "FROM pg_roles WHERE rolname = current_user"
        ),
        {"n": login},
    ).scalar()
    if not held:
        _execute(
            conn,
            [f"GRANT {_quote(conn, login)} TO CURRENT_USER"],
            what=f"take over login {login} to drop it",
        )


def _drop_mysql_login(admin_url: URL, login: str) -> None:
    with admin_connection(admin_url) as conn:
        sessions = conn.execute(
            text("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = :n"), {"n": login}
        ).scalars()
        for session in list(sessions):
            try:
                conn.exec_driver_sql(f"KILL CONNECTION {int(session)}")
            except DBAPIError as exc:  # it ended on its own meanwhile
                if not exc.orig or exc.orig.args[0] != _MYSQL_UNKNOWN_THREAD:
                    raise
        _execute(conn, [f"DROP USER IF EXISTS {_mysql_account(login)}"], what=f"drop login {login}")


def _pg_reset(conn: Connection, database: str, role: str, migrator: str) -> list[str]:
    db = _quote(conn, database)
    defaults = f"ALTER DEFAULT PRIVILEGES FOR ROLE {migrator} IN SCHEMA public"
    return [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}",
        f"REVOKE ALL ON SCHEMA public FROM {role}",
        f"{defaults} REVOKE ALL ON TABLES FROM {role}",
        f"{defaults} REVOKE ALL ON SEQUENCES FROM {role}",
        f"REVOKE ALL ON DATABASE {db} FROM {role}",
    ]


def grant(
    admin_url: URL, database: str, login: str, level: str, *, migrator: str | None = None
) -> None:
    """Give ``login`` exactly ``level`` on ``database`` (replacing any level it had there).

    On PostgreSQL the grants extend to tables and sequences ``migrator`` (default: the admin
    URL's user) creates later; CONNECT on the database is revoked from PUBLIC and CREATE on
    schema public too, so only logins granted here may connect and none may create tables
    unless at ``admin`` level. All of it is one transaction.
    """
    checked = check_level(level)
    check_login_name(login)
    _check_database(database)
    _refuse_admin(admin_url, login)
    if _backend(admin_url) == "postgresql":
        _grant_pg(admin_url, database, login, checked, migrator or admin_url.username)
    else:
        _grant_mysql(admin_url, database, login, checked)


def _grant_pg(admin_url: URL, database: str, login: str, level: Level, owner: str | None) -> None:
    with admin_connection(admin_url, database) as conn, _transaction(conn):
        _grant_pg_on(conn, database, login, level, owner)


def grant_in(
    conn: Connection, admin_url: URL, login: str, level: str, *, new_login: bool = False
) -> None:
    """:func:`grant` on PostgreSQL, on ``conn`` (the admin's connection to the database, in
    the caller's transaction): the grants commit, or roll back, with the caller's other
    writes there, and no session of its own is opened for them. ``new_login``: the caller
    created ``login`` just now, so it holds nothing anywhere and the revokes that first take
    away whatever level it had are skipped (on a new store's database they are a third of
    the grants' time: ``REVOKE … ON ALL TABLES`` rewrites every table's privileges)."""
    checked = check_level(level)
    check_login_name(login)
    database = _check_database(str(admin_url.database))
    _refuse_admin(admin_url, login)
    if conn.dialect.name != "postgresql":
        raise InvalidInput("grant_in is for PostgreSQL databases; use grant elsewhere.")
    _grant_pg_on(conn, database, login, checked, admin_url.username, reset=not new_login)


def _grant_pg_on(
    conn: Connection,
    database: str,
    login: str,
    level: Level,
    owner: str | None,
    *,
    reset: bool = True,
) -> None:
    role = _quote(conn, login)
    migrator = _quote(conn, owner or "postgres")  # quoted: any existing role name
    db = _quote(conn, database)
    defaults = f"ALTER DEFAULT PRIVILEGES FOR ROLE {migrator} IN SCHEMA public"
    tables, sequences = _TABLES[level], _SEQUENCES[level]
    statements = [
        f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        *(_pg_reset(conn, database, role, migrator) if reset else []),
        f"GRANT {'ALL' if level == 'admin' else 'CONNECT'} ON DATABASE {db} TO {role}",
        f"GRANT {'ALL' if level == 'admin' else 'USAGE'} ON SCHEMA public TO {role}",
        f"GRANT {tables} ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT {sequences} ON ALL SEQUENCES IN SCHEMA public TO {role}",
        f"{defaults} GRANT {tables} ON TABLES TO {role}",
        f"{defaults} GRANT {sequences} ON SEQUENCES TO {role}",
    ]
    _execute(conn, statements, what=f"grant {level} on {database} to {login}")


def _grant_mysql(admin_url: URL, database: str, login: str, level: Level) -> None:
    # Granted first, the extras revoked after: a login in use never passes through a moment
    # with fewer privileges than both its old and new level (MySQL has no transactional DDL).
    on, account = _mysql_database(database), _mysql_account(login)
    what = f"grant {level} on {database} to {login}"
    with admin_connection(admin_url) as conn:
        _execute(conn, [f"GRANT {_TABLES[level]} ON {on} TO {account}"], what=what)
        if level == "admin":
            return
        held = conn.execute(
            text(
                "SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES "
                "WHERE GRANTEE = :grantee AND TABLE_SCHEMA = :schema"
            ),
            {"grantee": account, "schema": _mysql_escaped(database)},
        ).scalars()
        wanted = {p.strip() for p in _TABLES[level].split(",")}
        extra = sorted({str(p) for p in held} - wanted)
        if extra:
            _execute(conn, [f"REVOKE {', '.join(extra)} ON {on} FROM {account}"], what=what)


def revoke(admin_url: URL, database: str, login: str, *, migrator: str | None = None) -> None:
    """Take every privilege ``login`` has on ``database`` (whatever its level), including
    CONNECT and, on PostgreSQL, the default privileges on tables ``migrator`` (default: the
    admin URL's user) creates later. The login stays."""
    check_login_name(login)
    _check_database(database)
    _refuse_admin(admin_url, login)
    if _backend(admin_url) == "postgresql":
        with admin_connection(admin_url, database) as conn:
            owner = _quote(conn, migrator or admin_url.username or "postgres")
            statements = _pg_reset(conn, database, _quote(conn, login), owner)
            with _transaction(conn):
                _execute(conn, statements, what=f"revoke {login} on {database}")
    else:
        with admin_connection(admin_url) as conn:
            _revoke_mysql(conn, database, login)


def _revoke_mysql(conn: Connection, database: str, login: str) -> None:
    statement = f"REVOKE ALL PRIVILEGES ON {_mysql_database(database)} FROM {_mysql_account(login)}"
    try:
        conn.exec_driver_sql(_literal(conn, statement))
    except DBAPIError as exc:
        if exc.orig is not None and exc.orig.args[0] == _MYSQL_NO_SUCH_GRANT:
            return  # nothing granted there: nothing to take
        raise _refused(conn, exc, f"revoke {login} on {database}") from None


def login_url(admin_url: URL, database: str, login: str, password: str) -> URL:
    """The URL of ``database`` on the admin URL's server as ``login``."""
    return admin_url.set(username=login, password=password, database=database)
