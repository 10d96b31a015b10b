"""`tenantry db migrate|check|adopt|schema` against real databases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from tenantry.db.engines import make_engine
from tenantry.db.urls import backend_of
from tests.cli.conftest import Invoke, as_json
from tests.conftest import DbFactory
from tests.helpers import schema_snapshot


def _plain(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def test_migrate_sql_prints_ddl_and_changes_nothing(cli: Invoke, new_database: DbFactory) -> None:
    url = new_database("master")
    result = cli("db", "migrate", "--role", "master", "--url", _plain(url), "--sql")
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE stores" in result.stdout
    assert "tenantry_master_version" in result.stdout
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert schema_snapshot(conn) == {}
    finally:
        engine.dispose()


@pytest.mark.parametrize("role", ["master", "billing", "tenant"])
def test_printed_schema_is_accepted_by_the_database(
    cli: Invoke, new_database: DbFactory, role: str
) -> None:
    url = new_database(role)
    result = cli("db", "schema", "--role", role, "--dialect", backend_of(url))
    assert result.exit_code == 0, result.output
    statements = [s for s in result.stdout.split(";\n") if s.strip()]
    assert len(statements) > 5
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
        adopted = cli("db", "adopt", "--role", role, "--url", _plain(url), "--json")
        assert adopted.exit_code == 0, adopted.output
        assert as_json(adopted)["adopted"] is True
        checked = cli("db", "check", "--role", role, "--url", _plain(url))
        assert checked.exit_code == 0, checked.output
    finally:
        engine.dispose()


def test_consumer_app_is_refused_and_check_fails_fast_on_drift(
    cli: Invoke, new_database: DbFactory
) -> None:
    db_url = new_database("billing")
    url = _plain(db_url)
    refused = cli("db", "migrate", "--role", "billing", "--url", url, "--as-app", "portal")
    assert refused.exit_code == 3
    assert "consumer" in refused.stderr
    assert "'tenantry'" in refused.stderr
    also_refused = cli(
        "db", "migrate", "--role", "billing", "--url", url, env={"TENANTRY_APP": "portal"}
    )
    assert also_refused.exit_code == 3

    assert cli("db", "migrate", "--role", "billing", "--url", url).exit_code == 0
    ok = cli("db", "check", "--role", "billing", "--url", url, "--as-app", "portal", "--json")
    assert ok.exit_code == 0, ok.output
    assert as_json(ok)["ok"] is True

    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE billing_payments"))
    finally:
        engine.dispose()
    drifted = cli("db", "check", "--role", "billing", "--url", url, "--as-app", "portal")
    assert drifted.exit_code == 1
    assert "billing_payments" in drifted.stdout


def test_tenant_schema_plugin_migrates_step_by_step(cli: Invoke, new_database: DbFactory) -> None:
    url = _plain(new_database("tenant"))
    plugin = {"TENANTRY_TENANT_SCHEMA": "tests.fixtures.shop_plugin"}
    tenant = ("--role", "tenant", "--url", url)
    first = cli("db", "migrate", *tenant, "--to", "s001", "--json", env=plugin)
    assert first.exit_code == 0, first.output
    doc = as_json(first)
    assert doc["applied"] == ["s001"]
    assert doc["stamped_identity"]["schema_name"] == "shop"

    behind = cli("db", "check", *tenant, env=plugin)
    assert behind.exit_code == 1
    assert "at revision s001, the code expects s002" in behind.stdout

    sql = cli("db", "migrate", *tenant, "--sql", env=plugin)
    assert "ADD COLUMN unit" in sql.stdout
    assert "CREATE TABLE gauges" not in sql.stdout  # only what is pending

    rest = cli("db", "migrate", *tenant, "--json", env=plugin)
    assert as_json(rest)["applied"] == ["s002"]
    assert cli("db", "check", *tenant, env=plugin).exit_code == 0

    down = cli("db", "migrate", *tenant, "--to", "s001", env=plugin)
    assert down.exit_code == 1
    assert "does not run downgrades" in down.stderr

    # The default store schema must not be applied on top of a shop database.
    store = cli("db", "migrate", *tenant)
    assert store.exit_code == 3
    assert "schema store" in store.stderr
    assert "schema shop" in store.stderr


def test_bad_plugin_is_a_clear_error(cli: Invoke) -> None:
    result = cli(
        "db",
        "schema",
        "--role",
        "tenant",
        "--dialect",
        "sqlite",
        env={"TENANTRY_TENANT_SCHEMA": "no.such.module"},
    )
    assert result.exit_code == 2
    assert "no.such.module" in result.stderr


def test_console_script_errors_without_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": "nonsense", "TENANTRY_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "tenantry", "db", "status"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 2
    assert "DATABASE_URL is not a valid database URL" in proc.stderr
    assert "Traceback" not in proc.stderr
