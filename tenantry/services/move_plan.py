"""The checks before a store's database moves (see :mod:`tenantry.operations.move_store`).

Everything here only reads: a refused move changes nothing and leaves no trace.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, inspect, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db import admin, checksums, copy, migrations
from tenantry.db.engines import connect, make_engine
from tenantry.db.identity import expect, identity_table
from tenantry.db.master.models import (
    ACTIVE_STATUSES,
    DatabaseServer,
    DatabaseStatus,
    Store,
    StoreMove,
)
from tenantry.db.schemas import SchemaSpec
from tenantry.db.urls import backend_of, mask
from tenantry.errors import Conflict, SchemaMismatch
from tenantry.services import placement, servers, stores
from tenantry.services.connections import migrator_url, server_url
from tenantry.services.provisioning import tenant_database_name
from tenantry.services.write_blocks import active_block


@dataclass(frozen=True)
class MovePlan:
    """A move that passed its checks: where from, where to, and what there is to copy."""

    move_id: uuid.UUID
    store_id: uuid.UUID
    slug: str
    connection_version: int  # the store's, when checked: a change meanwhile stops the move
    from_config_id: uuid.UUID
    server_id: uuid.UUID
    server: str
    source_url: URL
    source_server: str | None
    target_url: URL
    revision: str | None
    counts: dict[str, int]  # source rows per table, tenantry's bookkeeping tables included

    @property
    def reason(self) -> str:
        """The write block this move sets on its store."""
        return block_reason(self.move_id, self.server)


def block_reason(move_id: uuid.UUID, server: str) -> str:
    """The write-block reason a move sets on its store (and recognises as its own)."""
    return f"its database is moving to server {server} (move {move_id})"


def running_move(session: Session, store_id: uuid.UUID) -> StoreMove | None:
    """The store's move that is not over, if any (it may be abandoned: see the block)."""
    return session.scalar(
        select(StoreMove).where(
            StoreMove.store_id == store_id, StoreMove.operation_status.in_(ACTIVE_STATUSES)
        )
    )


def refuse_busy(session: Session, store: Store) -> StoreMove | None:
    """Refuse when another move of the store is alive or its writes are blocked for another
    reason; return a running move whose mover died (its block lapsed), to be taken over."""
    other = running_move(session, store.id)
    if other is not None and active_block(store) == block_reason(other.id, other.to_server):
        raise Conflict(
            f"store {store.slug!r} is already being moved to server {other.to_server!r} "
            f"(move {other.id}, step {other.step}).",
            "Wait for it to finish.",
        )
    blocked = active_block(store)
    if blocked is not None:
        raise Conflict(
            f"writes to store {store.slug!r} are blocked ({blocked}).",
            "Wait until that operation has finished, then move the store.",
        )
    return other


def public_location(url: URL, server: str | None) -> dict[str, Any]:
    """Where a database is, without its password (for the move's details and the audit)."""
    if backend_of(url) == "sqlite":
        return {"engine": "sqlite", "path": url.database, "server": None}
    return {
        "engine": backend_of(url),
        "host": url.host,
        "port": url.port,
        "database": url.database,
        "username": url.username,
        "server": server,
    }


def move_tables(spec: SchemaSpec, source: Connection) -> tuple[list[Table], list[Table]]:
    """What a move copies: the schema's tables parent-first, and tenantry's identity and
    script checksums (the version table is stamped, not copied)."""
    bookkeeping = [identity_table]
    recorded = checksums.checksum_table(spec.role.value)
    if inspect(source).has_table(recorded.name):
        bookkeeping.append(recorded)
    return list(spec.metadata.sorted_tables), bookkeeping


def plan_move(
    session: Session, box: SecretBox, spec: SchemaSpec, store_ref: str | uuid.UUID, server: str
) -> MovePlan:
    """Check that the store can move to ``server`` now; refuses with a reason otherwise.

    Reads master through ``session`` (the caller's; nothing is written), then the source
    database and the target server.
    """
    store = stores.get_store(session, store_ref)
    if store.database_status != DatabaseStatus.ACTIVE:
        raise Conflict(
            f"store {store.slug!r} is {store.database_status}; only an active store can be moved.",
            "Resume or provision it first.",
        )
    config = stores.active_connection(session, store)
    if config is None:
        raise Conflict(f"store {store.slug!r} has no database to move.")
    if config.db_schema:
        raise Conflict(
            f"store {store.slug!r} lives in schema {config.db_schema} of a shared database; "
            "moving a shared-schema store is not supported yet; nothing was changed.",
            "Back it up (tenantry backup run store:SLUG) and provision a new store where you "
            "want it instead.",
        )
    target = servers.get_server(session, server)
    if not target.is_active:
        raise Conflict(f"database server {target.name!r} is inactive.", "Pick another.")
    if config.database_server_id == target.id:
        raise Conflict(f"store {store.slug!r} already lives on server {target.name!r}.")
    placement.check_chosen(
        session, store, target, doing="move its database to", hint=placement.MOVE_HINT
    )
    refuse_busy(session, store)
    source_server = None
    if config.database_server_id is not None:
        found = session.get(DatabaseServer, config.database_server_id)
        source_server = found.name if found is not None else None
    source_url = migrator_url(session, box, config)
    counts, revision = _check_source(spec, source_url, store.slug, config.instance_id)
    move_id = uuid.uuid4()
    return MovePlan(
        move_id=move_id,
        store_id=store.id,
        slug=store.slug,
        connection_version=store.connection_version,
        from_config_id=config.id,
        server_id=target.id,
        server=target.name,
        source_url=source_url,
        source_server=source_server,
        target_url=_free_database(server_url(box, target), tenant_database_name(store), move_id),
        revision=revision,
        counts=counts,
    )


def _check_source(
    spec: SchemaSpec, url: URL, slug: str, instance_id: str | None
) -> tuple[dict[str, int], str | None]:
    """The source's rows per table and its revision, once it proved to be the store's own
    database, at head and without drift."""
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            expect(
                conn,
                spec,
                where=f"{mask(url)} (store {slug!r}'s database)",
                instance_id=instance_id,
                why=f"store {slug!r}'s connection leads there, not to its own database",
                hint="Check the store's database before moving it.",
            )
            head = migrations.head(spec)
            current = migrations.current(conn, spec)
            if current != head:
                raise Conflict(
                    f"store {slug!r}'s database is at revision {current or 'base'}, the "
                    f"{spec.name} schema's head is {head}; only a database at head is moved.",
                    "Run `tenantry fleet migrate` first, then move the store.",
                )
            drift = migrations.drift(conn, spec)
            if drift:
                shown = "; ".join(str(d) for d in drift[:5])
                raise SchemaMismatch(
                    f"store {slug!r}'s database differs from the {spec.name} models ({shown}); "
                    "a copy built from the models would lose that.",
                    "Bring the database in line with the models (see `tenantry fleet status "
                    "--verify`), then move it.",
                )
            data, bookkeeping = move_tables(spec, conn)
            return {t.name: copy.count_rows(conn, t) for t in data + bookkeeping}, current
    finally:
        engine.dispose()


def _free_database(server: URL, name: str, move_id: uuid.UUID) -> URL:
    """The target's URL: the store's usual database name, or (when that one is taken, e.g.
    the same server registered under another name) that name with the move's id."""
    url = server.set(database=name)
    if not admin.database_exists(url):
        return url
    other = server.set(database=f"{name[:52]}_m{move_id.hex[:8]}")
    if admin.database_exists(other):
        raise Conflict(f"databases {name} and {other.database} both exist on the server.")
    return other
