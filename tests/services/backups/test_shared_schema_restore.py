"""Restoring a shared-schema store in place: a staging schema checked, then swapped in by
renaming schemas in one transaction; rows changed after the backup come back, the neighbour
in the same shared database is untouched, a failure before the switch changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tenantry.backup.storage import storage_for
from tenantry.db.master.models import Backup
from tenantry.db.tenant.store.models import Product
from tenantry.operations.backup_take import take_backup
from tenantry.operations.provision_shared import provision_shared_store
from tenantry.operations.restore import restore
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.backups.restore_plan import SCHEMA_METHOD, plan_restore
from tenantry.services.backups.targets import resolve
from tests.operations.test_provision_shared import admin_query, make_store
from tests.platform_fixtures import platform, settings
from tests.services.backups.test_shared_schema_backups import add
from tests.shared_schema_fixtures import SharedDb, shared_db
from tests.tenantry_fixtures import new_slug

__all__ = ["platform", "settings", "shared_db"]


def skus(platform: Platform, slug: str) -> list[str]:
    """The store's product SKUs, read as the store's own sessions read them."""
    with platform.sessions() as master:
        engine = platform.router.engine(master, stores.get_store(master, slug))
    with Session(engine) as session:
        return sorted(session.scalars(select(Product.sku)))


def change_after_backup(platform: Platform, slug: str) -> None:
    with platform.sessions() as master:
        engine = platform.router.engine(master, stores.get_store(master, slug))
    with Session(engine) as session, session.begin():
        session.execute(text("DELETE FROM products WHERE sku = 'MINE-1'"))
        session.add(Product(sku="LATER-1", slug="later-1", name="Later"))


def two_stores(platform: Platform, shared: SharedDb) -> tuple[str, str, str, Backup]:
    """A store and its neighbour in one shared database; a backup of the first."""
    mine, other = new_slug("rs-a"), new_slug("rs-b")
    schema = ""
    for slug in (mine, other):
        make_store(platform, slug)
        done = provision_shared_store(platform, slug, shared.target, actor="cli:test")
        schema = schema or done.schema
    add(platform, mine, "MINE-1", "MINE-2")
    add(platform, other, "OTHER-1")
    with platform.sessions() as session:
        target = resolve(session, platform.box, platform.settings, f"store:{mine}")
    backup = take_backup(
        platform.sessions, storage_for(platform.settings), target, actor="cli:test"
    )
    return mine, other, schema, backup


def schemas_of(shared: SharedDb) -> set[str]:
    return {
        str(r[0])
        for r in admin_query(
            shared.database, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%'"
        )
    }


def test_in_place_restore_brings_rows_back_and_leaves_the_neighbour(
    platform: Platform, shared_db: SharedDb
) -> None:
    mine, other, schema, backup = two_stores(platform, shared_db)
    change_after_backup(platform, mine)
    add(platform, other, "OTHER-2")  # the neighbour writes on
    before = schemas_of(shared_db)
    with platform.sessions() as session:
        plan = plan_restore(
            session, platform.box, platform.settings, str(backup.id), target=None, in_place=True
        )
    assert (plan.method, plan.live, plan.confirm_name) == (SCHEMA_METHOD, True, schema)
    blocks: dict[str, set[str | None]] = {"restoring": set(), "switching": set()}

    def block_now(when: str) -> None:
        with platform.sessions() as master:
            blocks[when].add(stores.get_store(master, mine).write_block_reason)

    result = restore(
        platform.sessions,
        storage_for(platform.settings),
        platform.settings,
        plan,
        confirm=schema,
        actor="cli:test",
        on_progress=lambda _done: block_now("restoring"),
        before_switch=lambda: block_now("switching"),
    )
    assert result.row_counts["products"] == 2
    # The store took writes while its backup was restored into the staging schema; they
    # were blocked for the switch alone.
    assert blocks["restoring"] == {None}
    (reason,) = blocks["switching"]
    assert reason is not None
    assert "restor" in reason
    assert result.safety_backup_id is not None
    assert skus(platform, mine) == ["MINE-1", "MINE-2"]  # through its pool login and role
    assert skus(platform, other) == ["OTHER-1", "OTHER-2"]
    # One schema each, as before: the staging schema became the store's, the replaced one
    # was dropped (its rows are in the pinned safety backup).
    assert schemas_of(shared_db) == before
    with platform.sessions() as master:
        store = stores.get_store(master, mine)
        assert store.write_block_reason is None
    # The restored schema's tables are the role's to write (grants followed the switch).
    add(platform, mine, "AFTER-1")
    assert skus(platform, mine) == ["AFTER-1", "MINE-1", "MINE-2"]


@pytest.mark.parametrize("point", ["restore.staged", "restore.before_switch"])
def test_a_failure_before_the_switch_changes_nothing(
    platform: Platform, shared_db: SharedDb, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    mine, other, _schema, backup = two_stores(platform, shared_db)
    change_after_backup(platform, mine)
    before = schemas_of(shared_db)
    with platform.sessions() as session:
        plan = plan_restore(
            session, platform.box, platform.settings, str(backup.id), target=None, in_place=True
        )
    monkeypatch.setenv("TENANTRY_FAILPOINTS", f"{point}=raise")
    with pytest.raises(Exception, match=point.replace(".", r"\.")):
        restore(
            platform.sessions,
            storage_for(platform.settings),
            platform.settings,
            plan,
            confirm=plan.confirm_name,
            actor="cli:test",
        )
    monkeypatch.delenv("TENANTRY_FAILPOINTS")
    assert schemas_of(shared_db) == before  # no staging schema left
    assert skus(platform, mine) == ["LATER-1", "MINE-2"]
    assert skus(platform, other) == ["OTHER-1"]
    with platform.sessions() as master:
        assert stores.get_store(master, mine).write_block_reason is None
    add(platform, mine, "STILL-1")  # writes are taken again
    assert "STILL-1" in skus(platform, mine)
