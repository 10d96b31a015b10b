"""tenantry on a PostgreSQL that accepts TLS only: init, migrate, a registered server with a
store provisioned on it and a backup all connect with ``sslmode=require``; without TLS the
server refuses and tenantry says what to add; TENANTRY_REQUIRE_TLS refuses plain text first."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json
from tests.conftest import SERVER_URLS, require_server
from tests.tls_postgres import TlsPostgres, tls_postgres

__all__ = ["tls_postgres"]

WIDE = {"COLUMNS": "200"}


def _tls_env(server: TlsPostgres, sslmode: str = "require") -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {
        **WIDE,
        "DATABASE_URL": server.raw(f"master_{suffix}", sslmode=sslmode),
        "DATABASE_URL_BILLING": server.raw(f"billing_{suffix}", sslmode=sslmode),
        "TENANTRY_REQUIRE_TLS": "true",
    }


@pytest.mark.server
def test_tenantry_runs_on_a_tls_only_postgresql(
    cli: Invoke, tls_postgres: TlsPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _tls_env(tls_postgres)
    init = cli("init", env=env)
    assert init.exit_code == 0, init.output
    assert cli("db", "migrate", "--role", "master", env=env).exit_code == 0
    added = cli(
        "servers", "add", "tls-pg", "--url", tls_postgres.raw(sslmode="require"), "--json", env=env
    )
    assert added.exit_code == 0, added.output
    assert as_json(added)["check"]["ok"] is True

    assert cli("stores", "create", "secure", "--name", "Secure", env=env).exit_code == 0
    provisioned = cli(
        "provision", "secure", "--new", "--server", "tls-pg", "--inline", "--wait", env=env
    )
    assert provisioned.exit_code == 0, provisioned.output
    doc = as_json(cli("stores", "show", "secure", "--json", env=env))
    assert doc["status"] == "active"

    # pg_dump, then pg_restore into a scratch database made through the admin engine.
    backup = cli("backup", "run", "--db", "store:secure", "--verify", "--json", env=env)
    assert backup.exit_code == 0, backup.output
    assert as_json(backup)["status"] == "verified", backup.output

    # The router (what serves requests) reaches the store's database over TLS.
    monkeypatch.setenv("TENANTRY_REQUIRE_TLS", "true")
    settings = load_settings(
        database_url=env["DATABASE_URL"], database_url_billing=env["DATABASE_URL_BILLING"]
    )
    platform = Platform.open(settings, runtime=True)
    try:
        with platform.sessions() as master:
            store = stores.get_store(master, "secure")
            with platform.router.connection(master, store) as conn:
                assert conn.execute(
                    text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                ).scalar_one()
    finally:
        platform.close()


@pytest.mark.server
def test_without_tls_the_server_refuses_and_tenantry_says_why(
    cli: Invoke, tls_postgres: TlsPostgres
) -> None:
    env = {**_tls_env(tls_postgres, sslmode="disable"), "TENANTRY_REQUIRE_TLS": "false"}
    result = cli("init", env=env)
    assert result.exit_code != 0
    assert "no encryption" in result.stderr
    assert "accepts only TLS" in result.stderr
    assert "sslmode=require" in result.stderr


def test_require_tls_refuses_a_plain_url(cli: Invoke) -> None:
    require_server("postgresql")
    plain = SERVER_URLS["postgresql"].rsplit("/", 1)[0] + f"/tls_never_{uuid.uuid4().hex[:8]}"
    env = {**WIDE, "DATABASE_URL": plain, "TENANTRY_REQUIRE_TLS": "true"}
    result = cli("init", env=env)
    assert result.exit_code != 0
    assert "TENANTRY_REQUIRE_TLS is on" in result.stderr
    assert "does not ask for TLS" in result.stderr
    assert "sslmode=" in result.stderr
