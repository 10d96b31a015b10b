"""Benchmark: importing a shared PostgreSQL database into one PostgreSQL database per store,
against the plain tools doing the same copy.

    python bench/import.py [--stores 100] [--rows 10000] [--concurrency 4] [--out bench/results]

A shared database is built on the server (``--stores`` stores of ``--rows`` rows each: 30 %
products, 30 % orders, 40 % order items reached through their orders), and the stores are
created and provisioned in a fresh tenantry installation (timed, but not compared: the
baseline creates no database either). The baseline, per store and table:
``COPY (SELECT … WHERE store_id = …) TO STDOUT`` piped into ``COPY … FROM STDIN`` on the store's
database (order items: ``WHERE order_id IN (SELECT id FROM orders WHERE store_id = …)``),
``--concurrency`` stores at once; the tables are then emptied. It runs before and after the
import and the ratio uses the mean of the two, so the machine's drift over the run cancels.
Once more with the filter the import itself uses for order items (the store's order ids as an
array, looked up in the order_id index): the like-for-like row. Then ``tenantry import
shared`` does the same copy through :class:`~tenantry.operations.import_shared.SharedImport`
with the same concurrency: the checks of the whole source (orphans, values, foreign keys), then
per store the keyed batched copy and the verification (row counts and checksums against the
source, foreign keys). The main figure is the whole import (checks, copy and verification)
against the baseline. Prints a table and writes ``import.json`` with the run's machine,
versions and commit. Every database the run created is dropped (the server's database list is
compared before and after), and the stores' runtime logins with them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from benchkit import PG_URL, database_names, run_metadata, say, wait_until_quiet
from psycopg.types.json import Jsonb
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.engine import URL

from tenantry.db import builder
from tenantry.db.admin import create_database, drop_database
from tenantry.db.master.models import DatabaseServer, ProvisioningMode, Store
from tenantry.db.schemas import tenant_schema
from tenantry.db.urls import parse_url
from tenantry.imports.mapping import parse_mapping
from tenantry.operations.import_shared import SharedImport
from tenantry.operations.init import run_init
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services import provisioning, servers, stores
from tenantry.services.connections import migrator_url, server_url
from tenantry.services.runtime_access import drop_store_logins
from tenantry.settings import load_settings

SHARED_DDL = """
CREATE TABLE stores (id integer PRIMARY KEY, slug varchar(63) NOT NULL, name varchar(255));
CREATE TABLE products (
  id uuid PRIMARY KEY, store_id integer NOT NULL REFERENCES stores, sku varchar(64) NOT NULL,
  slug varchar(255) NOT NULL, name varchar(255) NOT NULL, description text,
  status varchar(32) NOT NULL, is_active boolean NOT NULL, weight_grams integer,
  metadata jsonb NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE orders (
  id uuid PRIMARY KEY, store_id integer NOT NULL REFERENCES stores,
  order_number varchar(32) NOT NULL, status varchar(32) NOT NULL, currency char(3) NOT NULL,
  subtotal_minor bigint NOT NULL, discount_minor bigint NOT NULL, tax_minor bigint NOT NULL,
  shipping_minor bigint NOT NULL, total_minor bigint NOT NULL, email varchar(255) NOT NULL,
  shipping_address jsonb NOT NULL, billing_address jsonb NOT NULL,
  placed_at timestamptz NOT NULL, created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL);
CREATE TABLE order_items (
  id uuid PRIMARY KEY, order_id uuid NOT NULL REFERENCES orders,
  product_id uuid REFERENCES products, sku varchar(64) NOT NULL, name varchar(255) NOT NULL,
  quantity integer NOT NULL, unit_price_minor bigint NOT NULL, total_minor bigint NOT NULL);
CREATE INDEX ON products (store_id);
CREATE INDEX ON orders (store_id);
CREATE INDEX ON order_items (order_id);
"""

#: The same columns on both sides: the minimal mapping form copies them as they are.
COLUMNS = {
    "products": "id, sku, slug, name, description, status, is_active, weight_grams, metadata, "
    "created_at, updated_at",
    "orders": "id, order_number, status, currency, subtotal_minor, discount_minor, tax_minor, "
    "shipping_minor, total_minor, email, shipping_address, billing_address, placed_at, "
    "created_at, updated_at",
    "order_items": "id, order_id, product_id, sku, name, quantity, unit_price_minor, total_minor",
}
WHERE = {
    "products": "store_id = %s",
    "orders": "store_id = %s",
    "order_items": "order_id IN (SELECT id FROM orders WHERE store_id = %s)",
}
#: The plain tools given the filter the import uses for a table reached through its parent
#: (tenantry.imports.source.store_filter): the store's parent keys as an array, looked up in
#: the child's index, where the IN form makes the server scan the whole child table per store.
WHERE_BY_KEYS = WHERE | {
    "order_items": "order_id = ANY (ARRAY(SELECT id FROM orders WHERE store_id = %s))"
}
MAPPING = {
    "stores": {"table": "stores", "key": "id", "slug": "slug", "name": "name"},
    "tables": {
        "products": {"from": "products", "store_column": "store_id"},
        "orders": {"from": "orders", "store_column": "store_id"},
        "order_items": {"from": "order_items", "via": {"orders": "order_id"}},
    },
}


def _pg(name: str) -> URL:
    return parse_url(PG_URL).set(database=name)


def _dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def build_source(url: URL, stamp: str, n_stores: int, rows: int) -> int:
    """The shared database: ``n_stores`` stores of ``rows`` rows; the rows written."""
    rng = random.Random(7)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    n_products, n_orders = rows * 3 // 10, rows * 3 // 10
    n_items = rows - n_products - n_orders
    written = 0
    with psycopg.connect(_dsn(url)) as conn:
        conn.execute(SHARED_DDL)  # a literal: several statements in one
        with conn.cursor().copy("COPY stores (id, slug, name) FROM STDIN") as copy:
            for s in range(1, n_stores + 1):
                copy.write_row((s, f"b{stamp}-{s}", f"Bench store {s}"))
        for s in range(1, n_stores + 1):
            products = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(n_products)]
            orders = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(n_orders)]
            with conn.cursor().copy(
                f"COPY products (store_id, {COLUMNS['products']}) FROM STDIN"
            ) as copy:
                for i, pid in enumerate(products):
                    when = start + timedelta(minutes=i)
                    copy.write_row(
                        (s, pid, f"SKU-{i:06d}", f"product-{i}", f"Product {i}",
                         None if i % 3 else f"Description of product {i}", "active", i % 7 != 0,
                         rng.randint(10, 5000), Jsonb({"colour": rng.choice("RGB")}), when, when)
                    )  # fmt: skip
            with conn.cursor().copy(
                f"COPY orders (store_id, {COLUMNS['orders']}) FROM STDIN"
            ) as copy:
                for i, oid in enumerate(orders):
                    when = start + timedelta(hours=i)
                    total = rng.randint(500, 90000)
                    address = Jsonb({"city": "Lyon", "zip": f"{69000 + i % 9}"})
                    copy.write_row(
                        (s, oid, f"{s}-{i:07d}", "paid", "EUR", total, 0, 0, 0, total,
                         f"buyer{i}@example.com", address, address, when, when, when)
                    )  # fmt: skip
            with conn.cursor().copy(
                f"COPY order_items ({COLUMNS['order_items']}) FROM STDIN"
            ) as copy:
                for i in range(n_items):
                    price = rng.randint(100, 9000)
                    copy.write_row(
                        (uuid.UUID(int=rng.getrandbits(128), version=4), orders[i % n_orders],
                         products[i % n_products], f"SKU-{i % n_products:06d}", "Line", 2,
                         price, 2 * price)
                    )  # fmt: skip
            written += rows
        conn.execute("ANALYZE")
    return written


def provision_stores(platform: Platform, stamp: str, n_stores: int) -> dict[int, URL]:
    """Create and provision the stores on the server; each one's database URL by store key."""
    with platform.sessions.begin() as session:
        servers.add_server(
            session, platform.box, name="bench-pg", admin_url=PG_URL, actor="cli:bench"
        )
    urls: dict[int, URL] = {}
    for s in range(1, n_stores + 1):
        with platform.sessions.begin() as session:
            store = stores.create_store(
                session, slug=f"b{stamp}-{s}", name=f"Bench store {s}", actor="cli:bench"
            )
            job = provisioning.request_provisioning(
                session,
                platform.box,
                platform.settings,
                store,
                mode=ProvisioningMode.CREATE_NEW,
                server=servers.get_server(session, "bench-pg"),
                actor="cli:bench",
            )
            job_id = job.id
        outcome = Provisioner(
            platform.sessions, platform.box, platform.settings, platform.tenant_spec, "bench"
        ).run(job_id)
        if outcome != "completed":
            raise SystemExit(f"store {s} ended {outcome}")
        with platform.sessions() as session:
            store = stores.get_store(session, f"b{stamp}-{s}")
            config = stores.active_connection(session, store)
            assert config is not None
            urls[s] = migrator_url(session, platform.box, config)
    return urls


def baseline_store(source: URL, target: URL, store_key: int, where: dict[str, str] = WHERE) -> int:
    """What the plain tools do for one store: COPY out of the source, COPY into the target."""
    copied = 0
    with psycopg.connect(_dsn(source)) as src, psycopg.connect(_dsn(target)) as dst:
        for table in ("products", "orders", "order_items"):
            query = f"COPY (SELECT {COLUMNS[table]} FROM {table} WHERE {where[table]}) TO STDOUT"
            with (
                src.cursor().copy(query, (store_key,)) as out,
                dst.cursor().copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as into,
            ):
                for chunk in out:
                    into.write(chunk)
            copied += dst.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
    return copied


def empty_targets(urls: dict[int, URL]) -> None:
    """Empty the tables the baseline filled (and the seeded ones: the import fills them)."""
    for url in urls.values():
        with psycopg.connect(_dsn(url)) as conn:
            conn.execute("TRUNCATE order_items, orders, products, categories, settings CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=100)
    parser.add_argument("--rows", type=int, default=10_000, help="rows per store")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    wait_until_quiet()
    server = parse_url(PG_URL)
    before = database_names(server, lambda _: True) or []
    stamp = uuid.uuid4().hex[:6]
    template = builder.template_name(tenant_schema(load_settings().tenant_schema))
    source = _pg(f"bench_shared_{stamp}")
    # The machine's load says how far the timings can be trusted (run it on a quiet one).
    result: dict[str, Any] = {
        "stores": args.stores,
        "rows_per_store": args.rows,
        "concurrency": args.concurrency,
        "load_average_at_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TENANTRY_DATA_DIR"] = tmp
        settings = load_settings()
        run_init(settings)
        platform = Platform.open(settings)
        try:
            create_database(source)
            say(f"building the shared database: {args.stores} stores of {args.rows} rows")
            t0 = time.perf_counter()
            total = build_source(source, stamp, args.stores, args.rows)
            result["source_build_s"] = time.perf_counter() - t0
            say("creating and provisioning the stores")
            t0 = time.perf_counter()
            urls = provision_stores(platform, stamp, args.stores)
            result["provision_s"] = time.perf_counter() - t0

            def baseline(label: str, where: dict[str, str]) -> float:
                say(f"baseline ({label}): COPY … TO STDOUT | COPY … FROM STDIN per store")
                t0 = time.perf_counter()
                with ThreadPoolExecutor(args.concurrency) as pool:
                    copied = sum(
                        pool.map(lambda s: baseline_store(source, urls[s], s, where), urls)
                    )
                took = time.perf_counter() - t0
                if copied != total:
                    raise SystemExit(f"the baseline copied {copied} rows of {total}")
                empty_targets(urls)
                return took

            # The plain baseline before and after the import (their mean: the machine's drift
            # over the run cancels), and once with the import's own filter.
            result["baseline_before_s"] = baseline("IN subquery", WHERE)
            result["baseline_by_keys_s"] = baseline("parent keys as an array", WHERE_BY_KEYS)

            say("tenantry import shared: checks, then copy + verify per store")
            job = SharedImport(
                platform, source, parse_mapping(MAPPING), "cli:bench", concurrency=args.concurrency
            )
            try:
                t0 = time.perf_counter()
                plan = job.plan()
                result["checks_s"] = time.perf_counter() - t0
                result["checks_in_sql"] = plan.checked_in_sql
                if plan.problems:
                    raise SystemExit(f"the plan has problems: {plan.problems[:3]}")
                t0 = time.perf_counter()
                outcomes = job.run(plan)
                result["import_s"] = time.perf_counter() - t0
            finally:
                job.close()
            failed = [o for o in outcomes if o.status != "succeeded"]
            if failed:
                raise SystemExit(f"{len(failed)} stores failed: {failed[0].error}")
            result["rows"] = sum(o.rows for o in outcomes)
            result["bytes"] = sum(o.bytes for o in outcomes)
            empty_targets(urls)
            result["baseline_after_s"] = baseline("IN subquery", WHERE)
            result["baseline_s"] = (result["baseline_before_s"] + result["baseline_after_s"]) / 2
        finally:
            with platform.sessions() as session:  # every store made, even by a failed run
                made = list(session.execute(select(Store.slug, Store.id)))
                registered = session.scalar(
                    select(DatabaseServer).where(DatabaseServer.name == "bench-pg")
                )
                admin = server_url(platform.box, registered) if registered else None
            for slug, store_id in made:
                if admin is not None:
                    drop_store_logins(admin, slug, store_id)
            platform.close()

    # Other work may create and drop databases on the server meanwhile (tests' tt_…): only
    # what this run can have made is compared: its stamp's databases and the schema template.
    def ours(name: str) -> bool:
        return stamp in name or name == template

    after = database_names(server, lambda _: True) or []
    for name in sorted(set(after) - set(before)):
        if ours(name):
            drop_database(_pg(name))  # the source, the stores' databases, a template built here
    final = database_names(server, lambda _: True) or []
    left = sorted(n for n in set(final) - set(before) if ours(n))
    gone = sorted(n for n in set(before) - set(final) if ours(n))
    result["load_average_at_end"] = os.getloadavg()
    result["copy_verify_ratio"] = result["import_s"] / result["baseline_s"]
    # The main figure: the import as a user runs it (checks, copy, verification).
    result["with_checks_ratio"] = (result["import_s"] + result["checks_s"]) / result["baseline_s"]
    result["with_checks_ratio_same_filter"] = (result["import_s"] + result["checks_s"]) / result[
        "baseline_by_keys_s"
    ]
    _print(result)
    print(f"databases on the server: {len(left)} left behind, {len(gone)} gone: {left + gone}")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "import.json"
    out.write_text(
        json.dumps(
            {
                "run": run_metadata(postgresql=_server_version(server)),
                "result": result,
                "target_ratio": 1.5,
                "server_databases": {"left_behind": left, "gone": gone},
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    if left or gone:
        raise SystemExit("the bench changed the server's database list")


def _print(r: dict[str, Any]) -> None:
    table = Table(title="import shared: PostgreSQL → PostgreSQL databases, per store")
    for column in (
        "stores",
        "rows/store",
        "rows",
        "baseline s (before/after)",
        "baseline by keys s",
        "checks s",
        "copy+verify s",
        "rows/s",
        "whole import / baseline",
        "copy+verify / baseline",
        "whole / baseline by keys",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        str(r["stores"]),
        str(r["rows_per_store"]),
        str(r["rows"]),
        f"{r['baseline_s']:.2f} ({r['baseline_before_s']:.2f}/{r['baseline_after_s']:.2f})",
        f"{r['baseline_by_keys_s']:.2f}",
        f"{r['checks_s']:.2f}" + (" (SQL)" if r.get("checks_in_sql") else " (Python)"),
        f"{r['import_s']:.2f}",
        f"{r['rows'] / r['import_s']:.0f}",
        f"{r['with_checks_ratio']:.2f}x",
        f"{r['copy_verify_ratio']:.2f}x",
        f"{r['with_checks_ratio_same_filter']:.2f}x",
    )
    Console(width=160).print(table)
    print(
        f"the whole import (checks, copy, verification) took {r['with_checks_ratio']:.2f}x "
        "the COPY | COPY baseline (target: 1.5x)"
    )


def _server_version(server: URL) -> str:
    with psycopg.connect(_dsn(server)) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


if __name__ == "__main__":
    main()
