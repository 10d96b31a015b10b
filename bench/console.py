"""Benchmark: server time of each console page with 1,000 stores.

    python bench/console.py [--stores 1000] [--runs 30] [--out bench/results]

A fresh installation on SQLite (temp data dir): N stores created through the stores service
(their subscriptions and audit entries with them), a backup row and a finished operation for
every store, 30 days of usage for one store, every other store recorded active at a schema
revision (one in ten behind head, for the fleet page), an app in billing with N customers,
N webhook events (one in twenty failed), N/5 invoices with three milestones each and N/2
payments, and an operator signed in through the same login the console uses. Each page is
then requested ``--runs`` times in turn through the app in-process (ASGI, no network: the
time is the server's), after one warm-up request each. The fleet preview and verify open
every tenant database (actions, not pages) and are not measured here. Prints a table
(median, mean, p90, p99, max in ms; the bar is 300 ms) and writes ``console.json`` with the
run's metadata.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchkit import environment, num, run_metadata, summary, wait_until_quiet
from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from tenantry.api.app import create_app
from tenantry.api.deps import SESSION_COOKIE
from tenantry.db import migrations
from tenantry.db.billing.models import (
    BillingCustomer,
    BillingInvoice,
    BillingInvoiceMilestone,
    BillingPayment,
    BillingWebhook,
)
from tenantry.db.master.models import (
    Backup,
    BackupStatus,
    DatabaseStatus,
    Operation,
    OperationKind,
    OperationStatus,
    Store,
    UsageMetric,
    UserRole,
)
from tenantry.operations import api_access
from tenantry.operations.init import run_init
from tenantry.runtime import Platform
from tenantry.services import stores, users
from tenantry.settings import load_settings

#: The bar the console is held to: no page over this much server time.
BUDGET_MS = 300.0
BENCH_APP = "bench-app"
PASSWORD = "bench-password-1"
_UNSET = ("DATABASE_URL", "DATABASE_URL_BILLING", "TENANTRY_QUEUE_URL", "TENANTRY_SECRET_KEYS")

console = Console(width=120)


def seed(platform: Platform, count: int) -> str:
    """``count`` stores with a backup and an operation each, usage for the first; the slug of
    the store the detail page is measured on."""
    now = datetime.now(UTC)
    with platform.writer_sessions.begin() as session:
        made = []
        for i in range(count):
            store = stores.create_store(
                session, slug=f"store-{i:05d}", name=f"Bench store {i}", actor="bench"
            )
            made.append(store)
        session.flush()
        for i, store in enumerate(made):
            session.add(
                Backup(
                    role="tenant",
                    store_id=store.id,
                    slug=store.slug,
                    engine="sqlite",
                    database=f"{store.slug}.db",
                    status=BackupStatus.STORED,
                    storage="local",
                    artifact_key=f"bench/{store.slug}.dump",
                    manifest_key=f"bench/{store.slug}.json",
                    row_counts={},
                    started_at=now - timedelta(hours=i % 48),
                    finished_at=now - timedelta(hours=i % 48),
                )
            )
            session.add(
                Operation(
                    kind=OperationKind.BACKUP,
                    store_id=store.id,
                    target=store.slug,
                    status=OperationStatus.SUCCEEDED,
                    step="done",
                    requested_by="bench",
                )
            )
        first = made[0]
        for day in range(30):
            session.add(
                UsageMetric(
                    store_id=first.id,
                    metric_date=(now - timedelta(days=day)).date(),
                    total_products=10 * (30 - day),
                    orders_created=day % 7,
                    orders_total_value_minor=0,
                    api_calls=100 + 13 * day,
                )
            )
        users.add_user(
            session,
            email="bench@example.com",
            password=PASSWORD,
            role=UserRole.OPERATOR,
            actor="bench",
        )
        return first.slug


def seed_fleet(platform: Platform) -> None:
    """Every other store active at head, one in ten of those behind it (master's records
    only: the fleet page reads no tenant database)."""
    head = migrations.head(platform.tenant_spec)
    with platform.writer_sessions.begin() as session:
        for i, store in enumerate(session.scalars(select(Store).order_by(Store.slug))):
            if i % 2 == 0:
                store.database_status = DatabaseStatus.ACTIVE
                store.schema_revision = head if i % 20 else "older"


def seed_billing(platform: Platform, count: int) -> None:
    """One app with ``count`` customers and events, invoices with milestones, payments."""
    now = datetime.now(UTC)
    with platform.billing_writer_sessions.begin() as session:
        customers = [
            BillingCustomer(
                app_id=BENCH_APP,
                external_customer_id=f"cust-{i:05d}",
                email=f"c{i}@example.com",
                name=f"Customer {i}",
            )
            for i in range(count)
        ]
        session.add_all(customers)
        session.flush()
        for i in range(count):
            session.add(
                BillingWebhook(
                    app_id=BENCH_APP,
                    processor="stripe" if i % 3 else "tilled",
                    event_id=f"evt_{i:06d}",
                    event_type="payment_intent.succeeded",
                    payload="{}",
                    status="failed" if i % 20 == 0 else "processed",
                    attempts=1,
                    last_error="OperationalError: bench" if i % 20 == 0 else None,
                    received_at=now - timedelta(minutes=i),
                )
            )
        for i in range(count // 5):
            invoice = BillingInvoice(
                app_id=BENCH_APP,
                customer_id=customers[i].id,
                invoice_number=f"INV-{i:05d}",
                amount_minor=30_000,
                amount_paid_minor=10_000,
                currency="USD",
                status="open",
            )
            session.add(invoice)
            session.flush()
            for n in range(3):
                session.add(
                    BillingInvoiceMilestone(
                        invoice_id=invoice.id,
                        position=n,
                        name=f"Milestone {n + 1}",
                        amount_minor=10_000,
                        status="paid" if n == 0 else "pending",
                    )
                )
        for i in range(count // 2):
            session.add(
                BillingPayment(
                    app_id=BENCH_APP,
                    customer_id=customers[i].id,
                    amount_minor=10_000,
                    amount_refunded_minor=0,
                    currency="USD",
                    status="succeeded",
                    processor="stripe",
                    processor_payment_id=f"pi_{i:06d}",
                )
            )


def measure(client: TestClient, paths: dict[str, str], runs: int) -> dict[str, list[float]]:
    """Each path ``runs`` times, taking turns; the time of each answer in ms."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for path in paths.values():
        answer = client.get(path)  # warm-up: templates compiled, pools filled
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    for _ in range(runs):
        for name, path in paths.items():
            started = time.perf_counter()
            answer = client.get(path)
            times[name].append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, (path, answer.status_code)
    return times


def main() -> None:
    """Seed, measure, print the table and write console.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    wait_until_quiet()
    if args.stores < 1 or args.runs < 1:
        parser.error("--stores and --runs must be at least 1")

    with (
        tempfile.TemporaryDirectory(prefix="tenantry-bench-console-") as tmp,
        environment({"TENANTRY_DATA_DIR": str(Path(tmp) / "data")}, _UNSET),
    ):
        settings = load_settings()
        run_init(settings)
        platform = Platform.open(settings)
        try:
            started = time.perf_counter()
            slug = seed(platform, args.stores)
            seed_fleet(platform)
            seed_billing(platform, args.stores)
            console.print(f"seeded {args.stores} stores in {time.perf_counter() - started:.1f} s")
            signed = api_access.login(
                platform.writer_sessions,
                "bench@example.com",
                PASSWORD,
                ip_address="127.0.0.1",
                user_agent="bench",
            )
            with platform.sessions() as session:
                op = session.query(Operation).first()
                op_id = str(op.id) if op else str(uuid.uuid4())
        finally:
            platform.close()
        middle = args.stores // 2
        mid_page = max(1, middle // 50)
        paths = {
            "stores (page 1)": "/console/stores",
            f"stores (page {max(1, middle // 50)})": f"/console/stores?page={max(1, middle // 50)}",
            "stores search": "/console/stores?q=store-0042",
            "stores filter": "/console/stores?status=pending",
            "store detail": f"/console/stores/{slug}",
            "operations": "/console/operations",
            "operation progress": f"/console/operations/{op_id}/progress",
            "health": "/console/health",
            "fleet": "/console/fleet",
            "backups (page 1)": "/console/backups",
            f"backups (page {mid_page})": f"/console/backups?page={mid_page}",
            "backups search": "/console/backups?q=store-0042",
            "backup artifacts": f"/console/backups/db/store:{slug}",
            "backup artifacts (master)": "/console/backups/db/master",
            "billing (events)": f"/console/billing?app={BENCH_APP}",
            "billing (failed events)": f"/console/billing?app={BENCH_APP}&tab=events&status=failed",
            "billing (invoices)": f"/console/billing?app={BENCH_APP}&tab=invoices",
            "billing (customers p. 10)": f"/console/billing?app={BENCH_APP}&tab=customers&page=10",
            "billing (payments)": f"/console/billing?app={BENCH_APP}&tab=payments",
        }
        with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
            client.cookies.set(SESSION_COOKIE, signed.token)
            times = measure(client, paths, args.runs)

    rows: list[dict[str, Any]] = []
    for name, values in times.items():
        stats = summary(values)
        rows.append(
            {
                "page": name,
                "path": paths[name],
                **{
                    f"{k}_ms": None if v is None else round(v, 1)
                    for k, v in stats.items()
                    if k != "samples"
                },
                "within_budget": max(values) <= BUDGET_MS,
            }
        )
    table = Table(title=f"Console pages, {args.stores} stores, {args.runs} runs each (ms)")
    for column in ("page", "median", "mean", "p90", "p99", "max", f"≤ {BUDGET_MS:.0f} ms"):
        table.add_column(column, justify="left" if column == "page" else "right")
    for row in rows:
        table.add_row(
            row["page"],
            *(num(row[f"{k}_ms"]) for k in ("median", "mean", "p90", "p99", "max")),
            "yes" if row["within_budget"] else "NO",
        )
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "console.json"
    document = {
        "bench": "console",
        "stores": args.stores,
        "runs": args.runs,
        "budget_ms": BUDGET_MS,
        "rows": rows,
        "run": run_metadata(),
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
