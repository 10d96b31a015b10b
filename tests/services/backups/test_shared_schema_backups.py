"""Backing up one shared-schema store: its schema alone (never its neighbours' rows), verified
by a scratch restore (restoring one in place: test_shared_schema_restore.py)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tenantry.backup import artifacts
from tenantry.backup.storage import storage_for
from tenantry.db.master.models import BackupStatus
from tenantry.operations.backup_take import take_backup
from tenantry.operations.backup_verify import verify_backup
from tenantry.operations.provision_shared import provision_shared_store
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.backups.targets import resolve, scratch_server
from tests.operations.test_provision_shared import make_store
from tests.platform_fixtures import platform, settings
from tests.shared_schema_fixtures import SharedDb, shared_db
from tests.tenantry_fixtures import new_slug, product

__all__ = ["platform", "settings", "shared_db"]


def add(platform: Platform, slug: str, *skus: str) -> None:
    with platform.sessions() as master:
        engine = platform.router.engine(master, stores.get_store(master, slug))
    with Session(engine) as session, session.begin():
        session.add_all([product(s) for s in skus])


def test_a_shared_schema_store_is_backed_up_alone_and_verified(
    platform: Platform, shared_db: SharedDb
) -> None:
    mine, other = new_slug("bk-a"), new_slug("bk-b")
    schemas = []
    for slug in (mine, other):
        make_store(platform, slug)
        done = provision_shared_store(platform, slug, shared_db.target, actor="cli:test")
        schemas.append(done.schema)
    mine_schema, other_schema = schemas
    add(platform, mine, "MINE-1", "MINE-2")
    add(platform, other, "OTHER-1", "OTHER-2", "OTHER-3")
    storage = storage_for(platform.settings)
    with platform.sessions() as session:
        target = resolve(session, platform.box, platform.settings, f"store:{mine}")
    backup = take_backup(platform.sessions, storage, target, actor="cli:test")
    assert backup.status == BackupStatus.STORED
    assert backup.row_counts["products"] == 2
    # The dump (pg_dump -Fc without compression inside the zstd frame) holds this store's
    # schema and rows, and nothing of its neighbour's.
    with artifacts.opened(storage, backup.artifact_key, sha256=backup.sha256) as dump:
        content = dump.read()
    assert b"MINE-1" in content
    assert mine_schema.encode() in content
    assert b"OTHER-1" not in content
    assert other_schema.encode() not in content
    with platform.sessions() as session:
        server = scratch_server(session, platform.box, platform.settings, backup)
    result = verify_backup(platform.sessions, storage, backup.id, server, actor="cli:test")
    assert result.passed, result.problems
    assert result.row_counts == backup.row_counts
