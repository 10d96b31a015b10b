"""`tenantry stores move`: the move document, progress, refusals and rollbacks from the CLI."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantry.db.admin import database_exists, drop_database
from tenantry.db.urls import parse_url
from tests.cli.conftest import Invoke, as_json
from tests.conftest import SERVER_URLS, require_server
from tests.services.test_moves import PG_PASSWORD, admin_url
from tests.store_logins import drop_logins_named

MOVE_FIELDS = {
    "id",
    "store_id",
    "slug",
    "from_config_id",
    "to_config_id",
    "to_server",
    "status",
    "step",
    "progress",
    "details",
    "error",
    "keep_source_until",
    "started_at",
    "finished_at",
}


@pytest.fixture
def made() -> Iterator[list[tuple[str, str]]]:
    """(backend, database) pairs a test made on a server, dropped after it with the store's
    runtime logins (named ``<database>_a``/``_b`` for these short slugs)."""
    databases: list[tuple[str, str]] = []
    yield databases
    for backend, name in databases:
        drop_database(parse_url(SERVER_URLS[backend]).set(database=name))
        drop_logins_named(backend, f"{name}_")


def _store_on_sqlite(cli: Invoke, slug: str) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", slug, "--name", slug.title()).exit_code == 0
    provisioned = cli("provision", slug, "--new", "--inline", "--wait", "--json")
    assert provisioned.exit_code == 0, provisioned.output


@pytest.mark.parametrize("target", ["postgresql", "mysql"])
def test_move_prints_the_move_document(
    cli: Invoke, made: list[tuple[str, str]], target: str
) -> None:
    require_server(target)
    _store_on_sqlite(cli, "cli-shop")
    assert cli("servers", "add", "big", "--url", admin_url(target)).exit_code == 0

    result = cli("stores", "move", "cli-shop", "--to-server", "big", "--yes", "--json")

    doc = as_json(result)
    made.append((target, doc["details"]["target"]["database"]))
    assert result.exit_code == 0, result.output
    assert set(doc) == MOVE_FIELDS
    assert (doc["status"], doc["step"], doc["progress"]) == ("completed", "done", 100)
    assert doc["details"]["verified"] is True
    assert doc["details"]["target"]["engine"] == target
    if target == "mysql":
        assert doc["details"]["source_read_only"]["applied"] is True  # the source is SQLite
    assert PG_PASSWORD not in result.output
    shown = as_json(cli("stores", "show", "cli-shop", "--json"))
    assert shown["database_type"] == target
    assert shown["connection"]["server"] == "big"
    assert shown["connection"]["id"] == doc["to_config_id"]

    again = cli("stores", "move", "cli-shop", "--to-server", "big", "--yes", "--json")
    assert again.exit_code == 1
    assert "already lives on server 'big'" in as_json(again)["error"]["message"]


def test_move_shows_progress_and_a_summary(cli: Invoke, made: list[tuple[str, str]]) -> None:
    require_server("postgresql")
    _store_on_sqlite(cli, "human")
    assert cli("servers", "add", "pg", "--url", admin_url("postgresql")).exit_code == 0

    result = cli("stores", "move", "human", "--to-server", "pg", "--yes")

    shown = as_json(cli("stores", "show", "human", "--json"))
    made.append(("postgresql", shown["connection"]["config_data"]["database"]))
    assert result.exit_code == 0, result.output
    assert "moved store human to server pg" in result.stdout
    assert "copied and verified" in result.stdout
    assert "file mode set to 0400" in result.stdout
    assert "the source is kept until" in result.stdout
    assert "rows" in result.stderr  # the progress bar
    assert PG_PASSWORD not in result.output


def test_a_failed_move_exits_1_and_leaves_the_store_where_it_was(
    cli: Invoke, made: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    require_server("postgresql")
    _store_on_sqlite(cli, "unlucky")
    assert cli("servers", "add", "pg", "--url", admin_url("postgresql")).exit_code == 0
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "move.before_switch=raise")

    result = cli("stores", "move", "unlucky", "--to-server", "pg", "--yes", "--json")

    assert result.exit_code == 1
    doc = as_json(result)
    name = doc["details"]["target"]["database"]
    made.append(("postgresql", name))
    assert doc["status"] == "rolled_back"
    assert doc["error"] == "FailPointError: fail point move.before_switch reached"
    assert not database_exists(parse_url(SERVER_URLS["postgresql"]).set(database=name))
    assert as_json(cli("stores", "show", "unlucky", "--json"))["database_type"] == "sqlite"

    human = cli("stores", "move", "unlucky", "--to-server", "pg", "--yes")
    assert human.exit_code == 1
    assert "was rolled back" in human.stderr
    assert "still served from sqlite" in human.stderr


def test_move_refuses_bad_requests_and_asks_first(cli: Invoke) -> None:
    _store_on_sqlite(cli, "careful")
    unknown = cli("stores", "move", "careful", "--to-server", "nowhere", "--json")
    assert unknown.exit_code == 1
    assert as_json(unknown)["error"]["message"] == "no database server 'nowhere'."
    ghost = cli("stores", "move", "ghost", "--to-server", "nowhere", "--yes")
    assert ghost.exit_code == 1
    assert "no store 'ghost'" in ghost.stderr

    require_server("postgresql")
    assert cli("servers", "add", "pg", "--url", SERVER_URLS["postgresql"]).exit_code == 0
    unconfirmed = cli("stores", "move", "careful", "--to-server", "pg")
    assert unconfirmed.exit_code == 1
    assert "Move store 'careful' from sqlite" in unconfirmed.stderr
    assert "aborted; nothing was changed" in unconfirmed.stderr
    assert as_json(cli("stores", "show", "careful", "--json"))["database_type"] == "sqlite"


def test_a_move_failing_once_the_source_is_read_only_exits_1_and_leaves_it_writable(
    cli: Invoke, made: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    require_server("postgresql")
    _store_on_sqlite(cli, "late")
    assert cli("servers", "add", "pg", "--url", admin_url("postgresql")).exit_code == 0
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "move.source_read_only=raise")

    result = cli("stores", "move", "late", "--to-server", "pg", "--yes", "--json")

    assert result.exit_code == 1
    doc = as_json(result)
    made.append(("postgresql", doc["details"]["target"]["database"]))
    assert doc["status"] == "rolled_back"
    assert doc["details"]["source_read_only"] == {"applied": False, "how": "undone"}
    source = Path(doc["details"]["source"]["path"])
    assert stat.S_IMODE(source.stat().st_mode) & stat.S_IWUSR
    assert as_json(cli("stores", "show", "late", "--json"))["database_type"] == "sqlite"
    human = cli("stores", "move", "late", "--to-server", "pg", "--yes")
    assert human.exit_code == 1
    assert "was rolled back" in human.stderr
    assert "fail point move.source_read_only" in human.stderr


def test_deleting_a_moved_store_drops_the_source_kept_after_the_move(
    cli: Invoke, made: list[tuple[str, str]]
) -> None:
    require_server("postgresql")
    _store_on_sqlite(cli, "gone")
    assert cli("servers", "add", "pg", "--url", admin_url("postgresql")).exit_code == 0
    moved = as_json(cli("stores", "move", "gone", "--to-server", "pg", "--yes", "--json"))
    assert moved["status"] == "completed"
    target = parse_url(SERVER_URLS["postgresql"]).set(
        database=moved["details"]["target"]["database"]
    )
    made.append(("postgresql", str(target.database)))
    kept = Path(moved["details"]["source"]["path"])
    assert kept.is_file()

    deleted = cli("stores", "delete", "gone", "--drop-database", "--yes", "--json")

    assert deleted.exit_code == 0, deleted.output
    doc = as_json(deleted)
    assert doc["database_dropped"] is True
    assert doc["kept_sources_dropped"] == [f"sqlite+pysqlite:///{kept}"]
    assert not kept.exists()
    assert not database_exists(target)
    assert PG_PASSWORD not in deleted.output


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_deleting_a_store_moved_between_servers_drops_its_read_only_source_and_logins(
    cli: Invoke, made: list[tuple[str, str]], backend: str
) -> None:
    """The source a move keeps is read-only; deleting the store still drops it and the
    store's logins on it (the privileges are revoked inside that read-only database)."""
    require_server(backend)
    assert cli("init").exit_code == 0
    for name in ("one", "two"):
        assert cli("servers", "add", name, "--url", admin_url(backend)).exit_code == 0
    assert cli("stores", "create", "hop", "--name", "Hop").exit_code == 0
    provisioned = cli("provision", "hop", "--new", "--server", "one", "--inline", "--json")
    assert provisioned.exit_code == 0, provisioned.output
    moved = as_json(cli("stores", "move", "hop", "--to-server", "two", "--yes", "--json"))
    assert moved["status"] == "completed", moved
    server = parse_url(SERVER_URLS[backend])
    source = server.set(database=moved["details"]["source"]["database"])
    target = server.set(database=moved["details"]["target"]["database"])
    made += [(backend, str(source.database)), (backend, str(target.database))]

    deleted = cli("stores", "delete", "hop", "--drop-database", "--yes", "--json")

    assert deleted.exit_code == 0, deleted.output
    doc = as_json(deleted)
    assert doc["database_dropped"] is True
    assert len(doc["kept_sources_dropped"]) == 1
    assert not database_exists(source)
    assert not database_exists(target)
