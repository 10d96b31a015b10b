"""`provision --wait` never waits in silence for a worker that does not run."""

from __future__ import annotations

import time
from pathlib import Path

from tenantry.runtime import Platform
from tenantry.services import workers
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json
from tests.helpers import running_worker

WIDE = {"COLUMNS": "300"}


def _alive() -> int:
    platform = Platform.open(load_settings())
    try:
        with platform.sessions() as session:
            return workers.alive_count(session)
    finally:
        platform.close()


def test_wait_without_a_worker_stops_within_5_s_and_leaves_the_job_queued(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "lonely", "--name", "L").exit_code == 0
    started = time.monotonic()
    result = cli("provision", "lonely", "--new", "--wait", "--json")
    assert time.monotonic() - started < 5.5
    assert result.exit_code == 1, result.output
    error = as_json(result)["error"]
    assert error["type"] == "NoWorker"
    assert "queued" in error["message"]
    for way in ("tenantry worker", "tenantry up", "--inline", "--timeout"):
        assert way in error["hint"]
    [job] = as_json(cli("jobs", "list", "--json"))
    assert job["status"] == "queued"
    assert job["id"] in error["message"]

    human = cli("provision", "lonely-2", "--new", "--wait", env=WIDE)
    assert human.exit_code == 1  # no such store: still a clear error, not a wait
    assert cli("stores", "create", "lonely-2", "--name", "L").exit_code == 0
    human = cli("provision", "lonely-2", "--new", "--wait", env=WIDE)
    assert human.exit_code == 1
    assert "no job worker is running" in human.stderr
    assert "tenantry worker" in human.stderr


def test_an_explicit_timeout_waits_for_a_worker_then_fails(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "patient", "--name", "P").exit_code == 0
    started = time.monotonic()
    result = cli("provision", "patient", "--new", "--wait", "--timeout", "6", env=WIDE)
    assert time.monotonic() - started >= 6
    assert result.exit_code == 1
    assert "no job worker is running yet" in result.stderr
    assert "timed out" in result.stderr
    assert as_json(cli("jobs", "list", "--json"))[0]["status"] == "queued"


def test_queueing_without_wait_says_no_worker_runs(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    created = cli("stores", "create", "later-on", "--name", "L", env=WIDE)
    assert "--inline" in created.stdout  # the suggestion works without a worker
    queued = cli("provision", "later-on", "--new", env=WIDE)
    assert queued.exit_code == 0
    assert "no job worker is running" in queued.stderr


def test_wait_with_a_worker_running_completes(cli: Invoke, tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "served", "--name", "S").exit_code == 0
    with running_worker(tmp_path / "worker.log") as worker:
        deadline = time.monotonic() + 60
        while _alive() == 0:  # its first beat is recorded before it takes jobs
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        result = cli("provision", "served", "--new", "--wait", "--json")
        assert result.exit_code == 0, result.output
        assert as_json(result)["status"] == "completed"
    assert _alive() == 0  # a worker that stopped cleanly is not taken for alive
