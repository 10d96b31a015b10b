"""`tenantry provision`, `jobs`, `servers`, `worker` and `up` against real databases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tenantry.db.admin import database_exists
from tenantry.db.urls import parse_url
from tests.cli.conftest import Invoke, as_json
from tests.conftest import SERVER_URLS, DbFactory, require_server
from tests.helpers import free_port, running_worker, stop_process, wait_for_output

JOB_FIELDS = {
    "id",
    "store_id",
    "mode",
    "status",
    "step",
    "progress",
    "message",
    "tables_created",
    "total_tables",
    "error",
    "attempts",
    "created_at",
    "started_at",
    "finished_at",
}


def _slug(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def _admin_url(backend: str) -> str:
    raw = SERVER_URLS[backend]
    # MySQL servers are registered without a database, as users write them.
    return raw.rsplit("/", 1)[0] if backend == "mysql" and raw.count("/") > 2 else raw


def test_provision_new_inline_on_sqlite(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "embedded", "--name", "Embedded").exit_code == 0
    result = cli("provision", "embedded", "--new", "--inline", "--wait")
    assert result.exit_code == 0, result.output
    assert "100%" in result.stdout
    doc = as_json(cli("stores", "show", "embedded", "--json"))
    assert doc["status"] == "active"

    jobs = as_json(cli("jobs", "list", "--store", "embedded", "--json"))
    assert len(jobs) == 1
    assert jobs[0]["status"] == "completed"
    shown = as_json(cli("jobs", "show", jobs[0]["id"], "--json"))
    assert set(shown) >= JOB_FIELDS
    assert "target" not in shown
    assert "secret_encrypted" not in shown
    assert shown["tables_created"] == shown["total_tables"] > 0

    twice = cli("provision", "embedded", "--new", "--inline", "--wait")
    assert twice.exit_code == 1
    assert "provisioned already" in twice.stderr


def test_provision_connect_existing_database(
    cli: Invoke, new_database: DbFactory, backend: str
) -> None:
    assert cli("init").exit_code == 0
    url = new_database("tenant")
    slug = _slug("conn")
    assert cli("stores", "create", slug, "--name", "Connected").exit_code == 0
    result = cli(
        "provision",
        slug,
        "--connect",
        url.render_as_string(hide_password=False),
        "--inline",
        "--wait",
        "--json",
    )
    assert result.exit_code == 0, result.output
    job = as_json(result)
    assert set(job) == JOB_FIELDS
    assert job["status"] == "completed"
    assert job["mode"] == "connect_existing"
    assert job["progress"] == 100
    assert job["tables_created"] == job["total_tables"] > 0

    doc = as_json(cli("stores", "show", slug, "--json"))
    assert doc["status"] == "active"
    assert doc["database_type"] == backend
    assert doc["connection"]["created_by_tenantry"] is False
    assert "password" not in doc["connection"]["config_data"]

    # A database tenantry did not create is never dropped.
    refused = cli("stores", "delete", slug, "--drop-database", "--yes")
    assert refused.exit_code == 1
    assert "never drops it" in refused.stderr
    assert cli("stores", "show", slug).exit_code == 0
    assert cli("stores", "delete", slug, "--yes").exit_code == 0
    assert database_exists(url)


def test_failed_connect_reports_the_error_without_the_password(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "nowhere", "--name", "Nowhere").exit_code == 0
    url = "postgresql://shop:hunter2@127.0.0.1:1/shop"
    result = cli("provision", "nowhere", "--connect", url, "--inline", "--wait", "--json")
    assert result.exit_code == 1
    job = as_json(result)
    assert job["status"] == "failed"
    assert "cannot connect" in job["error"]
    assert "hunter2" not in result.output

    human = cli("stores", "create", "nowhere-2", "--name", "N")
    assert human.exit_code == 0
    shown = cli("provision", "nowhere-2", "--connect", url, "--inline", "--wait")
    assert shown.exit_code == 1
    assert "cannot connect" in shown.stderr
    assert "hunter2" not in shown.output
    assert as_json(cli("stores", "show", "nowhere", "--json"))["status"] == "failed"


def test_provision_usage_errors(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "usage", "--name", "U").exit_code == 0
    neither = cli("provision", "usage")
    assert neither.exit_code == 2
    assert "--new" in neither.stderr
    both = cli("provision", "usage", "--new", "--connect", "sqlite:///x.db", "--json")
    assert both.exit_code == 2
    assert as_json(both)["error"]["type"] == "InvalidInput"
    assert cli("provision", "usage", "--server", "pg").exit_code == 2
    unknown_server = cli("provision", "usage", "--new", "--server", "nope")
    assert unknown_server.exit_code == 1
    assert "no database server 'nope'" in unknown_server.stderr
    assert cli("provision", "no-such-store", "--new").exit_code == 1
    assert as_json(cli("jobs", "list", "--json")) == []


def test_queued_job_can_be_cancelled(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "later", "--name", "Later").exit_code == 0
    queued = cli("provision", "later", "--new", "--json")
    assert queued.exit_code == 0, queued.output
    job = as_json(queued)
    assert job["status"] == "queued"
    assert as_json(cli("stores", "show", "later", "--json"))["status"] == "provisioning"

    listed = as_json(cli("jobs", "list", "--status", "queued", "--json"))
    assert [j["id"] for j in listed] == [job["id"]]

    cancelled = cli("jobs", "cancel", job["id"], "--json")
    assert cancelled.exit_code == 0, cancelled.output
    assert as_json(cancelled)["status"] == "cancelled"
    assert as_json(cli("stores", "show", "later", "--json"))["status"] == "failed"
    again = cli("jobs", "cancel", job["id"])
    assert again.exit_code == 1
    assert "only queued or running jobs" in again.stderr
    assert cli("jobs", "show", "not-a-job").exit_code == 1


@pytest.mark.server
@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_servers_add_and_provision_on_them(cli: Invoke, backend: str, server_slug: str) -> None:
    require_server(backend)
    assert cli("init").exit_code == 0
    added = cli("servers", "add", "main-db", "--url", _admin_url(backend), "--json")
    assert added.exit_code == 0, added.output
    server = as_json(added)
    assert server["engine"] == backend
    assert server["check"]["ok"] is True
    assert server["check"]["can_create_databases"] is True
    assert server["check"]["can_create_logins"] is True

    listed = as_json(cli("servers", "list", "--json"))
    assert [s["name"] for s in listed] == ["main-db"]
    assert cli("servers", "check", "main-db").exit_code == 0
    duplicate = cli("servers", "add", "main-db", "--url", _admin_url(backend))
    assert duplicate.exit_code == 1

    assert cli("stores", "create", server_slug, "--name", "On a server").exit_code == 0
    result = cli("provision", server_slug, "--new", "--server", "main-db", "--inline", "--wait")
    assert result.exit_code == 0, result.output
    doc = as_json(cli("stores", "show", server_slug, "--json"))
    assert doc["status"] == "active"
    assert doc["database_type"] == backend
    assert doc["connection"]["server"] == "main-db"
    assert doc["connection"]["created_by_tenantry"] is True
    name = doc["connection"]["config_data"]["database"]
    db_url = parse_url(SERVER_URLS[backend]).set(database=name)
    assert database_exists(db_url)

    deleted = cli("stores", "delete", server_slug, "--drop-database", "--yes", "--json")
    assert deleted.exit_code == 0, deleted.output
    assert as_json(deleted)["database_dropped"] is True
    assert not database_exists(db_url)


def test_unreachable_server_is_not_saved(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    result = cli("servers", "add", "ghost", "--url", "postgresql://admin:hunter2@127.0.0.1:1/pg")
    assert result.exit_code == 2
    assert "was not saved" in result.stderr
    assert "hunter2" not in result.output
    assert as_json(cli("servers", "list", "--json")) == []
    assert cli("servers", "check", "ghost").exit_code == 1
    sqlite = cli("servers", "add", "lite", "--url", "sqlite:///x.db")
    assert sqlite.exit_code == 2


def test_worker_runs_queued_jobs(cli: Invoke, tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "by-worker", "--name", "W").exit_code == 0
    with running_worker(tmp_path / "worker.log"):
        result = cli("provision", "by-worker", "--new", "--wait", "--timeout", "60", "--json")
        assert result.exit_code == 0, result.output
        assert as_json(result)["status"] == "completed"
        assert as_json(cli("stores", "show", "by-worker", "--json"))["status"] == "active"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_serves_the_api_with_a_worker_and_stops_both(cli: Invoke, tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "up.log"
    with out.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "tenantry", "up", "--port", str(port), "--workers", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
        try:
            text_out = wait_for_output(out, "Application startup complete", up, 60)
            key_lines = [ln for ln in text_out.splitlines() if "admin API key (shown once)" in ln]
            assert len(key_lines) == 1
            key = key_lines[0].rsplit(" ", 1)[1]
            assert key.startswith("tnt_")
            assert f"http://127.0.0.1:{port}/docs" in text_out
            worker_pid = int(text_out.split("worker: pid ", 1)[1].split(",", 1)[0])

            base = f"http://127.0.0.1:{port}"
            assert httpx.get(f"{base}/health").json()["status"] == "ok"
            made = httpx.post(
                f"{base}/stores",
                json={"slug": "via-api", "name": "API"},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert made.status_code == 201, made.text
            result = cli("provision", "via-api", "--new", "--wait", "--timeout", "60")
            assert result.exit_code == 0, result.output

            up.send_signal(signal.SIGTERM)
            assert up.wait(timeout=30) == 0
            deadline = time.monotonic() + 10
            while _alive(worker_pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not _alive(worker_pid)
        finally:
            stop_process(up)

    # The admin key `up` created is listed (never its secret).
    listed = cli("apikeys", "list", "--json")
    assert [k["scope"] for k in as_json(listed)] == ["admin"]
    assert key not in listed.output
