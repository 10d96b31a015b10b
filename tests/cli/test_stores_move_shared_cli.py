"""`tenantry stores move --to-shared` and `--to-own-database` from the CLI: a SQLite store into
its schema of a shared PostgreSQL database and back into a file of its own, listed by `stores
moves list`; contradictory or missing flags refused naming them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from tenantry.db.admin import drop_database
from tenantry.db.engines import make_engine
from tenantry.db.shared_schemas import pool_login
from tenantry.db.urls import parse_url
from tests.cli.conftest import Invoke, as_json
from tests.conftest import require_server
from tests.services.test_moves import PG_PASSWORD, admin_url


@pytest.fixture
def shared_name() -> Iterator[str]:
    """A shared database name of the test's own, dropped after with its pool login and the
    roles of the test's stores (``ts_cli_sh_…``)."""
    database = f"tsh_{uuid.uuid4().hex[:10]}"
    yield database
    admin = parse_url(admin_url("postgresql"))
    drop_database(admin.set(database=database))
    engine = make_engine(admin.set(database="postgres"), pooled=False)
    try:
        with engine.connect() as conn:
            roles = conn.execute(
                text("SELECT rolname FROM pg_roles WHERE rolname LIKE 'ts\\_cli\\_sh\\_%'")
            ).scalars()
            for role in [*roles, pool_login(database)]:
                conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
            conn.commit()
    finally:
        engine.dispose()


def test_a_sqlite_store_moves_into_a_shared_database_and_back(
    cli: Invoke, shared_name: str
) -> None:
    require_server("postgresql")
    slug = f"cli-sh-{uuid.uuid4().hex[:6]}"
    assert cli("init").exit_code == 0
    assert cli("stores", "create", slug, "--name", "Cli").exit_code == 0
    assert cli("provision", slug, "--new", "--inline", "--wait", "--json").exit_code == 0
    assert cli("servers", "add", "pg", "--url", admin_url("postgresql")).exit_code == 0

    result = cli("stores", "move", slug, "--to-shared", f"pg/{shared_name}", "--yes", "--json")

    assert result.exit_code == 0, result.output
    doc = as_json(result)
    assert doc["status"] == "completed"
    assert doc["details"]["target"]["database"] == shared_name
    assert doc["details"]["target"]["schema"].startswith("t_cli_sh_")
    assert PG_PASSWORD not in result.output
    shown = as_json(cli("stores", "show", slug, "--json"))
    assert shown["connection"]["schema"] == doc["details"]["target"]["schema"]

    back = cli("stores", "move", slug, "--to-own-database", "--server", "sqlite", "--yes")

    assert back.exit_code == 0, back.output
    assert "sqlite file" in back.stdout
    assert "INSERT, UPDATE, DELETE revoked" in back.stdout  # the schema source is read-only
    shown = as_json(cli("stores", "show", slug, "--json"))
    assert shown["database_type"] == "sqlite"
    moves = as_json(cli("stores", "moves", "list", "--store", slug, "--json"))
    assert [(m["from"], m["to"], m["status"]) for m in moves] == [
        (f"pg/{shared_name}", "sqlite file", "completed"),
        ("sqlite file", f"pg/{shared_name}", "completed"),
    ]
    # Own database already: --to-own-database is refused naming the flags to use.
    again = cli("stores", "move", slug, "--to-own-database", "--yes", "--json")
    assert again.exit_code == 2  # bad input
    error = as_json(again)["error"]
    assert "has a database of its own already" in error["message"]
    assert "--to-server NAME" in error["hint"]


def test_contradictory_or_missing_destinations_are_refused_naming_the_flags(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "flags", "--name", "Flags").exit_code == 0
    both = cli("stores", "move", "flags", "--to-shared", "pg", "--to-own-database", "--json")
    assert both.exit_code == 2
    assert "--to-shared cannot go with --to-own-database" in as_json(both)["error"]["message"]
    nothing = cli("stores", "move", "flags", "--yes")
    assert nothing.exit_code == 2
    assert "--to-shared SERVER[/DB]" in nothing.stderr
    no_server = cli("stores", "move", "flags", "--to-shared", "/db", "--yes", "--json")
    assert no_server.exit_code == 2
    assert "names no server" in as_json(no_server)["error"]["message"]
