"""The recovery sweep drops the scratch database a restore test killed mid-restore left, on each
backend, once its lease lapsed; it keeps the scratch database of a restore test still running
and one whose backup this master does not know (another installation's on a shared server)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from tenantry.db.admin import create_database, drop_database
from tenantry.db.master.models import Backup, Operation, OperationKind
from tenantry.db.urls import backend_of
from tenantry.jobs.queue import Queue
from tenantry.operations import sweep
from tenantry.operations.backup_take import take_backup
from tenantry.operations.backup_verify import verify_backup
from tenantry.services.backups.targets import resolve, scratch_server
from tenantry.services.backups.verification import Verification, scratch_name, scratch_url
from tests.conftest import server_has_database
from tests.services.backups.conftest import ShopDb, settings

__all__ = ["settings"]

#: The killed restore test's lease: long enough that the sweep right after the kill sees it
#: held, short enough to wait out.
DEAD_LEASE_S = 5


def taken(shop: ShopDb) -> Backup:
    """A stored backup of the shop's database."""
    p = shop.platform
    with p.sessions() as session:
        target = resolve(session, p.box, p.settings, shop.scope)
    return take_backup(p.sessions, shop.storage, target, actor="cli:test")


def server_of(shop: ShopDb, backup: Backup) -> URL:
    """Where the backup's scratch databases are made."""
    p = shop.platform
    with p.sessions() as session:
        return scratch_server(session, p.box, p.settings, session.get_one(Backup, backup.id))


def exists(server: URL, name: str) -> bool:
    """Whether scratch database ``name`` is there, asked of the server's own catalog (the
    file, for SQLite)."""
    if backend_of(server) == "sqlite":
        return os.path.exists(str(scratch_url(server, name).database))
    return server_has_database(backend_of(server), name)


@pytest.fixture
def foreign(shop: ShopDb) -> Iterator[tuple[URL, str]]:
    """A scratch database of a backup this master does not know, beside the shop's."""
    server = server_of(shop, taken(shop))
    name = scratch_name(uuid.uuid4(), "verify")
    create_database(scratch_url(server, name))
    yield server, name
    drop_database(scratch_url(server, name))


def test_a_scratch_database_left_by_a_killed_restore_test_is_dropped_once_its_lease_lapses(
    shop: ShopDb, foreign: tuple[URL, str]
) -> None:
    p = shop.platform
    backup = taken(shop)
    name = scratch_name(backup.id, "verify")
    server = server_of(shop, backup)
    try:
        verify = subprocess.run(
            [sys.executable, "-m", "tenantry", "backup", "verify", str(backup.id), "--json"],
            env={
                **os.environ,
                # Dies at the restore's first chunk: its scratch database is made, never dropped.
                "TENANTRY_FAILPOINTS": "backup.chunk=kill",
                "TENANTRY_JOB_LEASE_SECONDS": str(DEAD_LEASE_S),
            },
            capture_output=True,
            timeout=120,
        )
        assert verify.returncode == -9, verify.stderr.decode()
        assert exists(server, name)
        with p.sessions() as session:
            test = session.scalars(
                select(Operation).where(Operation.kind == OperationKind.BACKUP_VERIFY)
            ).one()
        assert (test.status, test.step) == ("running", "restore")

        # Its lease has not lapsed: for all the sweep knows, the test is still running.
        assert sweep.drop_abandoned_scratch(p) == []
        assert exists(server, name)

        time.sleep(DEAD_LEASE_S + 0.5)
        queue = Queue(p.settings, immediate=True)
        try:
            queue.recover()
        finally:
            queue.close()
        assert not exists(server, name)
        with p.sessions() as session:
            assert session.get_one(Operation, test.id).status == "failed"
        # Another installation's scratch database on the same server is not this one's to drop.
        assert exists(*foreign)

        again = verify_backup(p.sessions, shop.storage, backup.id, server, actor="cli:test")
        assert again.passed
    finally:
        drop_database(scratch_url(server, name))


def test_the_scratch_database_of_a_restore_test_still_running_is_kept(
    shop: ShopDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = shop.platform
    backup = taken(shop)
    name = scratch_name(backup.id, "verify")
    server = server_of(shop, backup)
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "backup.chunk=sleep:3")
    outcome: list[BaseException | Verification] = []

    def run() -> None:
        try:
            outcome.append(verify_backup(p.sessions, shop.storage, backup.id, server, actor="t"))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not exists(server, name):
            assert time.monotonic() < deadline, "the restore test never made its scratch database"
            assert thread.is_alive(), outcome
            time.sleep(0.05)
        assert sweep.drop_abandoned_scratch(p) == []
        assert exists(server, name)
    finally:
        thread.join(120)
    result = outcome[0]
    assert isinstance(result, Verification), outcome
    assert result.passed, result.problems
    assert not exists(server, name)
