"""``tenantry restore --in-place`` of master itself, on SQLite, PostgreSQL and MariaDB.

Master holds the backup catalog: restoring an older master backup must not forget the
backups taken since (they are merged back), and every backup keeps the state the catalog
knew last (the restored backup itself was ``running`` when its own dump was taken; a backup
verified later stays verified), so each one can still be restored.
"""

from __future__ import annotations

from typing import Any

from tests.cli.conftest import Invoke, as_json
from tests.cli.test_backup_cli import _server_env
from tests.conftest import DbFactory


def _catalog(cli: Invoke, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    listed = cli("backup", "list", "--json", env=env)
    assert listed.exit_code == 0, listed.output
    return {b["id"]: b for b in as_json(listed)}


def _slugs(cli: Invoke, env: dict[str, str]) -> list[str]:
    listed = cli("stores", "list", "--json", env=env)
    assert listed.exit_code == 0, listed.output
    return sorted(s["slug"] for s in as_json(listed)["items"])


def test_restoring_master_in_place_keeps_the_backups_taken_since(
    cli: Invoke, backend: str, new_database: DbFactory
) -> None:
    env = _server_env(backend, new_database)
    assert cli("init", env=env).exit_code == 0
    first = as_json(cli("backup", "run", "--db", "master", "--json", env=env))
    assert first["status"] == "stored"
    # After the first backup: a store, a billing backup and a second master backup, verified.
    assert cli("stores", "create", "late", "--name", "Late", env=env).exit_code == 0
    billing = as_json(cli("backup", "run", "--db", "billing", "--json", env=env))
    second = as_json(cli("backup", "run", "--db", "master", "--json", env=env))
    verified = cli("backup", "verify", second["id"], "--json", env=env)
    assert verified.exit_code == 0, verified.output
    assert _slugs(cli, env) == ["late"]

    done = cli(
        "restore", first["id"], "--in-place", "--confirm", first["database"], "--json", env=env
    )

    assert done.exit_code == 0, done.output
    safety = as_json(done)["safety_backup"]
    assert _slugs(cli, env) == []  # master holds what it held at the first backup
    catalog = _catalog(cli, env)
    assert set(catalog) == {first["id"], billing["id"], second["id"], safety}
    # Each backup as the catalog knew it last, not as the restored (older) master had it.
    assert catalog[first["id"]]["status"] == "stored"
    assert catalog[billing["id"]]["status"] == "stored"
    assert catalog[second["id"]]["status"] == "verified"
    assert catalog[safety]["status"] == "stored"
    assert catalog[safety]["pinned"] is True

    # The second backup, taken after the first, can still be restored: the store comes back.
    again = cli(
        "restore", second["id"], "--in-place", "--confirm", second["database"], "--json", env=env
    )
    assert again.exit_code == 0, again.output
    assert _slugs(cli, env) == ["late"]
    assert {first["id"], billing["id"], second["id"], safety} <= set(_catalog(cli, env))
    # And so can the first again (it is a good backup, not a "running" one).
    dry = cli("restore", first["id"], "--in-place", "--dry-run", "--json", env=env)
    assert dry.exit_code == 0, dry.output
