"""Real worker processes on the embedded (SQLite) queue and on Redis: a worker killed in the
middle of a job, and a new worker that finishes it."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tenantry.cli.main import app
from tests.helpers import start_worker
from tests.platform_fixtures import ENV_VARS

LEASE_S = 0.5


@pytest.fixture(params=["embedded", "redis"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """An environment for a fresh installation on the embedded queue or on Redis."""
    base = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    base["TENANTRY_DATA_DIR"] = str(tmp_path / "data")
    base["TENANTRY_JOB_LEASE_SECONDS"] = str(LEASE_S)
    if request.param == "redis":
        base.update(request.getfixturevalue("redis_queue"))
    return base


def tenantry(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in this process with ``env`` as its whole environment (the workers are the
    separate processes that matter here)."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k not in env}
    result = CliRunner().invoke(app, list(args), env={**unset, **env}, catch_exceptions=False)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def job_state(env: dict[str, str], job_id: str) -> dict[str, object]:
    shown = tenantry(env, "jobs", "show", job_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


def wait_until(predicate: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_killed_worker_job_is_finished_by_the_next_worker(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert tenantry(env, "init").returncode == 0
    assert tenantry(env, "stores", "create", "phoenix", "--name", "Phoenix").returncode == 0
    queued = tenantry(env, "provision", "phoenix", "--new", "--json")
    assert queued.returncode == 0, queued.stderr
    job_id = str(uuid.UUID(json.loads(queued.stdout)["id"]))
    log = tmp_path / "worker.log"

    doomed = start_worker(env, log, TENANTRY_FAILPOINTS="provision.seed=kill")
    assert doomed.wait(timeout=60) == -9  # SIGKILL, mid-job
    state = job_state(env, job_id)
    assert state["status"] == "running"
    assert state["step"] == "seed"

    time.sleep(LEASE_S + 0.2)
    rescuer = start_worker(env, log)
    try:
        wait_until(lambda: job_state(env, job_id)["status"] == "completed", 60)
    finally:
        rescuer.terminate()
        rescuer.wait(timeout=30)
    final = job_state(env, job_id)
    assert final["progress"] == 100
    assert final["attempts"] == 2
    shown = json.loads(tenantry(env, "stores", "show", "phoenix", "--json").stdout)
    assert shown["status"] == "active"
    assert len(list((Path(env["TENANTRY_DATA_DIR"]) / "tenants").glob("phoenix-*.db"))) == 1
