"""``tenantry import shared``: a shared shop database (tests/fixtures/shared_shop.py) imported
into one database per store, on every backend as the target, from another engine."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect

from tenantry.db.engines import make_engine, sqlite_path
from tenantry.db.tenant.store.models import metadata as store_metadata
from tenantry.db.tenant.store.seed import DEFAULT_CATEGORIES
from tenantry.operations import sweep
from tenantry.operations.kit import OperationKit
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.connections import migrator_url
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json, process_env
from tests.conftest import require_server
from tests.fixtures import shared_shop
from tests.imports.fixtures import (
    MAPPING,
    SOURCE_FOR,
    SourceFactory,
    admin_url,
    assert_exactly_once,
    raw,
    shared_source,
    shop_prefix,
    source_rows,
    store_rows,
)

__all__ = ["shared_source", "shop_prefix"]  # fixtures, imported to be found


def _import_args(source: Any, *extra: str) -> list[str]:
    return ["import", "shared", "--url", raw(source), "--map", str(MAPPING), *extra]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"])
def test_import_across_engines_killed_mid_copy_then_resumed(
    cli: Invoke,
    backend: str,
    tmp_path: Path,
    shop_prefix: str,
    shared_source: SourceFactory,
) -> None:
    require_server(backend)
    source = shared_source(SOURCE_FOR[backend], shop_prefix, stores_count=6)
    before = shared_shop.source_digests(source)
    assert cli("init").exit_code == 0
    server: list[str] = []
    if backend != "sqlite":
        assert cli("servers", "add", "main", "--url", admin_url(backend)).exit_code == 0
        server = ["--server", "main"]
    victim = f"{shop_prefix}-002"
    args = _import_args(
        source, "--create-stores", *server, "--concurrency", "2", "--batch-rows", "10"
    )
    env = process_env(
        tmp_path / "data",
        TENANTRY_FAILPOINTS=f"import.batch.{victim}.order_items.2=kill",
    )
    killed = subprocess.run(
        [sys.executable, "-m", "tenantry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    # Killed mid-copy: the victim holds some of its order items, not all.
    partial = sum(store_rows(victim, "order_items", ["id"]).values())
    assert 0 < partial < sum(source_rows(source, "order_items", 2, ["id"]).values())

    # Run again at once: the dead process's lease (60 s by default) is not waited for, its
    # holder being a process of this host that is gone.
    resumed = cli(*args, "--json")
    assert resumed.exit_code == 0, resumed.output
    outcomes = {o["store"]: o for o in as_json(resumed)["stores"]}
    assert len(outcomes) == 6
    assert {o["status"] for o in outcomes.values()} <= {"succeeded", "skipped"}
    assert outcomes[victim]["status"] == "succeeded"
    assert outcomes[victim]["resumed"] is True
    for table in outcomes[victim]["tables"].values():
        assert table["verified"] == table["rows"]

    assert_exactly_once(source, shop_prefix, 6)
    assert shared_shop.source_digests(source) == before  # the source was only read
    ops = as_json(cli("ops", "list", "--kind", "import", "--json"))
    victim_ops = [o for o in ops["items"] if o["target"] == victim]
    assert [(o["status"], o["attempts"]) for o in victim_ops] == [("succeeded", 2)]

    again = cli(*args, "--json")  # imported stores are not imported twice
    assert again.exit_code == 0, again.output
    assert {o["status"] for o in as_json(again)["stores"]} == {"skipped"}


def _dirty(url: Any) -> None:
    """Rows an app's bugs leave behind, written around the source's foreign keys."""
    path = sqlite_path(url)
    assert path is not None
    conn = sqlite3.connect(path)
    try:
        product = "1" * 32
        conn.execute(
            "INSERT INTO products (id, store_id, sku, slug, title, status, active, created_at) "
            "VALUES (?, 999, 'ORPHAN', 'orphan', 'Orphan', 'active', 1, '2024-01-01 00:00:00')",
            (product,),
        )
        too_long = "2" * 32
        conn.execute(
            "INSERT INTO products (id, store_id, sku, slug, title, status, active, created_at) "
            "VALUES (?, 1, 'LONG', 'long', 'Long', ?, 1, '2024-01-01 00:00:00')",
            (too_long, "x" * 40),
        )
        # An order item of store 1 pointing at a product of store 2.
        order = conn.execute("SELECT id FROM orders WHERE store_id = 1 LIMIT 1").fetchone()[0]
        other = conn.execute("SELECT id FROM products WHERE store_id = 2 LIMIT 1").fetchone()[0]
        conn.execute(
            "INSERT INTO order_items VALUES (?, ?, ?, 'X', 'Cross', 1, 100, 100)",
            ("3" * 32, order, other),
        )
        conn.commit()
    finally:
        conn.close()


def test_dry_run_reports_dirty_data_and_the_import_refuses_before_writing(
    cli: Invoke, shop_prefix: str, shared_source: SourceFactory
) -> None:
    source = shared_source("sqlite", shop_prefix, stores_count=3)
    _dirty(source)
    assert cli("init").exit_code == 0
    dry = cli(*_import_args(source, "--create-stores", "--dry-run", "--json"))
    assert dry.exit_code == 2, dry.output
    plan = as_json(dry)
    assert plan["ok"] is False
    found = {(p["kind"], p["table"], p["column"]): p for p in plan["problems"]}
    orphan = found[("orphan", "products", "store_id")]
    assert orphan["example_keys"] == ["1" * 32]
    assert found[("bad_value", "products", "status")]["example_keys"] == ["2" * 32]
    too_long = found[("bad_value", "products", "status")]
    assert too_long["message"] == "values longer than the column's 32 characters"
    assert too_long["detail"] == f"{'2' * 32}: 40 characters"
    cross = found[("cross_store_fk", "order_items", "product_id")]
    assert cross["example_keys"] == ["3" * 32]
    assert cross["rows"] == 1
    # The plan still says what each store would get.
    assert [s["slug"] for s in plan["stores"]] == [f"{shop_prefix}-00{n}" for n in (1, 2, 3)]
    assert all(s["rows"]["orders"] == 30 for s in plan["stores"])

    text = cli(*_import_args(source, "--create-stores", "--dry-run"), env={"COLUMNS": "200"})
    assert text.exit_code == 2
    assert "cross_store_fk" in text.stdout
    assert "3" * 32 in text.stdout

    refused = cli(*_import_args(source, "--create-stores"))
    assert refused.exit_code == 2
    assert "nothing was written" in refused.stderr
    assert as_json(cli("stores", "list", "--json"))["items"] == []  # no store was created
    assert as_json(cli("ops", "list", "--kind", "import", "--json"))["items"] == []


def test_mapping_problems_name_the_table_and_column(
    cli: Invoke, tmp_path: Path, shop_prefix: str, shared_source: SourceFactory
) -> None:
    source = shared_source("sqlite", shop_prefix, stores_count=2)
    assert cli("init").exit_code == 0
    typo = tmp_path / "typo.yml"
    typo.write_text(
        "stores: {table: stores, key: id, slug: slug}\n"
        "tables:\n  products: {from: products, store_colum: store_id}\n"
    )
    result = cli("import", "shared", "--url", raw(source), "--map", str(typo), "--dry-run")
    assert result.exit_code == 2
    assert "tables.products.store_colum: unknown key" in result.stderr
    assert str(typo) in result.stderr

    wrong = tmp_path / "wrong.yml"
    wrong.write_text(
        "stores: {table: stores, key: id, slug: slug}\n"
        "tables:\n"
        "  products:\n"
        "    from: products\n"
        "    store_column: store_id\n"
        "    columns: {name: headline, weight_grams: title}\n"
        "  orders: {from: purchases, store_column: store_id}\n"
    )
    dry = cli("import", "shared", "--url", raw(source), "--map", str(wrong), "--dry-run", "--json")
    assert dry.exit_code == 2
    found = {(p["kind"], p["table"], p["column"]) for p in as_json(dry)["problems"]}
    assert ("missing_column", "products", "headline") in found
    assert ("type_mismatch", "products", "weight_grams") in found
    assert ("missing_table", "orders", None) in found

    mismatch = tmp_path / "mismatch.yml"
    mismatch.write_text(
        "stores: {table: stores, key: id, slug: slug}\n"
        "tables:\n"
        "  products:\n"
        "    from: products\n"
        "    store_column: store_id\n"
        "    columns: {name: title, weight_grams: sku}\n"
    )
    dry = cli(
        "import",
        "shared",
        "--url",
        raw(source),
        "--map",
        str(mismatch),
        "--create-stores",
        "--dry-run",
        "--json",
    )
    assert dry.exit_code == 2
    problems = {(p["kind"], p["table"], p["column"]): p for p in as_json(dry)["problems"]}
    assert set(problems) == {
        ("type_mismatch", "products", "weight_grams"),
        ("bad_value", "products", "weight_grams"),
    }
    values = problems[("bad_value", "products", "weight_grams")]
    assert values["rows"] == 50  # every product of both stores: SKU-… is not a number
    assert len(values["example_keys"]) == 5
    assert values["message"] == "values that do not convert to int"
    assert "'SKU-" in values["detail"]

    orphaned = tmp_path / "orders-only.yml"
    orphaned.write_text(
        "stores: {table: stores, key: id, slug: slug}\n"
        "tables:\n  orders: {from: orders, store_column: store_id}\n"
    )
    dry = cli(
        "import",
        "shared",
        "--url",
        raw(source),
        "--map",
        str(orphaned),
        "--create-stores",
        "--dry-run",
        "--json",
    )
    assert dry.exit_code == 2
    (problem,) = as_json(dry)["problems"]
    assert (problem["kind"], problem["table"], problem["column"]) == (
        "unmapped_parent",
        "orders",
        "customer_id",
    )


def _tenant_counts(slug: str) -> dict[str, int]:
    from collections import Counter

    counts: Counter[str] = Counter()
    for table in ("orders", "order_items", "products", "categories"):
        counts[table] = sum(store_rows(slug, table, ["id"]).values())
    return dict(counts)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"])
def test_a_failing_store_is_put_back_and_the_others_carry_on(
    cli: Invoke, backend: str, shop_prefix: str, shared_source: SourceFactory
) -> None:
    require_server(backend)
    source = shared_source("sqlite", shop_prefix, stores_count=3)
    assert cli("init").exit_code == 0
    server: list[str] = []
    if backend != "sqlite":
        assert cli("servers", "add", "main", "--url", admin_url(backend)).exit_code == 0
        server = ["--server", "main"]
    failing = f"{shop_prefix}-003"
    args = _import_args(source, "--create-stores", *server, "--batch-rows", "10", "--json")
    result = cli(*args, env={"TENANTRY_FAILPOINTS": f"import.batch.{failing}.order_items.2=raise"})
    assert result.exit_code == 1
    outcomes = {o["store"]: o for o in as_json(result)["stores"]}
    assert outcomes[failing]["status"] == "failed"
    assert "put back as it was" in outcomes[failing]["error"]
    assert outcomes[f"{shop_prefix}-001"]["status"] == "succeeded"
    assert outcomes[f"{shop_prefix}-002"]["status"] == "succeeded"

    # As provisioned: the seeded default categories, nothing imported, no import cursor.
    assert _tenant_counts(failing) == {
        "orders": 0,
        "order_items": 0,
        "products": 0,
        "categories": len(DEFAULT_CATEGORIES),
    }
    slugs = {row[0] for row in store_rows(failing, "categories", ["slug"])}
    assert slugs == {slug for slug, _ in DEFAULT_CATEGORIES}

    platform = Platform.open(load_settings())
    with platform.sessions() as session:
        store = stores.get_store(session, failing)
        config = stores.active_connection(session, store)
        assert config is not None
        url = migrator_url(session, platform.box, config)
    platform.close()
    engine = make_engine(url, pool_size=1)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert "tenantry_import_cursor" not in tables
    assert set(store_metadata.tables) <= tables

    again = cli(*args)
    assert again.exit_code == 0, again.output
    statuses = {o["store"]: o["status"] for o in as_json(again)["stores"]}
    assert statuses == {
        f"{shop_prefix}-001": "skipped",
        f"{shop_prefix}-002": "skipped",
        failing: "succeeded",
    }
    assert_exactly_once(source, shop_prefix, 3)


def test_a_store_with_rows_of_its_own_is_refused_and_left_untouched(
    cli: Invoke, shop_prefix: str, shared_source: SourceFactory
) -> None:
    source = shared_source("sqlite", shop_prefix, stores_count=2)
    assert cli("init").exit_code == 0
    mine = f"{shop_prefix}-001"
    assert cli("stores", "create", mine, "--name", "Mine").exit_code == 0
    assert cli("provision", mine, "--new", "--inline").exit_code == 0
    platform = Platform.open(load_settings())
    with platform.sessions() as session:
        config = stores.active_connection(session, stores.get_store(session, mine))
        assert config is not None
        url = migrator_url(session, platform.box, config)
    platform.close()
    engine = make_engine(url, pool_size=1)
    categories = store_metadata.tables["categories"]
    with engine.begin() as conn:
        conn.execute(categories.insert().values(slug="handmade", name="Handmade"))
    engine.dispose()

    result = cli(*_import_args(source, "--stores", mine, "--json"))
    assert result.exit_code == 1
    (outcome,) = as_json(result)["stores"]
    assert outcome["status"] == "failed"
    assert "categories already holds rows of its own" in outcome["error"]
    slugs = {row[0] for row in store_rows(mine, "categories", ["slug"])}
    assert slugs == {"handmade", *(slug for slug, _ in DEFAULT_CATEGORIES)}
    assert sum(store_rows(mine, "products", ["id"]).values()) == 0


def test_killed_between_copy_and_verification_swept_then_resumed_without_copying_again(
    cli: Invoke,
    tmp_path: Path,
    shop_prefix: str,
    shared_source: SourceFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = shared_source("sqlite", shop_prefix, stores_count=2)
    assert cli("init").exit_code == 0
    victim = f"{shop_prefix}-001"
    args = _import_args(source, "--create-stores", "--concurrency", "1")
    killed = subprocess.run(
        [sys.executable, "-m", "tenantry", *args],
        env=process_env(
            tmp_path / "data",
            TENANTRY_FAILPOINTS=f"import.after_copy.{victim}=kill",
            TENANTRY_JOB_LEASE_SECONDS="2",
        ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    copied = store_rows(victim, "order_items", ["id"])
    assert sum(copied.values()) == sum(source_rows(source, "order_items", 1, ["id"]).values())

    time.sleep(2.5)  # its lease lapses: a worker's recovery sweep ends it failed
    platform = Platform.open(load_settings())
    try:
        kit = OperationKit.from_settings(platform.sessions, platform.settings)
        ended = sweep.end_abandoned(kit)
    finally:
        platform.close()
    assert len(ended) == 1
    monkeypatch.setenv("TENANTRY_JOB_LEASE_SECONDS", "2")
    resumed = cli(*args, "--json")
    assert resumed.exit_code == 0, resumed.output
    outcomes = {o["store"]: o for o in as_json(resumed)["stores"]}
    assert outcomes[victim]["status"] == "succeeded"
    assert outcomes[victim]["resumed"] is True
    for table in outcomes[victim]["tables"].values():  # copied by the first run, verified now
        assert table["copied"] == table["verified"] == table["rows"]
    assert store_rows(victim, "order_items", ["id"]) == copied  # nothing copied twice
    assert_exactly_once(source, shop_prefix, 2)
    ops = as_json(cli("ops", "list", "--kind", "import", "--store", victim, "--json"))["items"]
    assert sorted(o["status"] for o in ops) == ["failed", "succeeded"]


def test_killed_while_provisioning_a_store_resumed_at_once(
    cli: Invoke, tmp_path: Path, shop_prefix: str, shared_source: SourceFactory
) -> None:
    source = shared_source("sqlite", shop_prefix, stores_count=2)
    assert cli("init").exit_code == 0
    args = _import_args(source, "--create-stores", "--concurrency", "1")
    killed = subprocess.run(
        [sys.executable, "-m", "tenantry", *args],
        env=process_env(tmp_path / "data", TENANTRY_FAILPOINTS="provision.migrate=kill"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    first = f"{shop_prefix}-001"
    status = as_json(cli("stores", "show", first, "--json"))
    assert status["status"] == "provisioning"

    # The provisioning job is still leased to the dead process (its lease has a minute to
    # run): the rerun sees that process is gone and takes the job over now.
    resumed = cli(*args, "--json")
    assert resumed.exit_code == 0, resumed.output
    outcomes = {o["store"]: o["status"] for o in as_json(resumed)["stores"]}
    assert outcomes == {first: "succeeded", f"{shop_prefix}-002": "succeeded"}
    assert_exactly_once(source, shop_prefix, 2)


def test_only_the_stores_asked_for_are_imported(
    cli: Invoke, shop_prefix: str, shared_source: SourceFactory
) -> None:
    source = shared_source("sqlite", shop_prefix, stores_count=3)
    assert cli("init").exit_code == 0
    chosen = f"{shop_prefix}-002"
    nope = cli(*_import_args(source, "--stores", "nope", "--create-stores", "--json"))
    assert nope.exit_code == 2
    (problem,) = as_json(nope)["problems"]
    assert problem["kind"] == "unknown_store"
    assert "'nope'" in problem["message"]

    result = cli(*_import_args(source, "--stores", chosen, "--create-stores", "--json"))
    assert result.exit_code == 0, result.output
    assert [o["store"] for o in as_json(result)["stores"]] == [chosen]
    listed = as_json(cli("stores", "list", "--json"))["items"]
    assert [s["slug"] for s in listed] == [chosen]
    got = store_rows(chosen, "orders", ["id", "order_number"])
    assert got == source_rows(source, "orders", 2, ["id", "order_number"])
