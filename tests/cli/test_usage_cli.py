"""`tenantry stores usage` and `tenantry report sizes` on the embedded default (SQLite)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import URL

from tenantry.db.engines import connect, make_engine
from tenantry.db.sizes import database_bytes
from tenantry.db.urls import parse_url
from tenantry.runtime import Platform
from tenantry.services import store_data, stores
from tenantry.services.connections import migrator_url
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json


def _shops(cli: Invoke, *slugs: str) -> None:
    assert cli("init").exit_code == 0
    for slug in slugs:
        assert cli("stores", "create", slug, "--name", slug).exit_code == 0
        done = cli("provision", slug, "--new", "--inline")
        assert done.exit_code == 0, done.output


def _database_file(slug: str) -> Path:
    platform = Platform.open(load_settings())
    try:
        with platform.sessions() as session:
            config = stores.active_connection(session, stores.get_store(session, slug))
            assert config is not None
            url = migrator_url(session, platform.box, config)
    finally:
        platform.close()
    assert url.database
    return Path(url.database)


def _add_products(slug: str, *skus: str) -> None:
    platform = Platform.open(load_settings())
    try:
        with platform.sessions() as master:
            store = stores.get_store(master, slug)
            with platform.router.session(master, store) as tenant:
                for sku in skus:
                    store_data.create_product(
                        tenant,
                        master,
                        store,
                        store_data.ProductInput(sku, sku, description="d" * 400, price_minor=5),
                    )
                tenant.commit()
                master.commit()
    finally:
        platform.close()


def _size(path: Path) -> int:
    engine = make_engine(make_engine_url(path), pooled=False)
    try:
        with connect(engine) as conn:
            return database_bytes(conn)
    finally:
        engine.dispose()


def make_engine_url(path: Path) -> URL:
    return parse_url(f"sqlite:///{path}")


def test_stores_usage_refreshes_and_shows_the_days(cli: Invoke) -> None:
    _shops(cli, "usage-cli")
    _add_products("usage-cli", "ONE")

    never = cli("stores", "usage", "usage-cli")
    assert never.exit_code == 0
    assert "no usage rows" in never.stdout
    assert "never measured" in never.stdout

    refreshed = cli("stores", "usage", "usage-cli", "--refresh", "--json")
    assert refreshed.exit_code == 0, refreshed.output
    doc = as_json(refreshed)
    size = _size(_database_file("usage-cli"))
    assert doc["storage_used_bytes"] == size > 0
    [today] = doc["days"]
    assert today["date"] == datetime.now(UTC).date().isoformat()
    assert (today["total_products"], today["products_created"]) == (1, 1)
    assert today["storage_total_bytes"] == size

    shown = cli("stores", "usage", "usage-cli", "--days", "7", env={"COLUMNS": "120"})
    assert shown.exit_code == 0, shown.output
    assert today["date"] in shown.stdout
    assert "usage of store usage-cli, free plan, last 7 day(s)" in shown.stdout
    assert "of 1.0 GiB" in shown.stdout

    assert as_json(cli("stores", "usage", "usage-cli", "--json")) == doc  # nothing rewritten


def test_stores_usage_refuses_bad_arguments_clearly(cli: Invoke) -> None:
    _shops(cli, "args-cli")
    for days in ("0", "367"):
        bad = cli("stores", "usage", "args-cli", "--days", days)
        assert bad.exit_code != 0
        assert f"days must be a whole number from 1 to 366, got {days}" in bad.stderr
    lonely = cli("stores", "usage", "--all")
    assert lonely.exit_code != 0
    assert "--all goes with --refresh" in lonely.stderr
    nothing = cli("stores", "usage", "--refresh")
    assert nothing.exit_code != 0
    assert "give either a store's slug or --all" in nothing.stderr
    unknown = cli("stores", "usage", "no-such-shop")
    assert unknown.exit_code != 0
    assert "no store 'no-such-shop'" in unknown.stderr


def test_refreshing_every_store_goes_on_past_a_broken_one(cli: Invoke) -> None:
    _shops(cli, "fine-cli", "lost-cli")
    os.remove(_database_file("lost-cli"))

    result = cli("stores", "usage", "--all", "--refresh", "--json")

    assert result.exit_code == 1
    doc = as_json(result)
    by_store = {item["store"]: item for item in doc["items"]}
    assert doc["failed"] == 1
    assert by_store["fine-cli"]["ok"]
    assert by_store["fine-cli"]["storage_bytes"] > 0
    assert not by_store["lost-cli"]["ok"]
    assert "missing" in by_store["lost-cli"]["error"]
    fine = as_json(cli("stores", "usage", "fine-cli", "--json"))
    assert fine["storage_measured_at"] is not None
    assert len(fine["days"]) == 1


def test_report_sizes_lists_every_database_and_its_tables(cli: Invoke) -> None:
    _shops(cli, "big-cli", "small-cli", "gone-cli")
    _add_products("big-cli", *(f"SKU-{n}" for n in range(60)))
    os.remove(_database_file("gone-cli"))

    result = cli("report", "sizes", "--json")

    assert result.exit_code == 0, result.output
    doc = as_json(result)
    by_name = {d["name"]: d for d in doc["databases"]}
    assert set(by_name) == {
        "master",
        "billing",
        "store:big-cli",
        "store:small-cli",
        "store:gone-cli",
    }
    assert doc["unreachable"] == 1
    assert "missing" in by_name["store:gone-cli"]["error"]
    assert by_name["store:gone-cli"]["bytes"] is None
    measured = [d for d in doc["databases"] if d["error"] is None]
    assert [d["bytes"] for d in measured] == sorted((d["bytes"] for d in measured), reverse=True)
    assert doc["databases"][-1]["name"] == "store:gone-cli"  # unreadable ones last
    settings = load_settings()
    files = {
        "master": Path(settings.master_url.database or ""),
        "billing": Path(settings.billing_url.database or ""),
        "store:big-cli": _database_file("big-cli"),
    }
    for name, path in files.items():
        engine = make_engine(make_engine_url(path), pooled=False)
        try:
            with connect(engine) as conn:
                tables = set(inspect(conn).get_table_names())
        finally:
            engine.dispose()
        listed = by_name[name]["tables"]
        assert {t["name"] for t in listed} == tables
        assert [t["bytes"] for t in listed] == sorted((t["bytes"] for t in listed), reverse=True)
        assert by_name[name]["bytes"] == _size(path)
    products = next(t for t in by_name["store:big-cli"]["tables"] if t["name"] == "products")
    assert products["rows"] == 60
    small = next(t for t in by_name["store:small-cli"]["tables"] if t["name"] == "products")
    assert small["rows"] == 0
    assert products["bytes"] > small["bytes"]

    top = as_json(cli("report", "sizes", "--json", "--top", "2"))
    for database in top["databases"]:
        if database["error"] is None:
            assert len(database["tables"]) == 2
            assert database["table_count"] > 2

    text = cli("report", "sizes", "--top", "3", env={"COLUMNS": "160"})
    assert text.exit_code == 0, text.output
    assert "store:big-cli: largest 3 of" in text.stdout
    assert "store:gone-cli" in text.stdout
    assert "missing" in text.stdout
