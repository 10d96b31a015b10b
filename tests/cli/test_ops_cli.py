"""``tenantry ops``: every operation listed, shown, waited for and cancelled in one place."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from tenantry.db.master.models import OperationKind, ProgressUnit
from tenantry.operations.kit import OperationKit
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json


@pytest.fixture
def kit(cli: Invoke) -> Iterator[tuple[OperationKit, uuid.UUID]]:
    """An initialised installation with store ``shop``; a kit on its master and the store id."""
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "shop", "--name", "Shop").exit_code == 0
    platform = Platform.open(load_settings())
    try:
        with platform.sessions() as session:
            store_id = stores.get_store(session, "shop").id
        yield OperationKit(platform.sessions, lease_seconds=30), store_id
    finally:
        platform.close()


def test_list_filters_by_kind_status_and_store(
    cli: Invoke, kit: tuple[OperationKit, uuid.UUID]
) -> None:
    ops, store_id = kit
    backup = ops.create(OperationKind.BACKUP, target="master")
    provision = ops.create(OperationKind.RESTORE, store_id=store_id, target="shop")
    assert ops.claim(provision) is not None
    listed = as_json(cli("ops", "list", "--json"))
    assert listed["total"] == 2
    assert [d["id"] for d in listed["items"]] == [str(provision), str(backup)]  # newest first
    assert listed["items"][0]["progress"] == {
        "step": "queued",
        "current": 0,
        "total": None,
        "unit": None,
        "message": None,
    }
    by_kind = as_json(cli("ops", "list", "--kind", "backup", "--json"))
    assert [d["id"] for d in by_kind["items"]] == [str(backup)]
    by_status = as_json(cli("ops", "list", "--status", "running", "--json"))
    assert [d["id"] for d in by_status["items"]] == [str(provision)]
    by_store = as_json(cli("ops", "list", "--store", "shop", "--json"))
    assert [d["id"] for d in by_store["items"]] == [str(provision)]
    table = cli("ops", "list")
    assert table.exit_code == 0
    assert "restore" in table.stdout
    assert "running" in table.stdout
    wrong = cli("ops", "list", "--kind", "nonsense")
    assert wrong.exit_code == 2
    missing = cli("ops", "list", "--store", "nowhere", "--json")
    assert missing.exit_code == 1
    assert as_json(missing)["error"]["type"] == "NotFound"


def test_show_takes_an_id_prefix_and_shows_progress(
    cli: Invoke, kit: tuple[OperationKit, uuid.UUID]
) -> None:
    ops, store_id = kit
    op_id = ops.create(OperationKind.RESTORE, store_id=store_id, target="shop")
    assert ops.claim(op_id) is not None
    ops.progress(op_id, step="create_tables", current=4, total=9, unit=ProgressUnit.TABLES)
    shown = cli("ops", "show", str(op_id)[:8], "--json")
    assert shown.exit_code == 0, shown.output
    doc = as_json(shown)
    assert doc["id"] == str(op_id)
    assert doc["status"] == "running"
    assert doc["progress"]["current"] == 4
    assert doc["progress"]["total"] == 9
    assert doc["progress"]["unit"] == "tables"
    table = cli("ops", "show", str(op_id)[:8])
    assert "4/9 tables" in table.stdout
    assert "create_tables" in table.stdout
    missing = cli("ops", "show", "ffffffff", "--json")
    assert missing.exit_code == 1
    assert as_json(missing)["error"]["type"] == "NotFound"


def test_cancel_a_queued_one_now_a_running_one_at_its_next_step(
    cli: Invoke, kit: tuple[OperationKit, uuid.UUID]
) -> None:
    ops, _ = kit
    queued = ops.create(OperationKind.BACKUP)
    running = ops.create(OperationKind.RESTORE)
    assert ops.claim(running) is not None
    done = cli("ops", "cancel", str(queued)[:10], "--json")
    assert done.exit_code == 0, done.output
    assert as_json(done)["status"] == "cancelled"
    asked = cli("ops", "cancel", str(running))
    assert asked.exit_code == 0, asked.output
    assert "cancelling" in asked.stdout
    assert ops.cancel_requested(running)
    again = cli("ops", "cancel", str(queued), "--json")
    assert again.exit_code == 1
    assert as_json(again)["error"]["type"] == "Conflict"


def test_wait_exits_0_on_success_and_1_on_failure_or_cancel(
    cli: Invoke, kit: tuple[OperationKit, uuid.UUID]
) -> None:
    ops, _ = kit
    op_id = ops.create(OperationKind.RESTORE, target="billing", total=3, unit=ProgressUnit.ROWS)
    assert ops.claim(op_id) is not None

    def work() -> None:
        for row in range(1, 4):
            ops.progress(op_id, step="copy", current=row)
        ops.finish(op_id, message="restored")

    timer = threading.Timer(0.5, work)
    timer.start()
    waited = cli("ops", "wait", str(op_id)[:8], "--json")
    timer.join()
    assert waited.exit_code == 0, waited.output
    assert as_json(waited)["status"] == "succeeded"
    assert as_json(waited)["progress"]["current"] == 3

    failed = ops.create(OperationKind.BACKUP, target="master")
    assert ops.claim(failed) is not None
    ops.fail(failed, "pg_dump: connection refused")
    result = cli("ops", "wait", str(failed))
    assert result.exit_code == 1
    assert "connection refused" in result.output

    cancelled = ops.create(OperationKind.BACKUP)
    ops.request_cancel(cancelled)
    assert cli("ops", "wait", str(cancelled), "--json").exit_code == 1


def test_wait_times_out_on_an_operation_that_does_not_end(
    cli: Invoke, kit: tuple[OperationKit, uuid.UUID]
) -> None:
    ops, _ = kit
    op_id = ops.create(OperationKind.INIT, target="tenant")
    assert ops.claim(op_id) is not None
    result = cli("ops", "wait", str(op_id), "--timeout", "0.5", "--json")
    assert result.exit_code == 1
    assert "still running" in as_json(result)["error"]["message"]


def test_a_provisioning_job_is_an_operation(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "opshop", "--name", "Shop").exit_code == 0
    provisioned = cli("provision", "opshop", "--new", "--inline", "--json")
    assert provisioned.exit_code == 0, provisioned.output
    job = as_json(provisioned)
    assert job["status"] == "completed"  # provisioning's own words, as documented
    listed = as_json(cli("ops", "list", "--kind", "provision", "--store", "opshop", "--json"))
    assert [d["id"] for d in listed["items"]] == [job["id"]]
    operation = listed["items"][0]
    assert operation["status"] == "succeeded"
    assert operation["target"] == "opshop"
    assert operation["progress"]["step"] == "done"
    assert operation["progress"]["unit"] == "tables"
    assert operation["progress"]["current"] == operation["progress"]["total"] == job["total_tables"]
    assert as_json(cli("ops", "wait", job["id"][:8], "--json"))["status"] == "succeeded"
    # A finished operation is refused in the words `ops` shows, whatever its kind.
    over = cli("ops", "cancel", job["id"][:8])
    assert over.exit_code == 1
    assert f"operation {job['id']} is succeeded; only queued or running" in over.stderr
    # Deleting the store removes its job's own row; the operation stays as history.
    assert cli("stores", "delete", "opshop", "--yes").exit_code == 0
    assert cli("jobs", "show", job["id"], "--json").exit_code == 1
    after = as_json(cli("ops", "show", job["id"], "--json"))
    assert (after["kind"], after["status"], after["target"]) == ("provision", "succeeded", "opshop")


def test_ops_cancel_cancels_a_provisioning_job_as_jobs_cancel_does(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "opcancel", "--name", "Shop").exit_code == 0
    job = as_json(cli("provision", "opcancel", "--new", "--json"))  # queued: no worker runs
    cancelled = cli("ops", "cancel", job["id"][:8], "--json")
    assert cancelled.exit_code == 0, cancelled.output
    assert as_json(cancelled)["status"] == "cancelled"
    assert as_json(cli("jobs", "show", job["id"], "--json"))["status"] == "cancelled"
    store = as_json(cli("stores", "show", "opcancel", "--json"))
    assert store["database_status"] == "failed"
