"""Master at scale: the paths read every minute or on every page, at 100 and 10,000 stores.

First version: stores are rows written straight into master (bulk inserts; their
PostgreSQL connections, password sealed, are never opened), so what is measured is
master's share alone: ``fleet status``, ``backup status`` (every scope's protection),
the scheduler tick's planning (the scopes and what is due; no backup is taken), ``backup
freshness`` (metrics) and the console's store list (one page of 50, with its total).
Each is timed ``--repeat`` times (median and max). Prints a table and writes ``scale.json``.

    .venv/bin/python bench/scale.py                        # SQLite master, 100 and 10,000
    .venv/bin/python bench/scale.py --backend postgresql   # a scratch master database there

Every database created is dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchkit import environment, run_metadata, say, wait_until_quiet
from master_seed import seed_stores
from rich.console import Console
from rich.table import Table

from tenantry.db import migrations
from tenantry.db.admin import drop_database
from tenantry.db.urls import parse_url
from tenantry.operations.init import run_init
from tenantry.runtime import Platform
from tenantry.services.backups.freshness import backup_freshness
from tenantry.services.backups.scheduling import all_scopes, protection
from tenantry.services.fleet_status import fleet_status
from tenantry.services.store_overview import search_stores
from tenantry.settings import load_settings

PG = "postgresql://postgres@127.0.0.1:5432/postgres"
VARS = ("DATABASE_URL", "DATABASE_URL_BILLING", "TENANTRY_SECRET_KEYS", "TENANTRY_QUEUE_URL")


@contextmanager
def installation(root: Path, backend: str) -> Iterator[Platform]:
    """A fresh installation (master and billing on ``backend``), dropped on exit."""
    values = {"TENANTRY_DATA_DIR": str(root / "data")}
    made = []
    if backend == "postgresql":
        for var, label in (("DATABASE_URL", "master"), ("DATABASE_URL_BILLING", "billing")):
            url = parse_url(PG).set(database=f"tt_bench_scale_{label}_{uuid.uuid4().hex[:8]}")
            made.append(url)
            values[var] = url.render_as_string(hide_password=False)
    with environment(values, VARS):
        settings = load_settings()
        run_init(settings)
        platform = Platform.open(settings)
        try:
            yield platform
        finally:
            platform.close()
            for url in made:
                drop_database(url)


def _timed(fn: Callable[[], object], repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def measure(platform: Platform, stores: int, repeat: int) -> dict[str, Any]:
    """Seed ``stores`` stores, then time each path."""
    head = migrations.head(platform.tenant_spec)
    if head is None:
        raise SystemExit("the tenant schema has no migrations: nothing to be behind or current")
    started = time.perf_counter()
    seed_stores(platform.sessions, stores, head=head, box=platform.box)
    say(f"{stores} stores seeded in {time.perf_counter() - started:.1f} s")
    box, settings, spec = platform.box, platform.settings, platform.tenant_spec

    def in_session(fn: Callable[[Any], object]) -> Callable[[], object]:
        def run() -> object:
            with platform.sessions() as master:
                return fn(master)

        return run

    paths = {
        "fleet status": in_session(lambda m: fleet_status(m, spec)),
        "backup status": in_session(lambda m: protection(m, all_scopes(m, box, settings))),
        "scheduler tick (planning)": in_session(
            lambda m: [s for s in protection(m, all_scopes(m, box, settings)) if s.backup_due]
        ),
        "backup freshness": in_session(backup_freshness),
        "console store list (page 1)": in_session(lambda m: search_stores(m, limit=50)),
        "console store list (last page)": in_session(
            lambda m: search_stores(m, limit=50, offset=max(0, stores - 50))
        ),
    }
    return {"stores": stores, "paths": {name: _timed(fn, repeat) for name, fn in paths.items()}}


def _print(results: list[dict[str, Any]]) -> None:
    table = Table(title="master at scale (ms, median / max)")
    table.add_column("path")
    for r in results:
        table.add_column(f"{r['stores']:,} stores", justify="right")
    for name in results[0]["paths"]:
        cells = [f"{r['paths'][name]['median_ms']} / {r['paths'][name]['max_ms']}" for r in results]
        table.add_row(name, *cells)
    Console().print(table)


def main() -> None:
    """Run the measurements, print a table and write the JSON results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--stores", type=int, nargs="+", default=[100, 10_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    wait_until_quiet()
    results = []
    for count in args.stores:
        with (
            tempfile.TemporaryDirectory(prefix="tt_bench_scale_") as tmp,
            installation(Path(tmp), args.backend) as platform,
        ):
            results.append(measure(platform, count, args.repeat))
    _print(results)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / ("scale.json" if args.backend == "sqlite" else f"scale-{args.backend}.json")
    out.write_text(
        json.dumps(
            {"run": run_metadata(), "backend": args.backend, "results": results},
            indent=2,
            default=str,
        )
    )
    say(f"wrote {out}")


if __name__ == "__main__":
    main()
