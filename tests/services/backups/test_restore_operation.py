"""A restore is a ``restore`` operation: listed by ``tenantry ops``, cancellable before its
switch, and ended cleanly by the workers' recovery sweep when its process is killed.

Against real SQLite files, PostgreSQL and MariaDB databases: a restore cancelled with
``tenantry ops cancel`` while it restores leaves the store's data, writes and server as they
were; one SIGKILLed just before its switch leaves a running operation whose lease lapses, and
the sweep ends it ``failed`` saying what to do, with the store's data in place, its write block
lifted and the staging copy dropped.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from tenantry.errors import TenantryError
from tenantry.jobs.queue import Queue
from tenantry.operations.restore import RestoreCancelled, restore
from tests.cli.conftest import Invoke, as_json, cli
from tests.helpers import run_child
from tests.services.backups.conftest import ShopDb, add_products
from tests.services.backups.test_restore_failures import _backup, _block, _plan, _skus, leftovers

__all__ = ["cli"]


def _ops(cli: Invoke) -> list[dict[str, object]]:
    listed = cli("ops", "list", "--kind", "restore", "--json")
    assert listed.exit_code == 0, listed.output
    items: list[dict[str, object]] = as_json(listed)["items"]
    return items


def test_a_restore_is_an_operation_that_succeeds(shop: ShopDb, cli: Invoke) -> None:
    backup = _backup(shop)
    add_products(shop, "GONE-1")
    plan = _plan(shop, backup)
    p = shop.platform

    result = restore(
        p.sessions, shop.storage, p.settings, plan, confirm=plan.confirm_name, actor="cli:test"
    )

    [op] = _ops(cli)
    assert op["id"] == str(result.operation_id)
    assert op["status"] == "succeeded"
    assert op["progress"]["step"] == "done"  # type: ignore[index]
    assert op["progress"]["unit"] == "bytes"  # type: ignore[index]
    assert op["progress"]["current"] > 0  # type: ignore[index]
    assert _skus(shop) == ["A-1", "A-2", "A-3"]
    assert _block(shop) is None


def test_ops_cancel_stops_a_running_restore_before_its_switch(shop: ShopDb, cli: Invoke) -> None:
    backup = _backup(shop)
    add_products(shop, "KEEP-ME")
    plan = _plan(shop, backup)
    p = shop.platform
    started: list[uuid.UUID] = []
    answers: list[str] = []

    def cancel_once(_done: int) -> None:
        if not answers:  # while the backup is being restored into the staging copy
            cancelled = cli("ops", "cancel", str(started[0])[:8], "--json")
            answers.append(as_json(cancelled)["status"])

    with pytest.raises(RestoreCancelled) as stopped:
        restore(
            p.sessions,
            shop.storage,
            p.settings,
            plan,
            confirm=plan.confirm_name,
            on_progress=cancel_once,
            on_start=started.append,
            actor="cli:test",
        )

    assert answers == ["cancelling"]
    assert "cancelled before its switch" in stopped.value.message
    [op] = _ops(cli)
    assert (op["id"], op["status"]) == (str(started[0]), "cancelled")
    # Nothing half-done: the old data (and the row added since the backup) is served, the
    # staging copy is gone, the store takes writes again.
    assert _skus(shop) == ["A-1", "A-2", "A-3", "KEEP-ME"]
    assert leftovers(shop.url) == []
    assert _block(shop) is None
    add_products(shop, "AFTER-1")


def restore_in_place(backup_id: str, confirm: str) -> None:
    """What ``tenantry restore BACKUP --in-place --confirm NAME`` does (for :func:`run_child`)."""
    from tenantry.backup.storage import storage_for
    from tenantry.operations.restore import restore
    from tenantry.runtime import Platform
    from tenantry.services.backups.restore_plan import plan_restore
    from tenantry.settings import load_settings

    settings = load_settings()
    platform = Platform.open(settings)
    with platform.sessions() as session:
        plan = plan_restore(session, platform.box, settings, backup_id, target=None, in_place=True)
    restore(
        platform.sessions, storage_for(settings), settings, plan, confirm=confirm, actor="cli:test"
    )


def test_a_restore_killed_before_its_switch_is_ended_by_the_recovery_sweep(
    shop: ShopDb, cli: Invoke
) -> None:
    backup = _backup(shop)
    add_products(shop, "KEEP-ME")
    plan = _plan(shop, backup)
    env = {
        **os.environ,
        "TENANTRY_FAILPOINTS": "restore.before_switch=kill",
        "TENANTRY_JOB_LEASE_SECONDS": "1",
    }
    assert run_child(restore_in_place, str(backup.id), plan.confirm_name, env=env) == (
        -signal.SIGKILL
    )

    # Killed: the operation still says running, the store's writes are blocked for a lease.
    [op] = _ops(cli)
    assert (op["status"], op["progress"]["step"]) == ("running", "restore")  # type: ignore[index]
    assert _block(shop) is not None
    assert any("_restoring_" in name for name in leftovers(shop.url))

    time.sleep(1.2)  # the dead process's lease lapses
    queue = Queue(shop.platform.settings)
    try:
        queue.recover()
    finally:
        queue.close()

    [op] = _ops(cli)
    assert op["status"] == "failed"
    error = str(op["error"])
    assert "stopped at step restore, before the switch" in error
    assert "the target was not changed" in error
    assert "Run the restore again." in error
    # The original database in place, its writes accepted, no staging copy left behind.
    assert _skus(shop) == ["A-1", "A-2", "A-3", "KEEP-ME"]
    assert _block(shop) is None
    assert leftovers(shop.url) == []
    add_products(shop, "AFTER-1")
    # A second sweep has nothing left to do; the restore runs again once asked.
    assert _ops(cli)[0]["status"] == "failed"
    again = restore(
        shop.platform.sessions,
        shop.storage,
        shop.platform.settings,
        _plan(shop, backup),
        confirm=plan.confirm_name,
        actor="cli:test",
    )
    assert again.operation_id is not None
    assert _skus(shop) == ["A-1", "A-2", "A-3"]


def test_a_failed_restore_is_a_failed_operation(
    shop: ShopDb, cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = _backup(shop)
    plan = _plan(shop, backup)
    p = shop.platform
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "restore.before_switch=raise")
    with pytest.raises(TenantryError):
        restore(
            p.sessions, shop.storage, p.settings, plan, confirm=plan.confirm_name, actor="cli:test"
        )
    monkeypatch.delenv("TENANTRY_FAILPOINTS")

    [op] = _ops(cli)
    assert op["status"] == "failed"
    assert "fail point restore.before_switch reached" in str(op["error"])
    assert "The target was not changed" in str(op["error"])
    assert op["lease_holder"] is not None  # who ran it stays recorded
    assert op["lease_expires_at"] is None
    assert _block(shop) is None
