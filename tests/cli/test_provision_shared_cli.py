"""`tenantry provision SLUG --new --shared SERVER[/DATABASE]` as a user runs it, then
`stores delete --drop-database`; MariaDB and misuse refused with nothing recorded."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from tenantry.db.admin import database_exists, drop_database
from tenantry.db.engines import make_engine
from tenantry.db.shared_schemas import pool_login
from tenantry.db.urls import parse_url
from tests.cli.conftest import Invoke, as_json, process_env
from tests.conftest import require_server
from tests.services.test_moves import admin_url


def _drop(database: str) -> None:
    admin = parse_url(admin_url("postgresql"))
    drop_database(admin.set(database=database))
    engine = make_engine(admin.set(database="postgres"), pooled=False)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'DROP ROLE IF EXISTS "{pool_login(database)}"'))
    finally:
        engine.dispose()


def test_provision_shared_then_delete(cli: Invoke) -> None:
    require_server("postgresql")
    database = f"tsh_{uuid.uuid4().hex[:10]}"
    slug = f"cli-sh-{uuid.uuid4().hex[:6]}"
    assert cli("init").exit_code == 0
    assert cli("servers", "add", "pg", "--url", admin_url("postgresql")).exit_code == 0
    assert cli("stores", "create", slug, "--name", "Shared").exit_code == 0
    try:
        result = cli("provision", slug, "--new", "--shared", f"pg/{database}", "--json")
        assert result.exit_code == 0, result.output
        doc = as_json(result)
        assert doc["status"] == "completed"
        assert doc["database"] == database
        assert doc["schema"].startswith("t_cli_sh_")
        shown = as_json(cli("stores", "show", slug, "--json"))
        assert shown["status"] == "active"
        assert shown["connection"]["schema"] == doc["schema"]
        assert "password" not in shown["connection"]["config_data"]
        again = cli("provision", slug, "--new", "--shared", f"pg/{database}")
        assert again.exit_code != 0
        assert "provisioned already" in again.output
        asked = cli("stores", "delete", slug, "--drop-database", input="n\n")
        # The question says what goes: the schema, not the database it shares.
        assert f"DROP its schema {doc['schema']} of shared database" in asked.output
        deleted = cli("stores", "delete", slug, "--drop-database", "--yes", "--json")
        assert deleted.exit_code == 0, deleted.output
        assert as_json(deleted)["database_dropped"] is True
        assert as_json(deleted)["schema"] == doc["schema"]
        # The shared database stays (other stores may live there); the schema went.
        admin = parse_url(admin_url("postgresql")).set(database=database)
        assert database_exists(admin)
        engine = make_engine(admin, pooled=False)
        try:
            with engine.connect() as conn:
                found = conn.execute(
                    text("SELECT 1 FROM pg_namespace WHERE nspname = :n"), {"n": doc["schema"]}
                ).first()
        finally:
            engine.dispose()
        assert found is None
    finally:
        _drop(database)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shared", "pg"], "goes with --new"),
        (["--new", "--server", "pg", "--shared", "pg"], "goes with --new alone"),
        (["--new", "--shared", "nowhere"], "nowhere"),
    ],
)
def test_misuse_is_refused(cli: Invoke, args: list[str], message: str) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "lonely", "--name", "Lonely").exit_code == 0
    result = cli("provision", "lonely", *args)
    assert result.exit_code != 0
    assert message in result.output
    assert as_json(cli("stores", "show", "lonely", "--json"))["status"] == "pending"


def test_mariadb_is_refused(cli: Invoke) -> None:
    require_server("mysql")
    assert cli("init").exit_code == 0
    url = admin_url("mysql")
    assert cli("servers", "add", "maria", "--url", url).exit_code == 0
    assert cli("stores", "create", "on-maria", "--name", "M").exit_code == 0
    result = cli("provision", "on-maria", "--new", "--shared", "maria")
    assert result.exit_code != 0
    assert "PostgreSQL only" in result.output
    assert as_json(cli("stores", "show", "on-maria", "--json"))["status"] == "pending"


def test_queued_for_a_worker_then_listed_and_run(cli: Invoke) -> None:
    """--queue records the job for a worker; it is a provisioning job and an operation like
    any other, a second request meanwhile is refused, and a worker runs it."""
    from tenantry.operations import work
    from tenantry.runtime import Platform
    from tenantry.settings import load_settings

    require_server("postgresql")
    database = f"tsh_{uuid.uuid4().hex[:10]}"
    assert cli("init").exit_code == 0
    assert cli("servers", "add", "pg", "--url", admin_url("postgresql")).exit_code == 0
    assert cli("stores", "create", "queued-sh", "--name", "Q").exit_code == 0
    try:
        queued = cli(
            "provision", "queued-sh", "--new", "--shared", f"pg/{database}", "--queue", "--json"
        )
        assert queued.exit_code == 0, queued.output
        job = as_json(queued)
        assert (job["status"], job["mode"], job["schema"]) == (
            "queued",
            "create_shared",
            job["schema"],
        )
        listed = as_json(cli("jobs", "list", "--json"))
        assert job["id"] in [j["id"] for j in listed]
        ops = as_json(cli("ops", "list", "--kind", "provision", "--json"))["items"]
        assert [o["id"] for o in ops] == [job["id"]]
        again = cli("provision", "queued-sh", "--new", "--shared", f"pg/{database}")
        assert again.exit_code != 0
        assert f"already has provisioning job {job['id']}" in again.output
        platform = Platform.open(load_settings())
        try:
            assert work.run_provision(platform, uuid.UUID(job["id"])) == "completed"
        finally:
            platform.close()
        shown = as_json(cli("jobs", "show", job["id"], "--json"))
        assert (shown["status"], shown["progress"]) == ("completed", 100)
        assert as_json(cli("stores", "show", "queued-sh", "--json"))["status"] == "active"
        assert cli("stores", "delete", "queued-sh", "--drop-database", "--yes").exit_code == 0
    finally:
        _drop(database)


def test_killed_then_run_again(cli: Invoke, tmp_path: Path) -> None:
    """`tenantry provision --shared` killed with SIGKILL mid-way; the same command again
    resumes the job at once (its process is gone) and completes it: one schema."""
    require_server("postgresql")
    database = f"tsh_{uuid.uuid4().hex[:10]}"
    assert cli("init").exit_code == 0
    assert cli("servers", "add", "pg", "--url", admin_url("postgresql")).exit_code == 0
    assert cli("stores", "create", "killed-sh", "--name", "K").exit_code == 0
    command = ["provision", "killed-sh", "--new", "--shared", f"pg/{database}"]
    try:
        env = process_env(tmp_path / "data", TENANTRY_FAILPOINTS="provision.migrate=kill")
        killed = subprocess.run(
            [sys.executable, "-m", "tenantry", *command],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        (job,) = as_json(cli("jobs", "list", "--json"))
        assert (job["status"], job["step"]) == ("running", "migrate")
        again = cli(*command, "--json")
        assert again.exit_code == 0, again.output
        doc = as_json(again)
        assert (doc["id"], doc["status"], doc["attempts"]) == (job["id"], "completed", 2)
        admin = parse_url(admin_url("postgresql")).set(database=database)
        engine = make_engine(admin, pooled=False)
        try:
            with engine.connect() as conn:
                schemas = conn.execute(
                    text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 't_killed_sh_%'")
                ).all()
        finally:
            engine.dispose()
        assert [s[0] for s in schemas] == [doc["schema"]]
        assert cli("stores", "delete", "killed-sh", "--drop-database", "--yes").exit_code == 0
    finally:
        _drop(database)


def _rows(database: str, schema: str) -> list[str]:
    admin = parse_url(admin_url("postgresql")).set(database=database)
    engine = make_engine(admin, pooled=False)
    try:
        with engine.connect() as conn:
            return sorted(
                str(r[0]) for r in conn.execute(text(f'SELECT sku FROM "{schema}".products'))
            )
    finally:
        engine.dispose()


def test_restore_in_place_of_a_shared_schema_store(cli: Invoke) -> None:
    """`tenantry restore ID --in-place` of a shared-schema store: its rows as backed up, its
    neighbour's as they are."""
    require_server("postgresql")
    database = f"tsh_{uuid.uuid4().hex[:10]}"
    assert cli("init").exit_code == 0
    assert cli("servers", "add", "pg", "--url", admin_url("postgresql")).exit_code == 0
    schemas = {}
    try:
        for slug in ("rs-mine", "rs-other"):
            assert cli("stores", "create", slug, "--name", slug).exit_code == 0
            made = cli("provision", slug, "--new", "--shared", f"pg/{database}", "--json")
            assert made.exit_code == 0, made.output
            schemas[slug] = as_json(made)["schema"]
        mine, other = schemas["rs-mine"], schemas["rs-other"]
        from tenantry.runtime import Platform
        from tenantry.settings import load_settings
        from tests.services.backups.test_shared_schema_backups import add

        platform = Platform.open(load_settings())
        try:
            add(platform, "rs-mine", "KEPT-1")
            add(platform, "rs-other", "NEIGHBOUR-1")
            taken = cli("backup", "run", "--db", "store:rs-mine", "--json")
            assert taken.exit_code == 0, taken.output
            backup_id = as_json(taken)["id"]
            add(platform, "rs-mine", "LATER-1")
            add(platform, "rs-other", "NEIGHBOUR-2")
        finally:
            platform.close()
        refused = cli("restore", backup_id, "--in-place", "--json")
        assert refused.exit_code != 0
        assert f"--confirm {mine}" in refused.output
        done = cli("restore", backup_id, "--in-place", "--confirm", mine, "--json")
        assert done.exit_code == 0, done.output
        doc = as_json(done)
        assert doc["restored"] is True
        assert "staging schema" in doc["plan"]["method"]
        assert _rows(database, mine) == ["KEPT-1"]
        assert _rows(database, other) == ["NEIGHBOUR-1", "NEIGHBOUR-2"]
        ops = as_json(cli("ops", "list", "--kind", "restore", "--json"))["items"]
        assert [o["status"] for o in ops] == ["succeeded"]
        for slug in schemas:
            assert cli("stores", "delete", slug, "--drop-database", "--yes").exit_code == 0
    finally:
        _drop(database)
