"""Benchmark: server time of each console page with 1,000 stores.

    python bench/console.py [--stores 1000] [--runs 30] [--out bench/results]

A fresh installation on SQLite (temp data dir): N stores created through the stores service
(their subscriptions and audit entries with them), a backup row and a finished operation for
every store, 30 days of usage for one store, and an operator signed in through the same login
the console uses. Each page is then requested ``--runs`` times in turn through the app
in-process (ASGI, no network: the time is the server's), after one warm-up request each.
Prints a table (median, mean, p90, p99, max in ms; the bar is 300 ms) and writes
``console.json`` with the run's metadata.
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

from benchkit import environment, run_metadata, summary
from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

from tenantry.api.app import create_app
from tenantry.api.deps import SESSION_COOKIE
from tenantry.db.master.models import (
    Backup,
    BackupStatus,
    Operation,
    OperationKind,
    OperationStatus,
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
        paths = {
            "stores (page 1)": "/console/stores",
            f"stores (page {max(1, middle // 50)})": f"/console/stores?page={max(1, middle // 50)}",
            "stores search": "/console/stores?q=store-0042",
            "stores filter": "/console/stores?status=pending",
            "store detail": f"/console/stores/{slug}",
            "operations": "/console/operations",
            "operation progress": f"/console/operations/{op_id}/progress",
            "health": "/console/health",
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
                **{f"{k}_ms": round(v, 1) for k, v in stats.items()},
                "within_budget": stats["max"] <= BUDGET_MS,
            }
        )
    table = Table(title=f"Console pages, {args.stores} stores, {args.runs} runs each (ms)")
    for column in ("page", "median", "mean", "p90", "p99", "max", f"≤ {BUDGET_MS:.0f} ms"):
        table.add_column(column, justify="left" if column == "page" else "right")
    for row in rows:
        table.add_row(
            row["page"],
            *(f"{row[f'{k}_ms']:.1f}" for k in ("median", "mean", "p90", "p99", "max")),
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
