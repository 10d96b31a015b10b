"""`tenantry servers add|set --pooler-url`: checked, stored sealed, never shown, cleared by
`none`; a MySQL/MariaDB server takes no pooler."""

from __future__ import annotations

from sqlalchemy import select

from tenantry.db.master.models import DatabaseServer
from tenantry.runtime import Platform
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json
from tests.conftest import SERVER_URLS, require_server
from tests.services.test_moves import admin_url

SECRET = "Pw9pooLer"


def _sealed_pooler(name: str) -> str | None:
    platform = Platform.open(load_settings())
    try:
        with platform.sessions() as session:
            server = session.scalars(
                select(DatabaseServer).where(DatabaseServer.name == name)
            ).one()
            return server.pooler_url_encrypted
    finally:
        platform.close()


def test_pooler_url_is_checked_sealed_and_cleared(cli: Invoke) -> None:
    require_server("postgresql")
    assert cli("init").exit_code == 0
    bad = cli("servers", "add", "pg", "--url", admin_url("postgresql"), "--pooler-url", "x:y")
    assert bad.exit_code == 2
    assert "--pooler-url" in bad.stderr
    assert as_json(cli("servers", "list", "--json")) == []

    pooler = f"postgresql://stats:{SECRET}@127.0.0.1:6432/postgres"
    added = cli("servers", "add", "pg", "--url", admin_url("postgresql"), "--pooler-url", pooler)
    assert added.exit_code == 0, added.output
    assert SECRET not in added.output
    (listed,) = as_json(cli("servers", "list", "--json"))
    assert listed["pooled"] is True
    sealed = _sealed_pooler("pg")
    assert sealed is not None
    assert SECRET not in sealed

    cleared = cli("servers", "set", "pg", "--pooler-url", "none", "--json")
    assert cleared.exit_code == 0, cleared.output
    assert as_json(cleared)["pooled"] is False
    assert _sealed_pooler("pg") is None


def test_a_mysql_server_takes_no_pooler(cli: Invoke) -> None:
    require_server("mysql")
    assert cli("init").exit_code == 0
    pooler = "postgresql://127.0.0.1:6432/postgres"
    refused = cli("servers", "add", "my", "--url", SERVER_URLS["mysql"], "--pooler-url", pooler)
    assert refused.exit_code == 2
    assert "only PostgreSQL servers take a pooler" in refused.stderr
    assert as_json(cli("servers", "list", "--json")) == []
