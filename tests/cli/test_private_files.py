"""Everything tenantry writes in the data dir is private: files 0600, directories 0700."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantry.backup.storage import storage_for
from tenantry.db.master.models import BackupStatus, ProvisioningStatus
from tenantry.operations.backup_take import take_backup
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform, open_dispatcher
from tenantry.services.backups.targets import resolve
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke
from tests.store_setup import request_create_new

#: A typical login umask: without tenantry's care, new files would be 0644 and dirs 0755.
LOOSE_UMASK = 0o022


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """Run the test under umask 022, and give the test process its umask back after."""
    previous = os.umask(LOOSE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def _not_private(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            mode = stat.S_IMODE((Path(dirpath) / name).stat().st_mode)
            if mode != 0o700:
                found.append(f"{Path(dirpath, name)} {oct(mode)}")
        for name in filenames:
            mode = stat.S_IMODE((Path(dirpath) / name).stat().st_mode)
            if mode != 0o600:
                found.append(f"{Path(dirpath, name)} {oct(mode)}")
    return found


@pytest.mark.usefixtures("loose_umask")
def test_init_a_worker_a_sqlite_store_and_a_backup_leave_only_private_files(
    cli: Invoke, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    old = data / "left-by-an-old-version.log"  # an install made before files were private
    old.write_text("x")
    old.chmod(0o644)

    result = cli("init")
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(old.stat().st_mode) == 0o600

    # What follows runs as library code would, without an entry point's umask: the files
    # must be private because tenantry creates them so, not because of the umask.
    os.umask(LOOSE_UMASK)
    settings = load_settings()
    platform = Platform.open(settings)
    queue = open_dispatcher(settings)  # the embedded queue's queue.db
    try:
        with platform.writer_sessions.begin() as session:
            job = request_create_new(session, platform, settings, "private-shop")
        outcome = Provisioner(
            platform.sessions, platform.box, settings, platform.tenant_spec, "test"
        ).run(job.id)
        assert outcome == ProvisioningStatus.COMPLETED
        with platform.sessions() as session:
            target = resolve(session, platform.box, settings, "store:private-shop")
        backup = take_backup(
            platform.sessions, storage_for(settings), target, level=1, actor="cli:test"
        )
        assert backup.status == BackupStatus.STORED
        # While connections are open, SQLite's -wal and -shm files exist: check them too.
        names = {p.name for p in data.rglob("*")}
        assert {"master.db", "billing.db", "queue.db", "secret.key"} <= names
        assert any(n.endswith("-wal") for n in names), names
        assert _not_private(data) == []
    finally:
        queue.close()
        platform.close()
    assert _not_private(data) == []


def test_init_under_umask_022_creates_nothing_readable_by_others(
    cli: Invoke, tmp_path: Path, loose_umask: None
) -> None:
    result = cli("init", "--json")
    assert result.exit_code == 0, result.output
    assert _not_private(tmp_path / "data") == []
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
