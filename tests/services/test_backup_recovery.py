"""Recovering rows deleted by mistake from a backup (seed 004, scenario 2), on every backend.

Each test provisions a real store database (the default store schema) on the backend, adds
products, backs it up, deletes some products from the live database, then finds and puts
back the missing rows.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.engine import URL

from tenantry.backup.storage import Storage, storage_for
from tenantry.billing.service import BillingService
from tenantry.db.admin import database_exists
from tenantry.db.billing.models import BillingBase
from tenantry.db.engines import make_engine, sqlite_path
from tenantry.db.master.models import AuditLog, Backup, OperationKind
from tenantry.db.tenant.store.models import StoreBase
from tenantry.db.urls import backend_of
from tenantry.errors import Conflict, InvalidInput, WrongDatabase
from tenantry.failpoints import FailPointError
from tenantry.operations.backup_take import take_backup
from tenantry.operations.kit import OperationKit
from tenantry.operations.records import list_operations, operation_document, request_cancel
from tenantry.operations.recover_rows import RecoveryCancelled, apply_rows, recover_rows
from tenantry.runtime import Platform
from tenantry.services.backups import targets
from tenantry.services.backups.recovery import RowRecovery, find_missing_rows
from tenantry.services.backups.recovery_output import insert_statements, write_csv, write_sql
from tenantry.services.backups.verification import SCRATCH_PREFIX
from tests.conftest import DbFactory
from tests.platform_fixtures import platform, settings
from tests.store_setup import connect_store

__all__ = ["platform", "settings"]

PRODUCTS = StoreBase.metadata.tables["products"]
LINKS = StoreBase.metadata.tables["product_categories"]
CATEGORIES = StoreBase.metadata.tables["categories"]
#: Values that are hard to write as SQL literals: quotes, backslashes, %, ;, newlines, Unicode.
TRICKY = 'it\'s 100% \\ back\\slash; "quoted"\nsecond line: é ü 日本 🎉 :name %(x)s'
T0 = datetime(2026, 1, 22, 9, 30, 15, 123456, tzinfo=UTC)


@dataclass
class Shop:
    """A provisioned store with products, a backup of it, and its live database."""

    platform: Platform
    storage: Storage
    slug: str
    url: URL
    backup_id: uuid.UUID = field(default_factory=uuid.uuid4)
    ids: list[uuid.UUID] = field(default_factory=list)

    def live(self) -> dict[uuid.UUID, dict[str, Any]]:
        """Every product of the live database, by id."""
        return {r["id"]: r for r in self.rows(PRODUCTS)}

    def rows(self, table: Table) -> list[dict[str, Any]]:
        """Every row of ``table`` in the live database."""
        engine = make_engine(self.url, pooled=False)
        try:
            with engine.connect() as conn:
                return [dict(r) for r in conn.execute(select(table)).mappings()]
        finally:
            engine.dispose()

    def execute(self, *statements: Any) -> None:
        """Run statements on the live database in one transaction."""
        engine = make_engine(self.url, pooled=False)
        try:
            with engine.begin() as conn:
                for statement in statements:
                    conn.execute(statement)
        finally:
            engine.dispose()

    def find(self, table: str = "products", **kwargs: Any) -> RowRecovery:
        """Missing rows of ``table`` in the shop's backup."""
        p = self.platform
        return find_missing_rows(
            p.sessions, p.box, p.settings, self.storage, self.backup_id, table, **kwargs
        )

    def apply(self, recovery: RowRecovery, **kwargs: Any) -> int:
        """Insert ``recovery``'s rows into the live database."""
        p = self.platform
        kwargs.setdefault("actor", "cli:test")
        return apply_rows(p.sessions, p.box, p.settings, recovery, **kwargs)


def _product(i: int) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "sku": f"{'AB'[i % 2]}-{i:03d}",
        "slug": f"product-{i}",
        "name": f"Product {i}",
        "description": TRICKY if i % 3 == 0 else None,
        "status": "active",
        "is_active": i % 2 == 0,
        "weight_grams": i * 10 if i % 4 else None,
        "metadata": {"note": TRICKY, "n": i + 0.5, "tags": ["x", None, True], "empty": {}},
        "created_at": T0 + timedelta(minutes=i),
        "updated_at": T0 + timedelta(minutes=i, microseconds=i),
    }


@pytest.fixture
def shop(platform: Platform, new_database: DbFactory, backend: str) -> Shop:
    """A store on ``backend`` with 12 products, backed up (nothing deleted yet)."""
    slug = f"rec-{uuid.uuid4().hex[:8]}"
    url = new_database("recover")
    connect_store(platform, slug, url)
    made = Shop(platform, storage_for(platform.settings), slug, url)
    rows = [_product(i) for i in range(12)]
    made.execute(insert(PRODUCTS).values(rows))
    made.ids = sorted(r["id"] for r in rows)
    category = min(r["id"] for r in made.rows(CATEGORIES))  # provisioning seeded two
    made.execute(
        insert(LINKS).values([{"product_id": i, "category_id": category} for i in made.ids])
    )
    with platform.sessions() as session:
        target = targets.resolve(session, platform.box, platform.settings, f"store:{slug}")
    made.backup_id = take_backup(platform.sessions, made.storage, target, actor="cli:test").id
    return made


def _delete(shop: Shop, ids: list[uuid.UUID]) -> None:
    shop.execute(delete(PRODUCTS).where(PRODUCTS.c.id.in_(ids)))


def _no_scratch_left(shop: Shop, backend: str) -> None:
    name = f"{SCRATCH_PREFIX}recover_{shop.backup_id.hex[:12]}"
    if backend == "sqlite":
        assert not list((shop.platform.settings.data_dir / "scratch").glob(f"{name}*"))
    else:
        assert not database_exists(shop.url.set(database=name))


def test_exactly_the_deleted_rows_are_found_and_put_back(shop: Shop, backend: str) -> None:
    before = shop.live()
    deleted = shop.ids[2:7]
    kept_changed = shop.ids[0]
    _delete(shop, deleted)
    shop.execute(update(PRODUCTS).where(PRODUCTS.c.id == kept_changed).values(name="Renamed"))

    recovery = shop.find()

    assert [r["id"] for r in recovery.rows] == deleted  # ordered by primary key
    assert (recovery.in_backup, recovery.already_present, recovery.missing) == (12, 7, 5)
    assert recovery.scope == f"store:{shop.slug}"
    # Typed by the model: the rows are exactly what the live database held before.
    assert recovery.rows == [before[i] for i in deleted]
    assert isinstance(recovery.rows[0]["created_at"], datetime)
    assert recovery.rows[0]["created_at"].tzinfo is not None
    _no_scratch_left(shop, backend)

    assert shop.apply(recovery) == 5

    after = shop.live()
    assert set(after) == set(shop.ids)
    for i in deleted:
        assert after[i] == before[i]
    assert after[kept_changed]["name"] == "Renamed"  # present in both: never overwritten
    assert all(after[i] == before[i] for i in shop.ids if i not in [*deleted, kept_changed])
    with shop.platform.sessions() as session:
        entry = session.scalars(
            select(AuditLog).where(AuditLog.action == "backup.rows_recovered")
        ).one()
    assert entry.target_id == f"store:{shop.slug}"
    assert entry.details == {
        "backup": str(shop.backup_id),
        "table": "products",
        "count": 5,
        "filtered": False,
    }
    assert shop.find().missing == 0  # nothing left to recover


def test_where_filters_the_backup_copy(shop: Shop) -> None:
    deleted = shop.ids[:8]
    _delete(shop, deleted)
    by_id = {r["id"]: r for r in shop.find().rows}
    expected = sorted(i for i in deleted if by_id[i]["sku"].startswith("A"))

    recovery = shop.find(where="sku LIKE 'A%'")

    assert [r["id"] for r in recovery.rows] == expected
    assert recovery.in_backup == 6  # the six A- products, deleted or not
    assert recovery.already_present == 6 - len(expected)
    assert shop.apply(recovery) == len(expected)
    assert set(shop.live()) == (set(shop.ids) - set(deleted)) | set(expected)


def _run_script(url: URL, script: Path) -> None:
    """Run a SQL file with the database's own client, as an operator would."""
    backend = backend_of(url)
    if backend == "sqlite":
        conn = sqlite3.connect(str(sqlite_path(url)))
        try:
            conn.executescript(script.read_text(encoding="utf-8"))
        finally:
            conn.close()
        return
    env = {**os.environ, "PGCLIENTENCODING": "UTF8"}
    if backend == "postgresql":
        args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)]
        args.append(url.set(drivername="postgresql").render_as_string(hide_password=False))
        stdin = None
    else:
        args = ["mariadb", "--default-character-set=utf8mb4", "-h", str(url.host)]
        args += ["-P", str(url.port or 3306), "-u", str(url.username), str(url.database)]
        if url.password:
            env["MYSQL_PWD"] = str(url.password)
        stdin = script.open("rb")
    try:
        done = subprocess.run(args, env=env, stdin=stdin, capture_output=True, timeout=60)
    finally:
        if stdin is not None:
            stdin.close()
    assert done.returncode == 0, done.stderr.decode()


def test_sql_output_runs_on_the_live_database(shop: Shop, tmp_path: Path) -> None:
    before = shop.live()
    deleted = shop.ids[2:]  # every kind of value: NULLs, booleans, the tricky strings
    _delete(shop, deleted)
    recovery = shop.find()
    script = tmp_path / "missing.sql"
    with script.open("w", encoding="utf-8") as out:
        write_sql(recovery, out)
    text = script.read_text(encoding="utf-8")
    assert text.count("INSERT INTO products") == len(deleted)
    assert "BEGIN;" in text
    assert text.rstrip().endswith("COMMIT;")
    assert "%%" not in text  # a file for a client, not driver-escaped
    assert "RETURNING" not in text
    assert len(list(insert_statements(recovery))) == len(deleted)

    _run_script(shop.url, script)

    after = shop.live()
    assert set(after) == set(shop.ids)
    assert all(after[i] == before[i] for i in shop.ids)  # every value round-tripped


def test_csv_output_lists_the_missing_rows(shop: Shop) -> None:
    before = shop.live()
    deleted = shop.ids[4:6]
    _delete(shop, deleted)
    out = io.StringIO()
    write_csv(shop.find(), out)

    lines = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(lines[0]) == [c.name for c in PRODUCTS.columns]
    assert [uuid.UUID(line["id"]) for line in lines] == deleted
    for line in lines:
        row = before[uuid.UUID(line["id"])]
        assert line["sku"] == row["sku"]
        assert line["description"] == (row["description"] or "")
        assert line["weight_grams"] == (
            "" if row["weight_grams"] is None else str(row["weight_grams"])
        )
        assert line["is_active"] == ("true" if row["is_active"] else "false")
        assert datetime.fromisoformat(line["created_at"]) == row["created_at"]
        assert line["metadata"].startswith("{")


def test_apply_is_one_transaction_all_or_nothing(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    deleted = shop.ids[1:5]
    _delete(shop, deleted)
    recovery = shop.find()
    last = recovery.rows[-1]
    # Meanwhile someone created a new product with the last missing row's (unique) sku.
    shop.execute(insert(PRODUCTS).values({**_product(99), "sku": last["sku"], "slug": "newcomer"}))
    count = len(shop.live())

    with pytest.raises(Conflict) as failed:
        shop.apply(recovery, batch_size=1)  # the first three statements succeed, then one fails
    assert "no row was inserted" in failed.value.message
    assert len(shop.live()) == count  # rolled back: the first three are not there either

    shop.execute(delete(PRODUCTS).where(PRODUCTS.c.slug == "newcomer"))
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "recover.before_commit=raise")
    with pytest.raises(FailPointError):
        shop.apply(recovery)
    assert len(shop.live()) == count - 1
    monkeypatch.delenv("TENANTRY_FAILPOINTS")

    assert shop.apply(recovery) == len(deleted)
    assert set(shop.live()) == set(shop.ids)
    with shop.platform.sessions() as session:
        audits = session.scalar(
            select(func.count()).where(AuditLog.action == "backup.rows_recovered")
        )
    assert audits == 1  # only the apply that inserted something is recorded


def test_tenantry_tables_and_unknown_tables_are_refused(shop: Shop) -> None:
    with pytest.raises(InvalidInput) as refused:
        shop.find("tenantry_identity")
    assert "bookkeeping" in refused.value.message
    assert "products" in (refused.value.hint or "")
    assert "tenantry_" not in (refused.value.hint or "")
    with pytest.raises(InvalidInput) as unknown:
        shop.find("no_such_table")
    assert "no_such_table" in unknown.value.message


def test_a_bad_where_is_invalid_input(shop: Shop, backend: str) -> None:
    _delete(shop, shop.ids[:2])
    with pytest.raises(InvalidInput) as bad:
        shop.find(where="no_such_column = 1")
    assert "no_such_column" in bad.value.message
    with pytest.raises(InvalidInput) as statements:
        shop.find(where="1 = 1; DROP TABLE products")
    assert "';'" in statements.value.message
    with pytest.raises(InvalidInput):
        shop.find(where="   ")
    _no_scratch_left(shop, backend)
    assert len(shop.live()) == 10  # the live database was never touched


def test_another_instance_is_refused(shop: Shop) -> None:
    _delete(shop, shop.ids[:2])
    with shop.platform.sessions.begin() as session:
        session.get_one(Backup, shop.backup_id).instance_id = str(uuid.uuid4())
    with pytest.raises(WrongDatabase) as refused:
        shop.find()
    assert "never merged" in refused.value.message
    assert len(shop.live()) == 10


def test_composite_keys_and_parents_first(shop: Shop) -> None:
    """Links (composite key) whose product is gone need the product back first."""
    links = sorted((r["product_id"], r["category_id"]) for r in shop.rows(LINKS))
    _delete(shop, shop.ids[:2])  # their links go with them (ON DELETE CASCADE)
    shop.execute(delete(LINKS).where(LINKS.c.product_id == shop.ids[5]))

    found = shop.find("product_categories")
    assert sorted((r["product_id"], r["category_id"]) for r in found.rows) == [
        link for link in links if link[0] in (shop.ids[0], shop.ids[1], shop.ids[5])
    ]
    assert (found.in_backup, found.already_present) == (12, 9)
    with pytest.raises(Conflict) as orphans:
        shop.apply(found)  # two links point at products that are not there
    assert "no row was inserted" in orphans.value.message
    assert len(shop.rows(LINKS)) == 9

    assert shop.apply(shop.find("products")) == 2
    assert shop.apply(found) == 3
    assert sorted((r["product_id"], r["category_id"]) for r in shop.rows(LINKS)) == links


def test_billing_rows_are_recovered_into_the_billing_database(platform: Platform) -> None:
    """Seed 004's own example: billing records deleted by mistake (billing on SQLite)."""
    customers = BillingBase.metadata.tables["billing_customers"]
    service = BillingService(platform.billing_sessions, platform.box)
    made = [
        service.create_customer("trashtech", f"c{n}@example.com", f"C{n}", str(n)).id
        for n in range(4)
    ]
    storage = storage_for(platform.settings)
    with platform.sessions() as session:
        target = targets.resolve(session, platform.box, platform.settings, "billing")
    backup = take_backup(platform.sessions, storage, target, actor="cli:test")
    with platform.billing_sessions.begin() as session:
        session.execute(delete(customers).where(customers.c.id.in_(made[1:3])))

    p = platform
    found = find_missing_rows(
        p.sessions, p.box, p.settings, storage, backup.id, "billing_customers"
    )
    assert sorted(r["id"] for r in found.rows) == sorted(made[1:3])
    assert found.scope == "billing"
    assert apply_rows(p.sessions, p.box, p.settings, found, actor="cli:test") == 2
    with platform.billing_sessions() as session:
        assert set(made) <= set(session.scalars(select(customers.c.id)))
    with platform.sessions() as session:
        entry = session.scalars(
            select(AuditLog).where(AuditLog.action == "backup.rows_recovered")
        ).one()
    assert (entry.target_id, entry.details["count"]) == ("billing", 2)


def test_keys_are_matched_as_the_live_database_compares_them(shop: Shop, backend: str) -> None:
    """MySQL's collations ignore case: 'CURRENCY' there is the same key as 'currency'."""
    settings_table = StoreBase.metadata.tables["settings"]
    seeded = sorted(r["key"] for r in shop.rows(settings_table))
    key = seeded[0]
    assert key != key.upper()
    shop.execute(update(settings_table).where(settings_table.c.key == key).values(key=key.upper()))

    found = shop.find("settings")

    if backend == "mysql":
        assert (found.missing, found.already_present) == (0, len(seeded))
    else:
        assert [r["key"] for r in found.rows] == [key]
        assert shop.apply(found) == 1
        assert len(shop.rows(settings_table)) == len(seeded) + 1


def test_a_recovery_is_an_operation_cancelled_before_any_row_is_written(shop: Shop) -> None:
    deleted = shop.ids[2:4]
    _delete(shop, deleted)
    p = shop.platform
    kit = OperationKit.from_settings(p.sessions, p.settings)
    count = len(shop.live())

    def cancel_before_apply(recovery: RowRecovery) -> None:
        assert recovery.missing == len(deleted)  # found: the CLI writes them out here
        with kit.sessions.begin() as session:
            [running] = list_operations(session, kind=OperationKind.RECOVER_ROWS)[0]
            request_cancel(session, running, actor="test")

    with pytest.raises(RecoveryCancelled):
        recover_rows(
            p.sessions,
            p.box,
            p.settings,
            shop.storage,
            shop.backup_id,
            "products",
            apply=True,
            before_apply=cancel_before_apply,
            actor="cli:test",
        )
    assert len(shop.live()) == count  # nothing was inserted

    recovery, applied = recover_rows(
        p.sessions,
        p.box,
        p.settings,
        shop.storage,
        shop.backup_id,
        "products",
        apply=True,
        actor="cli:test",
    )
    assert applied == recovery.missing == len(deleted)
    assert set(shop.live()) == set(shop.ids)
    with p.sessions() as session:
        ops, _total = list_operations(session, kind=OperationKind.RECOVER_ROWS)
        shown = [operation_document(o) for o in ops]
    assert [(d["status"], d["progress"]["unit"]) for d in shown] == [
        ("succeeded", "rows"),
        ("cancelled", "rows"),
    ]
    assert shown[0]["progress"]["current"] == len(deleted)
    assert shown[0]["target"] == f"products from backup {shop.backup_id}"
