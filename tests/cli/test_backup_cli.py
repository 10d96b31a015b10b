"""``tenantry backup`` and ``tenantry restore`` as a user runs them, with master and billing
on each backend; artifacts read back with the databases' own tools."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from tests.cli.conftest import Invoke, as_json
from tests.conftest import DbFactory
from tests.pg_roles import PgLogin, unprivileged_login


def _server_env(backend: str, new_database: DbFactory) -> dict[str, str]:
    if backend == "sqlite":
        return {}
    return {
        "DATABASE_URL": new_database("master", create=False).render_as_string(hide_password=False),
        "DATABASE_URL_BILLING": new_database("billing", create=False).render_as_string(
            hide_password=False
        ),
    }


def _readable_by_own_tools(
    backend: str, artifact: Path, tmp_path: Path, new_database: DbFactory
) -> str:
    """What the database's own tools make of the decompressed artifact."""
    raw = tmp_path / "dump"
    with artifact.open("rb") as source, raw.open("wb") as sink:
        zstandard.ZstdDecompressor().copy_stream(source, sink)
    query = "SELECT role FROM tenantry_identity"
    if backend == "postgresql":
        tool = [shutil.which("pg_restore") or "pg_restore", "--list", str(raw)]
    elif backend == "mysql":
        scratch = new_database("client_load")
        client = [shutil.which("mariadb") or "mysql", "-h", str(scratch.host), "-u", "root"]
        with raw.open("rb") as dump:
            subprocess.run([*client, str(scratch.database)], stdin=dump, check=True)
        tool = [*client, "-N", "-e", query, str(scratch.database)]
    else:
        tool = [shutil.which("sqlite3") or "sqlite3", str(raw), query]
    return subprocess.run(tool, capture_output=True, text=True, check=True).stdout


def test_backup_verify_and_restore_from_the_command_line(
    cli: Invoke, backend: str, new_database: DbFactory, tmp_path: Path
) -> None:
    env = _server_env(backend, new_database)
    assert cli("init", env=env).exit_code == 0

    run = cli("backup", "run", "--db", "billing", "--json", env=env)
    assert run.exit_code == 0, run.output
    entry = as_json(run)
    assert entry["status"] == "stored"
    assert Path(entry["location"]).is_file()
    found = _readable_by_own_tools(backend, Path(entry["location"]), tmp_path, new_database)
    assert "billing" in found
    manifest = Path(entry["manifest"]).read_text()
    assert "password" not in manifest
    assert env.get("DATABASE_URL_BILLING", "://") not in manifest

    verified = cli("backup", "verify", entry["id"][:8], "--json", env=env)
    assert verified.exit_code == 0, verified.output
    assert as_json(verified)["passed"] is True
    assert as_json(verified)["rto_met"] is True

    # A billing backup aimed at master is refused, naming both; nothing changes.
    master_url = env.get("DATABASE_URL") or f"sqlite:///{tmp_path / 'data' / 'master.db'}"
    wrong = cli("restore", entry["id"], "--target", master_url, env=env)
    assert wrong.exit_code == 3
    assert "never lands" in wrong.stderr

    # In place: refused without the name, done with it (after a safety backup).
    live = cli("restore", entry["id"], "--in-place", "--json", env=env)
    assert live.exit_code == 2
    assert "--confirm" in as_json(live)["error"]["hint"]
    name = entry["database"]
    done = cli("restore", entry["id"], "--in-place", "--confirm", name, "--json", env=env)
    assert done.exit_code == 0, done.output
    assert as_json(done)["safety_backup"]

    listed = as_json(cli("backup", "list", "--json", env=env))
    reasons = sorted(b["reason"] for b in listed)
    assert reasons == ["manual", "safety"]
    assert [b["pinned"] for b in listed if b["reason"] == "safety"] == [True]


def test_a_damaged_artifact_fails_verification_and_prune_is_a_dry_run(
    cli: Invoke, tmp_path: Path
) -> None:
    assert cli("init").exit_code == 0
    first = as_json(cli("backup", "run", "--db", "master", "--json"))
    second = as_json(cli("backup", "run", "--db", "master", "--json"))
    artifact = Path(second["location"])
    artifact.write_bytes(artifact.read_bytes()[:-20])

    broken = cli("backup", "verify", second["id"])
    assert broken.exit_code == 1
    assert "corrupt" in broken.stderr

    policy = cli("backup", "policy", "set", "master", "--retention-days", "1", "--min-keep", "0")
    assert policy.exit_code == 0
    dry = cli("backup", "prune", "--json")
    assert dry.exit_code == 0
    assert as_json(dry)["dry_run"] is True
    assert Path(first["location"]).is_file()
    bad_cron = cli("backup", "policy", "set", "master", "--schedule", "every day")
    assert bad_cron.exit_code == 2
    assert "cron" in bad_cron.stderr


@pytest.mark.parametrize("flag", ["--backup-first", None])
def test_billing_migrations_take_a_verified_backup_first(
    cli: Invoke, tmp_path: Path, flag: str | None
) -> None:
    assert cli("init").exit_code == 0
    older = f"sqlite:///{tmp_path / 'older_billing.db'}"
    env = {"DATABASE_URL_BILLING": older}
    assert cli("db", "migrate", "--role", "billing", "--to", "0001", env=env).exit_code == 0
    args = ["db", "migrate", "--role", "billing", "--json"] + ([flag] if flag else [])
    migrated = cli(*args, env=env)
    assert migrated.exit_code == 0, migrated.output
    backup_id = as_json(migrated)["backup"]
    assert backup_id  # on by default for billing
    shown = as_json(cli("backup", "show", backup_id, "--json"))
    assert shown["reason"] == "pre-migration"
    assert shown["pinned"] is True
    assert shown["status"] == "verified"
    assert shown["schema_revision"] == "0001"
    # Each migration of billing is an operation: backing up, then migrating, then done.
    ops = as_json(cli("ops", "list", "--kind", "migrate", "--json", env=env))["items"]
    assert [(o["status"], o["progress"]["step"]) for o in ops] == [("succeeded", "done")] * 2
    assert all(o["target"].startswith("billing sqlite") for o in ops)


def test_a_migration_that_fails_is_a_failed_operation_saying_why(
    cli: Invoke, tmp_path: Path
) -> None:
    assert cli("init").exit_code == 0
    env = {"DATABASE_URL_BILLING": f"sqlite:///{tmp_path / 'billing2.db'}"}
    refused = cli("db", "migrate", "--role", "billing", "--to", "no-such-revision", env=env)
    assert refused.exit_code == 1
    (op,) = as_json(cli("ops", "list", "--kind", "migrate", "--json"))["items"]
    assert op["status"] == "failed"
    assert "no-such-revision" in op["error"]


@pytest.fixture
def unprivileged_env() -> Iterator[tuple[dict[str, str], PgLogin]]:
    """Master and billing on PostgreSQL through a login that is not a superuser."""
    with unprivileged_login() as login:
        suffix = login.name[-10:]
        yield (
            {
                "DATABASE_URL": login.url(f"tt_master_{suffix}").render_as_string(False),
                "DATABASE_URL_BILLING": login.url(f"tt_billing_{suffix}").render_as_string(False),
            },
            login,
        )


def test_verify_without_amcheck_privilege_still_restores_and_says_amcheck_was_skipped(
    cli: Invoke, unprivileged_env: tuple[dict[str, str], PgLogin]
) -> None:
    env, login = unprivileged_env
    assert cli("init", env=env).exit_code == 0

    run = cli("backup", "run", "--db", "master", "--db", "billing", "--verify", "--json", env=env)
    assert run.exit_code == 0, run.output
    entries = as_json(run)
    assert [e["scope"] for e in entries] == ["master", "billing"]
    for entry in entries:
        assert entry["status"] == "verified"
        assert entry["verification"]["passed"] is True
        assert "amcheck skipped: permission denied" in entry["verify_notes"]
        assert any(n.startswith("amcheck skipped") for n in entry["verification"]["notes"])
        assert entry["row_counts"]["tenantry_identity"] == 1

    shown = as_json(cli("backup", "show", entries[1]["id"][:8], "--json", env=env))
    assert "amcheck skipped" in shown["verify_notes"]
    table = cli("backup", "run", "--db", "billing", "--verify", env=env)
    assert table.exit_code == 0, table.output
    assert "amcheck skipped" in table.stdout
    assert login.password not in run.output + table.output


def test_one_database_failing_never_stops_the_others(
    cli: Invoke, unprivileged_env: tuple[dict[str, str], PgLogin]
) -> None:
    env, login = unprivileged_env
    assert cli("init", env=env).exit_code == 0
    # A table the backup's login may not read: counting its rows fails with a database
    # error (not one of tenantry's), which used to end the whole run with a traceback.
    master = env["DATABASE_URL"].rsplit("/", 1)[1]
    login.as_admin(
        "CREATE TABLE zz_not_yours (id int); REVOKE ALL ON zz_not_yours FROM PUBLIC", master
    )

    run = cli("backup", "run", "--db", "master", "--db", "billing", "--verify", "--json", env=env)
    assert run.exit_code == 1
    failed, billing = as_json(run)
    assert failed["scope"] == "master"
    assert failed["status"] == "failed"
    assert "permission denied" in failed["error"]
    assert billing["scope"] == "billing"
    assert billing["status"] == "verified"
    assert "Traceback" not in run.output
    assert login.password not in run.output

    listed = as_json(cli("backup", "list", "--json", env=env))
    assert sorted((b["scope"], b["status"]) for b in listed) == [
        ("billing", "verified"),
        ("master", "failed"),
    ]
    shown = cli("backup", "run", "--db", "master", "--db", "billing", env=env)
    assert shown.exit_code == 1
    assert "failed" in shown.stdout
    assert "stored" in shown.stdout
