"""Cancelling a provisioning job while a real worker process is in the middle of it.

The worker is slowed at ``provision.seed`` (a ``sleep`` fail point), after it made the store's
database; ``tenantry jobs cancel`` then lands while the job is running. The job ends
``cancelled`` and stays so, the worker stops working on it (it saves no connection and logs
the job as cancelled) and keeps running, the half-made database is dropped from the server,
and the same store is provisioned again by the same worker.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tenantry.cli.main import app
from tenantry.db.admin import drop_database
from tenantry.db.master.models import IntegrationConfig
from tenantry.db.urls import parse_url
from tenantry.runtime import Platform
from tenantry.services import provisioning, servers, stores
from tests.conftest import SERVER_URLS, server_has_database
from tests.helpers import running_worker
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]

# Long enough for `tenantry jobs cancel` to land during the pause.
PAUSE_S = 2


def tenantry(*args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, in this process, on the test's data dir (the settings fixture put it in
    the env); the worker is the separate process that matters here."""
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def wait_for(what: str, predicate: Callable[[], bool], seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {seconds} s: {what}; worker: {log.read_text()}")
        time.sleep(0.1)


def test_cancel_running_job_stops_worker_and_drops_its_database(
    platform: Platform, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slug = f"c-{uuid.uuid4().hex[:8]}"
    with platform.sessions.begin() as session:
        store = stores.create_store(session, slug=slug, name="Cancelled", actor="cli:test")
        if backend != "sqlite":
            servers.add_server(
                session,
                platform.box,
                name=backend,
                admin_url=SERVER_URLS[backend],
                actor="cli:test",
            )
        name = provisioning.tenant_database_name(store)
        path = provisioning.tenant_sqlite_path(platform.settings, store)
    where = [] if backend == "sqlite" else ["--server", backend]

    def database_exists() -> bool:
        return path.exists() if backend == "sqlite" else server_has_database(backend, name)

    def job(job_id: str) -> dict[str, object]:
        shown = tenantry("jobs", "show", job_id, "--json")
        assert shown.returncode == 0, shown.stderr
        return dict(json.loads(shown.stdout))

    def current(job_id: str) -> tuple[str, str | None]:
        with platform.sessions() as session:
            row = provisioning.get_job(session, job_id)
            return str(row.status), row.step

    monkeypatch.setenv("TENANTRY_FAILPOINTS", f"provision.seed=sleep:{PAUSE_S}")
    log = tmp_path / "worker.log"
    try:
        with running_worker(log) as worker:
            queued = tenantry("provision", slug, "--new", *where, "--json")
            assert queued.returncode == 0, queued.stderr
            job_id = json.loads(queued.stdout)["id"]
            # A SQLite job is at the seed step from its claim on (its file is made stamped
            # and seeded in one go); the pause comes once the file is in place.
            wait_for(
                "the worker paused in the seed step, its database made",
                lambda: current(job_id) == ("running", "seed") and database_exists(),
                60,
                log,
            )

            cancelled = tenantry("jobs", "cancel", job_id, "--json")
            assert cancelled.returncode == 0, cancelled.stderr  # refused unless still active
            assert json.loads(cancelled.stdout)["status"] == "cancelled"

            wait_for(
                "the worker logged the job as cancelled",
                lambda: f"provisioning job {job_id}: cancelled" in log.read_text(),
                PAUSE_S + 30,
                log,
            )
            assert not database_exists()
            assert worker.poll() is None  # the worker goes on serving other jobs
            final = job(job_id)
            assert final["status"] == "cancelled"
            assert final["step"] == "seed"  # it never got to save the connection
            with platform.sessions() as session:
                store = stores.get_store(session, slug)
                assert store.database_status == "failed"
                configs = session.scalars(
                    select(IntegrationConfig).where(IntegrationConfig.store_id == store.id)
                ).all()
                assert configs == []

            again = tenantry(
                "provision", slug, "--new", *where, "--wait", "--timeout", "90", "--json"
            )
            assert again.returncode == 0, (again.stdout, again.stderr)
            assert json.loads(again.stdout)["status"] == "completed"
        assert database_exists()
        with platform.sessions() as session:
            assert stores.get_store(session, slug).database_status == "active"
    finally:
        if backend != "sqlite":
            drop_database(parse_url(SERVER_URLS[backend]).set(database=name))
