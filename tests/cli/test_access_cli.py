"""``tenantry access``: each level's login connects and the database server itself refuses
what the level must not do (readonly: INSERT; service: DDL), `list` shows the roles without
passwords, `revoke` drops the login, and SQLite answers "not applicable"."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Executable, insert, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tenantry.db import logins
from tenantry.db.engines import connect, make_engine
from tenantry.db.master.models import AuditLog, PlatformSetting
from tenantry.db.types import utcnow
from tenantry.db.urls import parse_url
from tenantry.errors import DatabaseUnreachable
from tenantry.runtime import Platform
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json
from tests.conftest import SERVER_URLS, DbFactory


def _insert(key: str) -> Executable:
    """A row for master's platform_settings (Core: ``key`` is a reserved word on MySQL)."""
    return insert(PlatformSetting).values(key=key, value=1, updated_at=utcnow())


@pytest.fixture
def names(backend: str) -> Iterator[list[str]]:
    """Login names for the test; any left on the server afterwards are dropped."""
    made: list[str] = []
    yield made
    admin = parse_url(SERVER_URLS[backend])
    for name in made:
        logins.drop_login(admin, name)


def _name(names: list[str], level: str) -> str:
    name = f"tt_{level}_{uuid.uuid4().hex[:8]}"
    names.append(name)
    return name


def _run(url: URL, sql: str | Executable) -> None:
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            conn.execute(text(sql) if isinstance(sql, str) else sql)
            conn.commit()
    finally:
        engine.dispose()


def _refused(url: URL, sql: str | Executable) -> str:
    with pytest.raises(DBAPIError) as caught:
        _run(url, sql)
    return str(caught.value.orig).lower()


def _denied(message: str) -> bool:
    # PostgreSQL: "permission denied", "must be owner"; MariaDB: "… command denied".
    return "denied" in message or "must be owner" in message


def _grant(cli: Invoke, env: dict[str, str], db: str, level: str, name: str) -> dict[str, Any]:
    result = cli("access", "grant", "--db", db, "--as", level, "--name", name, "--json", env=env)
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = as_json(result)
    assert doc["name"] == name
    assert doc["level"] == level
    return doc


@pytest.mark.server
@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
def test_each_level_is_enforced_by_the_server_then_revoked(
    cli: Invoke, backend: str, new_database: DbFactory, names: list[str]
) -> None:
    master = new_database("master", create=False)
    env = {"DATABASE_URL": master.render_as_string(hide_password=False)}
    assert cli("init", env=env).exit_code == 0

    readonly = _grant(cli, env, "master", "readonly", _name(names, "ro"))
    ro_url = parse_url(readonly["urls"][0])
    assert ro_url.password == readonly["password"]
    _run(ro_url, "SELECT COUNT(*) FROM stores")
    assert _denied(_refused(ro_url, _insert("ro")))

    service = _grant(cli, env, "master", "service", _name(names, "svc"))
    svc_url = parse_url(service["urls"][0])
    _run(svc_url, _insert("svc"))
    assert _denied(_refused(svc_url, "CREATE TABLE sneaky (id INTEGER)"))
    assert _denied(_refused(svc_url, "DROP TABLE platform_settings"))

    admin = _grant(cli, env, "master", "admin", _name(names, "adm"))
    adm_url = parse_url(admin["urls"][0])
    _run(adm_url, "CREATE TABLE admin_made (id INTEGER)")
    _run(adm_url, "DROP TABLE admin_made")

    listed = cli("access", "list", "--json", env=env)
    assert listed.exit_code == 0
    roles = {r["name"]: r for r in as_json(listed)}
    assert set(roles) == {readonly["name"], service["name"], admin["name"]}
    assert roles[readonly["name"]]["scope"] == "master"
    assert roles[readonly["name"]]["databases"] == [master.database]
    for secret in (readonly["password"], service["password"], admin["password"]):
        assert secret not in listed.output

    revoked = cli("access", "revoke", readonly["name"], "--json", env=env)
    assert revoked.exit_code == 0, revoked.output
    assert not logins.login_exists(parse_url(SERVER_URLS[backend]), readonly["name"])
    with pytest.raises(DatabaseUnreachable):
        _run(ro_url, "SELECT 1")
    after = {r["name"] for r in as_json(cli("access", "list", "--json", env=env))}
    assert readonly["name"] not in after
    everything = as_json(cli("access", "list", "--all", "--json", env=env))
    assert any(r["name"] == readonly["name"] and r["revoked_at"] for r in everything)
    again = cli("access", "revoke", readonly["name"], env=env)
    assert again.exit_code == 1
    assert "no active access role" in again.stderr

    settings = load_settings(database_url=env["DATABASE_URL"])
    platform = Platform.open(settings)
    try:
        with platform.sessions() as session:
            entries = session.scalars(
                select(AuditLog).where(AuditLog.action.in_(["access.grant", "access.revoke"]))
            ).all()
    finally:
        platform.close()
    assert sorted(e.action for e in entries) == ["access.grant"] * 3 + ["access.revoke"]
    details = json.dumps([e.details for e in entries])
    for secret in (readonly["password"], service["password"], admin["password"]):
        assert secret not in details


@pytest.mark.server
@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
def test_store_and_all_tenants_scopes(
    cli: Invoke, backend: str, names: list[str], server_slug: str
) -> None:
    assert cli("init").exit_code == 0
    admin_url = SERVER_URLS[backend]
    assert cli("servers", "add", "main", "--url", admin_url).exit_code == 0
    slugs = [server_slug, f"{server_slug}-b"]
    for slug in slugs:
        assert cli("stores", "create", slug, "--name", slug).exit_code == 0
        made = cli("provision", slug, "--new", "--server", "main", "--inline", "--wait")
        assert made.exit_code == 0, made.output
    try:
        one = _grant(cli, {}, f"store:{slugs[0]}", "readonly", _name(names, "one"))
        assert len(one["urls"]) == 1
        url = parse_url(one["urls"][0])
        _run(url, "SELECT COUNT(*) FROM products")
        assert _denied(_refused(url, "DELETE FROM products"))
        other = url.set(database=_database(cli, slugs[1]))
        # The other store's tables are not this login's to read.
        with pytest.raises((DBAPIError, DatabaseUnreachable)):
            _run(other, "SELECT COUNT(*) FROM products")

        every = _grant(cli, {}, "all-tenants", "service", _name(names, "all"))
        assert len(every["urls"]) == 2
        for raw in every["urls"]:
            _run(parse_url(raw), "SELECT COUNT(*) FROM products")
            assert _denied(_refused(parse_url(raw), "CREATE TABLE sneaky (id INTEGER)"))
        assert cli("access", "revoke", every["name"]).exit_code == 0
        assert not logins.login_exists(parse_url(admin_url), every["name"])
    finally:
        for slug in slugs:
            cli("stores", "delete", slug, "--drop-database", "--yes")


def _database(cli: Invoke, slug: str) -> str:
    config = as_json(cli("stores", "show", slug, "--json"))["connection"]["config_data"]
    return str(config["database"])


def test_sqlite_is_not_applicable(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    result = cli("access", "grant", "--db", "master", "--as", "readonly")
    assert result.exit_code != 0
    assert "not applicable to SQLite" in result.stderr
    bad = cli("access", "grant", "--db", "everything", "--as", "readonly")
    assert "master, billing, store:SLUG or all-tenants" in bad.stderr
    level = cli("access", "grant", "--db", "master", "--as", "root")
    assert "readonly, service, admin" in level.stderr
    assert as_json(cli("access", "list", "--json")) == []
