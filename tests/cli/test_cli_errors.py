"""Bad input to any command: a clear error, the right exit code, and with --json exactly one
JSON error document, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenantry.db import sqlite_writers
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json

#: A terminal wide enough that messages are not wrapped (Rich reads COLUMNS).
WIDE = {"COLUMNS": "300"}


def _error(result: object, code: int) -> dict[str, object]:
    assert result.exit_code == code, result.output  # type: ignore[attr-defined]
    doc = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert set(doc) == {"error"}
    assert set(doc["error"]) == {"type", "message", "hint", "exit_code"}
    assert doc["error"]["exit_code"] == code
    error: dict[str, object] = doc["error"]
    return error


@pytest.mark.parametrize(
    ("args", "kind", "words"),
    [
        (("jobs", "show", "--json", "--bogus"), "NoSuchOption", "--bogus"),
        (("jobs", "show", "--json"), "MissingParameter", "job_id"),
        (("jobs", "list", "--limit", "many", "--json"), "BadParameter", "--limit"),
        (("jobs", "list", "--limit", "0", "--json"), "BadParameter", "--limit"),
        (("jobs", "list", "--status", "sleeping", "--json"), "BadParameter", "--status"),
        (("stores", "list", "--json", "extra"), "UsageError", "extra"),
        (("no-such-command", "--json"), "UsageError", "no-such-command"),
        (("--json",), "NoSuchOption", "--json"),
        (("backup", "policy", "set", "--json"), "MissingParameter", "scope"),
    ],
)
def test_parser_errors_are_one_json_document_with_json(
    cli: Invoke, args: tuple[str, ...], kind: str, words: str
) -> None:
    error = _error(cli(*args), 2)
    assert error["type"] == kind
    assert words in str(error["message"])
    assert "--help" in str(error["hint"])


def test_parser_errors_without_json_stay_a_usage_message(cli: Invoke) -> None:
    result = cli("jobs", "list", "--limit", "many")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "--limit" in result.stderr


def test_an_invalid_app_id_gets_no_key(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    for bad in ("Bad App!", "UPPER", "a" * 65, "-lead", "sp ace", "tab\tx"):
        error = _error(cli("apikeys", "create", "--app", bad, "--json"), 2)
        assert error["type"] == "InvalidInput"
        assert "app id" in str(error["message"])
    assert as_json(cli("apikeys", "list", "--json")) == []
    made = cli("apikeys", "create", "--app", "client-portal", "--json")
    assert made.exit_code == 0, made.output
    assert as_json(made)["app_id"] == "client-portal"


def test_square_brackets_in_errors_are_shown_as_written(cli: Invoke) -> None:
    """Rich markup must not eat brackets: `pip install 'tenantry[postgres]'` stays whole."""
    assert cli("init").exit_code == 0
    result = cli("apikeys", "create", "--app", "shop[postgres]", env=WIDE)
    assert result.exit_code == 2
    assert "'shop[postgres]'" in result.stderr
    styled = cli("apikeys", "create", "--app", "[bold]x[/bold]", env=WIDE)
    assert styled.exit_code == 2
    assert "[bold]x[/bold]" in styled.stderr


def test_init_by_a_consumer_app_creates_nothing(cli: Invoke, tmp_path: Path) -> None:
    data = tmp_path / "data"
    refused = cli("init", "--json", env={"TENANTRY_APP": "client-portal"})
    error = _error(refused, 3)
    assert error["type"] == "NotOwner"
    assert "client-portal" in str(error["message"])
    assert not data.exists()
    human = cli("init", env={"TENANTRY_APP": "client-portal"})
    assert human.exit_code == 3
    assert "consumer" in human.stderr
    assert not data.exists()
    # The owner initialises; the consumer is refused again, and nothing of the install moves.
    assert cli("init").exit_code == 0
    before = sorted(p.name for p in data.iterdir())
    assert cli("init", env={"TENANTRY_APP": "client-portal"}).exit_code == 3
    assert sorted(p.name for p in data.iterdir()) == before


def test_policy_set_prints_a_table_and_json(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    human = cli("backup", "policy", "set", "billing", "--retention-days", "45", env=WIDE)
    assert human.exit_code == 0, human.output
    assert "{" not in human.stdout
    assert "'" not in human.stdout
    assert "billing" in human.stdout
    assert "45" in human.stdout
    doc = as_json(cli("backup", "policy", "set", "billing", "--min-keep", "5", "--json"))
    assert (doc["scope"], doc["retention_days"], doc["min_keep"]) == ("billing", 45, 5)


@pytest.mark.parametrize(
    ("args", "code", "kind"),
    [
        (("fleet", "migrate", "--to", "", "--json"), 1, "MigrationError"),
        (("fleet", "migrate", "--to", "head-1", "--json"), 1, "MigrationError"),
        (("db", "migrate", "--role", "billing", "--to", "@", "--json"), 1, "MigrationError"),
        (("billing", "customers", "list", "acme", "--offset", "9" * 25, "--json"), 2, None),
        (("backup", "policy", "set", "billing", "--retention-days", "9" * 25, "--json"), 2, None),
        (("backup", "policy", "set", "billing", "--max-age-hours", "99999999", "--json"), 2, None),
        (("jobs", "show", "%", "--json"), 1, "NotFound"),
        (("backup", "pin", "ffffffff", "--json"), 1, "NotFound"),
    ],
)
def test_out_of_range_values_are_clear_errors(
    cli: Invoke, args: tuple[str, ...], code: int, kind: str | None
) -> None:
    assert cli("init").exit_code == 0
    error = _error(cli(*args), code)
    if kind is not None:
        assert error["type"] == kind


def test_a_data_dir_that_is_a_file_is_named(cli: Invoke, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    error = _error(cli("init", "--json", env={"TENANTRY_DATA_DIR": str(afile)}), 2)
    assert str(afile) in str(error["message"])
    assert "TENANTRY_DATA_DIR" in str(error["hint"])
    below = cli("init", "--json", env={"TENANTRY_DATA_DIR": str(afile / "sub")})
    assert str(afile / "sub") in str(_error(below, 1)["message"])


def test_an_unreachable_queue_is_a_clear_error_without_its_password(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "queued", "--name", "Q").exit_code == 0
    env = {"TENANTRY_QUEUE_URL": "redis://user:S3cretQ@127.0.0.1:1/0"}
    result = cli("provision", "queued", "--new", "--json", env=env)
    error = _error(result, 1)
    assert error["type"] == "QueueUnreachable"
    assert "127.0.0.1:1" in str(error["message"])
    assert "S3cretQ" not in result.output
    # The job is recorded: a worker's recovery sweep queues it once the queue is back.
    assert as_json(cli("jobs", "list", "--json"))[0]["status"] == "queued"


def test_an_unexpected_error_is_one_paragraph_without_its_text(cli: Invoke, tmp_path: Path) -> None:
    # A master file overwritten with noise: the driver's error is not one tenantry expects.
    assert cli("init").exit_code == 0
    (tmp_path / "data" / "master.db").write_bytes(b"not a database " * 400)
    plain = cli("stores", "list")
    assert plain.exit_code == 1
    assert "Traceback" not in plain.output
    assert "unexpected error occurred (DatabaseError)" in plain.stderr
    assert "file is not a database" not in plain.output  # a driver's text is never shown
    error = _error(cli("stores", "list", "--json"), 1)
    assert error["type"] == "InternalError"
    assert "TENANTRY_DEBUG=1" in str(error["hint"])


def test_a_command_that_waits_out_the_busy_timeout_says_so(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Master's writers held by another (a long job) past the busy timeout: the command
    says the database was busy and to run it again, exit 1, and wrote nothing."""
    assert cli("init").exit_code == 0
    monkeypatch.setenv("TENANTRY_SQLITE_BUSY_TIMEOUT_MS", "300")
    held = sqlite_writers.acquire(Path(str(load_settings().master_url.database)), 1000)
    try:
        busy = cli("stores", "create", "late-shop", "--name", "Late", "--json")
        plain = cli("stores", "create", "late-shop", "--name", "Late", env=WIDE)
    finally:
        sqlite_writers.release(held)
    error = _error(busy, 1)
    assert error["type"] == "DatabaseBusy"
    assert "locked by another writer" in str(error["message"])
    assert "wrote nothing" in str(error["message"])
    assert "again" in str(error["hint"])
    assert plain.exit_code == 1
    assert "busy timeout" in plain.output
    assert "Traceback" not in plain.output
    assert as_json(cli("stores", "list", "--json"))["total"] == 0
    assert cli("stores", "create", "late-shop", "--name", "Late").exit_code == 0
