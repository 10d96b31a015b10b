"""Tenants at scale through the API: 100 vs 10,000 tenants, a mixed load, a server drained.

For each size (``--sizes SQLITE:POSTGRESQL``, default ``100:10 10000:1000``): a fresh
installation (master and billing on PostgreSQL), three registered servers ``pg-a``, ``pg-b``,
``pg-c`` (all three registrations point at the one local PostgreSQL, 127.0.0.1:5432, so they
share one connection budget: the bound is checked on their total), the SQLite tenants and the
PostgreSQL tenants (spread evenly over the three) provisioned the way tenantry provisions
(``create_store`` + ``request_provisioning`` + ``Provisioner``: a copy of the schema's template
file, or ``CREATE DATABASE … TEMPLATE`` with its identity rewritten and a login of its own), one
store API key each. Then ``tenantry up`` (``TENANTRY_MAX_ENGINES`` at its default,
``TENANTRY_MAX_CONNECTIONS_PER_SERVER`` set, the backup scheduler and spare pools off) under a
mixed load from async httpx clients: 90 % ``GET /stores/{slug}/products``, 10 % ``POST`` a
product, each with the store's own key, random tenants, for ``--seconds``; then, the load still
running, ``tenantry servers drain pg-c``. Sampled every second: the API process's RSS
(/proc) and its connections to each server's tenant databases (its sockets matched to
``pg_stat_activity``), and every process's. Before the load: ``fleet status`` and the
scheduler tick's planning (as ``bench/scale.py`` times them) and ``tenantry fleet status``
as a command. After the drain: every pg-c store is on another server with a completed move,
and answers a read; every 5xx is matched against its store's move window.

    .venv/bin/python bench/scale_load.py [--sizes 100:10 10000:1000] [--seconds 60]

Prints a table and writes ``bench/results/scale_load.json``; drops what it created (databases,
logins), and checks the server's database list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from benchkit import (
    PG_URL,
    ServerDatabases,
    changed,
    database_names,
    drop_databases,
    environment,
    parallel,
    pct,
    run_metadata,
    say,
    wait_until_quiet,
)
from rich.console import Console
from rich.table import Table
from serverkit import Server, running_server, tenantry
from serverkit import environment as server_environment
from sqlalchemy import select, text

from tenantry.db.admin import drop_database
from tenantry.db.engines import make_engine
from tenantry.db.master.models import IntegrationConfig, ProvisioningMode, Store
from tenantry.db.templates import TEMPLATE_PREFIX
from tenantry.db.urls import parse_url
from tenantry.operations.init import run_init
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services import apikeys, provisioning, servers, stores
from tenantry.services.apikeys import Scope
from tenantry.services.backups.scheduling import all_scopes, protection
from tenantry.services.fleet_status import fleet_status
from tenantry.services.move_history import list_moves
from tenantry.services.runtime_access import drop_store_logins
from tenantry.settings import load_settings

SERVERS = ("pg-a", "pg-b", "pg-c")
DRAINED = "pg-c"
VARS = ("DATABASE_URL", "DATABASE_URL_BILLING", "TENANTRY_SECRET_KEYS", "TENANTRY_QUEUE_URL")
ACTOR = "cli:bench"
#: The names of what this bench creates on the server (tenants, master, billing, template).
OUR_PREFIXES = ("t_ld", "tt_bench_load_", TEMPLATE_PREFIX)


@dataclass(frozen=True)
class Tenant:
    """A provisioned store the load reaches with its own key."""

    slug: str
    key: str
    server: str | None  # None: a SQLite file
    database: str | None


@dataclass
class Request:
    """One request of the load: when (wall clock), whose, what, how it ended."""

    started: float
    ended: float
    slug: str
    write: bool
    status: int  # 0: no answer (a transport error)
    error: str = ""  # the transport error's class, when no answer; a 5xx's body


@dataclass
class Samples:
    """What the sampler saw each second."""

    t: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    api_conns: list[dict[str, int]] = field(default_factory=list)
    all_conns: list[dict[str, int]] = field(default_factory=list)


# -- the installation -------------------------------------------------------------------


@contextmanager
def installation(
    root: Path, stamp: str, max_conns: int
) -> Iterator[tuple[dict[str, str], Platform]]:
    """A fresh installation (master and billing as scratch PostgreSQL databases) with the three
    servers registered: the server's environment and this process's platform on it."""
    master = parse_url(PG_URL).set(database=f"tt_bench_load_master_{stamp}")
    billing = parse_url(PG_URL).set(database=f"tt_bench_load_billing_{stamp}")
    data_dir = root / "data"
    env = server_environment(data_dir, billing.render_as_string(hide_password=False))
    env["DATABASE_URL"] = master.render_as_string(hide_password=False)
    env["TENANTRY_MAX_CONNECTIONS_PER_SERVER"] = str(max_conns)
    env["TENANTRY_BACKUP_SCHEDULER"] = "false"
    env["TENANTRY_SPARE_DATABASES"] = "0"
    ours = {k: env[k] for k in env if k.startswith("TENANTRY_") or k.startswith("DATABASE_URL")}
    platform: Platform | None = None
    try:
        with environment(ours, VARS):
            settings = load_settings()
            run_init(settings)
            platform = Platform.open(settings)
            with platform.sessions.begin() as session:
                for name in SERVERS:
                    servers.add_server(
                        session, platform.box, name=name, admin_url=PG_URL, actor=ACTOR
                    )
            yield env, platform
    finally:
        if platform is not None:
            platform.close()
        for url in (master, billing):
            drop_database(url)


def provision_one(platform: Platform, slug: str, server_name: str | None) -> Tenant:
    """One store created, provisioned (a SQLite file, or a database on ``server_name``) and
    given a store key, as ``stores create`` + ``provision --new`` + ``apikeys create`` do."""
    with platform.sessions.begin() as session:
        store = stores.create_store(session, slug=slug, name=slug, plan="enterprise", actor=ACTOR)
        server = servers.get_server(session, server_name) if server_name else None
        job = provisioning.request_provisioning(
            session,
            platform.box,
            platform.settings,
            store,
            mode=ProvisioningMode.CREATE_NEW,
            server=server,
            actor=ACTOR,
        )
        job_id = job.id
        database = provisioning.tenant_database_name(store) if server_name else None
        key = apikeys.create_key(session, name="load", scope=Scope.STORE, store=store, actor=ACTOR)
    outcome = Provisioner(
        platform.sessions, platform.box, platform.settings, platform.tenant_spec, "bench"
    ).run(job_id)
    if outcome != "completed":
        raise SystemExit(f"store {slug} ended {outcome}")
    return Tenant(slug, key.plaintext, server_name, database)


def provision_all(
    platform: Platform, stamp: str, sqlite: int, pg: int, workers: int
) -> tuple[list[Tenant], float]:
    """``sqlite`` SQLite tenants and ``pg`` PostgreSQL tenants (round robin over the servers),
    ``workers`` at a time; the tenants and the seconds it took."""
    plan: list[tuple[str, str | None]] = [(f"ld{stamp}-s{i}", None) for i in range(sqlite)]
    plan += [(f"ld{stamp}-p{i}", SERVERS[i % len(SERVERS)]) for i in range(pg)]
    started = time.perf_counter()
    tenants = parallel(
        f"provisioning {sqlite} SQLite + {pg} PostgreSQL tenants",
        plan,
        lambda item: provision_one(platform, item[0], item[1]),
        workers,
    )
    return tenants, time.perf_counter() - started


# -- master paths -------------------------------------------------------------------------


def _timed(fn: Callable[[], object], repeat: int = 3) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def master_paths(platform: Platform, env: dict[str, str]) -> dict[str, dict[str, float]]:
    """``fleet status`` and the scheduler tick's planning in this process (as
    ``bench/scale.py``), and ``tenantry fleet status --json`` as a user runs it."""
    box, settings, spec = platform.box, platform.settings, platform.tenant_spec

    def fleet() -> None:
        with platform.sessions() as session:
            fleet_status(session, spec)

    def tick_planning() -> None:
        with platform.sessions() as session:
            [s for s in protection(session, all_scopes(session, box, settings)) if s.backup_due]

    return {
        "fleet status": _timed(fleet),
        "scheduler tick (planning)": _timed(tick_planning),
        "`tenantry fleet status` (process)": _timed(lambda: tenantry(env, "fleet", "status")),
    }


# -- sampling ------------------------------------------------------------------------------


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _local_ports_to(pid: int, port: int) -> set[int]:
    """The local ports of ``pid``'s TCP sockets connected to ``port`` (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, remote, inode = cols[1], cols[2], cols[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


class Sampler:
    """Every second: the API process's RSS, and connections to the tenants' databases per
    server (the API process's, and every process's), from ``pg_stat_activity``."""

    def __init__(self, pid: int, server_of: dict[str, str], stamp: str) -> None:
        self.pid = pid
        self.server_of = server_of  # database name -> registration
        self.stamp = stamp
        self.samples = Samples()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._engine = make_engine(parse_url(PG_URL), pooled=False)

    def _bucket(self, datname: str) -> str:
        # A drain's copy is named after its store with the move's id: a drain target.
        return self.server_of.get(datname, "drain targets")

    def sample(self) -> None:
        """One sample."""
        ports = _local_ports_to(self.pid, parse_url(PG_URL).port or 5432)
        with self._engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT datname, client_port FROM pg_stat_activity WHERE datname LIKE :pattern"
                ),
                {"pattern": f"t\\_ld{self.stamp}\\_%"},
            ).all()
        api: dict[str, int] = dict.fromkeys((*SERVERS, "drain targets"), 0)
        every = dict(api)
        for datname, client_port in rows:
            bucket = self._bucket(str(datname))
            every[bucket] += 1
            if client_port in ports:
                api[bucket] += 1
        s = self.samples
        s.t.append(time.time())
        s.rss_mb.append(round(_rss_mb(self.pid), 1))
        s.api_conns.append(api)
        s.all_conns.append(every)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.sample()
            except Exception as exc:  # a sample lost is said, not fatal
                say(f"[yellow]sample failed: {exc}[/]")

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._engine.dispose()


# -- the load ------------------------------------------------------------------------------


class Load:
    """``clients`` async clients sending reads and writes to random tenants until stopped."""

    def __init__(
        self, base_url: str, tenants: list[Tenant], clients: int, write_share: float
    ) -> None:
        self.base_url = base_url
        self.tenants = tenants
        self.clients = clients
        self.write_share = write_share
        self.requests: list[Request] = []
        self.stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _client(self, http: httpx.AsyncClient, rng: random.Random) -> None:
        while not self.stop.is_set():
            tenant = rng.choice(self.tenants)
            write = rng.random() < self.write_share
            headers = {"Authorization": f"Bearer {tenant.key}"}
            path = f"/stores/{tenant.slug}/products"
            started = time.time()
            t0 = time.perf_counter()
            try:
                if write:
                    sku = f"L-{uuid.uuid4().hex[:12]}"
                    body = {"sku": sku, "name": "Load", "price_minor": 100}
                    response = await http.post(path, json=body, headers=headers)
                else:
                    response = await http.get(path, params={"limit": 10}, headers=headers)
                status = response.status_code
                error = response.text[:300] if status >= 500 else ""
            except httpx.HTTPError as exc:
                status, error = 0, type(exc).__name__
            ended = started + (time.perf_counter() - t0)
            self.requests.append(Request(started, ended, tenant.slug, write, status, error))

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        async with httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=60) as http:
            await asyncio.gather(
                *(self._client(http, random.Random(i)) for i in range(self.clients))
            )

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join()


# -- the drain -----------------------------------------------------------------------------


def drain(
    env: dict[str, str], concurrency: int, stores: int
) -> tuple[dict[str, Any], float, float, float]:
    """``tenantry servers drain pg-c --json`` of its ``stores``: its report, start and end
    (wall clock) and seconds."""
    started = time.time()
    t0 = time.perf_counter()
    # A move takes a second or two under the load: a few minutes for a few hundred stores.
    command = ("servers", "drain", DRAINED, "--concurrency", str(concurrency), "--json")
    report = json.loads(tenantry(env, *command, timeout=180 + 10 * stores))
    return report, started, time.time(), time.perf_counter() - t0


def check_drain(
    platform: Platform, report: dict[str, Any], drained: list[Tenant], http: httpx.Client
) -> dict[str, Any]:
    """Every drained store on another server (master's active connection), its move
    completed, and a read through the API answered; the move windows by store."""
    op_id = uuid.UUID(str(report["operation_id"]))
    windows: dict[str, tuple[float, float]] = {}
    with platform.sessions() as session:
        moves = list_moves(session, parent_id=op_id, limit=len(drained) + 10)
        drained_id = servers.get_server(session, DRAINED).id
        active = {
            str(store_id): server_id
            for store_id, server_id in session.execute(
                select(IntegrationConfig.store_id, IntegrationConfig.database_server_id).where(
                    IntegrationConfig.is_active.is_(True)
                )
            )
        }
        slugs_ids = {m.slug: str(m.store_id) for m in moves}
    completed = 0
    for move in moves:
        if move.status == "completed" and move.started_at and move.finished_at:
            completed += 1
            windows[move.slug] = (_epoch(move.started_at), _epoch(move.finished_at))
    elsewhere = sum(
        1
        for t in drained
        if t.slug in slugs_ids and active.get(slugs_ids[t.slug]) not in (None, drained_id)
    )
    readable = 0
    for t in drained:
        r = http.get(
            f"/stores/{t.slug}/products",
            params={"limit": 1},
            headers={"Authorization": f"Bearer {t.key}"},
        )
        readable += r.status_code == 200
    return {
        "stores": len(drained),
        "report_status": report.get("status"),
        "moved_in_report": sum(1 for s in report.get("stores", []) if s["status"] == "moved"),
        "moves_completed": completed,
        "on_another_server": elsewhere,
        "readable_after": readable,
        "windows": windows,
    }


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# -- one size ------------------------------------------------------------------------------


def run_size(sqlite: int, pg: int, args: argparse.Namespace) -> dict[str, Any]:
    """Set up, load, drain and measure one size; everything made is dropped on the way out."""
    stamp = uuid.uuid4().hex[:6]
    with (
        tempfile.TemporaryDirectory(prefix="tt_bench_load_") as tmp,
        installation(Path(tmp), stamp, args.max_connections_per_server) as (env, platform),
    ):
        tenants: list[Tenant] = []
        try:
            tenants, setup_s = provision_all(platform, stamp, sqlite, pg, args.setup_workers)
            say(f"{len(tenants)} tenants in {setup_s:.0f} s ({len(tenants) / setup_s:.1f}/s)")
            paths = master_paths(platform, env)
            result = load_and_drain(env, platform, tenants, stamp, args)
            result.update(
                {
                    "tenants": {"sqlite": sqlite, "postgresql": pg, "total": sqlite + pg},
                    "setup": {
                        "seconds": round(setup_s, 1),
                        "tenants_per_s": round(len(tenants) / setup_s, 1),
                    },
                    "master_paths": paths,
                }
            )
            return result
        finally:
            drop_tenants(platform, stamp, tenants)


def drop_tenants(platform: Platform, stamp: str, tenants: list[Tenant]) -> None:
    """The tenants' databases (moved copies and kept sources too) and logins on the server."""
    server = parse_url(PG_URL)
    names = database_names(server, lambda n: n.startswith(f"t_ld{stamp}_")) or []
    drop_databases(server, names, 4)
    with platform.sessions() as session:
        ids = session.execute(select(Store.slug, Store.id).where(Store.slug.like(f"ld{stamp}-p%")))
        for slug, store_id in ids.all():
            drop_store_logins(server, slug, store_id)


def load_and_drain(
    env: dict[str, str],
    platform: Platform,
    tenants: list[Tenant],
    stamp: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The load for ``--seconds``, then the drain under the load; the measures."""
    server_of = {t.database: t.server for t in tenants if t.database and t.server}
    with tempfile.TemporaryDirectory() as logs:
        log = Path(logs) / "up.log"
        with running_server(env, log) as server:
            measured = _under_load(env, platform, server, tenants, server_of, stamp, args)
    return measured


def _under_load(
    env: dict[str, str],
    platform: Platform,
    server: Server,
    tenants: list[Tenant],
    server_of: dict[str, str],
    stamp: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    drained = [t for t in tenants if t.server == DRAINED]
    with Sampler(server.proc.pid, server_of, stamp) as sampler:
        with Load(server.base_url, tenants, args.clients, args.write_share) as load:
            load_started = time.time()
            time.sleep(args.seconds)
            steady_end = time.time()
            say(f"steady load done ({len(load.requests)} requests); draining {DRAINED}")
            report, drain_start, drain_end, drain_s = drain(
                env, args.drain_concurrency, len(drained)
            )
            time.sleep(2)  # the load goes on a little after the last switch
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            checked = check_drain(platform, report, drained, http)
    requests = load.requests
    windows = checked.pop("windows")
    warm_from = load_started + args.warmup
    steady = [r for r in requests if warm_from <= r.started < steady_end]
    reads = [(r.ended - r.started) * 1000 for r in steady if not r.write and r.status == 200]
    writes = [(r.ended - r.started) * 1000 for r in steady if r.write and r.status == 201]
    failed_steady = [r for r in requests if r.started < steady_end and not 200 <= r.status < 500]
    during = [r for r in requests if r.started >= steady_end]
    errors = [r for r in during if not 200 <= r.status < 500]

    def in_window(r: Request) -> bool:
        w = windows.get(r.slug)
        return w is not None and r.started <= w[1] and r.ended >= w[0]

    inside = [r for r in errors if in_window(r)]
    s = sampler.samples
    warm = [rss for t, rss in zip(s.t, s.rss_mb, strict=True) if t >= warm_from]
    steady_rss = [rss for t, rss in zip(s.t, s.rss_mb, strict=True) if warm_from <= t < steady_end]
    api_total = [sum(c.values()) for c in s.api_conns]
    all_total = [sum(c.values()) for c in s.all_conns]
    seconds = steady_end - warm_from
    return {
        "load": {
            "clients": args.clients,
            "write_share": args.write_share,
            "seconds": args.seconds,
            "warmup_s": args.warmup,
            "requests_measured": len(steady),
            "rate_per_s": round(len(steady) / seconds, 1),
            "read_ms": _lat(reads),
            "write_ms": _lat(writes),
            "non_2xx_4xx_steady": len(failed_steady),
            "failed_steady": [
                {"slug": r.slug, "write": r.write, "status": r.status, "error": r.error}
                for r in failed_steady[:20]
            ],
            "statuses": _statuses(requests),
            "no_answer_errors": _no_answer(requests),
        },
        "rss_mb": {
            "after_warmup": steady_rss[0] if steady_rss else None,
            "end_of_steady": steady_rss[-1] if steady_rss else None,
            "max_steady": max(steady_rss) if steady_rss else None,
            "growth_steady": round(steady_rss[-1] - steady_rss[0], 1) if steady_rss else None,
            "max_with_drain": max(warm) if warm else None,
            "samples": s.rss_mb,
        },
        "connections": {
            "bound_per_server": args.max_connections_per_server,
            "bound_note": "the three registrations share 127.0.0.1:5432: one budget for all",
            "api_max_total": max(api_total, default=0),
            "api_max_per_server": {
                k: max((c[k] for c in s.api_conns), default=0) for k in (*SERVERS, "drain targets")
            },
            "all_processes_max_total": max(all_total, default=0),
            "all_processes_max_per_server": {
                k: max((c[k] for c in s.all_conns), default=0) for k in (*SERVERS, "drain targets")
            },
            "api_samples": api_total,
        },
        "drain": {
            **checked,
            "seconds": round(drain_s, 1),
            "stores_per_s": round(len(drained) / drain_s, 2) if drain_s else None,
            "concurrency": args.drain_concurrency,
            "requests_during": len(during),
            "errors_during": len(errors),
            "errors_inside_own_window": len(inside),
            "errors_outside": len(errors) - len(inside),
            "errors_statuses": _statuses(errors),
            "drain_window_s": round(drain_end - drain_start, 1),
        },
    }


def _lat(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(pct(values, 0.5), 1),
        "p90": round(pct(values, 0.9), 1),
        "p99": round(pct(values, 0.99), 1),
        "max": round(max(values), 1),
    }


def _no_answer(requests: list[Request]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in requests:
        if r.status == 0:
            counts[r.error] = counts.get(r.error, 0) + 1
    return counts


def _statuses(requests: list[Request]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in requests:
        counts[str(r.status)] = counts.get(str(r.status), 0) + 1
    return dict(sorted(counts.items()))


# -- output --------------------------------------------------------------------------------


def _print(results: list[dict[str, Any]]) -> None:
    table = Table(title="tenants at scale through the API")
    table.add_column("measure")
    for r in results:
        t = r["tenants"]
        table.add_column(f"{t['sqlite']:,} SQLite + {t['postgresql']:,} PG", justify="right")
    rows: list[tuple[str, Callable[[dict[str, Any]], object]]] = [
        ("setup (tenants/s)", lambda r: r["setup"]["tenants_per_s"]),
        ("load rate (req/s)", lambda r: r["load"]["rate_per_s"]),
        (
            "read p50 / p99 ms",
            lambda r: f"{r['load']['read_ms'].get('p50')} / {r['load']['read_ms'].get('p99')}",
        ),
        (
            "write p50 / p99 ms",
            lambda r: f"{r['load']['write_ms'].get('p50')} / {r['load']['write_ms'].get('p99')}",
        ),
        ("5xx/lost, steady", lambda r: r["load"]["non_2xx_4xx_steady"]),
        (
            "RSS MB after warm-up → end (max)",
            lambda r: (
                f"{r['rss_mb']['after_warmup']} → "
                f"{r['rss_mb']['end_of_steady']} ({r['rss_mb']['max_steady']})"
            ),
        ),
        (
            "API conns max (bound)",
            lambda r: (
                f"{r['connections']['api_max_total']} ({r['connections']['bound_per_server']})"
            ),
        ),
        ("all processes' conns max", lambda r: r["connections"]["all_processes_max_total"]),
        ("fleet status ms", lambda r: r["master_paths"]["fleet status"]["median_ms"]),
        ("tick planning ms", lambda r: r["master_paths"]["scheduler tick (planning)"]["median_ms"]),
        (
            "`tenantry fleet status` ms",
            lambda r: r["master_paths"]["`tenantry fleet status` (process)"]["median_ms"],
        ),
        (
            "drain stores (moved, elsewhere, readable)",
            lambda r: (
                f"{r['drain']['stores']} "
                f"({r['drain']['moves_completed']}, {r['drain']['on_another_server']}, "
                f"{r['drain']['readable_after']})"
            ),
        ),
        ("drain stores/s", lambda r: r["drain"]["stores_per_s"]),
        (
            "5xx during drain (inside own window)",
            lambda r: f"{r['drain']['errors_during']} ({r['drain']['errors_inside_own_window']})",
        ),
    ]
    for name, cell in rows:
        table.add_row(name, *(str(cell(r)) for r in results))
    Console().print(table)


def _size(raw: str) -> tuple[int, int]:
    sqlite, _, pg = raw.partition(":")
    return int(sqlite), int(pg or 0)


def main() -> None:
    """Run each size, print the table, write the JSON; exit non-zero when a database of this
    bench was left behind."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=_size, nargs="+", default=[(100, 10), (10_000, 1_000)])
    parser.add_argument("--seconds", type=float, default=60.0, help="steady load before the drain")
    parser.add_argument("--warmup", type=float, default=15.0, help="not measured (cache filling)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--write-share", type=float, default=0.1)
    parser.add_argument("--max-connections-per-server", type=int, default=20)
    parser.add_argument("--drain-concurrency", type=int, default=2)
    parser.add_argument("--setup-workers", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    wait_until_quiet()
    databases = ServerDatabases(parse_url(PG_URL))
    templates = set(
        database_names(parse_url(PG_URL), lambda n: n.startswith(TEMPLATE_PREFIX)) or []
    )
    results = []
    try:
        for sqlite, pg in args.sizes:
            say(f"size {sqlite} SQLite + {pg} PostgreSQL tenants")
            results.append(run_size(sqlite, pg, args))
    finally:  # the store template, unless it was there before
        made = database_names(parse_url(PG_URL), lambda n: n.startswith(TEMPLATE_PREFIX)) or []
        drop_databases(parse_url(PG_URL), sorted(set(made) - templates), 1)
    _print(results)
    left = databases.report()
    # The server is shared: other work's databases come and go; ours are named for the bench.
    ours = {k: [n for n in v if n.startswith(OUR_PREFIXES)] for k, v in left.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "scale_load.json"
    config = {k: (v if not isinstance(v, Path) else str(v)) for k, v in vars(args).items()}
    out.write_text(
        json.dumps(
            {
                "run": run_metadata(postgresql=_pg_version()),
                "config": config,
                "results": results,
                "server_databases": left,
                "server_databases_of_this_bench": ours,
            },
            indent=2,
            default=str,
        )
    )
    say(f"wrote {out}")
    if changed(ours):
        raise SystemExit(f"databases or logins of this bench left behind or gone: {ours}")


def _pg_version() -> str:
    engine = make_engine(parse_url(PG_URL), pooled=False)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar())
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
