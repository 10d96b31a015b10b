"""`tenantry recover rows` end to end on SQLite: list, write for review, apply."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

from sqlalchemy import delete, func, insert, select

from tenantry.db.engines import make_engine
from tenantry.db.master.models import IntegrationConfig, Store
from tenantry.db.tenant.store.models import StoreBase
from tenantry.db.types import utcnow
from tenantry.db.urls import mask
from tenantry.runtime import Platform
from tenantry.services.connections import tenant_url
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json

PRODUCTS = StoreBase.metadata.tables["products"]


def _count(platform: Platform, slug: str) -> int:
    with platform.sessions() as session:
        store = session.scalars(select(Store).where(Store.slug == slug)).one()
        config = session.scalars(
            select(IntegrationConfig).where(IntegrationConfig.store_id == store.id)
        ).one()
    engine = make_engine(tenant_url(platform.box, config), pooled=False)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(PRODUCTS)) or 0)
    finally:
        engine.dispose()


def test_recover_rows_lists_writes_and_applies(cli: Invoke, tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "shop", "--name", "Shop").exit_code == 0
    assert cli("provision", "shop", "--new", "--inline", "--wait").exit_code == 0
    platform = Platform.open(load_settings())
    try:
        with platform.sessions() as session:
            store = session.scalars(select(Store).where(Store.slug == "shop")).one()
            config = session.scalars(
                select(IntegrationConfig).where(IntegrationConfig.store_id == store.id)
            ).one()
        live = make_engine(tenant_url(platform.box, config), pooled=False)
        now = utcnow()
        ids = sorted(uuid.uuid4() for _ in range(5))
        rows = [
            {"id": i, "sku": f"S-{n}", "slug": f"s-{n}", "name": f"N{n}", "metadata": {"n": n}}
            for n, i in enumerate(ids)
        ]
        with live.begin() as conn:
            conn.execute(
                insert(PRODUCTS), [{**r, "created_at": now, "updated_at": now} for r in rows]
            )
        backup = as_json(cli("backup", "run", "--db", "store:shop", "--json"))
        with live.begin() as conn:
            conn.execute(delete(PRODUCTS).where(PRODUCTS.c.id.in_(ids[1:4])))
        live.dispose()

        bad = cli(
            "recover", "rows", "--backup", backup["id"], "--table", "tenantry_identity", "--json"
        )
        assert bad.exit_code == 2
        assert as_json(bad)["error"]["type"] == "InvalidInput"

        listed = cli("recover", "rows", "--backup", backup["id"][:8], "--table", "products")
        assert listed.exit_code == 0, listed.output
        assert listed.stdout.count("INSERT INTO products") == 3  # the SQL alone on stdout
        assert "3 missing" in listed.stderr
        assert _count(platform, "shop") == 2  # listing changes nothing

        out = tmp_path / "missing.csv"
        result = cli(
            "recover", "rows", "--backup", backup["id"], "--table", "products",
            "--format", "csv", "--output", str(out), "--apply", "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        doc = as_json(result)
        assert doc == {
            "backup": backup["id"],
            "database": mask(tenant_url(platform.box, config)),
            "scope": "store:shop",
            "table": "products",
            "where": None,
            "in_backup": 5,
            "already_present": 2,
            "missing": 3,
            "applied": 3,
            "format": "csv",
            "output": str(out),
        }
        with out.open(newline="") as f:
            assert [uuid.UUID(r["id"]) for r in csv.DictReader(f)] == ids[1:4]
        assert out.stat().st_mode & 0o077 == 0  # row data: readable by its owner only
        assert _count(platform, "shop") == 5

        again = as_json(
            cli("recover", "rows", "--backup", backup["id"], "--table", "products", "--json")
        )
        assert (again["missing"], again["applied"], again["output"]) == (0, None, None)
    finally:
        platform.close()
