"""`tenantry stores` on the embedded default (SQLite master and tenant databases)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tenantry.jobs.queue import Queue
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json, process_env


def test_store_lifecycle(cli: Invoke, tmp_path: Path) -> None:
    assert cli("init").exit_code == 0

    created = cli("stores", "create", "corner-shop", "--name", "Corner Shop", "--json")
    assert created.exit_code == 0, created.output
    doc = as_json(created)
    assert doc["slug"] == "corner-shop"
    assert doc["status"] == "pending"
    assert doc["plan"] == "free"
    assert doc["connection"] is None

    listed = as_json(cli("stores", "list", "--json"))
    assert [s["slug"] for s in listed["items"]] == ["corner-shop"]
    assert listed["total"] == 1
    assert as_json(cli("stores", "list", "--status", "pending", "--json"))["total"] == 1
    assert as_json(cli("stores", "list", "--status", "active", "--json"))["items"] == []

    updated = cli(
        "stores",
        "update",
        "corner-shop",
        "--name",
        "The Corner Shop",
        "--plan",
        "starter",
        "--published",
        "--json",
    )
    assert updated.exit_code == 0, updated.output
    doc = as_json(updated)
    assert (doc["name"], doc["plan"], doc["is_published"]) == ("The Corner Shop", "starter", True)
    assert doc["subscription"]["max_products"] == 1000

    not_yet = cli("stores", "suspend", "corner-shop")
    assert not_yet.exit_code == 1
    assert "only an active store can be suspended" in not_yet.stderr

    provisioned = cli("provision", "corner-shop", "--new", "--inline", "--wait")
    assert provisioned.exit_code == 0, provisioned.output
    assert "provisioned" in provisioned.stdout

    shown = cli("stores", "show", "corner-shop", "--json")
    assert shown.exit_code == 0, shown.output
    doc = as_json(shown)
    assert doc["status"] == "active"
    assert doc["database_status"] == "active"
    assert doc["database_type"] == "sqlite"
    assert doc["connection"]["created_by_tenantry"] is True
    db_file = Path(doc["connection"]["config_data"]["path"])
    assert db_file.is_file()
    assert db_file.is_relative_to(tmp_path / "data")
    assert doc["counts"] == {
        "products": 0,
        "orders": 0,
        "api_calls_month": 0,
        "storage_used_bytes": 0,
    }
    human = cli("stores", "show", "corner-shop")
    assert human.exit_code == 0
    assert "active" in human.stdout

    suspended = cli("stores", "suspend", "corner-shop", "--reason", "unpaid", "--json")
    assert suspended.exit_code == 0, suspended.output
    assert as_json(suspended)["status"] == "suspended"
    only = as_json(cli("stores", "list", "--status", "suspended", "--json"))
    assert [s["slug"] for s in only["items"]] == ["corner-shop"]
    resumed = cli("stores", "resume", "corner-shop", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert as_json(resumed)["status"] == "active"

    # Not confirmed (no input): nothing changes.
    kept = cli("stores", "delete", "corner-shop", "--drop-database")
    assert kept.exit_code == 1
    assert "nothing was changed" in kept.stderr
    assert db_file.is_file()
    assert cli("stores", "show", "corner-shop").exit_code == 0

    deleted = cli("stores", "delete", "corner-shop", "--drop-database", "--yes", "--json")
    assert deleted.exit_code == 0, deleted.output
    report = as_json(deleted)
    assert report["deleted"] == "corner-shop"
    assert report["database_dropped"] is True
    assert not db_file.exists()

    # The deletion is an operation, listed with the others after its store is gone.
    ops = as_json(cli("ops", "list", "--kind", "store_delete", "--json"))
    assert [(o["target"], o["status"]) for o in ops["items"]] == [("corner-shop", "succeeded")]
    progress = ops["items"][0]["progress"]
    assert (progress["current"], progress["total"], progress["unit"]) == (1, 1, "databases")

    gone = cli("stores", "show", "corner-shop", "--json")
    assert gone.exit_code == 1
    assert as_json(gone)["error"]["type"] == "NotFound"
    assert as_json(cli("stores", "list", "--json"))["total"] == 0


def test_delete_without_drop_keeps_the_database(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "keep-me", "--name", "Keep").exit_code == 0
    assert cli("provision", "keep-me", "--new", "--inline", "--wait").exit_code == 0
    path = Path(
        as_json(cli("stores", "show", "keep-me", "--json"))["connection"]["config_data"]["path"]
    )
    deleted = cli("stores", "delete", "keep-me", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "left as it is" in deleted.stdout
    assert path.is_file()
    path.unlink()


def test_bad_slug_duplicate_and_unknown_plan_are_refused(cli: Invoke) -> None:
    assert cli("init").exit_code == 0

    bad = cli("stores", "create", "Bad_Slug", "--name", "Bad")
    assert bad.exit_code == 2
    assert "invalid store slug 'Bad_Slug'" in bad.stderr
    assert "Traceback" not in bad.output

    bad_json = cli("stores", "create", "-x", "--name", "Bad", "--json")
    assert bad_json.exit_code != 0
    bad_doc = cli("stores", "create", "ab--cd", "--name", "Bad", "--json")
    assert bad_doc.exit_code == 2
    assert as_json(bad_doc)["error"]["type"] == "InvalidInput"

    assert cli("stores", "create", "twice", "--name", "One").exit_code == 0
    again = cli("stores", "create", "twice", "--name", "Two", "--json")
    assert again.exit_code == 1
    error = as_json(again)["error"]
    assert error["type"] == "Conflict"
    assert "exists already" in error["message"]

    plan = cli("stores", "create", "priced", "--name", "P", "--plan", "platinum")
    assert plan.exit_code == 2
    assert "unknown plan 'platinum'" in plan.stderr
    assert as_json(cli("stores", "list", "--json"))["total"] == 1


def test_commands_before_init_say_what_to_do(cli: Invoke) -> None:
    result = cli("stores", "list", "--json")
    assert result.exit_code == 2
    error = as_json(result)["error"]
    assert "does not exist" in error["message"]
    assert "tenantry init" in error["hint"]


def test_a_delete_whose_process_died_shows_stalled_then_is_ended_and_can_be_run_again(
    cli: Invoke, tmp_path: Path
) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "doomed", "--name", "Doomed").exit_code == 0
    assert cli("provision", "doomed", "--new", "--inline", "--wait").exit_code == 0
    path = Path(
        as_json(cli("stores", "show", "doomed", "--json"))["connection"]["config_data"]["path"]
    )
    env = process_env(
        tmp_path / "data",
        TENANTRY_JOB_LEASE_SECONDS="1",
        # SIGKILL once the database is dropped, before the store is removed.
        TENANTRY_FAILPOINTS="store_delete.removing-the-store=kill",
    )
    killed = subprocess.run(
        [sys.executable, "-m", "tenantry", "stores", "delete", "doomed", "--drop-database", "-y"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not path.exists()
    time.sleep(1.5)  # the lease lapses: nobody renews it
    (held,) = as_json(cli("ops", "list", "--kind", "store_delete", "--json"))["items"]
    assert (held["status"], held["stalled"], held["progress"]["step"]) == (
        "running",
        True,
        "removing the store",
    )
    shown = cli("ops", "show", held["id"][:8])
    assert "stalled" in shown.stdout

    queue = Queue(load_settings(job_lease_seconds=1))
    try:
        assert queue.recover() == 1  # what a worker's sweep does at start and every minute
    finally:
        queue.close()
    ended = as_json(cli("ops", "show", held["id"], "--json"))
    assert (ended["status"], ended["stalled"]) == ("failed", False)
    assert "died" in ended["error"]
    assert "tenantry stores delete doomed" in ended["progress"]["message"]

    again = cli("stores", "delete", "doomed", "--drop-database", "--yes", "--json")
    assert again.exit_code == 0, again.output
    assert as_json(again)["database_dropped"] is False  # dropped by the first attempt
    assert cli("stores", "show", "doomed").exit_code == 1


def test_ops_cancel_stops_a_delete_before_its_first_drop(cli: Invoke, tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "kept", "--name", "Kept").exit_code == 0
    assert cli("provision", "kept", "--new", "--inline", "--wait").exit_code == 0
    path = Path(
        as_json(cli("stores", "show", "kept", "--json"))["connection"]["config_data"]["path"]
    )
    env = process_env(
        tmp_path / "data",
        TENANTRY_FAILPOINTS="store_delete.checking=sleep:8",  # time to cancel it
    )
    deleting = subprocess.Popen(
        [sys.executable, "-m", "tenantry", "stores", "delete", "kept", "--drop-database", "-y"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (ops := as_json(cli("ops", "list", "--kind", "store_delete", "--json"))["items"]):
            assert time.monotonic() < deadline, "the delete never recorded its operation"
            time.sleep(0.1)
        assert cli("ops", "cancel", ops[0]["id"]).exit_code == 0
        _, stderr = deleting.communicate(timeout=60)
    finally:
        deleting.kill()
    assert deleting.returncode == 1
    assert "cancelled before 'dropping databases'" in stderr
    assert path.is_file()  # nothing was dropped
    assert cli("stores", "show", "kept").exit_code == 0
    (op,) = as_json(cli("ops", "list", "--kind", "store_delete", "--json"))["items"]
    assert op["status"] == "cancelled"
