"""The tenant databases a fleet run visits: which ones (from master), and a checked connection.

Every tenant database is reached through one engine per server (:data:`SERVERS`) and checked
by the identity guard against what master recorded for its store before anything reads it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db.engines import single_statements
from tenantry.db.identity import Identity, expect
from tenantry.db.master.models import DatabaseServer, DatabaseStatus, IntegrationConfig, Store
from tenantry.db.probe import probe
from tenantry.db.schemas import SchemaSpec
from tenantry.db.server_connections import SERVERS
from tenantry.db.shared_schemas import schema_url
from tenantry.db.tenant_snapshot import TenantSnapshot, read_snapshot
from tenantry.db.urls import mask
from tenantry.errors import NotFound
from tenantry.services.connections import migrator_url_on


@dataclass(frozen=True)
class TenantDb:
    """A tenant database as master knows it."""

    store_id: uuid.UUID
    slug: str
    url: URL
    instance_id: str | None  # the identity master recorded at provisioning
    #: Why ``url``'s login cannot change the schema (a least-privilege URL was given and no
    #: registered server is on its host); ``None``: it can, as far as master knows.
    no_ddl: str | None = None
    #: The store's schema in a shared database (``url`` confines sessions to it); ``None``
    #: for a database of its own.
    schema: str | None = None


def tenant_databases(
    session: Session, box: SecretBox, slugs: list[str] | None = None
) -> list[TenantDb]:
    """The active stores' databases (only ``slugs`` when given), ordered by slug."""
    # Plain rows, not entities: over thousands of stores the ORM cost more than the query.
    query = (
        select(
            Store.id,
            Store.slug,
            IntegrationConfig.config_data,
            IntegrationConfig.secret_encrypted,
            IntegrationConfig.instance_id,
            IntegrationConfig.database_server_id,
            IntegrationConfig.created_by_tenantry,
            IntegrationConfig.can_ddl,
            IntegrationConfig.db_schema,
        )
        .join(
            IntegrationConfig,
            and_(IntegrationConfig.store_id == Store.id, IntegrationConfig.is_active.is_(True)),
        )
        .where(Store.database_status == DatabaseStatus.ACTIVE, Store.deleted_at.is_(None))
        .order_by(Store.slug)
    )
    if slugs:
        query = query.where(Store.slug.in_(slugs))
    # Migrations need DDL: a database tenantry created on a server is reached through the
    # server's admin login, not the store's runtime login (see connections.migrator_url).
    servers = {s.id: s for s in session.scalars(select(DatabaseServer))}
    found = []
    for row in session.execute(query):
        server = _server_of(row, servers)
        no_ddl = None
        if server is None and row.can_ddl is False:
            no_ddl = (
                "its login may not change the schema, and no registered server is on its host "
                f"({row.config_data.get('host')}) to migrate it with"
            )
        url = migrator_url_on(box, row.config_data, row.secret_encrypted, server)
        schema = None
        if row.db_schema and server is not None:  # one schema of a shared database
            schema = row.db_schema
            url = schema_url(url, str(row.config_data["database"]), schema)
        found.append(TenantDb(row.id, row.slug, url, row.instance_id, no_ddl, schema))
    if slugs:
        missing = sorted(set(slugs) - {t.slug for t in found})
        if missing:
            raise NotFound(
                f"no active store database for: {', '.join(missing)}.",
                "See the stores with `tenantry stores list`; only active stores are migrated.",
            )
    return found


def _server_of(row: Any, servers: dict[uuid.UUID, DatabaseServer]) -> DatabaseServer | None:
    """The server whose admin login migrates the row's database (see ``migrator_url``)."""
    if row.created_by_tenantry and row.database_server_id in servers:
        return servers[row.database_server_id]
    if row.can_ddl is False:  # a least-privilege URL was given: a matching server's admin
        data = row.config_data
        port = data.get("port")
        return next(
            (
                s
                for s in servers.values()
                if s.is_active
                and s.engine == data.get("engine")
                and s.host == data.get("host")
                and (port is None or s.port == port)
            ),
            None,
        )
    return None


@contextmanager
def tenant_connection(db: TenantDb) -> Iterator[Connection]:
    """One connection to the tenant database, closed (never pooled) afterwards."""
    with SERVERS.connect(db.url) as conn:
        yield conn


class SharedSessions:
    """For a read-only pass over many stores (``fleet status --verify``): each thread keeps
    one session per shared database and moves it from store schema to store schema (``SET
    search_path``, as the store's own URL does at connect) instead of starting a server
    session per store. Each store is still checked by the identity guard in its schema; a
    session that saw an error is closed, not reused. :meth:`close` ends them all."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._open: list[AbstractContextManager[Connection]] = []
        self._lock = threading.Lock()

    @contextmanager
    def connect(self, db: TenantDb) -> Iterator[Connection]:
        """A session on ``db``'s shared database with ``search_path`` set to its schema
        (``db`` must have a schema)."""
        if db.schema is None:
            raise ValueError(f"store {db.slug} has a database of its own")
        held: dict[URL, Connection] = self._local.__dict__.setdefault("held", {})
        key = db.url.difference_update_query(["options"])  # the database, whichever schema
        conn = held.pop(key, None)
        if conn is None or conn.closed or conn.invalidated:
            opened = SERVERS.connect(key)
            conn = opened.__enter__()
            with self._lock:
                self._open.append(opened)
        schema = conn.dialect.identifier_preparer.quote(db.schema)
        with single_statements(conn):
            conn.exec_driver_sql(f"SET search_path TO {schema}")
        yield conn  # an error escaping leaves it out of ``held``: never reused
        if not conn.in_transaction():
            held[key] = conn

    def close(self) -> None:
        """Close every session opened."""
        with self._lock:
            opened, self._open = self._open, []
        for one in opened:
            one.__exit__(None, None, None)


def checked_revision(conn: Connection, db: TenantDb, spec: SchemaSpec) -> str | None:
    """The tenant database's revision, after making sure it is the one master recorded for
    the store (role, schema and instance id); the identity guard refuses it otherwise."""
    return checked_identity(conn, db, spec)[1]


def checked_identity(
    conn: Connection, db: TenantDb, spec: SchemaSpec
) -> tuple[Identity, str | None]:
    """The tenant database's identity and revision, checked as :func:`checked_revision`."""
    identity, revision = probe(conn, spec)
    return _expected(conn, db, spec, identity), revision


def checked_snapshot(conn: Connection, db: TenantDb, spec: SchemaSpec) -> TenantSnapshot | None:
    """Identity, revision, recorded checksums and schema fingerprint in one statement, the
    identity checked as :func:`checked_revision` does; None where that one statement cannot
    be read (another backend, a missing table): the caller reads the careful way."""
    snapshot = read_snapshot(conn, spec)
    if snapshot is not None:
        _expected(conn, db, spec, snapshot.identity)
    return snapshot


def _expected(conn: Connection, db: TenantDb, spec: SchemaSpec, found: Identity | None) -> Identity:
    where = f"{mask(db.url)} (store {db.slug}'s database)"
    hint = "The connection points at another database: fix it in master before migrating."
    return expect(conn, spec, where=where, instance_id=db.instance_id, identity=found, hint=hint)
