"""Real worker processes on the embedded (SQLite) queue and on Redis: a worker killed in the
middle of a job, and a new worker that finishes it."""

from __future__ import annotations

import json
import os
import re
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


def _job_killed_mid_seed(env: dict[str, str], log: Path) -> str:
    """A provisioning job whose worker was killed (SIGKILL) at its seed step; its id."""
    assert tenantry(env, "init").returncode == 0
    assert tenantry(env, "stores", "create", "phoenix", "--name", "Phoenix").returncode == 0
    queued = tenantry(env, "provision", "phoenix", "--new", "--json")
    assert queued.returncode == 0, queued.stderr
    job_id = str(uuid.UUID(json.loads(queued.stdout)["id"]))
    doomed = start_worker(env, log, TENANTRY_FAILPOINTS="provision.seed=kill")
    assert doomed.wait(timeout=60) == -9  # SIGKILL, mid-job
    state = job_state(env, job_id)
    assert state["status"] == "running"
    assert state["step"] == "seed"
    return job_id


def _finished_by_a_new_worker(env: dict[str, str], log: Path, job_id: str) -> None:
    """A new worker completes the job, resumed once, and the store is active with one file."""
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


def test_killed_worker_job_is_finished_by_the_next_worker(
    env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    job_id = _job_killed_mid_seed(env, log)
    time.sleep(LEASE_S + 0.2)
    _finished_by_a_new_worker(env, log, job_id)


def test_a_worker_started_right_after_a_kill_resumes_the_job_without_waiting_out_its_lease(
    env: dict[str, str], tmp_path: Path
) -> None:
    # The killed worker ran on this host: the new one sees its pid is gone and takes the job
    # over as it starts, although the lease has ten minutes to run (and the queue's message
    # went with the killed worker: only the start-up sweep can find the job).
    env = {**env, "TENANTRY_JOB_LEASE_SECONDS": "600"}
    log = tmp_path / "worker.log"
    job_id = _job_killed_mid_seed(env, log)
    _finished_by_a_new_worker(env, log, job_id)
    # Its lease, and any lock the killed worker's scheduler held at that moment.
    assert re.search(
        r"ended \d+ lease\(s\) and lock\(s\) of processes of this host", log.read_text()
    )
