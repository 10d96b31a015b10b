"""Benchmark: a burst of stores created and provisioned over HTTP through ``tenantry up``.

    python bench/burst.py [--stores 1000] [--clients 32] [--backends postgresql sqlite]
                          [--workers N] [--out bench/results]

For each backend: a fresh installation (temp data dir, SQLite master and billing, `tenantry
up` with its defaults unless ``--workers``), an admin key from ``tenantry apikeys create``,
and on PostgreSQL the server TENANTRY_BENCH_POSTGRES_URL registered with ``tenantry servers
add``. C clients then send, for each of N stores, ``POST /stores`` and ``POST
/stores/{slug}/provision`` (create-new: a database on the server, or a SQLite file). How many
stores are active or failed is polled (the totals of ``GET /stores?status=…&limit=1``, cheap
beside the burst) until every store is (or nothing moves for a while). Measured:
requests accepted per second, stores active per second from the first request to the last
store active, and each job's queued-to-finished time (median, p99) from its own record. Two
floors, in the same run, each once before the burst and once after it (the ratio is to both
together: the host's speed moves over minutes): the same clients creating N/4 stores with
``POST /stores`` alone, on the same server (the API's and master's part of a store, on the
machine's CPUs), and N copies of the schema's template (``CREATE DATABASE … TEMPLATE`` or a
file copy) with the worker's concurrency (the database server's part). A store needs both, so
the ratio (the README's table, ``bench/readme_table.py``) is to the two one after the other,
1 / (1/creates + 1/copies): which of them bounds a burst depends on the host (on one day the
copies held at 45/s while the burst moved 15 % with the CPU's speed; on another they ran at
23/s and the burst followed them). One store is provisioned first, on a server started for it
alone: it builds the template the floor copies (a one-off
that bench/provision.py reports on its own) and fills the spare pool. Prints a table, writes
``burst.json``; every database created is dropped (the schema's template too, unless it was on
the server before) and the server's database and role lists compared before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from benchkit import (
    PG_URL,
    ServerDatabases,
    changed,
    checkpoint,
    database_names,
    drop_databases,
    drop_logins,
    num,
    parallel,
    run_metadata,
    say,
    summary,
    wait_until_quiet,
)
from rich.console import Console
from rich.table import Table
from serverkit import environment, log_tail, running_server, tenantry
from sqlalchemy.engine import URL

from tenantry.db.admin import dispose_server_engines, run_server_sql
from tenantry.db.urls import parse_url

SERVER = "bench-pg"
#: Give up when no store became active for this long.
STALL_S = 60.0
#: The SQLite floor: at least this many rounds of N file copies, for at least this long.
SQLITE_FLOOR_ROUNDS, SQLITE_FLOOR_S = 5, 3.0
#: The issue's target: stores active per second on PostgreSQL.
TARGET_PER_S = 40.0

console = Console(width=150)


async def _submit(
    base: str, key: str, slugs: list[str], server: str | None, clients: int, *, provision: bool
) -> dict[str, Any]:
    """Create (and, given ``provision``, provision) every store, ``clients`` at a time; what
    the API answered (``jobs``: the provisioning job of each store, or "" when not asked)."""
    todo = iter(slugs)
    jobs: dict[str, str] = {}
    errors: list[str] = []
    body: dict[str, Any] = {"mode": "create_new"} | ({"server": server} if server else {})

    async def client() -> None:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as http:
            for slug in todo:
                created = await http.post("/stores", json={"slug": slug, "name": slug})
                if created.status_code != 201:
                    errors.append(f"POST /stores {created.status_code}: {created.text[:200]}")
                    continue
                if not provision:
                    jobs[slug] = ""
                    continue
                asked = await http.post(f"/stores/{slug}/provision", json=body)
                if asked.status_code != 202:
                    errors.append(f"POST /provision {asked.status_code}: {asked.text[:200]}")
                    continue
                jobs[slug] = asked.json()["job_id"]

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return {"jobs": jobs, "errors": errors, "seconds": time.perf_counter() - started}


def _active(http: httpx.Client, n: int) -> dict[str, str]:
    """Every store's database status, by slug."""
    found: dict[str, str] = {}
    offset = 0
    while offset < n:
        page = http.get("/stores", params={"limit": 1000, "offset": offset}).json()
        for store in page["items"]:
            found[store["slug"]] = store["database_status"]
        offset += 1000
        if offset >= page["total"]:
            break
    return found


def _settled(http: httpx.Client) -> int:
    """How many stores of the installation are active or failed: the totals of two one-item
    pages (listing every store at each poll took a seventh of a core from the burst it
    measures, more as the stores add up)."""
    return sum(
        http.get("/stores", params={"status": status, "limit": 1}).json()["total"]
        for status in ("active", "failed")
    )


def _wait_active(
    http: httpx.Client, slugs: list[str], already: int
) -> tuple[dict[str, str], float]:
    """Poll until every store of ``slugs`` is active or failed (``already``: how many others
    were before they were asked for), or nothing changed for STALL_S; then every store's
    status, read once, and when they had settled."""
    last, changed = -1, time.monotonic()
    while True:
        settled = _settled(http) - already
        now = time.perf_counter()
        if settled >= len(slugs):
            break
        if settled != last:
            last, changed = settled, time.monotonic()
        elif time.monotonic() - changed > STALL_S:
            break
        time.sleep(0.25)
    return _active(http, len(slugs) + already), now


def _job_seconds(http: httpx.Client, jobs: dict[str, str]) -> list[float]:
    """Queued to finished, per job, from the job's own record."""
    seconds = []
    for job_id in jobs.values():
        job = http.get(f"/provision/{job_id}").json()
        if job.get("finished_at"):
            created = datetime.fromisoformat(job["created_at"])
            finished = datetime.fromisoformat(job["finished_at"])
            seconds.append((finished - created).total_seconds())
    return seconds


def _create_floor(base: str, key: str, slugs: list[str], clients: int) -> dict[str, Any]:
    """``slugs`` created with ``POST /stores`` alone by ``clients`` at once: the rate of the
    API's and master's part of a store, with no database."""
    sent = asyncio.run(_submit(base, key, slugs, None, clients, provision=False))
    if sent["errors"]:
        raise RuntimeError(f"the create floor: {sent['errors'][0]}")
    seconds = sent["seconds"]
    return {"seconds": seconds, "per_s": len(slugs) / seconds if seconds else 0.0}


def _floor(backend: str, template: str | None, tmp: Path, n: int, workers: int) -> dict[str, Any]:
    """N copies of the template with ``workers`` at once: the fastest a store could exist."""
    if backend == "sqlite":
        assert template is not None
        # N file copies take a fifth of a second: one such sample moved 20-30 % between runs,
        # so the rounds go on for a while and their median rate is the floor.
        rates: list[float] = []
        spent = 0.0
        copies = tmp / "floor"
        while len(rates) < SQLITE_FLOOR_ROUNDS or spent < SQLITE_FLOOR_S:
            copies.mkdir()
            started = time.perf_counter()
            parallel(
                "copy floor",
                range(n),
                lambda i: shutil.copyfile(template, copies / f"{i}.db"),
                workers,
            )
            took = time.perf_counter() - started
            shutil.rmtree(copies)
            spent += took
            rates.append(n / took if took else 0.0)
        per_s = statistics.median(rates)
        return {"seconds": n / per_s if per_s else 0.0, "per_s": per_s, "rounds": len(rates)}
    else:
        server = parse_url(PG_URL)
        # Not paying for what came before: the burst leaves gigabytes of WAL and dirty pages,
        # and copies measured right after it ran at half the rate of those before it.
        checkpoint(server)
        started = time.perf_counter()
        names = [f"tenantry_bench_burst_{uuid.uuid4().hex[:8]}_{i}" for i in range(n)]
        parallel(
            "copy floor",
            names,
            lambda name: run_server_sql(
                server.set(database=name), f'CREATE DATABASE "{name}" TEMPLATE "{template}"'
            ),
            workers,
        )
        seconds = time.perf_counter() - started
        drop_databases(server, names, 5)
    return {"seconds": seconds, "per_s": n / seconds if seconds else 0.0}


def _spares(env: dict[str, str]) -> list[str]:
    """The spare databases this installation's pool made on the server (and still holds)."""
    shown = json.loads(tenantry(env, "servers", "show", SERVER, "--json"))
    return [str(spare["name"]) for spare in shown["spares"]["databases"]]


def bench_backend(backend: str, n: int, clients: int, workers: int | None) -> dict[str, Any]:
    """One burst on ``backend`` on a fresh installation."""
    run = uuid.uuid4().hex[:6]
    slugs = [f"burst-{run}-{i:05d}" for i in range(n)]
    server_url: URL | None = parse_url(PG_URL) if backend == "postgresql" else None
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-burst-") as tmp:
        data_dir = Path(tmp) / "data"
        env = environment(data_dir, None)
        tenantry(env, "init")
        key = json.loads(
            tenantry(env, "apikeys", "create", "--admin", "--name", "burst", "--json")
        )["key"]
        if server_url is not None:
            tenantry(env, "servers", "add", SERVER, "--url", PG_URL)
        try:
            # One store first, on a server of its own: it builds the schema's template (a
            # one-off, which bench/provision.py reports on its own) and fills the spare pool,
            # so the floor can be measured before the burst as well as after it.
            with running_server(env, Path(tmp) / "warm-up.log", workers=workers) as server:
                say(f"{backend}: a first store, which builds the template")
                warm = asyncio.run(
                    _submit(
                        server.base_url,
                        key,
                        [f"burst-{run}-warm"],
                        SERVER if server_url else None,
                        1,
                        provision=True,
                    )
                )
                headers = {"Authorization": f"Bearer {key}"}
                with httpx.Client(base_url=server.base_url, headers=headers, timeout=120) as http:
                    warmed, _ = _wait_active(http, list(warm["jobs"]), 0)
                if list(warmed.values()).count("active") != 1:
                    raise RuntimeError(f"the first store is not active: {warm['errors'] or warmed}")
            template = _template(backend, data_dir)
            workers_at_once = workers or os.cpu_count() or 2
            floor_before = _floor(backend, template, Path(tmp), n, workers_at_once)
            creates = [f"floor-{run}-{i:05d}" for i in range(2 * max(1, n // 4))]
            with running_server(env, Path(tmp) / "server.log", workers=workers) as server:
                say(f"{backend}: the create floor, {len(creates) // 2} stores")
                creates_before = _create_floor(
                    server.base_url, key, creates[: len(creates) // 2], clients
                )
                headers = {"Authorization": f"Bearer {key}"}
                with httpx.Client(base_url=server.base_url, headers=headers, timeout=120) as http:
                    already = _settled(http)  # the first store
                say(f"{backend}: {n} stores from {clients} clients")
                t0 = time.perf_counter()
                sent = asyncio.run(
                    _submit(
                        server.base_url,
                        key,
                        slugs,
                        SERVER if server_url else None,
                        clients,
                        provision=True,
                    )
                )
                with httpx.Client(base_url=server.base_url, headers=headers, timeout=120) as http:
                    statuses, t_done = _wait_active(http, slugs, already)
                    job_seconds = _job_seconds(http, sent["jobs"])
                say(f"{backend}: the create floor again")
                creates_after = _create_floor(
                    server.base_url, key, creates[len(creates) // 2 :], clients
                )
                if sum(1 for s in slugs if statuses.get(s) == "active") < n:
                    console.print(
                        f"[yellow]{backend}: not every store active[/]\n{log_tail(server.log)}"
                    )
            floor_after = _floor(backend, template, Path(tmp), n, workers_at_once)
        finally:
            if server_url is not None:
                # Named t_<slug>_<id> (provisioning.tenant_database_name): this run's own.
                prefix = f"t_burst_{run}_"
                created = database_names(server_url, lambda name: name.startswith(prefix))
                # With its defaults, `tenantry up` keeps a few spare databases cloned ahead
                # on the server; this installation's are named in its master.
                spares = _spares(env)
                drop_databases(server_url, (created or []) + spares, 5)
                # The stores' logins (login_base(slug, id) + _a/_b), the spares' (their names).
                drop_logins(server_url, lambda n: n.startswith(prefix) or n in spares, 5)
                dispose_server_engines()
    active = sum(1 for s in slugs if statuses.get(s) == "active")
    span = t_done - t0
    return {
        "backend": backend,
        "stores": n,
        "clients": clients,
        "workers": workers,
        "accepted": len(sent["jobs"]),
        "request_errors": sent["errors"][:10],
        "submit_s": sent["seconds"],
        "submitted_per_s": len(sent["jobs"]) / sent["seconds"] if sent["seconds"] else 0.0,
        "active": active,
        "failed": sum(1 for s in slugs if statuses.get(s) == "failed"),
        "seconds": span,
        "active_per_s": active / span if span else 0.0,
        "job_s": summary(job_seconds) if job_seconds else None,
        # Measured before and after the burst, so a change of the host's speed while it ran
        # reaches the floor too; the ratio is to both together.
        "floor": _both(floor_before, floor_after),
        "floor_before": floor_before,
        "floor_after": floor_after,
        # The API's and master's part of a store, on the same server before and after it;
        # the ratio is to it and the copies one after the other.
        "create_floor": _both(creates_before, creates_after),
        "create_floor_before": creates_before,
        "create_floor_after": creates_after,
    }


def _both(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Two floor measurements as one: their copies over their seconds."""
    seconds = before["seconds"] + after["seconds"]
    copies = before["per_s"] * before["seconds"] + after["per_s"] * after["seconds"]
    return {"seconds": seconds, "per_s": copies / seconds if seconds else 0.0}


def _template(backend: str, data_dir: Path) -> str | None:
    """The template tenantry copies a new store's database from (built by the burst)."""
    if backend == "sqlite":
        found = sorted((data_dir / "templates").glob("*.db"))
        return str(found[0]) if found else None
    from tenantry.db import builder
    from tenantry.db.schemas import tenant_schema
    from tenantry.settings import load_settings

    return builder.template_name(tenant_schema(load_settings().tenant_schema))


def _print(results: list[dict[str, Any]]) -> None:
    table = Table(title="a burst of stores over HTTP: created, provisioned, active")
    for col in (
        "backend",
        "stores",
        "clients",
        "accepted/s",
        "active",
        "failed",
        "seconds",
        "active/s",
        "job p50 s",
        "job p99 s",
        "creates alone/s (before → after)",
        "floor copies/s (before → after)",
        "target",
    ):
        table.add_column(col, justify="right")
    for r in results:
        if "error" in r:
            table.add_row(r["backend"], str(r["stores"]), f"[red]{r['error']}[/]", *[""] * 10)
            continue
        job = r["job_s"] or {}
        met = r["active_per_s"] >= TARGET_PER_S and r["active"] == r["stores"]
        target = f"[{'green' if met else 'red'}]≥ {TARGET_PER_S:g}/s[/]"
        table.add_row(
            r["backend"],
            str(r["stores"]),
            str(r["clients"]),
            f"{r['submitted_per_s']:.1f}",
            str(r["active"]),
            str(r["failed"]),
            f"{r['seconds']:.1f}",
            f"{r['active_per_s']:.1f}",
            f"{job.get('median', 0):.2f}",
            num(job.get("p99", 0), ".2f"),
            f"{r['create_floor']['per_s']:.1f} ({r['create_floor_before']['per_s']:.1f} → "
            f"{r['create_floor_after']['per_s']:.1f})",
            f"{r['floor']['per_s']:.1f} ({r['floor_before']['per_s']:.1f} → "
            f"{r['floor_after']['per_s']:.1f})",
            target if r["backend"] == "postgresql" else "",
        )
    console.print(table)


def main() -> None:
    """Run the burst on each backend, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--backends", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--workers", type=int, default=None, help="`tenantry up --workers`")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    wait_until_quiet()
    if args.stores < 1 or args.clients < 1:
        parser.error("--stores and --clients must be at least 1")
    watch = ServerDatabases(parse_url(PG_URL) if "postgresql" in args.backends else None)
    results: list[dict[str, Any]] = []
    for backend in args.backends:
        try:
            results.append(bench_backend(backend, args.stores, args.clients, args.workers))
        except Exception as exc:  # report it, run the others
            console.print(f"[red]{backend} failed:[/] {type(exc).__name__}: {exc}")
            results.append({"backend": backend, "stores": args.stores, "error": str(exc)[:200]})
    if watch.before is not None:  # the template the bursts built: the server as it was found
        template = _template("postgresql", Path())
        if template and template not in watch.before:
            drop_databases(parse_url(PG_URL), [template], 1)
    databases = watch.report()
    _print(results)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "burst.json"
    out.write_text(
        json.dumps(
            {
                "run": run_metadata(),
                "config": vars(args) | {"out": str(args.out)},
                "target_active_per_s": TARGET_PER_S,
                "results": results,
                "server_databases": databases,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    console.print(f"wrote {out}")
    bad = any("error" in r or r["active"] != r["stores"] for r in results)
    raise SystemExit(1 if bad or changed(databases) else 0)


if __name__ == "__main__":
    main()
