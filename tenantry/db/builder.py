"""Building a tenant database: create missing tables one by one, stamp, clone templates.

Every function here is idempotent and safe to re-run after a crash at any point: a table is
created with its indexes in one transaction where the backend allows, and whatever a killed
run left (a table without its indexes on MySQL) is completed on the next run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateTable

from tenantry.db import admin, migrations
from tenantry.db.engines import make_engine
from tenantry.db.identity import Identity, identity_table, is_tenantry_table, read_identity
from tenantry.db.schemas import SchemaSpec
from tenantry.db.urls import backend_of
from tenantry.errors import DatabaseAdminError
from tenantry.failpoints import failpoint
from tenantry.files import private_dir

# Differences a partly built database may legitimately show: what is still to be created.
_PENDING_KINDS = {"add_table", "add_index", "add_constraint", "add_fk"}


@dataclass(frozen=True)
class TenantState:
    """What an existing tenant database holds, before tenantry builds on it."""

    identity: Identity | None
    revision: str | None
    present: list[str]  # the schema's tables that exist
    missing: list[str]  # the schema's tables still to create
    conflicts: list[str]  # differences tenantry must not paper over


def inspect_tenant(conn: Connection, spec: SchemaSpec, *, trusted: bool = False) -> TenantState:
    """Read a tenant database's identity, revision and tables, and what conflicts with the
    schema (foreign tables, different columns). Never writes.

    ``trusted`` skips the (costly) comparison with the models for a database whose every
    table tenantry made itself from them: one it created, or one already checked.
    """
    identity = read_identity(conn)
    revision = migrations.current(conn, spec)
    names = {t for t in inspect(conn).get_table_names() if not is_tenantry_table(t)}
    wanted = [t.name for t in spec.metadata.sorted_tables]
    present = [t for t in wanted if t in names]
    missing = [t for t in wanted if t not in names]
    conflicts: list[str] = []
    if not trusted and names and (identity is None or revision is None):
        for diff in migrations.drift(conn, spec):
            if diff.kind in _PENDING_KINDS and (diff.table in missing or diff.kind == "add_index"):
                continue
            conflicts.append(str(diff))
    return TenantState(identity, revision, present, missing, conflicts)


def ensure_tables(
    engine: Engine, spec: SchemaSpec, on_created: Callable[[str, int], None] | None = None
) -> int:
    """Create the schema's missing tables and indexes, one table per transaction.

    ``on_created(table, n)`` is called after the n-th table is created. Returns how many
    tables were created.
    """
    created = 0
    for table in spec.metadata.sorted_tables:
        failpoint(f"provision.table.{created + 1}")
        with engine.begin() as conn:
            insp = inspect(conn)
            if not insp.has_table(table.name):
                conn.execute(CreateTable(table))
                # MySQL commits each DDL statement: a crash here leaves the table without
                # its indexes, which the next run adds (the branch below).
                failpoint(f"provision.indexes.{created + 1}")
                for index in table.indexes:
                    index.create(conn)
                created += 1
                made = True
            else:
                have = {i["name"] for i in insp.get_indexes(table.name)}
                for index in table.indexes:
                    if index.name not in have:
                        index.create(conn)
                made = False
        if made and on_created is not None:
            on_created(table.name, created)
    return created


def template_name(spec: SchemaSpec) -> str:
    """The template database of a schema at its head revision, e.g. tenantry_tpl_store_0002."""
    head = migrations.head(spec) or "base"
    return f"tenantry_tpl_{spec.name}_{head}"[:63]


def _build_template(url: URL, spec: SchemaSpec) -> None:
    """Migrate an empty database to head (version table, no identity: clones get their own);
    on PostgreSQL, then compact it (:func:`_compact_template`)."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as conn:
            migrations.upgrade(conn, spec, "head")
            identity_table.create(conn)  # empty: each clone stamps its own row
        if backend_of(url) == "postgresql":
            _compact_template(engine)
    finally:
        engine.dispose()


def _compact_template(engine: Engine) -> None:
    """Rewrite every table of a new PostgreSQL template, system catalogs included.

    ``CREATE DATABASE … TEMPLATE`` copies the template's every file, and the copy is most of
    what a new store's database costs the server. Building the schema leaves dead catalog
    rows and a free-space and a visibility map beside each catalog; ``VACUUM FULL`` drops
    them: on PostgreSQL 15, 15 tables, the copy is 11 % smaller, with a fifth fewer files,
    and takes a tenth less time. The database's owner may run it (it made the database).
    """
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM FULL")


def clone_postgres_template(server: URL, spec: SchemaSpec, name: str) -> bool:
    """Create database ``name`` on a PostgreSQL server as a copy of the schema's template.

    The template is built on first use under a temporary name and renamed into place, so
    concurrent first uses cannot see a half-built template. Returns False when no template is
    usable (the caller then creates and migrates the plain way).
    """
    tpl = server.set(database=template_name(spec))
    try:
        if not admin.database_exists(tpl):
            tmp = server.set(database=f"tenantry_tpl_tmp_{uuid.uuid4().hex[:12]}")
            admin.create_database(tmp)
            try:
                _build_template(tmp, spec)
                admin.run_server_sql(
                    server,
                    f'ALTER DATABASE "{tmp.database}" RENAME TO "{tpl.database}"',
                )
            except Exception:
                admin.drop_database(tmp)
                if not admin.database_exists(tpl):
                    raise
        admin.run_server_sql(server, f'CREATE DATABASE "{name}" TEMPLATE "{tpl.database}"')
        return True
    except (DBAPIError, DatabaseAdminError):
        return admin.database_exists(server.set(database=name))


def sqlite_template(template_dir: Path, spec: SchemaSpec) -> Path:
    """The schema's SQLite template file in ``template_dir``, built first if missing."""
    private_dir(template_dir)
    tpl = template_dir / f"{template_name(spec)}.db"
    if not tpl.exists():
        fd, tmp = tempfile.mkstemp(suffix=".db", dir=template_dir)
        os.close(fd)
        try:
            _build_template(URL.create("sqlite+pysqlite", database=tmp), spec)
            os.replace(tmp, tpl)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return tpl


def copy_sqlite_template(template_dir: Path, spec: SchemaSpec, path: Path) -> bool:
    """Create the SQLite file ``path`` as a copy of the schema's template file."""
    tpl = sqlite_template(template_dir, spec)
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(suffix=".db", dir=path.parent)
    os.close(fd)
    try:
        shutil.copyfile(tpl, tmp)
        os.replace(tmp, path)  # atomic: the tenant file is whole or absent
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


def create_tenant_database(url: URL, spec: SchemaSpec, template_dir: Path) -> bool:
    """Create a store's new database at ``url``; True when it is a copy of the schema's
    template (every table at head, so only identity and initial data are missing): a SQLite
    file copied from ``template_dir``, or a PostgreSQL clone. MySQL (and a PostgreSQL server
    where no template can be used) gets an empty database, built table by table."""
    backend = backend_of(url)
    if backend == "sqlite":
        return copy_sqlite_template(template_dir, spec, Path(url.database or ""))
    if backend == "postgresql" and clone_postgres_template(
        url.set(database="postgres"), spec, url.database or ""
    ):
        return True
    admin.create_database(url)
    return False
