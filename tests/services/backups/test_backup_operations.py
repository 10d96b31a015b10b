"""Backups are operations: a take killed (SIGKILL) mid-dump is seen in ``tenantry ops`` and
failed cleanly by the recovery sweep; a cancelled one keeps nothing; restore tests are
operations too, children of the take; progress is in bytes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, select
from typer.testing import CliRunner

from tenantry.backup.storage import LocalStorage
from tenantry.cli.main import app
from tenantry.db.engines import make_engine
from tenantry.db.master.models import Backup, BackupStatus, Operation
from tenantry.db.schemas import billing_schema, master_schema
from tenantry.jobs.queue import Queue
from tenantry.operations import premigration
from tenantry.operations.backup_take import take_backup
from tenantry.operations.backup_verify import VerificationCancelled, verify_backup
from tenantry.services.backups.targets import BackupTarget, resolve
from tenantry.services.backups.verification import Verification
from tenantry.settings import Settings
from tests.migrations.test_upgrades import _downgrade
from tests.services.backups.conftest import ShopDb, settings

__all__ = ["settings"]

#: Rows of filler (1 KB each): a dump of several MB, read in many chunks.
FILLER_ROWS = 8000
#: Each chunk of the dump waits this long: the test has time to act mid-dump.
SLOW_CHUNKS = "backup.chunk=sleep:0.3"


def cli(*args: str) -> Any:
    """``tenantry ARGS --json`` in this process; its JSON document."""
    result = CliRunner().invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def add_filler(shop: ShopDb) -> None:
    """A table of incompressible-ish rows in the store's database, so its dump is big."""
    engine = make_engine(shop.url, pooled=False)
    filler = Table(
        "filler",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("pad", String(1000)),
    )
    try:
        with engine.begin() as conn:
            filler.create(conn)
            for start in range(0, FILLER_ROWS, 1000):
                conn.execute(
                    filler.insert(),
                    [{"id": n, "pad": os.urandom(500).hex()} for n in range(start, start + 1000)],
                )
    finally:
        engine.dispose()


def start_backup_run(scope: str, **env: str) -> subprocess.Popen[bytes]:
    """``tenantry backup run --db SCOPE --json`` as a separate process."""
    return subprocess.Popen(
        [sys.executable, "-m", "tenantry", "backup", "run", "--db", scope, "--json"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def dumping_operation(proc: subprocess.Popen[bytes], seconds: float = 90) -> dict[str, Any]:
    """The ``backup`` operation once ``tenantry ops list`` shows it dumping, bytes counted."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for doc in cli("ops", "list", "--kind", "backup")["items"]:
            progress = doc["progress"]
            if doc["status"] == "running" and progress["step"] == "dump" and progress["current"]:
                assert progress["unit"] == "bytes"
                return dict(doc)
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the backup never showed dump progress")


def stored_files(storage: LocalStorage) -> list[Path]:
    """Every file under the backup directory, unfinished writes included."""
    return [p for p in storage.root.rglob("*") if p.is_file()] if storage.root.exists() else []


def test_a_backup_killed_mid_dump_is_failed_cleanly_and_run_again(shop: ShopDb) -> None:
    add_filler(shop)
    p = shop.platform
    proc = start_backup_run(
        shop.scope, TENANTRY_FAILPOINTS=SLOW_CHUNKS, TENANTRY_JOB_LEASE_SECONDS="1"
    )
    operation = dumping_operation(proc)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    op_id = uuid.UUID(operation["id"])
    # Killed: still shown as running (its lease has not lapsed yet), with a partial object.
    shown = cli("ops", "show", str(op_id))
    assert (shown["kind"], shown["status"], shown["target"]) == ("backup", "running", shop.scope)
    assert any(f.name.endswith(".tmp") for f in stored_files(shop.storage))
    with p.sessions() as session:
        assert session.get_one(Backup, op_id).status == BackupStatus.RUNNING

    time.sleep(1.5)  # the dead holder's lease lapses
    queue = Queue(p.settings, immediate=True)
    try:
        queue.recover()
    finally:
        queue.close()

    failed = cli("ops", "show", str(op_id))
    assert failed["status"] == "failed"
    assert "tenantry backup run" in failed["error"]
    with p.sessions() as session:
        backup = session.get_one(Backup, op_id)
        assert backup.status == BackupStatus.FAILED
        assert "Run `tenantry backup run` again" in (backup.error or "")
        good = session.scalars(
            select(Backup).where(Backup.status.in_((BackupStatus.STORED, BackupStatus.VERIFIED)))
        ).all()
        assert good == []
    assert stored_files(shop.storage) == [], "the partial object was removed"

    again = start_backup_run(shop.scope)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err.decode()
    document = json.loads(out)
    assert document["status"] == BackupStatus.STORED
    done = cli("ops", "show", document["id"])
    assert done["status"] == "succeeded"
    assert done["progress"]["current"] == document["raw_bytes"] > FILLER_ROWS * 1000


def test_ops_cancel_stops_a_running_backup_and_keeps_nothing(shop: ShopDb) -> None:
    add_filler(shop)
    proc = start_backup_run(shop.scope, TENANTRY_FAILPOINTS=SLOW_CHUNKS)
    operation = dumping_operation(proc)
    assert cli("ops", "cancel", operation["id"][:8])["status"] == "cancelling"
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err.decode()
    outcome = json.loads(out)
    assert outcome["status"] == "failed"
    assert "cancelled" in outcome["error"]

    op_id = uuid.UUID(operation["id"])
    assert cli("ops", "show", str(op_id))["status"] == "cancelled"
    with shop.platform.sessions() as session:
        backup = session.get_one(Backup, op_id)
        assert backup.status == BackupStatus.FAILED
        assert "cancelled" in (backup.error or "")
    assert stored_files(shop.storage) == [], "no partial object, no artifact, no manifest"
    listed = cli("backup", "list")
    assert [b["status"] for b in listed] == ["failed"]


def test_a_take_and_its_restore_test_are_operations_with_byte_progress(shop: ShopDb) -> None:
    p = shop.platform
    with p.sessions() as session:
        target = resolve(session, p.box, p.settings, shop.scope)
    seen: list[int] = []
    backup = take_backup(
        p.sessions, shop.storage, target, on_progress=seen.append, actor="cli:test"
    )
    assert backup.status == BackupStatus.STORED
    assert sum(seen) == backup.raw_bytes
    result = verify_backup(p.sessions, shop.storage, backup.id, shop.url, actor="cli:test")
    assert result.passed
    with p.sessions() as session:
        take = session.get_one(Operation, backup.id)
        assert (take.kind, take.status, take.step) == ("backup", "succeeded", "done")
        assert (take.progress_current, take.progress_unit) == (backup.raw_bytes, "bytes")
        assert take.target == shop.scope
        assert take.store_id == backup.store_id
        tests = session.scalars(select(Operation).where(Operation.parent_id == backup.id)).all()
        assert [(t.kind, t.status) for t in tests] == [("backup_verify", "succeeded")]
        assert tests[0].progress_unit == "bytes"
        assert session.get_one(Backup, backup.id).status == BackupStatus.VERIFIED


def test_a_queued_backup_cancelled_before_a_worker_took_it_is_not_taken(shop: ShopDb) -> None:
    from tenantry.operations import work
    from tenantry.services.backups.taking import queue_backup

    p = shop.platform
    with p.sessions.begin() as session:
        target = resolve(session, p.box, p.settings, shop.scope)
        queued = queue_backup(session, shop.storage, target, actor="cli:test")
    assert cli("ops", "cancel", str(queued.id))["status"] == "cancelled"
    assert work.run_backup(p, queued.id, shop.scope) == "skipped"
    queue = Queue(p.settings, immediate=True)
    try:
        queue.recover()
    finally:
        queue.close()
    with p.sessions() as session:
        backup = session.get_one(Backup, queued.id)
        assert backup.status == BackupStatus.FAILED
        assert "cancelled" in (backup.error or "")
    assert stored_files(shop.storage) == []


@pytest.fixture(autouse=True)
def _no_failpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TENANTRY_FAILPOINTS", raising=False)


def test_a_pre_migration_backup_on_a_master_older_than_operations_is_untracked(
    settings: Settings,
) -> None:
    engine = make_engine(settings.master_url, pooled=False)
    try:
        _downgrade(engine, master_schema(), "0007")  # before the operations table
        with premigration.standalone(settings, actor="cli:test") as backups:
            assert backups.tracked is False
            backup = backups.take(
                BackupTarget(billing_schema(), settings.billing_url), "0001", "0002"
            )
        with engine.connect() as conn:
            assert "operations" not in inspect(conn).get_table_names()
            catalog = Table("backups", MetaData(), autoload_with=conn)
            status = conn.execute(
                select(catalog.c.status).where(catalog.c.id == backup.id)
            ).scalar_one()
        assert status == BackupStatus.VERIFIED
    finally:
        engine.dispose()


def test_ops_cancel_stops_a_restore_test_and_leaves_the_backup_as_it_was(
    shop: ShopDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_filler(shop)
    p = shop.platform
    with p.sessions() as session:
        target = resolve(session, p.box, p.settings, shop.scope)
    backup = take_backup(p.sessions, shop.storage, target, actor="cli:test")
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "backup.chunk=sleep:0.5")
    outcome: list[BaseException | Verification] = []

    def verify() -> None:
        try:
            outcome.append(
                verify_backup(p.sessions, shop.storage, backup.id, shop.url, actor="cli:test")
            )
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=verify)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            items = cli("ops", "list", "--kind", "backup_verify")["items"]
            if items and items[0]["progress"]["current"]:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the restore test never showed progress")
        assert items[0]["parent_id"] == str(backup.id)
        assert cli("ops", "cancel", items[0]["id"])["status"] == "cancelling"
    finally:
        thread.join(120)
    assert isinstance(outcome[0], VerificationCancelled), outcome
    assert cli("ops", "show", items[0]["id"])["status"] == "cancelled"
    with p.sessions() as session:
        kept = session.get_one(Backup, backup.id)
        assert kept.status == BackupStatus.STORED
        assert kept.verified_at is None
