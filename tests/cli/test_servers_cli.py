"""`tenantry servers add|remove` and `provision --connect`: URLs checked, secrets never shown."""

from __future__ import annotations

import uuid

import pytest

from tests.api.test_provisioning_secrets_api import assert_masked_by_structure
from tests.cli.conftest import Invoke, as_json
from tests.conftest import SERVER_URLS, require_server
from tests.pg_roles import unprivileged_login

SECRET = "Zq7xK9wJ"

#: URLs a user may mistype; each error must name the option and show no part of SECRET.
BAD_URLS = [
    f"postgresql://u:{SECRET}@127.0.0.1:abc/x",
    f"postgresql://admin:ab@cd:{SECRET}@127.0.0.1:port/postgres",
    f"postgresql://u:{SECRET}@127.0.0.1:99999/x",
    f"postgresql://u:{SECRET}@127.0.0.1:0/x",
    f"postgresql://u:{SECRET}@host\x00name/x",
    f"postgresql://u:{SECRET}@127.0.0.1/x?sslmode=bogus",
    f"postgresql://admin:{SECRET}/postgres",
    f"postgresql://u:ab/{SECRET}@127.0.0.1/x",
    "postgresql://",
    f"mysql://u:{SECRET}@:3306",
]


def _fragments(secret: str = SECRET) -> list[str]:
    return [secret[i : i + 3] for i in range(len(secret) - 2)]


def _assert_safe(output: str) -> None:
    assert "Traceback" not in output
    for piece in _fragments():
        assert piece not in output


@pytest.mark.parametrize("url", BAD_URLS)
def test_servers_add_refuses_a_bad_url_naming_the_option(cli: Invoke, url: str) -> None:
    assert cli("init").exit_code == 0
    human = cli("servers", "add", "bad", "--url", url)
    assert human.exit_code == 2
    assert "--url" in human.stderr
    _assert_safe(human.output)
    scripted = cli("servers", "add", "bad", "--url", url, "--json")
    assert scripted.exit_code == 2
    error = as_json(scripted)["error"]
    assert error["type"] == "ConfigurationError"
    assert error["message"].startswith("--url ")
    _assert_safe(scripted.output)
    assert as_json(cli("servers", "list", "--json")) == []


@pytest.mark.parametrize("url", BAD_URLS)
def test_provision_connect_refuses_a_bad_url_naming_the_option(cli: Invoke, url: str) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "shop", "--name", "Shop").exit_code == 0
    result = cli("provision", "shop", "--connect", url, "--inline", "--wait", "--json")
    assert result.exit_code == 2
    assert as_json(result)["error"]["message"].startswith("--connect ")
    _assert_safe(result.output)
    assert as_json(cli("jobs", "list", "--json")) == []


def test_an_unreachable_server_is_refused_and_not_saved(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    url = f"postgresql://admin:{SECRET}@127.0.0.1:1/postgres"
    result = cli("servers", "add", "ghost", "--url", url, "--json")
    assert result.exit_code == 2
    error = as_json(result)["error"]
    assert "was not saved" in error["message"]
    assert (
        "cannot connect to postgresql+psycopg://admin:***@127.0.0.1:1/postgres"
        in (error["message"])
    )
    _assert_safe(result.output)
    assert as_json(cli("servers", "list", "--json")) == []


@pytest.mark.server
def test_a_mysql_server_url_without_a_database_is_kept_without_one(cli: Invoke) -> None:
    require_server("mysql")
    assert cli("init").exit_code == 0
    bare = SERVER_URLS["mysql"].rsplit("/", 1)[0]  # mysql://root@127.0.0.1:3306
    added = cli("servers", "add", "maria", "--url", bare, "--json")
    assert added.exit_code == 0, added.output
    assert as_json(added)["url"] == bare.replace("mysql://", "mysql+pymysql://")
    listed = as_json(cli("servers", "list", "--json"))
    assert [s["url"] for s in listed] == [bare.replace("mysql://", "mysql+pymysql://")]
    assert cli("servers", "check", "maria").exit_code == 0


@pytest.mark.server
def test_a_server_is_removed_only_when_no_store_database_lives_there(cli: Invoke) -> None:
    require_server("postgresql")
    assert cli("init").exit_code == 0
    assert cli("servers", "add", "pg-main", "--url", SERVER_URLS["postgresql"]).exit_code == 0
    assert cli("servers", "add", "pg-spare", "--url", SERVER_URLS["postgresql"]).exit_code == 0
    slug = f"on-pg-{uuid.uuid4().hex[:8]}"
    assert cli("stores", "create", slug, "--name", "On PG").exit_code == 0
    made = cli("provision", slug, "--new", "--server", "pg-main", "--inline", "--wait")
    assert made.exit_code == 0, made.output
    try:
        refused = cli("servers", "remove", "pg-main", "--json")
        assert refused.exit_code == 1
        error = as_json(refused)["error"]
        assert error["type"] == "Conflict"
        assert slug in error["message"]
        human = cli("servers", "remove", "pg-main")
        assert human.exit_code == 1
        assert slug in human.stderr
        names = [s["name"] for s in as_json(cli("servers", "list", "--json"))]
        assert names == ["pg-main", "pg-spare"]

        unused = cli("servers", "remove", "pg-spare", "--json")
        assert unused.exit_code == 0, unused.output
        assert as_json(unused) == {"removed": "pg-spare", "spares_dropped": 0}
    finally:
        deleted = cli("stores", "delete", slug, "--drop-database", "--yes")
        assert deleted.exit_code == 0, deleted.output
    assert cli("servers", "remove", "pg-main").exit_code == 0
    assert as_json(cli("servers", "list", "--json")) == []
    gone = cli("servers", "remove", "pg-main")
    assert gone.exit_code == 1
    assert "no database server 'pg-main'" in gone.stderr


@pytest.mark.server
@pytest.mark.parametrize("password", ["p", "root", "3306"])
def test_a_wrong_short_password_is_not_spelled_out_by_masking(cli: Invoke, password: str) -> None:
    require_server("mysql")
    assert cli("init").exit_code == 0
    server = SERVER_URLS["mysql"].rsplit("/", 1)[0].replace("mysql://root@", "")
    url = f"mysql://root:{password}@{server}/mysql"
    masked = f"cannot connect to mysql+pymysql://root:***@{server}/mysql"

    added = cli("servers", "add", "maria", "--url", url)
    assert added.exit_code == 2
    assert masked in added.stderr
    assert "(using password: YES)" in added.stderr
    assert_masked_by_structure(added.output)

    assert cli("stores", "create", "shop", "--name", "Shop").exit_code == 0
    result = cli("provision", "shop", "--connect", url, "--inline", "--wait")
    assert result.exit_code == 1
    assert masked in result.stderr
    assert "Access denied for user 'root'@" in result.stderr
    assert_masked_by_structure(result.output)


@pytest.mark.server
def test_a_server_whose_user_may_not_create_logins_is_registered_with_a_warning(
    cli: Invoke,
) -> None:
    """Every create-new store gets runtime logins: a CREATEDB-only admin is named as
    unable to provision before anyone tries."""
    with unprivileged_login() as login:
        assert cli("init").exit_code == 0
        raw = login.url("postgres").render_as_string(hide_password=False)
        added = cli("servers", "add", "pg-nologins", "--url", raw)
        assert added.exit_code == 0, added.output
        said = " ".join(added.output.split())  # the console wraps long lines
        assert "may NOT create logins" in said
        assert "CREATEDB and CREATEROLE" in said
        checked = as_json(cli("servers", "check", "pg-nologins", "--json"))
        doc = checked[0] if isinstance(checked, list) else checked
        assert doc["can_create_databases"] is True
        assert doc["can_create_logins"] is False
        assert login.password not in added.output
