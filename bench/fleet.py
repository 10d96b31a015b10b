"""Benchmark: one tenant-schema revision over a fleet of tenant databases, naive vs tenantry.

    python bench/fleet.py [--tenants 100 [500 …]] [--backends sqlite postgresql] [--concurrency 4]
                          [--schemas store one-table] [--noop-tenants 1000] [--repeat 5]
                          [--out bench/results]

For each backend and N: a fresh installation (temp data dir: SQLite master and billing) with
a generated tenant-schema plug-in. ``store`` (the default, and what the targets judge) is
tenantry's default store schema: its own migrations copied into the plug-in, every table and
index, its seed data; revision ``b002`` then adds a nullable, indexed ``bench_note`` to
``products``. ``one-table`` (an extra row, at the first N only) has revision ``b001`` creating
``products`` and ``b002`` adding a nullable, indexed ``note``. N tenant databases at the
revision before ``b002``, with their own tenantry identity, are cloned from one template
(``CREATE DATABASE ... TEMPLATE`` on TENANTRY_BENCH_POSTGRES_URL's server, a file copy on
SQLite) and registered as active stores in master. Then, wall-clock:

* naive apply: a script looping over the databases, a new engine and Alembic's
  ``command.upgrade(..., "head")`` each; naive no-op: the same loop on databases at the head;
* raw apply floor: the databases cloned again, then the driver alone (psycopg, sqlite3) over
  ``--concurrency`` threads: connect, read the version, b002's two statements, the version
  row moved, commit, close; what a fleet run cannot go below (tenantry adds each tenant's
  lock, identity check, script hash and recorded outcome);
* tenantry apply: the databases cloned again, then ``run_fleet`` to ``b002`` with
  ``--concurrency`` (every outcome must be migrated); tenantry no-op: ``run_fleet`` again
  (every outcome current);
* ``--repeat`` rounds, each: the naive apply, the databases cloned afresh, the raw apply
  floor, the databases cloned afresh, tenantry's apply (its ratio to the floor: the median of
  the rounds' pairs),
  then 3 turns of the naive no-op and tenantry's (a no-op is short: one sample of it is
  noise). Medians shown with the range; each ratio is the median of the pairs' ratios (a slow
  minute of the machine slows both of a pair). Verify: ``verify_fleet`` (every check ok), the
  median of ``max(--repeat, 5)`` runs, each after its raw floor (below); on PostgreSQL it is
  timed over the ``--noop-tenants`` databases instead, when there are any.

With ``--noop-tenants`` (PostgreSQL only, 0 skips it): that many databases already at ``b002``
and ``run_fleet`` with nothing to apply: the first run (cold), then ``max(--repeat, 5)``, each
right after the raw floor on the same databases (psycopg alone: connect, read the version,
close, with the same concurrency); the ratio is the median of those pairs'. Then verify over
those databases, in the same pairs with the floor. The performance
issue's targets are printed beside the measured values. Prints a table and writes
``fleet.json``. Every database created is dropped at the end, whatever happened (PostgreSQL
names start with ``tenantry_bench_fleet_<hex>_``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform as host
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from alembic import command
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
    run_metadata,
    say,
    wait_until_quiet,
)
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, MetaData, create_engine, select, text, update
from sqlalchemy.engine import URL

from tenantry.db import migrations
from tenantry.db.admin import (
    create_database,
    dispose_server_engines,
    drop_database,
    run_server_sql,
)
from tenantry.db.engines import make_engine
from tenantry.db.identity import IDENTITY_TABLE
from tenantry.db.master.models import (
    DatabaseStatus,
    FleetRunStatus,
    IntegrationConfig,
    Store,
    TenantOutcome,
)
from tenantry.db.schemas import Role, SchemaSpec
from tenantry.db.tenant.store import models as store_models
from tenantry.db.tenant.store import plugin as store_plugin
from tenantry.db.urls import mask, parse_url
from tenantry.operations.fleet_record import RunReport
from tenantry.operations.fleet_run import run_fleet
from tenantry.operations.fleet_verify import verify_fleet
from tenantry.operations.init import run_init
from tenantry.runtime import Platform
from tenantry.services import connections, schema_ops
from tenantry.services.fleet_migrate import MigrateOptions
from tenantry.services.fleet_status import fleet_status
from tenantry.settings import load_settings

OWNER = "tenantry"
AFTER = "b002"
#: The default store schema's migrations, and the revision they end at.
STORE_MIGRATIONS = Path(store_plugin.MIGRATIONS)
STORE_HEAD = str(
    migrations.head(
        SchemaSpec(Role.TENANT, store_models.SCHEMA_NAME, store_models.metadata, STORE_MIGRATIONS)
    )
)
B002_FILE = "b002_note.py"
#: Databases created or dropped at once (tenantry's cached server engine holds at most 5).
ADMIN_WORKERS = 5
#: Variables that would point the installation elsewhere.
_TENANTRY_VARS = (
    "DATABASE_URL",
    "DATABASE_URL_BILLING",
    "TENANTRY_SECRET_KEYS",
    "TENANTRY_APP",
    "TENANTRY_MASTER_OWNER",
    "TENANTRY_BILLING_OWNER",
)

console = Console(width=160)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Target:
    """A goal from the issue: ``seconds`` for ``tenants`` tenants on ``backend`` (any if None)."""

    step: str
    backend: str | None
    tenants: int
    seconds: float
    text: str


#: The performance issue's targets (judged on the store schema).
TARGETS = (
    Target("tenantry_apply", "postgresql", 1000, 6.0, "one revision over 1,000 PostgreSQL tenants"),
    Target("verify", "postgresql", 1000, 5.0, "verify 1,000 PostgreSQL tenants (5 ms each)"),
)


# --------------------------------------------------------------------------- the plug-ins

#: The tenant schemas a fleet can be measured on: the default store schema (every table,
#: index and its seed data, as provisioning builds it), and one ``products`` table.
SCHEMAS = ("store", "one-table")

STORE_PLUGIN_INIT = '''"""Tenant schema plug-in written by bench/fleet.py: tenantry's default store
schema (its migrations copied here) and, once b002 exists, a nullable indexed ``bench_note`` on
``products``."""

from pathlib import Path

from sqlalchemy import Column, Index, MetaData, String

from tenantry.db.tenant.store.models import metadata as store_metadata
from tenantry.db.tenant.store.seed import seed
from tenantry.db.types import NAMING_CONVENTION

SCHEMA_NAME = "benchstore"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def build_metadata(with_note: bool) -> MetaData:
    """The store schema, with or without b002's column."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    for table in store_metadata.sorted_tables:
        table.to_metadata(metadata)
    if with_note:
        products = metadata.tables["products"]
        products.append_column(Column("bench_note", String(200), nullable=True))
        Index("ix_products_bench_note", products.c.bench_note)
    return metadata


metadata = build_metadata((MIGRATIONS / "versions" / "b002_note.py").exists())

__all__ = ["MIGRATIONS", "SCHEMA_NAME", "build_metadata", "metadata", "seed"]
'''

STORE_B002 = '''"""product note

Revision ID: b002
Revises: {before}
"""

import sqlalchemy as sa
from alembic import op

revision = "b002"
down_revision = "{before}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.add_column(sa.Column("{column}", sa.String(length=200), nullable=True))
        batch.create_index("{index}", ["{column}"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.drop_index("{index}")
        batch.drop_column("{column}")
'''
#: What b002 adds to the store schema's ``products`` (bench/fleet_schemas.py undoes it).
STORE_B002_COLUMN, STORE_B002_INDEX = "bench_note", "ix_products_bench_note"

PLUGIN_INIT = '''"""Tenant schema plug-in written by bench/fleet.py: one ``products`` table."""

from pathlib import Path

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table

from tenantry.db.types import NAMING_CONVENTION

SCHEMA_NAME = "benchshop"

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def build_metadata(with_note: bool) -> MetaData:
    """The models at b001, or at b002 (a nullable ``note`` with an index)."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    columns = [
        Column("id", Integer, primary_key=True),
        Column("name", String(200), nullable=False),
        Column("price_minor", BigInteger, nullable=False),
    ]
    if with_note:
        columns.append(Column("note", String(200), nullable=True, index=True))
    Table("products", metadata, *columns)
    return metadata


metadata = build_metadata((MIGRATIONS / "versions" / "b002_note.py").exists())
'''

PLUGIN_ENV = """from tenantry.db.alembic_env import run

run()
"""

PLUGIN_B001 = '''"""products

Revision ID: b001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "b001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
    )


def downgrade() -> None:
    op.drop_table("products")
'''

PLUGIN_B002 = '''"""product note

Revision ID: b002
Revises: b001
"""

import sqlalchemy as sa
from alembic import op

revision = "b002"
down_revision = "b001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.add_column(sa.Column("note", sa.String(length=200), nullable=True))
        batch.create_index(batch.f("ix_products_note"), ["note"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.drop_index(batch.f("ix_products_note"))
        batch.drop_column("note")
'''


@dataclass
class Installation:
    """A fresh tenantry installation with its own tenant-schema plug-in."""

    root: Path
    platform: Platform
    schema: str  # one of SCHEMAS
    schema_name: str
    migrations: Path
    build_metadata: Callable[[bool], MetaData]
    seed: Callable[[Connection, dict[str, Any]], None] | None
    before: str  # the revision the fleet starts at; b002 follows it

    def spec(self, with_note: bool) -> SchemaSpec:
        """The tenant schema before or after ``b002`` exists.

        Built here rather than read from the plug-in (imported once per process), so both
        states are at hand; each has its own metadata, hence its own cached scripts.
        """
        return SchemaSpec(
            Role.TENANT, self.schema_name, self.build_metadata(with_note), self.migrations
        )

    def write_b002(self) -> None:
        """The new revision appears, as after a deploy."""
        (self.migrations / "versions" / B002_FILE).write_text(_b002_source(self.schema))


def _b002_source(schema: str) -> str:
    if schema != "store":
        return PLUGIN_B002
    return STORE_B002.format(before=STORE_HEAD, column=STORE_B002_COLUMN, index=STORE_B002_INDEX)


def _write_plugin(plug_dir: Path, schema: str, with_b002: bool) -> str:
    """Write the ``schema`` plug-in as ``bench<schema>_<hex>`` under ``plug_dir``; its module
    name."""
    name = f"bench{schema.replace('-', '')}_{uuid.uuid4().hex[:8]}"
    package = plug_dir / name
    versions = package / "migrations" / "versions"
    if schema == "store":
        # The default schema's own migrations, as an application extending it would have.
        shutil.copytree(
            STORE_MIGRATIONS, package / "migrations", ignore=shutil.ignore_patterns("__pycache__")
        )
        (package / "__init__.py").write_text(STORE_PLUGIN_INIT)
    else:
        versions.mkdir(parents=True)
        (package / "__init__.py").write_text(PLUGIN_INIT)
        (package / "migrations" / "env.py").write_text(PLUGIN_ENV)
        (versions / "b001_products.py").write_text(PLUGIN_B001)
    if with_b002:
        (versions / B002_FILE).write_text(_b002_source(schema))
    return name


@contextmanager
def installation(root: Path, schema: str, *, with_b002: bool) -> Iterator[Installation]:
    """What ``tenantry init`` does, in ``root``, with a generated plug-in; closed on exit."""
    plug_dir = root / "plug"
    module = _write_plugin(plug_dir, schema, with_b002)
    sys.path.insert(0, str(plug_dir))
    env = {"TENANTRY_DATA_DIR": str(root / "data"), "TENANTRY_TENANT_SCHEMA": module}
    try:
        with environment(env, _TENANTRY_VARS):
            settings = load_settings()
            run_init(settings)
            platform = Platform.open(settings)
        try:
            plugin = importlib.import_module(module)
            yield Installation(
                root,
                platform,
                schema,
                plugin.SCHEMA_NAME,
                Path(plugin.MIGRATIONS),
                plugin.build_metadata,
                getattr(plugin, "seed", None),
                STORE_HEAD if schema == "store" else "b001",
            )
        finally:
            platform.close()
    finally:
        with suppress(ValueError):
            sys.path.remove(str(plug_dir))


# --------------------------------------------------------------------------- helpers


def _timing(seconds: float, tenants: int) -> dict[str, float]:
    return {"seconds": seconds, "ms_per_tenant": seconds * 1000 / tenants if tenants else 0.0}


def _sampled(seconds: list[float], tenants: int) -> dict[str, Any]:
    """The median of runs timed alone, with every run's seconds beside it."""
    return _timing(statistics.median(seconds), tenants) | {"runs_s": [round(s, 3) for s in seconds]}


def _repeated(runs: list[tuple[float, RunReport]], tenants: int) -> dict[str, Any]:
    """The median run (its timing and outcomes), with every run's seconds beside it."""
    ordered = sorted(runs, key=lambda run: run[0])
    seconds, report = ordered[(len(ordered) - 1) // 2]
    return (
        _timing(seconds, tenants)
        | {"runs_s": [round(s, 3) for s, _ in runs]}
        | _outcome_stats(report)
    )


def _outcome_stats(report: RunReport) -> dict[str, Any]:
    """Counts and per-tenant durations (as run_fleet measured them, inside its threads)."""
    ms = [float(o.duration_ms) for o in report.outcomes]
    return {
        "status": str(report.status),
        "outcomes": dict(report.counts),
        "run_seconds": report.seconds,
        "tenant_ms": {
            "median": statistics.median(ms) if ms else None,
            "p90": pct(ms, 0.9) if ms else None,
            "max": max(ms, default=None),
        },
    }


def timed_fleet_run(
    platform: Platform,
    spec: SchemaSpec,
    options: MigrateOptions,
    concurrency: int,
    n: int,
    expected: TenantOutcome,
    step: str,
) -> tuple[float, RunReport]:
    """One ``run_fleet`` over the ``n`` tenants, every outcome required ``expected``: its
    wall-clock seconds and report."""
    started = time.perf_counter()
    report = run_fleet(
        platform.sessions, platform.box, spec, options, concurrency=concurrency, actor="cli:bench"
    )
    seconds = time.perf_counter() - started
    _expect(report, n, expected, step)
    return seconds, report


def verify_timing(
    platform: Platform,
    spec: SchemaSpec,
    n: int,
    concurrency: int,
    repeat: int,
    label: str,
    floor: Callable[[], float],
) -> dict[str, Any]:
    """``verify_fleet`` over the ``n`` tenants, every check required ok; the median of
    ``max(repeat, SHORT_RUNS)`` runs (verify is short: one run of it is one noisy sample),
    each right after a run of its ``floor`` (:func:`raw_floor` over the same tenants), and
    the median of the pairs' ratios: the host's speed moved the absolute figure of two passes
    20-30 %, the same way for both of a pair."""
    verifies: list[float] = []
    floors: list[float] = []
    runs = max(repeat, SHORT_RUNS)
    for rep in range(runs):
        say(f"{label}: verify ({rep + 1}/{runs}, after its raw floor)")
        floors.append(floor())
        started = time.perf_counter()
        checks = verify_fleet(platform.sessions, platform.box, spec, concurrency=concurrency)
        verifies.append(time.perf_counter() - started)
        bad = [c for c in checks if not c.ok]
        if bad or len(checks) != n:
            raise RuntimeError(
                f"verify: {len(checks) - len(bad)}/{n} ok"
                + (f"; first: {bad[0].slug}: {bad[0].problems}" if bad else "")
            )
    return _sampled(verifies, n) | {
        "ok": n,
        "floor": _sampled(floors, n),
        "over_floor": statistics.median(v / f for v, f in zip(verifies, floors, strict=True)),
    }


def _expect(report: RunReport, n: int, status: TenantOutcome, step: str) -> None:
    """Raise unless all ``n`` tenants ended ``status`` and the run succeeded."""
    bad = [o for o in report.outcomes if o.status != status]
    if bad or len(report.outcomes) != n or report.status != FleetRunStatus.SUCCEEDED:
        first = bad[0] if bad else None
        raise RuntimeError(
            f"{step}: {len(report.outcomes)}/{n} outcomes, {dict(report.counts)}, run "
            f"{report.status}"
            + (f"; first: {first.slug} {first.status}: {first.error}" if first else "")
        )


# --------------------------------------------------------------------------- tenant databases


class TenantDatabases:
    """The tenant databases of one installation: a template, N clones, and their cleanup."""

    def __init__(self, backend: str, root: Path, n: int) -> None:
        self.backend = backend
        self.n = n
        run = uuid.uuid4().hex[:8]
        if backend == "postgresql":
            server = parse_url(PG_URL)
            self.server: URL | None = server
            self.prefix = f"tenantry_bench_fleet_{run}_"
            self.template = server.set(database=f"{self.prefix}tpl")
            self.urls = [server.set(database=f"{self.prefix}{i:04d}") for i in range(n)]
        elif backend == "sqlite":
            self.server = None
            self.prefix = ""
            (root / "tenants").mkdir(parents=True, exist_ok=True)
            self.template = parse_url(f"sqlite:///{root / 'templates' / 'tpl.db'}")
            self.urls = [
                parse_url(f"sqlite:///{root / 'tenants' / f't{i:04d}.db'}") for i in range(n)
            ]
        else:
            raise SystemExit(f"unknown backend {backend!r} (sqlite or postgresql)")

    def build_template(self, inst: Installation, *, with_note: bool) -> None:
        """The template at the plug-in's head, with identity (clones then get their own id)
        and the plug-in's seed data, as provisioning leaves a new store's database."""
        create_database(self.template)  # a SQLite file is created with its directory
        engine = make_engine(self.template, pooled=False)
        try:
            with engine.begin() as conn:
                schema_ops.migrate(
                    conn,
                    inst.spec(with_note=with_note),
                    mask(self.template),
                    acting_app=OWNER,
                    owner=OWNER,
                )
                if inst.seed is not None:
                    inst.seed(conn, {"name": "Bench store", "slug": "bench"})
        finally:
            engine.dispose()
        if self.backend == "sqlite":
            # Everything into the main file, so copying that one file copies the database.
            con = sqlite3.connect(str(self.template.database))
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                con.close()

    def _clone(self, i: int) -> str:
        """Database ``i`` as a copy of the template with a fresh instance id; the id."""
        url = self.urls[i]
        instance_id = str(uuid.uuid4())
        if self.backend == "sqlite":
            shutil.copyfile(str(self.template.database), str(url.database))
            con = sqlite3.connect(str(url.database))
            try:
                con.execute(f"UPDATE {IDENTITY_TABLE} SET instance_id = ?", (instance_id,))
                con.commit()
            finally:
                con.close()
            return instance_id
        run_server_sql(url, f'CREATE DATABASE "{url.database}" TEMPLATE "{self.template.database}"')
        engine = make_engine(url, pooled=False)
        try:
            with engine.begin() as conn:
                conn.execute(
                    text(f"UPDATE {IDENTITY_TABLE} SET instance_id = :i"), {"i": instance_id}
                )
        finally:
            engine.dispose()
        return instance_id

    def clone_all(self, label: str) -> list[str]:
        """Every database cloned from the template; their instance ids, in order."""
        return parallel(label, range(self.n), self._clone, ADMIN_WORKERS)

    def settle(self) -> None:
        """Flush the creation's writes first, so the timings that follow do not pay for them
        (creating hundreds of databases leaves gigabytes of WAL and dirty pages behind)."""
        if self.server is None:
            os.sync()
            return
        checkpoint(self.server)

    def drop_all(self, label: str) -> None:
        """Drop the N databases (not the template)."""
        parallel(label, self.urls, drop_database, ADMIN_WORKERS)

    def cleanup(self) -> None:
        """Drop everything this object may have created, template included."""
        if self.server is None:
            for url in [*self.urls, self.template]:
                drop_database(url)
            return
        names = database_names(self.server, lambda name: name.startswith(self.prefix))
        if names is None:  # try every name this run may have used
            names = [str(u.database) for u in [*self.urls, self.template]]
        drop_databases(self.server, names, ADMIN_WORKERS)
        dispose_server_engines()


def _slug(i: int) -> str:
    return f"bench-{i:04d}"


def register(
    platform: Platform, dbs: TenantDatabases, instance_ids: list[str], revision: str
) -> None:
    """Each database as an active store of master, with its connection and instance id."""
    stores: list[Store] = []
    configs: list[IntegrationConfig] = []
    for i, (url, instance_id) in enumerate(zip(dbs.urls, instance_ids, strict=True)):
        data, secret = connections.split_url(platform.box, url)
        store = Store(
            id=uuid.uuid4(),
            name=f"Bench store {i}",
            slug=_slug(i),
            database_type=data["engine"],
            database_host=data.get("host"),
            database_name=data.get("database") or data.get("path"),
            database_status=DatabaseStatus.ACTIVE,
            schema_revision=revision,
        )
        stores.append(store)
        configs.append(
            IntegrationConfig(
                store_id=store.id,
                integration_type=data["engine"],
                config_data=data,
                secret_encrypted=secret,
                created_by_tenantry=True,
                is_active=True,
                instance_id=instance_id,
            )
        )
    with platform.sessions.begin() as session:
        session.add_all(stores)
        session.flush()  # no relationship orders the inserts: the stores go first
        session.add_all(configs)


def reregister(platform: Platform, instance_ids: list[str], revision: str) -> None:
    """Master told that the stores' databases were recreated (new instance ids)."""
    with platform.sessions.begin() as session:
        ids = {slug: store_id for slug, store_id in session.execute(select(Store.slug, Store.id))}
        for i, instance_id in enumerate(instance_ids):
            store_id = ids[_slug(i)]
            session.execute(
                update(IntegrationConfig)
                .where(IntegrationConfig.store_id == store_id)
                .values(instance_id=instance_id)
            )
        session.execute(update(Store).values(schema_revision=revision))


def naive_loop(urls: list[URL], spec: SchemaSpec) -> float:
    """What a person scripting Alembic would do: a new engine and ``upgrade head`` each."""
    started = time.perf_counter()
    for url in urls:
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                command.upgrade(migrations.alembic_config(spec, connection=conn), "head")
        finally:
            engine.dispose()
    return time.perf_counter() - started


def _revisions(urls: list[URL], spec: SchemaSpec) -> set[str | None]:
    """The revisions the databases are at (read one by one; only for checking)."""
    found: set[str | None] = set()
    for url in urls:
        engine = make_engine(url, pooled=False)
        try:
            with engine.connect() as conn:
                found.add(migrations.current(conn, spec))
        finally:
            engine.dispose()
    return found


# --------------------------------------------------------------------------- the benchmarks


def bench_fleet(
    schema: str, backend: str, n: int, concurrency: int, repeat: int, *, verify: bool = True
) -> dict[str, Any]:
    """Naive loop vs run_fleet over ``n`` databases of ``backend`` with the ``schema``
    plug-in: apply, no-op and (given ``verify``) verify; tenantry's apply and no-op
    ``repeat`` times, the databases cloned afresh each time."""
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-fleet-") as tmp:
        root = Path(tmp)
        dbs = TenantDatabases(backend, root, n)
        try:
            with installation(root, schema, with_b002=False) as inst:
                platform = inst.platform
                before = inst.before
                t0 = time.perf_counter()
                dbs.build_template(inst, with_note=False)
                ids = dbs.clone_all(f"{backend}: creating {n} databases at {before}")
                register(platform, dbs, ids, before)
                dbs.settle()
                setup_s = time.perf_counter() - t0
                inst.write_b002()
                after = inst.spec(with_note=True)
                if migrations.head(after) != AFTER:
                    raise RuntimeError(f"the plug-in's head is {migrations.head(after)}")
                steps: dict[str, dict[str, Any]] = {}

                options = MigrateOptions(goal=AFTER, acting_app=OWNER, owner=OWNER)
                runs: dict[str, list[tuple[float, RunReport]]] = {}
                naive: dict[str, list[float]] = {"naive_apply": [], "naive_noop": []}
                floors: list[float] = []  # the raw apply's, each just before tenantry's
                # The naive loop and tenantry take turns, each round on databases cloned afresh,
                # so both see the same state of the machine; each ratio is of one round's pair.
                for rep in range(repeat):
                    if rep:
                        dbs.drop_all(f"{backend}: dropping {n} databases")
                        dbs.clone_all(f"{backend}: creating {n} databases at {before} again")
                        dbs.settle()
                    say(f"{backend} x{n}: naive apply ({rep + 1}/{repeat})")
                    naive["naive_apply"].append(naive_loop(dbs.urls, after))
                    if (seen := _revisions(dbs.urls, after)) != {AFTER}:
                        raise RuntimeError(f"naive apply left the databases at {seen}")
                    dbs.drop_all(f"{backend}: dropping {n} databases")
                    dbs.clone_all(f"{backend}: creating {n} databases at {before} again")
                    dbs.settle()
                    say(f"{backend} x{n}: raw apply floor ({rep + 1}/{repeat})")
                    floors.append(raw_apply(dbs.urls, concurrency, schema))
                    if (seen := _revisions(dbs.urls, after)) != {AFTER}:
                        raise RuntimeError(f"the raw apply left the databases at {seen}")
                    dbs.drop_all(f"{backend}: dropping {n} databases")
                    ids = dbs.clone_all(f"{backend}: creating {n} databases at {before} again")
                    reregister(platform, ids, before)
                    dbs.settle()
                    say(f"{backend} x{n}: tenantry apply ({rep + 1}/{repeat})")
                    runs.setdefault("tenantry_apply", []).append(
                        timed_fleet_run(
                            platform, after, options, concurrency, n, MIGRATED, "tenantry_apply"
                        )
                    )
                    # A no-op takes well under a second: one sample is noise, so a few turns.
                    for turn in range(NOOP_TURNS):
                        say(f"{backend} x{n}: no-ops ({rep + 1}/{repeat}, {turn + 1})")
                        naive["naive_noop"].append(naive_loop(dbs.urls, after))
                        runs.setdefault("tenantry_noop", []).append(
                            timed_fleet_run(
                                platform, after, options, concurrency, n, CURRENT, "tenantry_noop"
                            )
                        )
                steps.update({step: _sampled(seconds, n) for step, seconds in naive.items()})
                steps.update({step: _repeated(done, n) for step, done in runs.items()})
                steps["raw_apply"] = _sampled(floors, n)
                steps["tenantry_apply"]["over_floor"] = statistics.median(
                    ours / floor
                    for (ours, _), floor in zip(runs["tenantry_apply"], floors, strict=True)
                )

                if verify:
                    steps["verify"] = verify_timing(
                        platform,
                        after,
                        n,
                        concurrency,
                        repeat,
                        f"{backend} x{n}",
                        partial(raw_floor, dbs.urls, concurrency),
                    )
                with platform.sessions() as session:
                    status = fleet_status(session, after)
        finally:
            say(f"{backend} x{n}: cleaning up")
            dbs.cleanup()
    apply_ratio = _paired(naive["naive_apply"], runs["tenantry_apply"])
    noop_ratio = _paired(naive["naive_noop"], runs["tenantry_noop"])
    return {
        "backend": backend,
        "schema": schema,
        "kind": "fleet",
        "tenants": n,
        "concurrency": concurrency,
        "setup_s": setup_s,
        "steps": steps,
        "naive_over_tenantry": {"apply": apply_ratio, "noop": noop_ratio},
        "ratios": "paired",  # each the median of one round's naive / tenantry
        "master_per_revision": status.per_revision,
    }


#: No-op turns per round (the loop's, then tenantry's, on the same databases).
NOOP_TURNS = 3
#: At least this many verify runs, and no-op/floor pairs at --noop-tenants.
SHORT_RUNS = 5
MIGRATED, CURRENT = TenantOutcome.MIGRATED, TenantOutcome.CURRENT


def _paired(naive: list[float], ours: list[tuple[float, RunReport]]) -> float:
    """The median over the rounds of naive seconds / tenantry seconds in the same round."""
    return statistics.median(a / b for a, (b, _) in zip(naive, ours, strict=True))


def raw_floor(urls: list[URL], concurrency: int, schemas: list[str] | None = None) -> float:
    """The floor of a no-op fleet run or a verify: with the driver alone, over ``concurrency``
    threads, connect to each database, read its version (in ``schemas[i]`` when the tenants
    are schemas of one database), close; seconds. psycopg for PostgreSQL, sqlite3 for files."""
    named: list[str | None] = list(schemas) if schemas else [None] * len(urls)
    targets = list(zip(urls, named, strict=True))

    def visit(target: tuple[URL, str | None]) -> None:
        url, schema = target
        table = f'"{schema}".tenantry_tenant_version' if schema else "tenantry_tenant_version"
        if url.get_backend_name() == "sqlite":
            conn = sqlite3.connect(str(url.database))
            try:
                conn.execute(f"SELECT version_num FROM {table}").fetchall()
            finally:
                conn.close()
            return
        with _driver_connection(url) as pg:
            pg.execute(f"SELECT version_num FROM {table}").fetchall()

    return _timed_over(targets, visit, concurrency)


def _driver_connection(url: URL) -> psycopg.Connection[Any]:
    """psycopg alone, connected to ``url``'s database (a block on it commits as it ends)."""
    return psycopg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, dbname=url.database
    )


def _timed_over(items: list[T], visit: Callable[[T], None], concurrency: int) -> float:
    """Seconds to ``visit`` every item over ``concurrency`` threads."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(visit, items))
    return time.perf_counter() - started


def raw_apply(urls: list[URL], concurrency: int, schema: str) -> float:
    """The floor of a one-revision fleet run: with the driver alone, over ``concurrency``
    threads, connect to each database, read its version, run b002's two statements (the
    column, its index), move the version row, commit, close; seconds. No lock, identity check,
    script hash or record of the outcome: what tenantry adds to each tenant is its run's time
    over this one."""
    column, index = (
        (STORE_B002_COLUMN, STORE_B002_INDEX) if schema == "store" else ("note", "ix_products_note")
    )
    statements = (
        f"ALTER TABLE products ADD COLUMN {column} VARCHAR(200)",
        f"CREATE INDEX {index} ON products ({column})",
        f"UPDATE tenantry_tenant_version SET version_num = '{AFTER}'",
    )

    def visit(url: URL) -> None:
        if url.get_backend_name() == "sqlite":
            conn = sqlite3.connect(str(url.database), isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("SELECT version_num FROM tenantry_tenant_version").fetchall()
                for statement in statements:
                    conn.execute(statement)
                conn.execute("COMMIT")
            finally:
                conn.close()
            return
        with _driver_connection(url) as pg:  # one transaction, committed when the block ends
            pg.execute("SELECT version_num FROM tenantry_tenant_version").fetchall()
            for statement in statements:
                pg.execute(statement)

    return _timed_over(urls, visit, concurrency)


def bench_noop(schema: str, n: int, concurrency: int, repeat: int) -> dict[str, Any]:
    """run_fleet over ``n`` PostgreSQL databases already at the head: nothing to apply (the
    first run, then ``repeat`` more), beside the raw floor measured on the same databases;
    then verify over them, each run after its floor (PostgreSQL's verify is measured here:
    100 tenants verify in a quarter of a second, too short a sample to reproduce, and the
    target is for 1,000)."""
    backend = "postgresql"
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-fleet-") as tmp:
        root = Path(tmp)
        dbs = TenantDatabases(backend, root, n)
        try:
            with installation(root, schema, with_b002=True) as inst:
                platform = inst.platform
                spec = inst.spec(with_note=True)
                t0 = time.perf_counter()
                dbs.build_template(inst, with_note=True)
                ids = dbs.clone_all(f"{backend}: creating {n} databases at {AFTER}")
                register(platform, dbs, ids, AFTER)
                dbs.settle()
                setup_s = time.perf_counter() - t0
                options = MigrateOptions(goal=AFTER, acting_app=OWNER, owner=OWNER)
                # The first connection to a new PostgreSQL database builds its relation
                # cache file (so does the first after a server restart); later runs, the
                # usual case, find it. Both are measured.
                runs: dict[str, list[tuple[float, RunReport]]] = {}
                floors: list[float] = []
                pairs = max(repeat, SHORT_RUNS)
                for step in ("tenantry_noop_cold", *["tenantry_noop"] * pairs):
                    if step == "tenantry_noop":  # the floor just before, in turns with ours
                        say(f"{backend} x{n}: raw floor ({len(floors) + 1}/{pairs})")
                        floors.append(raw_floor(dbs.urls, concurrency))
                    say(f"{backend} x{n}: {step.replace('_', ' ')}")
                    started = time.perf_counter()
                    report = run_fleet(
                        platform.sessions,
                        platform.box,
                        spec,
                        options,
                        concurrency=concurrency,
                        actor="cli:bench",
                    )
                    seconds = time.perf_counter() - started
                    _expect(report, n, TenantOutcome.CURRENT, "tenantry no-op")
                    runs.setdefault(step, []).append((seconds, report))
                timings = {step: _repeated(done, n) for step, done in runs.items()}
                timings["raw_floor"] = _sampled(floors, n)
                # Each run over the floor measured just before it: a slower minute of the
                # machine slows both, and the ratio of the pair stays.
                timings["tenantry_noop"]["over_floor"] = statistics.median(
                    ours / floor
                    for (ours, _), floor in zip(runs["tenantry_noop"], floors, strict=True)
                )
                timings["verify"] = verify_timing(
                    platform,
                    spec,
                    n,
                    concurrency,
                    repeat,
                    f"{backend} x{n}",
                    partial(raw_floor, dbs.urls, concurrency),
                )
        finally:
            say(f"{backend} x{n}: cleaning up")
            dbs.cleanup()
    return {
        "backend": backend,
        "schema": schema,
        "kind": "noop",
        "tenants": n,
        "concurrency": concurrency,
        "setup_s": setup_s,
        "steps": timings,
    }


# --------------------------------------------------------------------------- report


def targets_for(step: str, backend: str, tenants: int) -> dict[str, Any] | None:
    """The issue's target for a step, scaled linearly when run with another N."""
    for t in TARGETS:
        if t.step == step and t.backend in (None, backend):
            return {
                "text": t.text,
                "seconds": t.seconds * tenants / t.tenants,
                "scaled": tenants != t.tenants,
            }
    return None


STEP_LABELS = {
    "naive_apply": "naive apply (loop, alembic upgrade)",
    "naive_noop": "naive no-op (same loop again)",
    "tenantry_apply": "tenantry apply (run_fleet)",
    "tenantry_noop": "tenantry no-op (run_fleet)",
    "tenantry_noop_cold": "tenantry no-op (run_fleet), first connection to each database",
    "verify": "tenantry verify (verify_fleet)",
    "raw_floor": "raw floor (psycopg: connect, read the version, close)",
    "raw_apply": "raw apply floor (the driver alone: connect, the revision's DDL, commit)",
}


#: A no-op run's target: at most this many times the raw floor measured in the same run.
NOOP_OVER_FLOOR = 1.15


def _annotate(results: list[dict[str, Any]]) -> None:
    """Add each step's target (and whether it was met) to the results."""
    for r in results:
        if r.get("schema") != "store":  # the targets are about the real schema
            continue
        for step, values in r.get("steps", {}).items():
            target = targets_for(step, r["backend"], r["tenants"])
            # The no-op's target is over its floor (verify's ratio to its own floor has none).
            noop_over_floor = step == "tenantry_noop" and "raw_floor" in r["steps"]
            if noop_over_floor:
                floor = r["steps"]["raw_floor"]["seconds"]
                target = {
                    "text": f"nothing to apply: ≤ {NOOP_OVER_FLOOR}x the raw floor",
                    "seconds": floor * NOOP_OVER_FLOOR,
                    "scaled": False,
                }
            if target is not None:
                target["met"] = (
                    values["over_floor"] <= NOOP_OVER_FLOOR
                    if noop_over_floor
                    else values["seconds"] <= target["seconds"]
                )
                values["target"] = target


def _seconds_text(values: dict[str, Any]) -> str:
    """``2.69`` for one run, ``2.69 (2.61-2.83)`` for the median of several."""
    runs = values.get("runs_s") or []
    shown = f"{values['seconds']:.2f}"
    return f"{shown} ({min(runs):.2f}-{max(runs):.2f})" if len(runs) > 1 else shown


def _print(results: list[dict[str, Any]]) -> None:
    table = Table(title="fleet migration: one revision (add a nullable, indexed column)")
    for col in (
        "backend",
        "schema",
        "tenants",
        "step",
        "seconds",
        "ms/tenant",
        "naive/tenantry",
        "target",
    ):
        table.add_column(col, justify="left" if col in ("backend", "step") else "right")
    for r in results:
        if "error" in r:
            table.add_row(
                r["backend"],
                r.get("schema", ""),
                str(r["tenants"]),
                f"[red]error[/] {r['error']}",
                *[""] * 4,
            )
            table.add_section()
            continue
        ratios = r.get("naive_over_tenantry", {})
        for step, values in r["steps"].items():
            label = STEP_LABELS[step]
            if step.startswith("tenantry") or step == "verify":
                label += f", c={r['concurrency']}"
            if r["kind"] == "noop":
                label += ", all at head already"
            ratio = {"tenantry_apply": ratios.get("apply"), "tenantry_noop": ratios.get("noop")}
            shown_ratio = ratio.get(step)
            target = values.get("target")
            if target is None:
                target_text = ""
            else:
                colour = "green" if target["met"] else "red"
                scaled = " (scaled)" if target["scaled"] else ""
                target_text = f"[{colour}]≤ {target['seconds']:.2f} s{scaled}[/]"
            if "over_floor" in values:
                label += f" = {values['over_floor']:.2f}x the raw floor"
            table.add_row(
                r["backend"],
                r["schema"],
                str(r["tenants"]),
                label,
                _seconds_text(values),
                f"{values['ms_per_tenant']:.1f}",
                f"{shown_ratio:.1f}x" if shown_ratio is not None else "",
                target_text,
            )
        table.add_section()
    console.print(table)
    console.print(
        "[dim]naive: one process looping over the databases, a new engine and Alembic's "
        "`command.upgrade(head)` each, one at a time. tenantry: `run_fleet` (identity and "
        "instance check, migration lock, checksums, outcomes recorded in master) with c "
        "threads. Targets from the issue: "
        + "; ".join(f"{t.text} ≤ {t.seconds:g} s" for t in TARGETS)
        + f"; nothing to apply ≤ {NOOP_OVER_FLOOR}x the raw floor of the same run"
        + "; (scaled) = the same per-tenant budget at another N. Green: met.[/]"
    )


def main() -> None:
    """Run the benchmarks, print a table and write the JSON results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--tenants", type=int, nargs="+", default=[100])
    parser.add_argument("--concurrency", type=int, default=4, help="run_fleet's threads")
    parser.add_argument(
        "--noop-tenants",
        type=int,
        default=1000,
        help="PostgreSQL databases already at head for a no-op run (0: skip)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        # Five: with three rounds the ratio of SQLite's apply (0.45 s a run) moved 20 % between
        # two passes; with five, two runs gave 1.72 and 1.74.
        default=5,
        help="rounds of the naive loop and tenantry taking turns; the median of their ratios",
    )
    parser.add_argument(
        "--schemas",
        nargs="+",
        choices=SCHEMAS,
        default=list(SCHEMAS),
        help="tenant schemas: the default store schema at every --tenants, and the one-table "
        "schema as an extra row at the first --tenants only",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    wait_until_quiet()
    if any(n < 1 for n in args.tenants) or min(args.concurrency, args.repeat) < 1:
        parser.error("--tenants, --concurrency and --repeat must be at least 1")
    if args.noop_tenants < 0:
        parser.error("--noop-tenants must be at least 0")
    jobs: list[tuple[str, str, int, Callable[[], dict[str, Any]]]] = []
    for b in args.backends:
        # PostgreSQL's verify is timed over the no-op run's tenants when there is one.
        verify = not (b == "postgresql" and args.noop_tenants)
        for schema in args.schemas:
            for n in args.tenants if schema == "store" else args.tenants[:1]:
                job = partial(
                    bench_fleet, schema, b, n, args.concurrency, args.repeat, verify=verify
                )
                jobs.append((b, schema, n, job))
    if args.noop_tenants and "postgresql" in args.backends:
        n = args.noop_tenants
        schema = "store" if "store" in args.schemas else args.schemas[0]
        noop = partial(bench_noop, schema, n, args.concurrency, args.repeat)
        jobs.append(("postgresql", schema, n, noop))
    watch = ServerDatabases(parse_url(PG_URL) if "postgresql" in args.backends else None)
    results: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    try:
        for backend, schema, n, run in jobs:
            try:
                results.append(run())
            except Exception as exc:  # report it, run the others
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                error = f"{type(exc).__name__}: {first}"
                console.print(f"[red]{backend}/{schema} x{n} failed:[/] {error}")
                results.append({"backend": backend, "schema": schema, "tenants": n, "error": error})
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; the databases created were dropped.[/]")
        raise SystemExit(130) from None
    databases = watch.report()
    _annotate(results)
    _print(results)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "fleet.json"
    out.write_text(
        json.dumps(
            {
                "run": run_metadata(),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": host.python_version(),
                    # Other work on the machine skews the timings: the load before and after.
                    "loadavg_start": load_start,
                    "loadavg_end": os.getloadavg(),
                },
                "config": {
                    "backends": args.backends,
                    "tenants": args.tenants,
                    "concurrency": args.concurrency,
                    "noop_tenants": args.noop_tenants,
                    "repeat": args.repeat,
                    "postgres": mask(parse_url(PG_URL)),
                },
                "targets": [t.__dict__ for t in TARGETS],
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
