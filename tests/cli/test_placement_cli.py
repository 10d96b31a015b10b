"""Placement and data residency from the CLI: `servers add/set/list` with labels and capacity,
`stores create --region`, `provision --new` placing the store, and moves and restores that
would break its residency refused with nothing changed.

The local PostgreSQL and MariaDB are registered under region labels (the same physical
servers); ``server_slug`` drops whatever databases and logins the stores got.
"""

from __future__ import annotations

from typing import Any

from tests.cli.conftest import Invoke, as_json
from tests.conftest import SERVER_URLS, require_server

WIDE = {"COLUMNS": "160"}


def _servers(cli: Invoke) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in as_json(cli("servers", "list", "--json"))}


def _setup(cli: Invoke) -> None:
    require_server("postgresql")
    require_server("mysql")
    assert cli("init").exit_code == 0
    added = cli(
        "servers",
        "add",
        "pg-eu",
        "--url",
        SERVER_URLS["postgresql"],
        "--region",
        "eu",
        "--max-tenants",
        "5",
        "--max-bytes",
        "10GB",
    )
    assert added.exit_code == 0, added.output
    closed = cli(
        "servers",
        "add",
        "my-us",
        "--url",
        SERVER_URLS["mysql"],
        "--region",
        "us",
        "--not-accepting",
    )
    assert closed.exit_code == 0, closed.output


def test_servers_carry_labels_and_capacity_and_provision_places_the_store(
    cli: Invoke, server_slug: str
) -> None:
    _setup(cli)
    listed = _servers(cli)
    assert {k: listed["pg-eu"][k] for k in ("region", "max_tenants", "max_bytes", "accepting")} == {
        "region": "eu",
        "max_tenants": 5,
        "max_bytes": 10 * 1024**3,
        "accepting": True,
    }
    assert (listed["my-us"]["region"], listed["my-us"]["accepting"]) == ("us", False)
    created = cli("stores", "create", server_slug, "--name", "Eu", "--region", "eu", "--json")
    assert created.exit_code == 0, created.output
    assert as_json(created)["residency"] == {"region": "eu", "tier": None}
    provisioned = cli("provision", server_slug, "--new", "--inline", "--json")
    assert provisioned.exit_code == 0, provisioned.output
    shown = as_json(cli("stores", "show", server_slug, "--json"))
    assert shown["connection"]["server"] == "pg-eu"
    pg = _servers(cli)["pg-eu"]
    assert (pg["tenants"], pg["tenant_headroom"], pg["full"]) == (1, 4, None)
    human = cli("servers", "list", env=WIDE)
    assert human.exit_code == 0
    rows = {line.split("│")[1].strip(): line for line in human.stdout.splitlines() if "│" in line}
    assert "eu" in rows["pg-eu"]
    assert "1/5" in rows["pg-eu"]
    assert "4 stores" in rows["pg-eu"]
    assert "us" in rows["my-us"]
    assert rows["my-us"].rstrip(" │").endswith("no")
    changed = cli(
        "servers", "set", "my-us", "--accepting", "--max-tenants", "none", "--tier", "gold"
    )
    assert changed.exit_code == 0, changed.output
    assert "accepting yes" in changed.stdout
    assert "tier gold" in changed.stdout
    my = _servers(cli)["my-us"]
    assert (my["accepting"], my["tier"], my["max_tenants"]) == (True, "gold", None)


def test_bad_labels_and_sizes_name_the_option(cli: Invoke) -> None:
    _setup(cli)
    for option, value in (
        ("--max-bytes", "lots"),
        ("--region", "EU West"),
        ("--max-tenants", "-1"),
    ):
        result = cli("servers", "set", "pg-eu", option, value)
        assert result.exit_code == 2, result.output
        assert option in result.stderr
        assert "Traceback" not in result.output
    refused = cli("stores", "create", "bad-region", "--name", "B", "--region", "eu_west")
    assert refused.exit_code == 2
    assert "--region" in refused.stderr
    assert cli("stores", "show", "bad-region").exit_code == 1  # nothing was created
    assert _servers(cli)["pg-eu"]["max_bytes"] == 10 * 1024**3


def test_no_matching_server_is_refused_naming_the_requirement(cli: Invoke) -> None:
    _setup(cli)
    assert cli("stores", "create", "in-ap", "--name", "Ap", "--region", "ap").exit_code == 0
    result = cli("provision", "in-ap", "--new", "--inline")
    assert result.exit_code == 1
    err = " ".join(result.stderr.split())
    assert "requires region ap" in err
    assert "pg-eu: region eu, the store requires ap" in err
    assert "my-us: not accepting" in err
    assert "tenantry servers add NAME --url URL --region ap" in err
    assert as_json(cli("ops", "list", "--kind", "provision", "--json"))["items"] == []
    scripted = as_json(cli("provision", "in-ap", "--new", "--server", "pg-eu", "--json"))
    assert scripted["error"]["type"] == "Conflict"
    assert "region eu, the store requires ap" in scripted["error"]["message"]


def test_move_and_restore_elsewhere_break_residency_and_are_refused(
    cli: Invoke, server_slug: str
) -> None:
    _setup(cli)
    assert cli("servers", "set", "my-us", "--accepting").exit_code == 0
    assert cli("stores", "create", server_slug, "--name", "Eu", "--region", "eu").exit_code == 0
    provisioned = cli("provision", server_slug, "--new", "--inline", "--json")
    assert provisioned.exit_code == 0, provisioned.output
    moved = cli("stores", "move", server_slug, "--to-server", "my-us", "--yes", "--json")
    assert moved.exit_code == 1
    message = as_json(moved)["error"]["message"]
    assert "server 'my-us'" in message
    assert "region us, the store requires eu" in message
    assert as_json(cli("stores", "show", server_slug, "--json"))["connection"]["server"] == "pg-eu"
    assert as_json(cli("ops", "list", "--kind", "move", "--json"))["items"] == []
    # In the store's region but full: refused as placement would pass it.
    assert cli("servers", "set", "my-us", "--region", "eu", "--max-tenants", "0").exit_code == 0
    full = cli("stores", "move", server_slug, "--to-server", "my-us", "--yes", "--json")
    assert full.exit_code == 1
    assert "full: 0 of 0 stores" in as_json(full)["error"]["message"]
    assert as_json(cli("ops", "list", "--kind", "move", "--json"))["items"] == []
    assert cli("servers", "set", "my-us", "--region", "us", "--max-tenants", "none").exit_code == 0

    backup = cli("backup", "run", "--db", f"store:{server_slug}", "--json")
    assert backup.exit_code == 0, backup.output
    backup_id = as_json(backup)["id"]
    pg_url = SERVER_URLS["postgresql"].rsplit("/", 1)[0]
    elsewhere = {
        f"{SERVER_URLS['mysql'].rsplit('/', 1)[0]}/{server_slug.replace('-', '_')}_x": "my-us",
        f"{pg_url.replace('127.0.0.1', 'localhost')}/t_{server_slug.replace('-', '_')}_x": (
            "no registered server"
        ),
    }
    for target, named in elsewhere.items():
        refused = cli("restore", backup_id, "--target", target, "--dry-run", "--json")
        assert refused.exit_code == 1, refused.output
        error = as_json(refused)["error"]["message"]
        assert named in error
        assert "the store requires" in error
    inside = f"{pg_url}/t_{server_slug.replace('-', '_')}_restored"
    allowed = cli("restore", backup_id, "--target", inside, "--dry-run", "--json")
    assert allowed.exit_code == 0, allowed.output
    # Once the MariaDB server is labelled eu, the store may move there.
    assert cli("servers", "set", "my-us", "--region", "eu").exit_code == 0
    moved = cli("stores", "move", server_slug, "--to-server", "my-us", "--yes", "--json")
    assert moved.exit_code == 0, moved.output
    assert as_json(cli("stores", "show", server_slug, "--json"))["connection"]["server"] == "my-us"
