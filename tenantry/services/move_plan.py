"""The checks before a store's database moves (see :mod:`tenantry.operations.move_store`).

Everything here only reads: a refused move changes nothing and leaves no trace.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, inspect, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db import admin, checksums, copy, migrations, shared_schemas
from tenantry.db.engines import connect, make_engine
from tenantry.db.identity import expect, identity_table
from tenantry.db.master.models import (
    ACTIVE_STATUSES,
    DatabaseServer,
    DatabaseStatus,
    IntegrationConfig,
    Store,
    StoreMove,
)
from tenantry.db.schemas import SchemaSpec
from tenantry.db.urls import backend_of, mask, parse_url
from tenantry.errors import Conflict, InvalidInput, SchemaMismatch
from tenantry.services import placement, servers, shared_pools, stores
from tenantry.services.connections import migrator_url, server_url, tenant_url
from tenantry.services.provisioning import tenant_database_name, tenant_sqlite_path
from tenantry.services.write_blocks import active_block
from tenantry.settings import Settings


@dataclass(frozen=True)
class SharedPlace:
    """A store's schema in a shared PostgreSQL database: where a move into one goes."""

    admin: URL  # the server's admin URL (no schema confinement)
    database: str
    schema: str
    role: str
    pool_secret: str | None  # the pool login's sealed password master keeps, if any

    def document(self) -> dict[str, str]:
        """As JSON for the move's details (no secret)."""
        return {"database": self.database, "schema": self.schema, "role": self.role}


@dataclass(frozen=True)
class MovePlan:
    """A move that passed its checks: where from, where to, and what there is to copy."""

    move_id: uuid.UUID
    store_id: uuid.UUID
    slug: str
    connection_version: int  # the store's, when checked: a change meanwhile stops the move
    from_config_id: uuid.UUID
    server_id: uuid.UUID | None  # None: an SQLite file in the data dir
    server: str  # the registered server's name, or ``sqlite``
    source_url: URL
    source_server: str | None
    target_url: URL
    revision: str | None
    counts: dict[str, int]  # source rows per table, tenantry's bookkeeping tables included
    #: The source's tenant role when the store lives in a schema of a shared database.
    source_role: str | None = None
    #: The target schema when the store moves into a shared database (else its own database).
    shared: SharedPlace | None = None

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
    location: dict[str, Any] = {
        "engine": backend_of(url),
        "host": url.host,
        "port": url.port,
        "database": url.database,
        "username": url.username,
        "server": server,
    }
    schema = shared_schemas.schema_of(url)
    if schema is not None:  # one store's schema of a shared database
        location["schema"] = schema
    return location


def move_tables(spec: SchemaSpec, source: Connection) -> tuple[list[Table], list[Table]]:
    """What a move copies: the schema's tables parent-first, and tenantry's identity and
    script checksums (the version table is stamped, not copied)."""
    bookkeeping = [identity_table]
    recorded = checksums.checksum_table(spec.role.value)
    if inspect(source).has_table(recorded.name):
        bookkeeping.append(recorded)
    return list(spec.metadata.sorted_tables), bookkeeping


def plan_move(
    session: Session,
    box: SecretBox,
    spec: SchemaSpec,
    store_ref: str | uuid.UUID,
    server: str | None,
    *,
    shared_database: str | None = None,
    own_only: bool = False,
    settings: Settings | None = None,
) -> MovePlan:
    """Check that the store can move now; refuses with a reason otherwise.

    ``server``: a registered server's name, ``sqlite`` (a file in the data dir), or ``None``
    (placement picks, as ``provision --new`` does); with ``shared_database`` the store goes
    into its own schema of that shared PostgreSQL database on ``server`` instead of a
    database of its own; ``own_only`` (``--to-own-database``) refuses a store that has a
    database of its own already. Reads master through ``session`` (the caller's; nothing is
    written), then the source database and the target server.
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
    if own_only and not config.db_schema:
        raise InvalidInput(
            f"store {store.slug!r} has a database of its own already (--to-own-database "
            "moves a shared-schema store).",
            "Give --to-server NAME to move it to another server, or --to-shared SERVER[/DB] "
            "to move it into a shared database.",
        )
    move_id = uuid.uuid4()
    target, target_url, shared_place = _target(
        session, box, store, config, server, shared_database, settings, move_id
    )
    refuse_busy(session, store)
    source_server = None
    if config.database_server_id is not None:
        found = session.get(DatabaseServer, config.database_server_id)
        source_server = found.name if found is not None else None
    source_url = migrator_url(session, box, config)
    counts, revision = _check_source(spec, source_url, store.slug, config.instance_id)
    return MovePlan(
        move_id=move_id,
        store_id=store.id,
        slug=store.slug,
        connection_version=store.connection_version,
        from_config_id=config.id,
        server_id=target.id if target is not None else None,
        server=target.name if target is not None else placement.SQLITE,
        source_url=source_url,
        source_server=source_server,
        target_url=target_url,
        revision=revision,
        counts=counts,
        source_role=str(config.config_data["role"]) if config.db_schema else None,
        shared=shared_place,
    )


def _target(
    session: Session,
    box: SecretBox,
    store: Store,
    config: IntegrationConfig,
    server: str | None,
    shared_database: str | None,
    settings: Settings | None,
    move_id: uuid.UUID,
) -> tuple[DatabaseServer | None, URL, SharedPlace | None]:
    """Where the move goes: the server (None: an SQLite file), the target's admin URL and,
    into a shared database, the store's schema there."""
    if server is None and shared_database is None:
        chosen = placement.place(
            session,
            store,
            list(session.scalars(select(DatabaseServer).order_by(DatabaseServer.name))),
            placement.Policy(settings.placement if settings else "least-tenants"),
        )
    elif server == placement.SQLITE and shared_database is None:
        chosen = None
        placement.refuse_breaking_residency(store, None, doing="move its database to")
    else:
        if server is None or server == placement.SQLITE:
            raise InvalidInput(
                "--to-shared needs a registered PostgreSQL server: SERVER[/DATABASE].",
                "For example --to-shared pg or --to-shared pg/tenantry_shared_2.",
            )
        chosen = servers.get_server(session, server)
        if not chosen.is_active:
            raise Conflict(f"database server {chosen.name!r} is inactive.", "Pick another.")
    if chosen is None:
        if (
            config.database_server_id is None
            and not config.db_schema
            and (backend_of(tenant_url(box, config)) == "sqlite")
        ):
            raise Conflict(f"store {store.slug!r} already lives in an SQLite file.")
        if settings is None:
            raise InvalidInput("a move to an SQLite file needs the platform's data directory.")
        return None, _free_file(tenant_sqlite_path(settings, store), move_id), None
    same_server = config.database_server_id == chosen.id
    if shared_database is not None:
        admin_url = server_url(box, chosen)
        shared_schemas.refuse_backend(admin_url, f"server {chosen.name!r}")
        database = shared_schemas.check_name(shared_database, "shared database name")
        if same_server and config.db_schema and config.config_data.get("database") == database:
            raise Conflict(
                f"store {store.slug!r} already lives in shared database {database} on server "
                f"{chosen.name!r}.",
                "Give another shared database (--to-shared SERVER/DATABASE), or "
                "--to-own-database to give the store a database of its own.",
            )
        placement.check_chosen(
            session, store, chosen, doing="move its database to", hint=placement.MOVE_HINT
        )
        schema = shared_schemas.schema_name(store.slug, store.id)
        role = shared_schemas.tenant_role(store.slug, store.id)
        if admin.database_exists(admin_url.set(database=database)) and shared_schemas.schema_exists(
            admin_url, database, schema
        ):
            # Back into a database where an earlier move keeps its schema (or the same
            # server registered twice): new names, so dropping that source later (schema and
            # role) never touches this one.
            schema, role = f"{schema}_m{move_id.hex[:8]}", f"{role}_m{move_id.hex[:8]}"
        place = SharedPlace(
            admin_url,
            database,
            schema,
            role,
            shared_pools.pool_secret(session, chosen.id, database),
        )
        return chosen, shared_schemas.schema_url(admin_url, database, place.schema), place
    if same_server and not config.db_schema:
        raise Conflict(f"store {store.slug!r} already lives on server {chosen.name!r}.")
    if server is not None:
        placement.check_chosen(
            session, store, chosen, doing="move its database to", hint=placement.MOVE_HINT
        )
    target_url = _free_database(server_url(box, chosen), tenant_database_name(store), move_id)
    return chosen, target_url, None


def _free_file(path: Path, move_id: uuid.UUID) -> URL:
    """An SQLite file for the store in the data dir: its usual name, or that name with the
    move's id when a file (a source an earlier move kept) is there."""
    if path.exists():
        path = path.with_name(f"{path.stem}-m{move_id.hex[:8]}{path.suffix}")
    if path.exists():
        raise Conflict(f"file {path} exists already; it was left as it is.", "Run the move again.")
    return parse_url(f"sqlite:///{path}", setting="tenant path")


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
