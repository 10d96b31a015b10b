"""Logins and access levels: the database server itself refuses what a level must not do."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tenantry.db import logins
from tenantry.db.engines import make_engine
from tenantry.db.urls import parse_url
from tenantry.errors import InvalidInput
from tests.conftest import SERVER_URLS, DbFactory, require_server

# PostgreSQL's insufficient_privilege; MariaDB's "command denied", "access denied to database",
# "access denied for user" (bad password or no such user, 1045 or 1698).
_PG_DENIED = {"42501", "28000", "28P01"}
_MYSQL_DENIED = {1142, 1044, 1045, 1698}
_PG_CONNECT_DENIED = ("permission denied for database", "password authentication failed", "role")


@pytest.fixture(params=("postgresql", "mysql"))
def backend(request: pytest.FixtureRequest) -> str:
    """Each server backend in turn (logins do not exist on SQLite)."""
    require_server(request.param)
    return str(request.param)


@pytest.fixture
def admin(backend: str) -> URL:
    """The test server's admin URL."""
    return parse_url(SERVER_URLS[backend])


@pytest.fixture
def new_login(admin: URL) -> Iterator[Callable[[], str]]:
    """A factory of unique login names; every login of that name is dropped after the test."""
    names: list[str] = []

    def make() -> str:
        names.append(f"tt_l_{uuid.uuid4().hex[:12]}")
        return names[-1]

    yield make
    for name in names:
        logins.drop_login(admin, name)


def _run(url: URL, sql: str) -> list[tuple[object, ...]]:
    engine = make_engine(url, pooled=False)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            result = conn.execute(text(sql))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def _refused(url: URL, sql: str) -> None:
    """Assert the server refuses ``sql`` run as ``url``'s user for lack of privilege."""
    with pytest.raises(DBAPIError) as caught:
        _run(url, sql)
    orig = caught.value.orig
    if url.get_backend_name() == "postgresql":
        # psycopg gives no SQLSTATE for a refused connection, only the server's FATAL text.
        refused_connect = any(m in str(orig) for m in _PG_CONNECT_DENIED)
        assert getattr(orig, "sqlstate", None) in _PG_DENIED or refused_connect, orig
    else:
        assert orig is not None
        assert orig.args[0] in _MYSQL_DENIED, orig


def _setup_tables(admin_db: URL, backend: str) -> None:
    key = "SERIAL PRIMARY KEY" if backend == "postgresql" else "INTEGER AUTO_INCREMENT PRIMARY KEY"
    _run(admin_db, f"CREATE TABLE items (id {key}, name VARCHAR(40))")
    _run(admin_db, "INSERT INTO items (name) VALUES ('first')")


@pytest.fixture
def tenant(new_database: DbFactory, backend: str) -> URL:
    """A tenant database (as the admin) with a table ``items`` holding one row."""
    url = new_database("tenant")
    _setup_tables(url, backend)
    return url


def test_a_service_login_reads_and_writes_and_the_server_refuses_it_any_ddl(
    admin: URL,
    tenant: URL,
    new_database: DbFactory,
    new_login: Callable[[], str],
    backend: str,
) -> None:
    other = new_database("other")
    _setup_tables(other, backend)
    neighbour = new_login()  # the other tenant's own login, as provisioning makes it
    logins.create_login(admin, neighbour)
    logins.grant(admin, str(other.database), neighbour, "service")
    name = new_login()
    password = logins.create_login(admin, name)
    logins.grant(admin, str(tenant.database), name, "service")
    me = logins.login_url(admin, str(tenant.database), name, password)

    _run(me, "INSERT INTO items (name) VALUES ('second')")
    _run(me, "UPDATE items SET name = 'changed' WHERE name = 'first'")
    _run(me, "DELETE FROM items WHERE name = 'second'")
    assert _run(me, "SELECT name FROM items") == [("changed",)]
    # A table a later migration creates is covered too.
    _run(tenant, "CREATE TABLE later (id INTEGER PRIMARY KEY)")
    _run(me, "INSERT INTO later (id) VALUES (1)")

    _refused(me, "CREATE TABLE mine (id INTEGER)")
    _refused(me, "DROP TABLE items")
    _refused(me, "ALTER TABLE items ADD COLUMN extra INTEGER")
    _refused(me, f"DROP DATABASE {other.database}")
    if backend == "postgresql":
        _refused(logins.login_url(admin, str(other.database), name, password), "SELECT 1")
    else:
        _refused(me, f"SELECT * FROM `{other.database}`.items")
    assert _run(tenant, "SELECT count(*) FROM items") == [(1,)]


def test_a_readonly_login_reads_and_the_server_refuses_its_writes(
    admin: URL, tenant: URL, new_login: Callable[[], str]
) -> None:
    name = new_login()
    password = logins.create_login(admin, name)
    logins.grant(admin, str(tenant.database), name, "readonly")
    me = logins.login_url(admin, str(tenant.database), name, password)

    assert _run(me, "SELECT name FROM items") == [("first",)]
    _refused(me, "INSERT INTO items (name) VALUES ('no')")
    _refused(me, "DELETE FROM items")
    _refused(me, "CREATE TABLE mine (id INTEGER)")


def test_an_admin_login_may_change_the_schema(
    admin: URL, tenant: URL, new_login: Callable[[], str], backend: str
) -> None:
    name = new_login()
    password = logins.create_login(admin, name)
    logins.grant(admin, str(tenant.database), name, "admin")
    me = logins.login_url(admin, str(tenant.database), name, password)

    _run(me, "CREATE TABLE mine (id INTEGER)")
    _run(me, "ALTER TABLE mine ADD COLUMN extra INTEGER")
    _run(me, "DROP TABLE mine")
    if backend == "postgresql":  # every privilege, but the migrator's tables stay its own
        _run(me, "TRUNCATE items")
        _refused(me, "ALTER TABLE items ADD COLUMN extra INTEGER")
    else:
        _run(me, "ALTER TABLE items ADD COLUMN extra INTEGER")
    # Dropping the login keeps what it created (reassigned to the admin on PostgreSQL).
    _run(me, "CREATE TABLE kept (id INTEGER)")
    logins.drop_login(admin, name)
    assert _run(tenant, "SELECT count(*) FROM kept") == [(0,)]


def test_grant_replaces_the_level_and_revoke_takes_all_access(
    admin: URL, tenant: URL, new_login: Callable[[], str], backend: str
) -> None:
    name = new_login()
    password = logins.create_login(admin, name)
    database = str(tenant.database)
    me = logins.login_url(admin, database, name, password)
    logins.grant(admin, database, name, "service")
    _run(me, "INSERT INTO items (name) VALUES ('ok')")

    logins.grant(admin, database, name, "readonly")
    _refused(me, "INSERT INTO items (name) VALUES ('no')")
    assert len(_run(me, "SELECT * FROM items")) == 2

    logins.revoke(admin, database, name)
    _refused(me, "SELECT * FROM items")
    assert logins.login_exists(admin, name)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # CONNECT is PG's privilege
def test_only_the_logins_granted_on_a_postgresql_database_may_connect(
    admin: URL, tenant: URL, new_login: Callable[[], str], backend: str
) -> None:
    granted, stranger = new_login(), new_login()
    granted_pw = logins.create_login(admin, granted)
    stranger_pw = logins.create_login(admin, stranger)
    database = str(tenant.database)
    logins.grant(admin, database, granted, "readonly")

    assert _run(logins.login_url(admin, database, granted, granted_pw), "SELECT 1") == [(1,)]
    _refused(logins.login_url(admin, database, stranger, stranger_pw), "SELECT 1")
    public_create = _run(tenant, "SELECT has_schema_privilege('public', 'public', 'CREATE')")
    assert public_create == [(False,)]


#: Every privilege a login may hold on a tenant database, as (kind, object, acl item) rows,
#: the login's name put as ``LOGIN`` (and the database's as ``DB``) so two logins' compare.
_PG_PRIVILEGES = """
    SELECT 'database', datname, a::text FROM pg_database, unnest(datacl) a
     WHERE datname = current_database()
    UNION ALL SELECT 'schema', nspname, a::text FROM pg_namespace, unnest(nspacl) a
     WHERE nspname = 'public'
    UNION ALL SELECT 'relation', relname, a::text FROM pg_class, unnest(relacl) a
     WHERE relnamespace = 'public'::regnamespace
    UNION ALL SELECT 'default', defaclobjtype::text, a::text FROM pg_default_acl,
           unnest(defaclacl) a
"""


def _privileges_of(url: URL, login: str) -> list[tuple[str, str, str]]:
    rows = _run(url, _PG_PRIVILEGES)
    return sorted(
        (str(kind), "DB" if kind == "database" else str(name), str(item).replace(login, "LOGIN"))
        for kind, name, item in rows
        if login in str(item) or str(item).startswith("=")  # the login's, and PUBLIC's
    )


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # grant_in is PG's
def test_a_login_created_just_now_gets_the_same_privileges_without_the_revokes_first(
    admin: URL, new_database: DbFactory, new_login: Callable[[], str], backend: str
) -> None:
    """Provisioning grants a login it has just created with ``new_login`` (the revokes that
    take away an earlier level are skipped): what the login may do is what a full grant
    gives, object by object, on two databases made alike."""
    granted: dict[str, list[tuple[str, str, str]]] = {}
    for new in (False, True):
        url = new_database("grant")
        _setup_tables(url, backend)
        name = new_login()
        logins.create_login(admin, name)
        engine = make_engine(url, pooled=False)
        try:
            with engine.begin() as conn:
                logins.grant_in(conn, url, name, "service", new_login=new)
        finally:
            engine.dispose()
        granted["new" if new else "full"] = _privileges_of(url, name)
    assert granted["full"], "the full grant gave the login nothing to compare"
    assert {kind for kind, _, _ in granted["full"]} == {"database", "schema", "relation", "default"}
    assert granted["new"] == granted["full"]


@pytest.mark.parametrize("backend", ["mysql"], indirect=True)  # _ and % are MySQL wildcards
def test_a_mysql_grant_names_one_database_not_a_pattern(
    admin: URL, new_database: DbFactory, new_login: Callable[[], str], backend: str
) -> None:
    granted = new_database("w")
    # Same name with the underscores replaced: matched by the grant were _ not escaped.
    lookalike = admin.set(database=str(granted.database).replace("_", "x"))
    _run(admin, f"CREATE DATABASE `{lookalike.database}`")
    try:
        _setup_tables(lookalike, backend)
        name = new_login()
        password = logins.create_login(admin, name)
        logins.grant(admin, str(granted.database), name, "service")
        me = logins.login_url(admin, str(granted.database), name, password)
        _refused(me, f"SELECT * FROM `{lookalike.database}`.items")
    finally:
        _run(admin, f"DROP DATABASE `{lookalike.database}`")


def _pg_accepts(admin: URL, name: str, password: str) -> bool:
    """Whether PostgreSQL's stored SCRAM verifier of ``name`` matches ``password``.

    The test server trusts 127.0.0.1 (any password connects), so the check is the one the
    server makes at a password login: the client key derived from the password, hashed,
    equals the stored key."""
    [(stored,)] = _run(admin, f"SELECT rolpassword FROM pg_authid WHERE rolname = '{name}'")
    method, rest = str(stored).split("$", 1)
    assert method == "SCRAM-SHA-256"
    params, keys = rest.split("$")
    iterations, salt = params.split(":")
    stored_key = base64.b64decode(keys.split(":")[0])
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest() == stored_key


def test_a_new_password_replaces_the_old_one(
    admin: URL, tenant: URL, new_login: Callable[[], str], backend: str
) -> None:
    name = new_login()
    old = logins.create_login(admin, name)
    logins.grant(admin, str(tenant.database), name, "readonly")
    new = logins.set_password(admin, name)
    assert new != old
    assert len(new) >= 40
    if backend == "postgresql":
        assert _pg_accepts(admin, name, new)
        assert not _pg_accepts(admin, name, old)
    else:
        assert _run(logins.login_url(admin, str(tenant.database), name, new), "SELECT 1")
        _refused(logins.login_url(admin, str(tenant.database), name, old), "SELECT 1")


def test_dropping_a_login_granted_on_two_databases_removes_it(
    admin: URL,
    tenant: URL,
    new_database: DbFactory,
    new_login: Callable[[], str],
) -> None:
    other = new_database("other")
    name = new_login()
    password = logins.create_login(admin, name)
    for url in (tenant, other):
        logins.grant(admin, str(url.database), name, "service")
    assert logins.drop_login(admin, name) is True
    assert not logins.login_exists(admin, name)
    assert logins.drop_login(admin, name) is False
    _refused(logins.login_url(admin, str(tenant.database), name, password), "SELECT 1")


@pytest.mark.parametrize(
    "call",
    [
        lambda a: logins.create_login(a, "x'; DROP TABLE items; --"),
        lambda a: logins.create_login(a, "Robert"),
        lambda a: logins.create_login(a, "tt_ok_name", "short"),
        lambda a: logins.create_login(a, "tt_ok_name", "x" * 20 + "'; DROP ROLE postgres; --"),
        lambda a: logins.grant(a, "db`; DROP DATABASE x; --", "tt_ok_name", "service"),
        lambda a: logins.grant(a, "tt_db", "tt_ok_name", "superuser"),
        lambda a: logins.drop_login(a, str(a.username)),
    ],
    ids=["quote-in-name", "upper-case", "short-pw", "quote-in-pw", "bad-db", "level", "admin"],
)
def test_what_could_inject_or_escalate_is_refused_before_reaching_the_server(
    admin: URL, call: Callable[[URL], object]
) -> None:
    with pytest.raises(InvalidInput) as caught:
        call(admin)
    assert any(w in caught.value.message for w in ("not allowed", "unknown", "own user"))
    assert not logins.login_exists(admin, "tt_ok_name")


def test_logins_on_sqlite_are_a_clear_not_applicable(tmp_path: Path) -> None:
    url = parse_url(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(InvalidInput, match="do not apply to SQLite"):
        logins.create_login(url, "tt_sqlite")
    with pytest.raises(InvalidInput, match="do not apply to SQLite"):
        logins.grant(url, "x", "tt_sqlite", "service")
