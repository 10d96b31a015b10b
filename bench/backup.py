"""Benchmark: tenantry's backup + verify against plain pg_dump -Fc + pg_restore, on PostgreSQL.

    python bench/backup.py [--size-mb 1024] [--tenants 100] [--tenant-mb 5] [--concurrency 4]
                           [--rounds 3] [--out bench/results]

A fresh installation (temp data dir: SQLite master for the backup catalog, backups in a local
directory beside it) and store databases on TENANTRY_BENCH_POSTGRES_URL's server, each with
the default tenant schema (``tenantry.db.tenant.store.plugin``) and its own tenantry identity,
filled with products, customers, orders (JSON addresses) and order items by ``INSERT ...
SELECT generate_series`` until their tables and indexes hold the size asked for.

* One database of ``--size-mb``: plain backup ``pg_dump -Fc -f FILE`` (its default gzip
  compression); plain verify ``createdb``, ``pg_restore --single-transaction --exit-on-error
  --no-owner --no-privileges`` of that file (the flags tenantry's verify uses), ``dropdb``.
  tenantry backup ``take_backup`` (pg_dump -Z0 in an exported snapshot with row counts, zstd,
  SHA-256, read back, manifest, catalog); tenantry verify ``verify_backup`` (restore into a
  scratch database, amcheck, row counts and identity compared, scratch dropped). Each step is
  timed alone, with the server's dirty pages flushed before it; with ``--rounds`` the order
  alternates and the median is kept. Target: tenantry's total ≤ 1.3x the plain tools'.
* ``--tenants`` databases of ``--tenant-mb`` (cloned from one filled template, each with its
  own instance id): plain, one after another, ``pg_dump -Fc`` then ``createdb`` +
  ``pg_restore`` + ``dropdb``; the same plain tools on ``--concurrency`` threads (the floor
  bound by what bounds tenantry: the machine's CPUs, not one process's latency); tenantry,
  ``take_backup`` + ``verify_backup`` per database on ``--concurrency`` threads. In turns: the
  tenants are split into ``--chunks`` and each chunk is done by the three, in an order that
  rotates, so the host's speed changing over the minutes reaches all three alike (one block
  each moved the ratio 17 % between two passes); each ratio is the median of the chunks'
  (4 chunks moved it 17-40 % between two passes, 10 chunks 2-11 %).
  Target: tenantry in parallel faster than the plain loop.

Prints a table and writes ``backup.json``. ``--size-mb 0`` or ``--tenants 0`` skips a part.
Every database created (``bench_backup_<hex>_*``, and tenantry's scratch databases of this
run's backups) and the temp dir are removed at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as host
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from benchkit import (
    PG_URL,
    ServerDatabases,
    changed,
    checkpoint,
    database_names,
    drop_databases,
    environment,
    parallel,
    pct,
    progress_console,
    run_metadata,
    say,
    wait_until_quiet,
)
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.backup.storage import LocalStorage
from tenantry.db.admin import (
    create_database,
    dispose_server_engines,
    run_server_sql,
)
from tenantry.db.engines import make_engine
from tenantry.db.identity import IDENTITY_TABLE
from tenantry.db.master.models import Backup
from tenantry.db.schemas import SchemaSpec, tenant_schema
from tenantry.db.server_connections import SERVERS
from tenantry.db.urls import mask, parse_url
from tenantry.operations.backup_take import take_backup
from tenantry.operations.backup_verify import verify_backup
from tenantry.operations.init import run_init
from tenantry.services import schema_ops
from tenantry.services.backups.targets import BackupTarget
from tenantry.services.backups.verification import SCRATCH_PREFIX, Verification
from tenantry.settings import Settings, load_settings

OWNER = "tenantry"
PLUGIN = "tenantry.db.tenant.store.plugin"
PREFIX = "bench_backup_"
MB = 1024 * 1024
#: The issue's targets: one database at most this many times the plain tools' total; the
#: tenants in parallel faster than the plain tools one after another (a ratio below 1).
TARGET_ONE = 1.3
TARGET_TENANTS = 1.0
#: pg_restore's flags in both verifications (tenantry's verify uses exactly these).
RESTORE_FLAGS = ("--single-transaction", "--exit-on-error", "--no-owner", "--no-privileges")
#: Databases created or dropped at once (tenantry's cached server engine holds at most 5).
ADMIN_WORKERS = 5
#: Orders inserted per statement while filling (about 170 MB with their items and indexes).
FILL_BATCH = 100_000
#: Variables that would point the installation elsewhere (or its backups to S3).
_TENANTRY_VARS = (
    "DATABASE_URL",
    "DATABASE_URL_BILLING",
    "TENANTRY_SECRET_KEYS",
    "TENANTRY_BACKUP_DIR",
    "TENANTRY_BACKUP_S3_BUCKET",
    "TENANTRY_TENANT_SCHEMA",
    "TENANTRY_FAILPOINTS",
    "TENANTRY_APP",
    "TENANTRY_MASTER_OWNER",
    "TENANTRY_BILLING_OWNER",
)

console = Console(width=160)
T = TypeVar("T")
R = TypeVar("R")


# --------------------------------------------------------------------------- helpers


def _progress(*columns: Any) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *columns,
        TimeElapsedColumn(),
        console=progress_console,
        transient=True,
    )


def _sequential(label: str, items: Sequence[T], fn: Callable[[T], R]) -> list[R]:
    """``fn`` over ``items`` one after another, with a progress bar."""
    results: list[R] = []
    with _progress(MofNCompleteColumn()) as progress:
        task = progress.add_task(label, total=len(items))
        for item in items:
            results.append(fn(item))
            progress.advance(task)
    return results


def _spread(values: list[float]) -> dict[str, float]:
    """Median, p90, max and sum of per-database seconds."""
    return {
        "median": statistics.median(values),
        "p90": pct(values, 0.9),
        "max": max(values),
        "sum": sum(values),
    }


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def _first_line(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message.splitlines()[0] if message else ''}"


# --------------------------------------------------------------------------- the installation


@dataclass
class Catalog:
    """A fresh installation's backup catalog (master) and storage; the backups taken."""

    settings: Settings
    sessions: sessionmaker[Session]
    storage: LocalStorage
    backup_ids: list[uuid.UUID] = field(default_factory=list)

    @property
    def level(self) -> int:
        """The zstd level tenantry uses (``TENANTRY_BACKUP_ZSTD_LEVEL``, default 3)."""
        return self.settings.backup_zstd_level


@contextmanager
def installation(root: Path, taken: list[uuid.UUID]) -> Iterator[Catalog]:
    """What ``tenantry init`` does, in ``root`` (SQLite master and billing); closed on exit.

    The ids of the backups taken go to ``taken``, for the cleanup.
    """
    with environment({"TENANTRY_DATA_DIR": str(root / "data")}, _TENANTRY_VARS):
        settings = load_settings()
    run_init(settings)
    master = make_engine(settings.master_url)
    try:
        yield Catalog(
            settings,
            sessionmaker(master, expire_on_commit=False),
            LocalStorage(settings.backup_path),
            taken,
        )
    finally:
        master.dispose()


# --------------------------------------------------------------------------- store databases

_ADJECTIVES = "ARRAY['classic','organic','vintage','compact','deluxe','everyday','rugged']"
_NOUNS = "ARRAY['mug','lamp','chair','backpack','notebook','candle','scarf','kettle','rug']"
_MATERIALS = "ARRAY['oak','recycled cotton','stoneware','brushed steel','linen','walnut']"
_FIRST = "ARRAY['Ada','Grace','Alan','Linus','Barbara','Ken','Margaret','Dennis','Frances']"
_LAST = "ARRAY['Lovelace','Hopper','Turing','Torvalds','Liskov','Thompson','Hamilton','Allen']"
_STREETS = "ARRAY['Main Street','Station Road','Elm Avenue','Harbour Lane','Mill Road']"
_CITIES = "ARRAY['Springfield','Riverton','Lakeside','Fairview','Greenville','Kingston']"
_COUNTRIES = "ARRAY['US','GB','DE','FR','NL','CA']"

#: Products ``:a`` to ``:b - 1``: names, a ~500-character description, JSON metadata.
FILL_PRODUCTS = f"""
INSERT INTO products (id, sku, slug, name, description, status, is_active, weight_grams,
                      metadata, created_at, updated_at)
SELECT md5('p' || n)::uuid, 'SKU-' || lpad(n::text, 8, '0'), 'product-' || n,
       initcap(adj) || ' ' || noun || ' ' || n,
       'Our ' || adj || ' ' || noun || ' is made from ' || material
         || ' and finished by hand in small batches. Dimensions and care instructions are '
         || 'printed on the label. Batch ' || md5(n::text) || '. '
         || repeat('Ships in recyclable packaging. ', (1 + n % 4)::int)
         || 'Notes: ' || md5((n + 1)::text) || md5((n + 2)::text),
       (ARRAY['draft','active','active','active','archived'])[1 + n % 5], n % 9 <> 0,
       100 + (n * 37) % 4000,
       json_build_object('color', (ARRAY['red','blue','green','black','white'])[1 + n % 5],
                         'material', material, 'tags', json_build_array(adj, noun, n % 97),
                         'dimensions_mm', json_build_object('w', 50 + n % 300,
                                                            'h', 20 + n % 200,
                                                            'd', 10 + n % 100)),
       ts, ts + interval '3 days'
FROM (SELECT n, ({_ADJECTIVES})[1 + n % 7] AS adj, ({_NOUNS})[1 + n % 9] AS noun,
             ({_MATERIALS})[1 + n % 6] AS material,
             timestamptz '2022-01-01 00:00:00+00' + n * interval '17 minutes' AS ts
      FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint) - 1) AS n) AS x
"""

#: Customers ``:a`` to ``:b - 1``.
FILL_CUSTOMERS = f"""
INSERT INTO customers (id, email, first_name, last_name, phone, accepts_marketing, created_at,
                       updated_at)
SELECT md5('c' || n)::uuid, 'customer' || n || '@example.com', ({_FIRST})[1 + n % 9],
       ({_LAST})[1 + (n / 9) % 8], '+1-555-' || lpad((n % 10000)::text, 4, '0'), n % 3 = 0,
       ts, ts
FROM (SELECT n, timestamptz '2022-01-01 00:00:00+00' + n * interval '3 minutes' AS ts
      FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint) - 1) AS n) AS x
"""

#: Orders ``:a`` to ``:b - 1`` (order i: customer i / 10), with JSON addresses.
FILL_ORDERS = f"""
INSERT INTO orders (id, order_number, customer_id, status, currency, subtotal_minor,
                    discount_minor, tax_minor, shipping_minor, total_minor, discount_code, email,
                    shipping_address, billing_address, placed_at, created_at, updated_at)
SELECT md5('o' || i)::uuid, 'ORD-' || lpad(i::text, 10, '0'), md5('c' || (i / 10))::uuid,
       (ARRAY['pending','paid','paid','fulfilled','fulfilled','cancelled','refunded'])[1 + i % 7],
       (ARRAY['USD','EUR','GBP'])[1 + i % 3], s, d, s * 8 / 100, sh, s - d + s * 8 / 100 + sh,
       CASE WHEN d > 0 THEN 'SPRING' || i % 50 END, 'customer' || (i / 10) || '@example.com',
       json_build_object('name', name, 'line1', (1 + i % 9999) || ' ' || street,
                         'line2', CASE WHEN i % 4 = 0 THEN 'Apt ' || (1 + i % 300) END,
                         'city', city, 'postal_code', lpad(((i * 7919) % 100000)::text, 5, '0'),
                         'country', country, 'phone', '+1-555-' || lpad((i % 10000)::text, 4, '0'),
                         'instructions', CASE WHEN i % 5 = 0
                                              THEN 'Leave at the door ' || md5(i::text) END),
       json_build_object('name', name, 'line1', (1 + i % 9999) || ' ' || street, 'city', city,
                         'postal_code', lpad(((i * 7919) % 100000)::text, 5, '0'),
                         'country', country, 'vat_id', CASE WHEN i % 6 = 0
                                                            THEN 'EU' || (i * 104729) % 1000000000
                                                       END),
       ts, ts, ts + interval '2 hours'
FROM (SELECT i, 1000 + (i * 37) % 90000 AS s,
             CASE WHEN i % 7 = 0 THEN (1000 + (i * 37) % 90000) / 10 ELSE 0 END AS d,
             500 + i % 1500 AS sh,
             ({_FIRST})[1 + (i / 10) % 9] || ' ' || ({_LAST})[1 + (i / 90) % 8] AS name,
             ({_STREETS})[1 + i % 5] AS street, ({_CITIES})[1 + i % 6] AS city,
             ({_COUNTRIES})[1 + i % 6] AS country,
             timestamptz '2023-01-01 00:00:00+00' + i * interval '41 seconds' AS ts
      FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint) - 1) AS i) AS x
"""

#: Three items per order ``:a`` to ``:b - 1`` (of products up to i / 50).
FILL_ITEMS = f"""
INSERT INTO order_items (id, order_id, product_id, sku, name, quantity, unit_price_minor,
                         total_minor)
SELECT md5('i' || i || '-' || k)::uuid, md5('o' || i)::uuid, md5('p' || p)::uuid,
       'SKU-' || lpad(p::text, 8, '0'), initcap(({_ADJECTIVES})[1 + p % 7]) || ' '
         || ({_NOUNS})[1 + p % 9] || ' ' || p, q, u, q * u
FROM (SELECT i, k, greatest(0, i / 50 - k * 13) AS p, 1 + (i + k) % 3 AS q,
             500 + ((i + k) * 53) % 20000 AS u
      FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint) - 1) AS i,
           generate_series(0, 2) AS k) AS x
"""

#: Bytes in the public tables, their indexes and TOAST (what the dump is of).
DATA_BYTES = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'
"""


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class Filled:
    """What a filled database holds."""

    orders: int
    data_bytes: int
    database_bytes: int
    fill_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "order_items": self.orders * 3,
            "customers": _ceil_div(self.orders, 10),
            "products": _ceil_div(self.orders, 50),
            "data_mb": self.data_bytes / MB,
            "database_mb": self.database_bytes / MB,
            "fill_seconds": self.fill_seconds,
        }


def fill(url: URL, target_bytes: int, label: str) -> Filled:
    """Add orders (with their customers, products and items) until the data reaches
    ``target_bytes``; then VACUUM (FREEZE, ANALYZE), so no later reader sets hint bits."""
    started = time.perf_counter()
    engine = make_engine(url, pooled=False)
    made = 0
    try:
        with engine.connect() as conn, _progress(DownloadColumn()) as progress:
            conn.execute(text("SET synchronous_commit = off"))
            conn.commit()
            task = progress.add_task(label, total=target_bytes)
            size = int(conn.execute(text(DATA_BYTES)).scalar_one())
            base = size
            while size < target_bytes:
                if made == 0:
                    batch = 2000
                else:  # from the bytes per order so far, a little beyond what is missing
                    per_order = max(1.0, (size - base) / made)
                    batch = int((target_bytes - size) / per_order) + 1
                batch = max(1, min(batch, FILL_BATCH))
                a, b = made, made + batch
                for statement, lo, hi in (
                    (FILL_PRODUCTS, _ceil_div(a, 50), _ceil_div(b, 50)),
                    (FILL_CUSTOMERS, _ceil_div(a, 10), _ceil_div(b, 10)),
                    (FILL_ORDERS, a, b),
                    (FILL_ITEMS, a, b),
                ):
                    if hi > lo:
                        conn.execute(text(statement), {"a": lo, "b": hi})
                conn.commit()
                made = b
                size = int(conn.execute(text(DATA_BYTES)).scalar_one())
                progress.update(task, completed=min(size, target_bytes))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (FREEZE, ANALYZE)")
            data = int(conn.execute(text(DATA_BYTES)).scalar_one())
            database = int(
                conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
            )
    finally:
        engine.dispose()
    return Filled(made, data, database, time.perf_counter() - started)


def _instance_id(url: URL) -> str:
    engine = make_engine(url, pooled=False)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text(f"SELECT instance_id FROM {IDENTITY_TABLE}")).scalar_one())
    finally:
        engine.dispose()


class Databases:
    """This run's databases on the server (``bench_backup_<hex>_*``) and their cleanup."""

    def __init__(self) -> None:
        self.server = parse_url(PG_URL)
        self.prefix = f"{PREFIX}{uuid.uuid4().hex[:8]}_"
        self.spec: SchemaSpec = tenant_schema(PLUGIN)

    def url(self, suffix: str) -> URL:
        return self.server.set(database=f"{self.prefix}{suffix}")

    def create_store(self, suffix: str, mb: float, label: str) -> tuple[URL, Filled]:
        """A store database at the tenant schema's head with tenantry identity, filled."""
        url = self.url(suffix)
        create_database(url)
        engine = make_engine(url, pooled=False)
        try:
            with engine.begin() as conn:
                schema_ops.migrate(conn, self.spec, mask(url), acting_app=OWNER, owner=OWNER)
        finally:
            engine.dispose()
        return url, fill(url, int(mb * MB), label)

    def clone(self, template: URL, suffix: str) -> tuple[URL, str]:
        """A copy of ``template`` with an instance id of its own; its URL and the id."""
        url = self.url(suffix)
        run_server_sql(url, f'CREATE DATABASE "{url.database}" TEMPLATE "{template.database}"')
        instance_id = str(uuid.uuid4())
        engine = make_engine(url, pooled=False)
        try:
            with engine.begin() as conn:
                conn.execute(
                    text(f"UPDATE {IDENTITY_TABLE} SET instance_id = :i"), {"i": instance_id}
                )
        finally:
            engine.dispose()
        return url, instance_id

    def settle(self) -> None:
        """Flush the server's dirty pages (and the OS's), so the next step does not pay for
        the previous one's writes."""
        checkpoint(self.server)
        os.sync()

    def cleanup(self, backup_ids: Sequence[uuid.UUID]) -> None:
        """Drop every database of this run, and tenantry's scratch copies of its backups."""
        scratch = {f"{SCRATCH_PREFIX}verify_{b.hex[:12]}" for b in backup_ids}
        SERVERS.dispose()
        names = database_names(
            self.server, lambda name: name.startswith(self.prefix) or name in scratch
        )
        drop_databases(self.server, names or [], ADMIN_WORKERS)
        dispose_server_engines()


# --------------------------------------------------------------------------- plain tools


def _pg_env(url: URL) -> dict[str, str]:
    env = {**os.environ, "PGHOST": url.host or "localhost", "PGPORT": str(url.port or 5432)}
    if url.username:
        env["PGUSER"] = url.username
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return env


def _tool(*args: str) -> float:
    """Run a client tool against the server; seconds taken; raise with its stderr if it fails."""
    started = time.perf_counter()
    done = subprocess.run(
        list(args), env=_pg_env(parse_url(PG_URL)), capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return seconds


def plain_backup(url: URL, file: Path) -> float:
    """``pg_dump -Fc -f FILE DB``; seconds."""
    return _tool("pg_dump", "-Fc", "-f", str(file), str(url.database))


def plain_verify(scratch: URL, file: Path) -> dict[str, float]:
    """``createdb``, ``pg_restore`` (tenantry verify's flags) and ``dropdb``; seconds each."""
    name = str(scratch.database)
    times = {"createdb": _tool("createdb", name)}
    try:
        times["pg_restore"] = _tool("pg_restore", *RESTORE_FLAGS, "-d", name, str(file))
    finally:
        times["dropdb"] = _tool("dropdb", "--if-exists", name)
    times["seconds"] = sum(times.values())
    return times


# --------------------------------------------------------------------------- tenantry


def tenantry_backup(catalog: Catalog, target: BackupTarget) -> tuple[float, Backup]:
    """``take_backup`` of ``target``; seconds and the catalog row (recorded for cleanup)."""
    seconds, backup = _timed(
        lambda: take_backup(
            catalog.sessions,
            catalog.storage,
            target,
            reason="manual",
            label="bench",
            actor="bench",
            level=catalog.level,
        )
    )
    catalog.backup_ids.append(backup.id)  # list.append is atomic: threads may share it
    return seconds, backup


def tenantry_verify(catalog: Catalog, backup: Backup, server: URL) -> tuple[float, Verification]:
    """``verify_backup`` into a scratch database on ``server``; seconds; raise unless passed."""
    seconds, result = _timed(
        lambda: verify_backup(
            catalog.sessions, catalog.storage, backup.id, server, actor="cli:bench"
        )
    )
    if not result.passed:
        raise RuntimeError(f"verification of {backup.id} failed: {'; '.join(result.problems)}")
    return seconds, result


# --------------------------------------------------------------------------- one database


def _ratio(tenantry: float, plain: float) -> float:
    return tenantry / plain if plain else float("nan")


def bench_one(size_mb: float, rounds: int) -> dict[str, Any]:
    """One database of ``size_mb``: plain tools vs tenantry, backup and verify, ``rounds``."""
    dbs = Databases()
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-backup-") as tmp:
        root = Path(tmp)
        taken: list[uuid.UUID] = []
        try:
            with installation(root, taken) as catalog:
                say(f"one database: creating {size_mb:g} MB of store data")
                url, filled = dbs.create_store("big", size_mb, f"filling {size_mb:g} MB")
                target = BackupTarget(dbs.spec, url, uuid.uuid4(), "bench-big", _instance_id(url))
                samples: list[dict[str, Any]] = []
                for r in range(rounds):
                    sample: dict[str, Any] = {"round": r + 1}
                    order = ("plain", "tenantry") if r % 2 == 0 else ("tenantry", "plain")
                    for who in order:
                        if who == "plain":
                            file = root / f"plain-{r}.dump"
                            dbs.settle()
                            say(f"round {r + 1}/{rounds}: pg_dump -Fc")
                            backup_s = plain_backup(url, file)
                            dbs.settle()
                            say(f"round {r + 1}/{rounds}: createdb + pg_restore + dropdb")
                            verify = plain_verify(dbs.url("plain_scratch"), file)
                            sample["plain"] = {
                                "backup_s": backup_s,
                                "verify_s": verify["seconds"],
                                "verify_parts_s": verify,
                                "file_bytes": file.stat().st_size,
                            }
                            file.unlink()
                        else:
                            dbs.settle()
                            say(f"round {r + 1}/{rounds}: tenantry take_backup")
                            backup_s, backup = tenantry_backup(catalog, target)
                            dbs.settle()
                            say(f"round {r + 1}/{rounds}: tenantry verify_backup")
                            verify_s, result = tenantry_verify(catalog, backup, dbs.server)
                            sample["tenantry"] = {
                                "backup_s": backup_s,
                                "verify_s": verify_s,
                                "verify_restore_s": result.restore_seconds,
                                "verify_checks_s": verify_s - result.restore_seconds,
                                "artifact_bytes": backup.size_bytes,
                                "dump_bytes": backup.raw_bytes,
                                "row_counts": backup.row_counts,
                            }
                    for who in ("plain", "tenantry"):
                        s = sample[who]
                        s["total_s"] = s["backup_s"] + s["verify_s"]
                    samples.append(sample)
        finally:
            say("one database: cleaning up")
            dbs.cleanup(taken)

    def median(who: str, key: str) -> float:
        return statistics.median(float(s[who][key]) for s in samples)

    plain = {k: median("plain", k) for k in ("backup_s", "verify_s", "total_s", "file_bytes")}
    tenantry = {
        k: median("tenantry", k)
        for k in (
            "backup_s",
            "verify_s",
            "verify_restore_s",
            "verify_checks_s",
            "total_s",
            "artifact_bytes",
            "dump_bytes",
        )
    }
    db_mb = filled.database_bytes / MB
    plain["throughput_mb_s"] = db_mb / plain["backup_s"]
    tenantry["throughput_mb_s"] = db_mb / tenantry["backup_s"]
    tenantry["dump_throughput_mb_s"] = tenantry["dump_bytes"] / MB / tenantry["backup_s"]
    ratios = {k: _ratio(tenantry[f"{k}_s"], plain[f"{k}_s"]) for k in ("backup", "verify", "total")}
    ratios["size"] = _ratio(tenantry["artifact_bytes"], plain["file_bytes"])
    return {
        "part": "one",
        "size_mb": size_mb,
        "database": filled.as_dict(),
        "rounds": rounds,
        "zstd_level": catalog.level,
        "plain": plain,
        "tenantry": tenantry,
        "tenantry_over_plain": ratios,
        "target": {"ratio": TARGET_ONE, "met": ratios["total"] <= TARGET_ONE},
        "samples": samples,
    }


# --------------------------------------------------------------------------- N tenants


@dataclass(frozen=True)
class TenantRun:
    """One tenant database's backup and verify, as measured."""

    backup_s: float
    verify_s: float
    bytes: int


def bench_tenants(n: int, tenant_mb: float, concurrency: int, chunks: int) -> dict[str, Any]:
    """``n`` store databases: the plain tools one after another and ``concurrency`` at a
    time, and tenantry in parallel, taking turns chunk by chunk."""
    dbs = Databases()
    sides = ("plain", "plain_parallel", "tenantry")
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    runs: dict[str, list[TenantRun]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-backup-") as tmp:
        root = Path(tmp)
        taken: list[uuid.UUID] = []
        try:
            with installation(root, taken) as catalog:
                say(f"{n} tenants: a {tenant_mb:g} MB template")
                template, filled = dbs.create_store("tpl", tenant_mb, f"filling {tenant_mb:g} MB")
                dispose_server_engines()  # nothing may be connected to a template being copied
                clones = parallel(
                    f"creating {n} tenant databases",
                    [f"t{i:04d}" for i in range(n)],
                    lambda suffix: dbs.clone(template, suffix),
                    ADMIN_WORKERS,
                )
                targets = [
                    BackupTarget(dbs.spec, url, uuid.uuid4(), f"bench-{i:04d}", instance_id)
                    for i, (url, instance_id) in enumerate(clones)
                ]
                for side in ("plain", "plain_parallel"):
                    (root / side).mkdir()

                def plain_one(side: str, t: BackupTarget) -> TenantRun:
                    file = root / side / f"{t.slug}.dump"
                    backup_s = plain_backup(t.url, file)
                    # A scratch database per tenant: the parallel side restores several at once.
                    verify = plain_verify(dbs.url(f"scratch_{str(t.slug).replace('-', '_')}"), file)
                    return TenantRun(backup_s, verify["seconds"], file.stat().st_size)

                def tenantry_one(t: BackupTarget) -> TenantRun:
                    backup_s, backup = tenantry_backup(catalog, t)
                    verify_s, _ = tenantry_verify(catalog, backup, dbs.server)
                    return TenantRun(backup_s, verify_s, backup.size_bytes or 0)

                def side_run(side: str, part: list[BackupTarget], label: str) -> list[TenantRun]:
                    if side == "plain":
                        return _sequential(label, part, partial(plain_one, side))
                    if side == "plain_parallel":
                        return parallel(label, part, partial(plain_one, side), concurrency)
                    return parallel(label, part, tenantry_one, concurrency)

                parts = [targets[k::chunks] for k in range(chunks)]
                for k, part in enumerate(parts):
                    for side in sides[k % 3 :] + sides[: k % 3]:  # who goes first rotates
                        dbs.settle()
                        label = f"{side} x{len(part)} (chunk {k + 1}/{chunks})"
                        say(f"{n} tenants: {label}")
                        took, done = _timed(partial(side_run, side, part, label))
                        seconds[side].append(took)
                        runs[side].extend(done)
        finally:
            say(f"{n} tenants: cleaning up")
            dbs.cleanup(taken)

    def summary(side: str) -> dict[str, Any]:
        total = sum(seconds[side])
        return {
            "seconds": total,
            "chunks_s": [round(s, 3) for s in seconds[side]],
            "ms_per_tenant": total * 1000 / n,
            "backup_s": _spread([r.backup_s for r in runs[side]]),
            "verify_s": _spread([r.verify_s for r in runs[side]]),
            "stored_bytes": sum(r.bytes for r in runs[side]),
        }

    def paired(floor: str) -> float:
        """The median over the chunks of tenantry's seconds over ``floor``'s."""
        return statistics.median(
            ours / theirs for ours, theirs in zip(seconds["tenantry"], seconds[floor], strict=True)
        )

    ratio = paired("plain")
    return {
        "part": "tenants",
        "tenants": n,
        "tenant_mb": tenant_mb,
        "database": filled.as_dict(),
        "concurrency": concurrency,
        "chunks": chunks,
        "zstd_level": catalog.level,
        "plain": summary("plain"),
        "plain_parallel": summary("plain_parallel"),
        "tenantry": summary("tenantry"),
        "tenantry_over_plain": {"total": ratio, "parallel": paired("plain_parallel")},
        "target": {"ratio": TARGET_TENANTS, "met": ratio < TARGET_TENANTS},
    }


# --------------------------------------------------------------------------- report


def _mb(n: float | None) -> str:
    return "" if n is None else f"{n / MB:,.1f} MB"


def _x(ratio: float, target: float | None = None, *, strict: bool = False) -> str:
    shown = f"{ratio:.2f}x"
    if target is None:
        return shown
    met = ratio < target if strict else ratio <= target
    return f"[{'green' if met else 'red'}]{shown}[/]"


def _print(results: list[dict[str, Any]]) -> None:
    table = Table(title="backup + verify on PostgreSQL: tenantry vs plain pg_dump -Fc / pg_restore")
    for col in ("database(s)", "step", "plain", "tenantry", "tenantry/plain", "target"):
        table.add_column(col, justify="left" if col in ("database(s)", "step") else "right")
    for r in results:
        if "error" in r:
            table.add_row(r["label"], f"[red]error[/] {r['error']}", "", "", "", "")
            table.add_section()
            continue
        db = r["database"]
        p, t, x = r["plain"], r["tenantry"], r["tenantry_over_plain"]
        if r["part"] == "one":
            scope = f"1 database, {db['database_mb']:,.0f} MB ({db['data_mb']:,.0f} MB data)"
            rounds = f", median of {r['rounds']}" if r["rounds"] > 1 else ""
            table.add_row(
                scope,
                f"backup{rounds}",
                f"{p['backup_s']:.2f} s",
                f"{t['backup_s']:.2f} s",
                _x(x["backup"]),
                "",
            )
            table.add_row(
                "",
                "verify (restore into a new database)",
                f"{p['verify_s']:.2f} s",
                f"{t['verify_s']:.2f} s",
                _x(x["verify"]),
                "",
            )
            table.add_row(
                "",
                "  of which restore / scratch db+amcheck+counts",
                "",
                f"{t['verify_restore_s']:.2f} / {t['verify_checks_s']:.2f} s",
                "",
                "",
            )
            table.add_row(
                "",
                "[bold]backup + verify[/]",
                f"{p['total_s']:.2f} s",
                f"{t['total_s']:.2f} s",
                _x(x["total"], TARGET_ONE),
                f"≤ {TARGET_ONE:g}x",
            )
            table.add_row(
                "",
                f"stored size (plain gzip, tenantry zstd -{r['zstd_level']})",
                _mb(p["file_bytes"]),
                f"{_mb(t['artifact_bytes'])} (dump {_mb(t['dump_bytes'])})",
                _x(x["size"]),
                "",
            )
            table.add_row(
                "",
                "backup throughput (database MB / s)",
                f"{p['throughput_mb_s']:,.1f} MB/s",
                f"{t['throughput_mb_s']:,.1f} MB/s",
                "",
                "",
            )
        else:
            scope = (
                f"{r['tenants']} tenants x {db['database_mb']:,.1f} MB ({db['data_mb']:,.1f} data)"
            )
            table.add_row(
                scope,
                f"[bold]backup + verify, all[/] (plain one by one, tenantry c={r['concurrency']})",
                f"{p['seconds']:.2f} s",
                f"{t['seconds']:.2f} s",
                _x(x["total"], TARGET_TENANTS, strict=True),
                f"< {TARGET_TENANTS:g}x",
            )
            if "plain_parallel" in r:
                table.add_row(
                    "",
                    f"backup + verify, all (both c={r['concurrency']})",
                    f"{r['plain_parallel']['seconds']:.2f} s",
                    f"{t['seconds']:.2f} s",
                    _x(x["parallel"]),
                    "",
                )
            table.add_row(
                "",
                "per tenant: backup, median (p90)",
                f"{p['backup_s']['median'] * 1000:.0f} ({p['backup_s']['p90'] * 1000:.0f}) ms",
                f"{t['backup_s']['median'] * 1000:.0f} ({t['backup_s']['p90'] * 1000:.0f}) ms",
                _x(t["backup_s"]["median"] / p["backup_s"]["median"]),
                "",
            )
            table.add_row(
                "",
                "per tenant: verify, median (p90)",
                f"{p['verify_s']['median'] * 1000:.0f} ({p['verify_s']['p90'] * 1000:.0f}) ms",
                f"{t['verify_s']['median'] * 1000:.0f} ({t['verify_s']['p90'] * 1000:.0f}) ms",
                _x(t["verify_s"]["median"] / p["verify_s"]["median"]),
                "",
            )
            table.add_row(
                "",
                "stored size, all",
                _mb(p["stored_bytes"]),
                _mb(t["stored_bytes"]),
                _x(_ratio(t["stored_bytes"], p["stored_bytes"])),
                "",
            )
        table.add_section()
    console.print(table)
    console.print(
        "[dim]plain: pg_dump -Fc -f FILE (gzip); createdb, pg_restore "
        + " ".join(RESTORE_FLAGS)
        + ", dropdb. tenantry: take_backup (row counts and pg_dump -Z0 in one snapshot, zstd, "
        "SHA-256, read back, manifest, catalog row) and verify_backup (scratch database, "
        "pg_restore with the same flags, amcheck, row counts and identity compared, scratch "
        "dropped). Per-tenant times of tenantry are measured inside its threads, so they "
        "include waiting for the other threads. Green: target met.[/]"
    )


def main() -> None:
    """Run the benchmarks, print a table and write the JSON results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--size-mb", type=float, default=1024, help="the one database's data (0: skip)"
    )
    parser.add_argument("--tenants", type=int, default=100, help="tenant databases (0: skip)")
    parser.add_argument("--tenant-mb", type=float, default=5, help="each tenant database's data")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="tenantry's threads, and the plain tools'"
    )
    parser.add_argument(
        "--chunks", type=int, default=10, help="turns the tenants are taken in (each side's)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        # 3, not 1: the one database's ratio of single samples moved 15.5 % between two quiet
        # passes; each round is about 80 s against the fill's 110.
        default=3,
        help="rounds over the one database, in alternating order (median kept)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    wait_until_quiet()
    if args.size_mb < 0 or args.tenants < 0 or args.tenant_mb <= 0:
        parser.error("--size-mb and --tenants must be at least 0, --tenant-mb more than 0")
    if min(args.concurrency, args.rounds, args.chunks) < 1:
        parser.error("--concurrency, --rounds and --chunks must be at least 1")
    if args.tenants and args.chunks > args.tenants:
        parser.error(f"--chunks {args.chunks} is more than --tenants {args.tenants}")
    for tool in ("pg_dump", "pg_restore", "createdb", "dropdb"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not on PATH (Debian: apt-get install postgresql-client)")
    jobs: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    if args.size_mb:
        jobs.append(
            (f"1 database, {args.size_mb:g} MB", lambda: bench_one(args.size_mb, args.rounds))
        )
    if args.tenants:
        jobs.append(
            (
                f"{args.tenants} tenants x {args.tenant_mb:g} MB",
                lambda: bench_tenants(args.tenants, args.tenant_mb, args.concurrency, args.chunks),
            )
        )
    watch = ServerDatabases(parse_url(PG_URL))
    results: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    try:
        for label, job in jobs:
            try:
                results.append(job())
            except Exception as exc:  # report it, run the others
                error = _first_line(exc)
                console.print(f"[red]{label} failed:[/] {error}")
                results.append({"label": label, "error": error})
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; the databases created were dropped.[/]")
        raise SystemExit(130) from None
    databases = watch.report()
    _print(results)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "backup.json"
    out.write_text(
        json.dumps(
            {
                "run": run_metadata(),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": host.python_version(),
                    "pg_dump": subprocess.run(
                        ["pg_dump", "--version"], capture_output=True, text=True, check=False
                    ).stdout.strip(),
                    # Other work on the machine skews the timings: the load before and after.
                    "loadavg_start": load_start,
                    "loadavg_end": os.getloadavg(),
                },
                "config": {
                    "size_mb": args.size_mb,
                    "tenants": args.tenants,
                    "tenant_mb": args.tenant_mb,
                    "concurrency": args.concurrency,
                    "chunks": args.chunks,
                    "rounds": args.rounds,
                    "postgres": mask(parse_url(PG_URL)),
                    "restore_flags": list(RESTORE_FLAGS),
                },
                "targets": {
                    "one_database_max_ratio": TARGET_ONE,
                    "tenants_parallel_below_ratio": TARGET_TENANTS,
                },
                "results": results,
                "server_databases": databases,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    console.print(f"wrote {out}")
    raise SystemExit(1 if changed(databases) or any("error" in r for r in results) else 0)


if __name__ == "__main__":
    main()
