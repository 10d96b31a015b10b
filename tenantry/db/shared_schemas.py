"""Schema per tenant on PostgreSQL: names, DDL and the admin URL that works inside one schema.

A shared database (``tenantry_shared_1``, or one named by the operator) holds many stores,
each in its own schema ``t_<slug>_<id8>`` with the store schema's tables, its own identity row
and its own Alembic version table. Three kinds of roles guard it:

* the **migrator** (the registered server's admin URL) owns the schemas and their tables;
  every DDL, backup and restore runs as it with ``search_path`` set to one schema only
  (:func:`schema_url`), so unqualified names (tables, identity, version table) resolve there;
* one **tenant role** per store (``ts_<slug>_<id8>``, NOLOGIN): USAGE on its schema and DML on
  its tables and sequences, nothing on any other schema;
* one **pool login** per shared database (``tsp_<database>``, NOINHERIT, ``search_path`` empty
  by default): it may connect and is a member of every tenant role of that database, but
  holds no privilege of its own, so a connection is useless until it ``SET ROLE``s to a
  tenant (see :mod:`tenantry.db.shared_routing`).

MariaDB and SQLite have no schema inside a database (a MySQL schema *is* a database), so
:func:`refuse_backend` refuses them with what to do instead.
"""

from __future__ import annotations

import contextlib
import re
import uuid

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, InterfaceError

from tenantry.db.engines import describe_connect_error
from tenantry.db.login_secrets import generate_password, scram_verifier
from tenantry.db.logins import admin_connection
from tenantry.db.urls import backend_of, mask, redact
from tenantry.errors import DatabaseAdminError, InvalidInput

#: The database tenantry creates on a server for shared-schema stores when none is named.
DEFAULT_DATABASE = "tenantry_shared_1"
_IDENT = re.compile(r"[a-z][a-z0-9_]{0,62}")
_SLUG_CHARS = re.compile(r"[^a-z0-9]")


def refuse_backend(url: URL, where: str) -> None:
    """Refuse a server whose backend has no schemas inside a database (MariaDB, SQLite)."""
    backend = backend_of(url)
    if backend != "postgresql":
        raise InvalidInput(
            f"{where} is a {backend} server: schema-per-tenant (--shared) is PostgreSQL only "
            f"(on {backend} a schema is a database).",
            "Give a registered PostgreSQL server to --shared, or provision the store with its "
            "own database (--new --server NAME).",
        )


def check_name(name: str, what: str) -> str:
    """``name`` when it is a safe PostgreSQL identifier (lower-case, digits, underscores)."""
    if not _IDENT.fullmatch(name):
        raise InvalidInput(
            f"{what} {name[:70]!r} is not allowed.",
            "Use 1 to 63 lower-case letters, digits or underscores, starting with a letter.",
        )
    return name


def _stem(slug: str) -> str:
    return _SLUG_CHARS.sub("_", slug.lower())[:40]


def schema_name(slug: str, store_id: uuid.UUID) -> str:
    """The schema store ``slug`` gets in a shared database (``t_<slug>_<id8>``)."""
    return f"t_{_stem(slug)}_{store_id.hex[:8]}"


def tenant_role(slug: str, store_id: uuid.UUID) -> str:
    """The NOLOGIN role whose privileges are store ``slug``'s schema alone."""
    return f"ts_{_stem(slug)}_{store_id.hex[:8]}"


def pool_login(database: str) -> str:
    """The login every connection to shared database ``database`` is opened with."""
    return f"tsp_{check_name(database, 'shared database name')}"[:63]


def schema_url(admin_url: URL, database: str, schema: str) -> URL:
    """``admin_url`` on ``database`` with ``search_path`` = ``schema`` alone from the start of
    every session: what migrations, identity checks, backups and drops of a shared-schema
    store connect with (unqualified names resolve in that schema only)."""
    check_name(schema, "schema name")
    return admin_url.set(database=database).update_query_dict(
        {"options": f"-c search_path={schema}"}
    )


def _run(conn: Connection, statements: list[str], what: str, *, secret: bool = False) -> None:
    try:
        for statement in statements:
            conn.exec_driver_sql(statement)
    except DBAPIError as exc:
        if exc.connection_invalidated or isinstance(exc, InterfaceError):
            raise describe_connect_error(conn.engine.url, exc) from None
        detail = type(exc.orig).__name__ if secret or exc.orig is None else str(exc.orig)
        raise DatabaseAdminError(
            f"the server at {mask(conn.engine.url)} refused to {what}: "
            f"{redact(detail.strip().splitlines()[0])}.",
            "Check that the server's admin URL may create roles, schemas and grants.",
        ) from None


def _role_exists(conn: Connection, role: str) -> bool:
    query = text("SELECT 1 FROM pg_roles WHERE rolname = :n")
    return conn.execute(query, {"n": role}).first() is not None


def ensure_pool_login(
    admin_url: URL, database: str, password: str | None, *, set_password: bool = False
) -> str | None:
    """Make shared database ``database``'s pool login (NOINHERIT, empty ``search_path``,
    CONNECT on the database, which PUBLIC loses) unless it exists.

    ``password``: the one master already keeps for it (kept as is, or, with
    ``set_password``, given to the login whether it is new or not); ``None`` when master has
    none: the login gets a new password, returned (``None`` when the password was kept).
    """
    login = pool_login(database)
    with admin_connection(admin_url, database) as conn:
        q = conn.dialect.identifier_preparer.quote_identifier
        statements: list[str] = []
        new = generate_password() if password is None else None
        given = new if new is not None else (password if set_password else None)
        verifier = f" PASSWORD '{scram_verifier(given)}'" if given is not None else ""
        if not _role_exists(conn, login):
            statements.append(
                f"CREATE ROLE {q(login)} LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE "
                f"NOREPLICATION NOBYPASSRLS{verifier}"
            )
        elif given is not None:
            statements.append(f"ALTER ROLE {q(login)}{verifier}")
        _run(conn, statements, f"create login {login}", secret=True)
        _run(
            conn,
            [
                f"ALTER ROLE {q(login)} IN DATABASE {q(database)} SET search_path = ''",
                f"REVOKE ALL ON DATABASE {q(database)} FROM PUBLIC",
                "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
                f"GRANT CONNECT ON DATABASE {q(database)} TO {q(login)}",
            ],
            f"set up login {login}",
        )
    return new


def ensure_tenant_schema(admin_url: URL, database: str, schema: str, role: str) -> None:
    """Create ``schema`` (owned by the admin) and its NOLOGIN ``role`` (DML on the schema's
    tables and sequences, present and future; nothing else), and make the pool login a
    member of it. Idempotent."""
    check_name(schema, "schema name")
    check_name(role, "role name")
    login = pool_login(database)
    with admin_connection(admin_url, database) as conn:
        q = conn.dialect.identifier_preparer.quote_identifier
        statements = [] if _role_exists(conn, role) else [f"CREATE ROLE {q(role)} NOLOGIN"]
        s, r = q(schema), q(role)
        statements += [
            f"CREATE SCHEMA IF NOT EXISTS {s}",
            f"REVOKE ALL ON SCHEMA {s} FROM PUBLIC",
            f"GRANT USAGE ON SCHEMA {s} TO {r}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT USAGE, SELECT ON SEQUENCES TO {r}",
            f"GRANT {r} TO {q(login)}",
        ]
        _run(conn, statements, f"create schema {schema}")


def grant_tables(admin_url: URL, database: str, schema: str, role: str) -> None:
    """Give ``role`` DML on every table and sequence ``schema`` holds now."""
    with admin_connection(admin_url, database) as conn:
        q = conn.dialect.identifier_preparer.quote_identifier
        s, r = q(check_name(schema, "schema name")), q(check_name(role, "role name"))
        _run(
            conn,
            [
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}",
                f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r}",
            ],
            f"grant on schema {schema}",
        )


def schema_exists(admin_url: URL, database: str, schema: str) -> bool:
    """Whether ``schema`` exists in ``database``."""
    with admin_connection(admin_url, database) as conn:
        query = text("SELECT 1 FROM pg_namespace WHERE nspname = :n")
        return conn.execute(query, {"n": schema}).first() is not None


def drop_tenant_schema(admin_url: URL, database: str, schema: str, role: str) -> bool:
    """Drop ``schema`` with everything in it, and its tenant ``role``; True when the schema
    was there. Other stores' schemas in the database are untouched."""
    check_name(schema, "schema name")
    check_name(role, "role name")
    with admin_connection(admin_url, database) as conn:
        q = conn.dialect.identifier_preparer.quote_identifier
        found = conn.execute(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :n"), {"n": schema}
        ).first()
        statements = [f"DROP SCHEMA IF EXISTS {q(schema)} CASCADE"]
        role_found = _role_exists(conn, role)
        if role_found:
            # Its default privileges and grants in this database.
            statements[:0] = [f"DROP OWNED BY {q(role)}"]
        _run(conn, statements, f"drop schema {schema}")
        if role_found and not _role_used_elsewhere(conn, role):
            _run(conn, [f"DROP ROLE {q(role)}"], f"drop role {role}")
    return found is not None


def _role_used_elsewhere(conn: Connection, role: str) -> bool:
    """Whether ``role`` still holds privileges in another database of the server (the same
    store's schema in another shared database, during or after a move between the two):
    roles are server-wide, so it is dropped only with its last schema."""
    query = text(
        "SELECT 1 FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid "
        "WHERE r.rolname = :n AND d.dbid <> "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1"
    )
    return conn.execute(query, {"n": role}).first() is not None


def revoke_writes(admin_url: URL, database: str, schema: str, role: str) -> None:
    """Make ``schema`` read-only for its tenant ``role`` (a moved store's kept source): it
    keeps SELECT, loses INSERT, UPDATE, DELETE on the tables present and future. Privileges
    are checked at each statement, so pooled connections are read-only at once; the rest of
    the shared database is untouched."""
    with admin_connection(admin_url, database) as conn:
        q = conn.dialect.identifier_preparer.quote_identifier
        s, r = q(check_name(schema, "schema name")), q(check_name(role, "role name"))
        _run(
            conn,
            [
                f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {s} FROM {r}",
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} "
                f"REVOKE INSERT, UPDATE, DELETE ON TABLES FROM {r}",
            ],
            f"make schema {schema} read-only",
        )


def grant_writes(admin_url: URL, database: str, schema: str, role: str) -> None:
    """Undo :func:`revoke_writes`: ``role`` has DML on ``schema`` again, as provisioned."""
    with admin_connection(admin_url, database) as conn:
        q = conn.dialect.identifier_preparer.quote_identifier
        s, r = q(check_name(schema, "schema name")), q(check_name(role, "role name"))
        _run(
            conn,
            [
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}",
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} "
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r}",
            ],
            f"make schema {schema} writable",
        )


def schema_of(url: URL) -> str | None:
    """The one schema a :func:`schema_url` is confined to, or ``None`` for a whole database."""
    options = url.query.get("options")
    if isinstance(options, tuple):
        options = " ".join(options)
    match = re.search(r"-c\s*search_path=([a-z][a-z0-9_]{0,62})", options or "")
    return match.group(1) if match else None


def whole_database(url: URL) -> URL:
    """``url`` without the schema confinement :func:`schema_url` added."""
    return url.difference_update_query(["options"])


def rename_schema(admin_url: URL, database: str, schema: str, new_name: str) -> None:
    """Rename ``schema`` of ``database`` to ``new_name`` (a scratch copy's, before it is
    dumped again under that name)."""
    with admin_connection(admin_url, database) as conn:
        q = conn.dialect.identifier_preparer.quote_identifier
        s, n = q(check_name(schema, "schema name")), q(check_name(new_name, "schema name"))
        _run(conn, [f"ALTER SCHEMA {s} RENAME TO {n}"], f"rename schema {schema}")


def drop_schema(admin_url: URL, database: str, schema: str) -> None:
    """Drop ``schema`` of ``database`` with everything in it, if it is there (never a role)."""
    with admin_connection(admin_url, database) as conn:
        q = conn.dialect.identifier_preparer.quote_identifier
        statement = f"DROP SCHEMA IF EXISTS {q(check_name(schema, 'schema name'))} CASCADE"
        _run(conn, [statement], f"drop schema {schema}")


def swap_schema(admin_url: URL, database: str, staging: str, schema: str, role: str) -> str:
    """Replace ``schema`` with ``staging`` in one transaction: ``schema`` renamed aside,
    ``staging`` renamed to ``schema``, and tenant ``role``'s privileges given on it (USAGE,
    DML on its tables and sequences, present and future), so the store's sessions see the
    whole old schema or the whole new one. The name the replaced schema now has."""
    replaced = check_name(f"{schema[:50]}_old_{uuid.uuid4().hex[:6]}", "schema name")
    with admin_connection(admin_url, database) as conn:
        q = conn.dialect.identifier_preparer.quote_identifier
        s, st, r = q(check_name(schema, "schema name")), q(staging), q(role)
        statements = [
            "BEGIN",  # the connection autocommits: one explicit transaction
            "SET LOCAL lock_timeout = '5s'",
            f"ALTER SCHEMA {s} RENAME TO {q(replaced)}",
            f"ALTER SCHEMA {st} RENAME TO {s}",
            f"REVOKE ALL ON SCHEMA {s} FROM PUBLIC",
            f"GRANT USAGE ON SCHEMA {s} TO {r}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT USAGE, SELECT ON SEQUENCES TO {r}",
            "COMMIT",
        ]
        try:
            _run(conn, statements, f"switch schema {schema}")
        except BaseException:
            with contextlib.suppress(DBAPIError):
                conn.exec_driver_sql("ROLLBACK")  # nothing of the switch stays
            raise
    return replaced
