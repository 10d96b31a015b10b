"""Backups of real databases on SQLite, PostgreSQL and MariaDB: taken, verified, restored,
refused when they would land in the wrong place, and pruned by policy."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from tenantry.backup.artifacts import CorruptArtifact
from tenantry.backup.s3_storage import S3Storage
from tenantry.backup.storage import Storage
from tenantry.db.master.models import Backup, BackupStatus
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput, WrongDatabase
from tenantry.failpoints import FailPointError
from tenantry.operations import backup_prune, backup_schedule
from tenantry.operations.backup_take import take_backup
from tenantry.operations.backup_verify import verify_backup
from tenantry.operations.restore import restore
from tenantry.services import store_data as products
from tenantry.services import stores
from tenantry.services.backups import policies, retention, scheduling
from tenantry.services.backups.restore_plan import plan_restore
from tenantry.services.backups.targets import resolve
from tests.backup.conftest import s3_server, s3_storage
from tests.conftest import DbFactory
from tests.services.backups.conftest import ShopDb, add_products, table_rows

__all__ = ["s3_server", "s3_storage"]


def _backup(shop: ShopDb, scope: str | None = None, storage: Storage | None = None) -> Backup:
    p = shop.platform
    with p.sessions() as session:
        target = resolve(session, p.box, p.settings, scope or shop.scope)
    return take_backup(p.sessions, storage or shop.storage, target, actor="cli:test")


def _skus(shop: ShopDb) -> list[str]:
    p = shop.platform
    with p.sessions() as master:
        store = stores.get_store(master, shop.slug)
        with p.router.session(master, store) as tenant:
            return sorted(product.sku for product in products.list_products(tenant))


def _status(shop: ShopDb, backup_id: uuid.UUID) -> str:
    with shop.platform.sessions() as session:
        return session.get_one(Backup, backup_id).status


def test_backup_verifies_and_restores_identical_data(shop: ShopDb, new_database: DbFactory) -> None:
    backup = _backup(shop)
    assert backup.status == BackupStatus.STORED
    assert backup.row_counts["products"] == 3
    manifest = json.loads(shop.storage.read_bytes(backup.manifest_key))
    assert manifest["role"] == "tenant"
    assert manifest["store"]["slug"] == "shop"
    assert manifest["instance_id"] == backup.instance_id
    assert manifest["sha256"] == backup.sha256
    assert manifest["row_counts"] == backup.row_counts
    assert shop.storage.size(backup.artifact_key) == backup.size_bytes

    result = verify_backup(
        shop.platform.sessions, shop.storage, backup.id, shop.url, actor="cli:test"
    )
    assert result.passed, result.problems
    assert result.row_counts == backup.row_counts
    with shop.platform.sessions() as session:
        row = session.get_one(Backup, backup.id)
        assert row.status == BackupStatus.VERIFIED
        assert row.verify_duration_ms is not None

    target = new_database("restored")
    p = shop.platform
    with p.sessions() as session:
        plan = plan_restore(
            session, p.box, p.settings, str(backup.id)[:8], target=str(target), in_place=False
        )
    assert not plan.live
    restore(p.sessions, shop.storage, p.settings, plan, confirm=None, actor="cli:test")
    assert table_rows(target) == table_rows(shop.url)


def test_in_place_restore_needs_the_name_and_keeps_a_safety_backup(shop: ShopDb) -> None:
    backup = _backup(shop)
    add_products(shop, "LATE-1")
    p = shop.platform
    with p.sessions() as session:
        plan = plan_restore(session, p.box, p.settings, str(backup.id), target=None, in_place=True)
    assert plan.live

    with pytest.raises(InvalidInput, match="--confirm"):
        restore(p.sessions, shop.storage, p.settings, plan, confirm="wrong-name", actor="cli:test")
    assert "LATE-1" in _skus(shop)

    result = restore(
        p.sessions, shop.storage, p.settings, plan, confirm=plan.confirm_name, actor="cli:test"
    )
    assert _skus(shop) == ["A-1", "A-2", "A-3"]
    assert result.safety_backup_id is not None
    with p.sessions() as session:
        safety = session.get_one(Backup, result.safety_backup_id)
        assert safety.pinned
        assert safety.reason == "safety"
        assert safety.row_counts["products"] == 4
        store = stores.get_store(session, shop.slug)
        assert store.write_block_reason is None
    add_products(shop, "AFTER-1")  # the store takes writes again, on the restored database
    assert "AFTER-1" in _skus(shop)


def test_corrupt_and_truncated_artifacts_are_caught(shop: ShopDb) -> None:
    flipped, truncated = _backup(shop), _backup(shop)
    path = shop.storage.root / flipped.artifact_key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    cut = shop.storage.root / truncated.artifact_key
    cut.write_bytes(cut.read_bytes()[: (truncated.size_bytes or 0) // 2])

    p = shop.platform
    for backup in (flipped, truncated):
        result = verify_backup(p.sessions, shop.storage, backup.id, shop.url, actor="cli:test")
        assert not result.passed
        assert _status(shop, backup.id) == BackupStatus.CORRUPT
        with p.sessions() as session, pytest.raises(Conflict, match="corrupt"):
            plan_restore(session, p.box, p.settings, str(backup.id), target=None, in_place=True)


def test_damage_found_during_a_restore_leaves_the_target_untouched(shop: ShopDb) -> None:
    backup = _backup(shop)
    add_products(shop, "KEEP-ME")
    p = shop.platform
    with p.sessions() as session:
        plan = plan_restore(session, p.box, p.settings, str(backup.id), target=None, in_place=True)
    path = shop.storage.root / backup.artifact_key
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # damaged after it was catalogued: only the restore can notice
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifact):
        restore(
            p.sessions, shop.storage, p.settings, plan, confirm=plan.confirm_name, actor="cli:test"
        )
    assert "KEEP-ME" in _skus(shop)


def test_a_failed_backup_is_never_good_and_stops_pruning(
    shop: ShopDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _backup(shop)
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "backup.written=raise")
    with pytest.raises(FailPointError):
        _backup(shop)
    monkeypatch.delenv("TENANTRY_FAILPOINTS")
    p = shop.platform
    with p.sessions.begin() as session:
        failed = session.query(Backup).filter_by(status=BackupStatus.FAILED).one()
        assert "FailPointError" in (failed.error or "")
        assert failed.sha256 is None
        # Make the good backup ancient: retention would prune it, but for the failure.
        session.execute(
            update(Backup)
            .where(Backup.id == old.id)
            .values(started_at=utcnow() - timedelta(days=400))
        )
        policies.set_policy(session, shop.scope, retention_days=1, min_keep=0)
    stored = shop.storage.keys()
    assert failed.artifact_key not in stored
    with p.sessions() as session:
        decisions = retention.plan_prune(session)
    mine = [d for d in decisions if d.scope == shop.scope]
    assert [d.prune for d in mine] == [False]
    assert "failed" in mine[0].why


def test_retention_keeps_pinned_newest_verified_and_recent_backups(shop: ShopDb) -> None:
    taken = [_backup(shop) for _ in range(6)]
    ages = [10, 20, 30, 40, 50, 60]  # days; taken[0] is the newest
    p = shop.platform
    with p.sessions.begin() as session:
        for backup, age in zip(taken, ages, strict=True):
            row = session.get_one(Backup, backup.id)
            row.started_at = utcnow() - timedelta(days=age)
        session.get_one(Backup, taken[4].id).pinned = True
        session.get_one(Backup, taken[5].id).status = BackupStatus.VERIFIED
        policies.set_policy(session, shop.scope, retention_days=25, min_keep=1)
    with p.sessions() as session:
        decisions = {d.backup_id: d for d in retention.plan_prune(session)}
    doomed = [b.id for b in taken if decisions[b.id].prune]
    assert doomed == [taken[2].id, taken[3].id]
    assert decisions[taken[4].id].why.startswith("pinned")
    assert decisions[taken[5].id].why == "newest verified"

    pruned = backup_prune.prune(p.sessions, shop.storage, list(decisions.values()))
    assert sorted(pruned) == sorted(doomed)
    left = shop.storage.keys()
    for backup in taken:
        assert (backup.artifact_key in left) == (backup.id not in doomed)
        if backup.id in doomed:
            expected = BackupStatus.PRUNED
        elif backup.id == taken[5].id:
            expected = BackupStatus.VERIFIED
        else:
            expected = BackupStatus(backup.status)  # as taken: pruning leaves kept backups alone
        assert _status(shop, backup.id) == expected


def test_a_backup_never_lands_in_another_role_or_instance(
    shop: ShopDb, new_database: DbFactory
) -> None:
    billing = _backup(shop, "billing")
    tenant = _backup(shop)
    p = shop.platform
    with p.sessions() as session:
        with pytest.raises(WrongDatabase, match="never lands"):
            plan_restore(
                session,
                p.box,
                p.settings,
                str(billing.id),
                target=p.settings.master_url.render_as_string(hide_password=False),
                in_place=False,
            )
        with pytest.raises(WrongDatabase, match="never lands"):
            plan_restore(
                session,
                p.box,
                p.settings,
                str(tenant.id),
                target=p.settings.billing_url.render_as_string(hide_password=False),
                in_place=False,
            )
    # A copy restored elsewhere is the same instance: restoring over it is allowed, but a
    # database of another instance is not another copy of this one.
    other = new_database("other")
    with p.sessions() as session:
        plan = plan_restore(
            session, p.box, p.settings, str(tenant.id), target=str(other), in_place=False
        )
    restore(p.sessions, shop.storage, p.settings, plan, confirm=None, actor="cli:test")
    with p.sessions() as session:
        again = plan_restore(
            session, p.box, p.settings, str(tenant.id), target=str(other), in_place=False
        )
        assert again.live
        with pytest.raises(WrongDatabase, match="another"):
            plan_restore(
                session,
                p.box,
                p.settings,
                str(billing.id),
                target=str(other),
                in_place=False,
            )


def test_the_scheduler_backs_up_and_verifies_what_is_due(shop: ShopDb) -> None:
    p = shop.platform
    # Both ticks at one moment: a real clock crossing a slot of a policy's cron between them
    # makes a backup due again, as it should (billing's every six hours: seen at 06:00).
    moment = utcnow()
    first = backup_schedule.tick(p.sessions, shop.storage, p.settings, p.box, now=moment)
    assert first.failures == []
    assert len(first.backed_up) == 3  # master, billing and the store: none had a backup
    assert sorted(first.verified) == sorted(first.backed_up)
    again = backup_schedule.tick(p.sessions, shop.storage, p.settings, p.box, now=moment)
    assert again.backed_up == []
    assert again.verified == []
    with p.sessions() as session:
        states = scheduling.protection(session, ["master", "billing", shop.scope])
    assert all(s.protected and s.rto_met for s in states)


def test_backups_go_to_s3(shop: ShopDb, s3_storage: S3Storage, new_database: DbFactory) -> None:
    backup = _backup(shop, storage=s3_storage)
    assert s3_storage.location(backup.artifact_key).startswith("s3://")
    assert set(s3_storage.keys()) == {backup.artifact_key, backup.manifest_key}
    p = shop.platform
    result = verify_backup(p.sessions, s3_storage, backup.id, shop.url, actor="cli:test")
    assert result.passed, result.problems
    target = new_database("from_s3")
    with p.sessions() as session:
        plan = plan_restore(
            session, p.box, p.settings, str(backup.id), target=str(target), in_place=False
        )
    restore(p.sessions, s3_storage, p.settings, plan, confirm=None, actor="cli:test")
    assert table_rows(target) == table_rows(shop.url)
