"""``POST /imports/shared``: the same import as the CLI's, as operations followed over HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from tenantry.db.master.models import ImportJob, ImportSource
from tenantry.db.tenant.store.seed import DEFAULT_CATEGORIES
from tests.api.conftest import Api
from tests.imports.fixtures import (
    MAPPING,
    SourceFactory,
    raw,
    shared_source,
    shop_prefix,
    store_rows,
)

__all__ = ["shared_source", "shop_prefix"]  # fixtures, imported to be found


def _wait(api: Api, operation_id: str, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        doc: dict[str, Any] = api.client.get(
            f"/operations/{operation_id}", headers=api.admin
        ).json()
        if doc["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return doc
        time.sleep(0.2)


def test_dry_run_then_import_over_http(
    api: Api, shop_prefix: str, shared_source: SourceFactory
) -> None:
    source = shared_source("sqlite", shop_prefix, stores_count=3)
    mapping = yaml.safe_load(Path(MAPPING).read_text())
    body = {"url": raw(source), "mapping": mapping, "create_stores": True}

    dry = api.client.post("/imports/shared", json={**body, "dry_run": True}, headers=api.admin)
    assert dry.status_code == 200, dry.text
    assert dry.json()["operations"] == []
    assert dry.json()["plan"]["ok"] is True
    assert [s["slug"] for s in dry.json()["plan"]["stores"]] == [
        f"{shop_prefix}-00{n}" for n in (1, 2, 3)
    ]
    assert api.client.get("/stores", headers=api.admin).json()["items"] == []

    accepted = api.client.post("/imports/shared", json=body, headers=api.admin)
    assert accepted.status_code == 202, accepted.text
    operations = accepted.json()["operations"]
    assert len(operations) == 3
    for op in operations:
        done = _wait(api, op["operation_id"])
        assert done["status"] == "succeeded", done
        assert done["kind"] == "import"
        assert done["progress"]["unit"] == "rows"
        assert done["progress"]["current"] == done["progress"]["total"] > 0


def test_bad_mapping_and_dirty_plan_are_422_and_nothing_is_written(
    api: Api, shop_prefix: str, shared_source: SourceFactory
) -> None:
    source = shared_source("sqlite", shop_prefix, stores_count=2)
    typo = {
        "stores": {"table": "stores", "key": "id", "slug": "slug"},
        "tables": {"products": {"from": "products", "store_colum": "store_id"}},
    }
    bad = api.client.post(
        "/imports/shared", json={"url": raw(source), "mapping": typo}, headers=api.admin
    )
    assert bad.status_code == 422
    assert "tables.products.store_colum: unknown key" in bad.text

    # Without --create-stores, stores tenantry does not know are a problem of the plan.
    mapping = yaml.safe_load(Path(MAPPING).read_text())
    refused = api.client.post(
        "/imports/shared", json={"url": raw(source), "mapping": mapping}, headers=api.admin
    )
    assert refused.status_code == 422
    assert "maps to no tenantry store" in refused.text
    assert api.client.get("/operations?kind=import", headers=api.admin).json()["items"] == []

    secret = "postgresql://someone:hunter2@127.0.0.1:1/shop"
    unreachable = api.client.post(
        "/imports/shared", json={"url": secret, "mapping": mapping}, headers=api.admin
    )
    assert unreachable.status_code == 503, unreachable.text
    assert "cannot connect" in unreachable.json()["error"]["message"]
    assert "hunter2" not in unreachable.text


def test_cancel_puts_the_store_back(
    api: Api, shop_prefix: str, shared_source: SourceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = shared_source("sqlite", shop_prefix, stores_count=1)
    slug = f"{shop_prefix}-001"
    # The import pauses after its first batch of orders: long enough to be cancelled.
    monkeypatch.setenv("TENANTRY_FAILPOINTS", f"import.batch.{slug}.orders.1=sleep:3")
    mapping = yaml.safe_load(Path(MAPPING).read_text())
    body = {"url": raw(source), "mapping": mapping, "create_stores": True}
    accepted = api.client.post("/imports/shared", json=body, headers=api.admin)
    assert accepted.status_code == 202, accepted.text
    (op,) = accepted.json()["operations"]
    deadline = time.monotonic() + 30
    while (
        api.client.get(f"/operations/{op['operation_id']}", headers=api.admin).json()["progress"][
            "step"
        ]
        != "copy"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cancelled = api.client.post(f"/operations/{op['operation_id']}/cancel", headers=api.admin)
    assert cancelled.status_code == 200, cancelled.text
    done = _wait(api, op["operation_id"])
    assert done["status"] == "cancelled", done
    assert sum(store_rows(slug, "orders", ["id"]).values()) == 0
    assert sum(store_rows(slug, "products", ["id"]).values()) == 0
    slugs = {row[0] for row in store_rows(slug, "categories", ["slug"])}
    assert slugs == {s for s, _ in DEFAULT_CATEGORIES}


def test_queued_import_runs_through_the_dispatcher_and_forgets_its_source(
    api: Api, shop_prefix: str, shared_source: SourceFactory
) -> None:
    source = shared_source("sqlite", shop_prefix, stores_count=2)
    mapping = yaml.safe_load(Path(MAPPING).read_text())
    body = {"url": raw(source), "mapping": mapping, "create_stores": True, "queue": True}
    accepted = api.client.post("/imports/shared", json=body, headers=api.admin)
    assert accepted.status_code == 202, accepted.text
    operations = accepted.json()["operations"]
    assert len(operations) == 2
    for op in operations:
        done = _wait(api, op["operation_id"])
        assert done["status"] == "succeeded", done.get("error")
    for n in (1, 2):
        assert sum(store_rows(f"{shop_prefix}-00{n}", "orders", ["id"]).values()) > 0
    with api.platform.sessions() as session:  # the last store to end forgot the source
        assert session.scalar(select(func.count()).select_from(ImportSource)) == 0
        assert session.scalar(select(func.count()).select_from(ImportJob)) == 0
