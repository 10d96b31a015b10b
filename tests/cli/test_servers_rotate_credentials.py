"""``servers rotate-credentials``: the registered admin login (a login of the test's own,
never the shared superuser) gets a new password on the server; the old one stops working,
master holds the new one sealed, the stores on the server keep being served, and neither
password is printed or audited."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select, text

from tenantry.db.engines import connect, make_engine
from tenantry.db.master.models import AuditLog
from tenantry.db.urls import parse_url
from tenantry.errors import DatabaseUnreachable
from tenantry.runtime import Platform
from tenantry.services import servers, stores
from tenantry.services.connections import server_url
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json
from tests.conftest import SERVER_URLS
from tests.mysql_roles import mysql_login
from tests.pg_roles import unprivileged_login
from tests.tls_postgres import TlsPostgres, tls_postgres

__all__ = ["tls_postgres"]


def _refused(url: object) -> str:
    engine = make_engine(url, pooled=False)  # type: ignore[arg-type]
    try:
        with pytest.raises(DatabaseUnreachable) as caught, connect(engine):
            pass
    finally:
        engine.dispose()
    return caught.value.message


def _stored_password(name: str) -> str:
    platform = Platform.open(load_settings())
    try:
        with platform.sessions() as session:
            return str(server_url(platform.box, servers.get_server(session, name)).password)
    finally:
        platform.close()


def _audit(action: str) -> list[AuditLog]:
    platform = Platform.open(load_settings())
    try:
        with platform.sessions() as session:
            return list(session.scalars(select(AuditLog).where(AuditLog.action == action)))
    finally:
        platform.close()


def _pg_password_hash(role: str) -> str:
    engine = make_engine(parse_url(SERVER_URLS["postgresql"]), pooled=False)
    try:
        with engine.connect() as conn:
            return str(
                conn.execute(
                    text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": role}
                ).scalar_one()
            )
    finally:
        engine.dispose()


@pytest.mark.server
def test_postgresql_admin_login_is_rotated_and_its_stores_keep_working(
    cli: Invoke, server_slug: str
) -> None:
    with unprivileged_login(createrole=True) as login:
        assert cli("init").exit_code == 0
        raw = login.url("postgres").render_as_string(hide_password=False)
        assert cli("servers", "add", "pg-low", "--url", raw).exit_code == 0
        assert cli("stores", "create", server_slug, "--name", "S").exit_code == 0
        made = cli("provision", server_slug, "--new", "--server", "pg-low", "--inline", "--wait")
        assert made.exit_code == 0, made.output

        before = _pg_password_hash(login.name)
        result = cli("servers", "rotate-credentials", "pg-low", "--json")
        assert result.exit_code == 0, result.output
        doc = as_json(result)
        assert doc["server"] == "pg-low"
        # The store logs in as its own runtime login, not as the server's admin.
        assert doc["connections_updated"] == 0
        new = _stored_password("pg-low")
        assert new != login.password
        assert new not in result.output
        assert login.password not in result.output

        # The shared server trusts local logins: its catalog shows the password changed
        # (the TLS server's test below sees the old one refused).
        assert _pg_password_hash(login.name) != before
        assert cli("servers", "check", "pg-low").exit_code == 0

        platform = Platform.open(load_settings())
        try:
            with platform.sessions() as master:
                store = stores.get_store(master, server_slug)
                with platform.router.connection(master, store) as conn:
                    user = conn.execute(text("SELECT current_user")).scalar_one()
                    assert user != login.name
                    assert user.startswith("t_")
        finally:
            platform.close()
        # The store's DDL goes through the admin login with its new password.
        migrated = cli("fleet", "migrate", "--json")
        assert migrated.exit_code == 0, migrated.output

        entries = _audit("server.rotate_credentials")
        assert [e.target_id for e in entries] == ["pg-low"]
        details = json.dumps(entries[0].details)
        assert new not in details
        assert login.password not in details
        deleted = cli("stores", "delete", server_slug, "--drop-database", "--yes")
        assert deleted.exit_code == 0, deleted.output


@pytest.mark.server
def test_mariadb_admin_login_is_rotated(cli: Invoke) -> None:
    with mysql_login("SELECT ON mysql.db") as login:
        assert cli("init").exit_code == 0
        raw = login.url().render_as_string(hide_password=False)
        assert cli("servers", "add", "my-low", "--url", raw).exit_code == 0
        result = cli("servers", "rotate-credentials", "my-low")
        assert result.exit_code == 0, result.output
        new = _stored_password("my-low")
        assert new != login.password
        assert new not in result.output
        assert "Access denied" in _refused(login.url())
        assert cli("servers", "check", "my-low").exit_code == 0


def test_an_unknown_server_is_named(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    result = cli("servers", "rotate-credentials", "nowhere")
    assert result.exit_code == 1
    assert "no database server 'nowhere'" in result.stderr


@pytest.mark.server
def test_on_a_server_that_checks_passwords_the_old_one_is_refused(
    cli: Invoke, tls_postgres: TlsPostgres
) -> None:
    name, password = f"tt_rot_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    engine = make_engine(tls_postgres.url(sslmode="require"), pooled=False)
    try:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                f"CREATE ROLE {name} LOGIN PASSWORD '{password}'"
            )
    finally:
        engine.dispose()
    old = tls_postgres.url(sslmode="require").set(username=name, password=password)
    assert cli("init").exit_code == 0
    added = cli("servers", "add", "tls-low", "--url", old.render_as_string(hide_password=False))
    assert added.exit_code == 0, added.output
    # Master cannot store the new password: the old one is put back on the server.
    failed = cli(
        "servers",
        "rotate-credentials",
        "tls-low",
        env={"TENANTRY_FAILPOINTS": "servers.rotate.commit=raise"},
    )
    assert failed.exit_code != 0
    assert _stored_password("tls-low") == password
    assert cli("servers", "check", "tls-low").exit_code == 0
    assert _audit("server.rotate_credentials") == []

    rotated = cli("servers", "rotate-credentials", "tls-low")
    assert rotated.exit_code == 0, rotated.output
    assert "password authentication failed" in _refused(old)
    assert cli("servers", "check", "tls-low").exit_code == 0
