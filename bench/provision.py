"""Benchmark: provisioning N stores end to end through the service layer, and routing overhead.

    python bench/provision.py [--n 50 200] [--backends sqlite postgresql] [--out bench/results]

For each backend and N: a fresh installation (temp data dir), then for each store
create_store + request_provisioning + Provisioner.run (create-new: a SQLite file, or a new
database on the PostgreSQL server through the template fast path), timed one by one. Then the
routing overhead: the same query through ``TenantRouter.session`` and on a directly held
engine. Prints a table and writes JSON. Created PostgreSQL databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as host
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import pct
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.db.admin import drop_database
from tenantry.db.engines import make_engine
from tenantry.db.master.models import ProvisioningMode
from tenantry.db.tenant.store.models import Product
from tenantry.db.urls import parse_url
from tenantry.operations.init import run_init
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services import provisioning, servers, stores
from tenantry.services.connections import tenant_url
from tenantry.settings import load_settings

PG_URL = os.environ.get(
    "TENANTRY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _install(data_dir: Path) -> Platform:
    os.environ["TENANTRY_DATA_DIR"] = str(data_dir)
    settings = load_settings()
    run_init(settings)
    return Platform.open(settings)


def bench_provision(backend: str, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        platform = _install(Path(tmp))
        server_name = None
        if backend == "postgresql":
            with platform.sessions.begin() as session:
                servers.add_server(session, platform.box, name="bench-pg", admin_url=PG_URL)
            server_name = "bench-pg"
        per_store: list[float] = []
        created: list[str] = []
        started = time.perf_counter()
        stamp = int(time.time()) % 100000
        for i in range(n):
            t0 = time.perf_counter()
            with platform.sessions.begin() as session:
                store = stores.create_store(session, slug=f"b{stamp}-{i}", name=f"Bench {i}")
                server = servers.get_server(session, server_name) if server_name else None
                job = provisioning.request_provisioning(
                    session,
                    platform.box,
                    platform.settings,
                    store,
                    mode=ProvisioningMode.CREATE_NEW,
                    server=server,
                )
                job_id = job.id
                if server_name:
                    created.append(provisioning.tenant_database_name(store))
            outcome = Provisioner(
                platform.sessions, platform.box, platform.settings, platform.tenant_spec, "bench"
            ).run(job_id)
            per_store.append((time.perf_counter() - t0) * 1000)
            if outcome != "completed":
                raise SystemExit(f"store {i} ended {outcome}")
        total = time.perf_counter() - started
        routing = bench_routing(platform)
        platform.close()
        for name in created:
            drop_database(_pg(name))
        return {
            "backend": backend,
            "stores": n,
            "median_ms": statistics.median(per_store),
            "p90_ms": pct(per_store, 0.9),
            "max_ms": max(per_store),
            "total_s": total,
            "routing": routing,
        }


def _pg(name: str) -> URL:
    return parse_url(PG_URL).set(database=name)


def bench_routing(platform: Platform, rounds: int = 2000) -> dict[str, float]:
    """The same COUNT(*) through the router (cache hit) and on a directly held engine."""
    with platform.sessions() as master:
        store = stores.list_stores(master, limit=1)[0][0]
        config = stores.active_connection(master, store)
        assert config is not None
        direct_engine = make_engine(tenant_url(platform.box, config), pool_size=2)
        query = select(func.count()).select_from(Product)

        def via_router() -> None:
            with platform.router.session(master, store) as tenant:
                tenant.scalar(query)

        def direct() -> None:
            with Session(direct_engine) as tenant:
                tenant.scalar(query)

        for fn in (via_router, direct):  # warm up both
            for _ in range(50):
                fn()
        timings: dict[str, float] = {}
        for name, fn in (
            ("router_us", via_router),
            ("direct_us", direct),
            ("router_us_2", via_router),
            ("direct_us_2", direct),
        ):
            t0 = time.perf_counter()
            for _ in range(rounds):
                fn()
            timings[name] = (time.perf_counter() - t0) / rounds * 1e6
        direct_engine.dispose()
    router = min(timings["router_us"], timings["router_us_2"])
    plain = min(timings["direct_us"], timings["direct_us_2"])
    return {"router_us": router, "direct_us": plain, "ratio": router / plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    results = [bench_provision(b, n) for b in args.backends for n in args.n]
    table = Table(title="provisioning, create-new, end to end through the service layer")
    for col in (
        "backend",
        "stores",
        "median ms",
        "p90 ms",
        "max ms",
        "total s",
        "routing µs",
        "direct µs",
        "routing ratio",
    ):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            r["backend"],
            str(r["stores"]),
            f"{r['median_ms']:.1f}",
            f"{r['p90_ms']:.1f}",
            f"{r['max_ms']:.1f}",
            f"{r['total_s']:.2f}",
            f"{r['routing']['router_us']:.0f}",
            f"{r['routing']['direct_us']:.0f}",
            f"{r['routing']['ratio']:.2f}x",
        )
    Console(width=140).print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "provision.json"
    out.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": host.python_version()},
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
