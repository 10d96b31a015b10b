"""Provisioning a store into its own schema of a shared PostgreSQL database (``--shared``).

Steps, each idempotent (run again after a failure or a crash, the call finds done what was
done): reserve the store's connection in master (its schema and role named, inactive) →
create the shared database and its pool login when missing → create the store's schema and
role → create the schema's tables, stamp its identity row and Alembic version table (inside
the schema) and write the initial data → grant the role DML on them → save the connection
(pool login, schema, role) and mark the store active, in one master transaction.

A failure before the store is active drops the schema and role this call made and removes
the reservation, leaving the store to be provisioned again. This runs in the caller's process
(it is not a queued job with a lease: a crash leaves the reservation, and running the same
command again finishes it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import URL

from tenantry.db import builder, migrations
from tenantry.db import shared_schemas as shared
from tenantry.db.admin import create_database
from tenantry.db.engines import connect, make_engine
from tenantry.db.master.models import (
    AccessMode,
    DatabaseServer,
    DatabaseStatus,
    IntegrationConfig,
    Store,
)
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput
from tenantry.runtime import Platform
from tenantry.services import audit, provisioning, servers, stores, tenant_setup
from tenantry.services.connections import server_url, split_url
from tenantry.services.permissions import ensure_may_write


@dataclass(frozen=True)
class SharedProvisioned:
    """Where a shared-schema store was provisioned."""

    slug: str
    server: str
    database: str
    schema: str
    instance_id: str
    tables: int


@dataclass(frozen=True)
class _Plan:
    store_id: uuid.UUID
    slug: str
    server: str
    admin: URL
    database: str
    schema: str
    role: str
    pool_secret: str | None


def parse_target(target: str) -> tuple[str, str]:
    """``SERVER[/DATABASE]`` as (server name, database name; the default when none)."""
    server, _, database = target.strip().partition("/")
    if not server:
        raise InvalidInput(
            f"--shared {target!r} names no server.",
            "Give a registered PostgreSQL server, optionally with a database: "
            "--shared pg or --shared pg/tenantry_shared_2.",
        )
    return server, shared.check_name(database or shared.DEFAULT_DATABASE, "shared database name")


def provision_shared_store(
    platform: Platform, ref: str | uuid.UUID, target: str, *, actor: str
) -> SharedProvisioned:
    """Give store ``ref`` (slug or id) its own schema in shared database ``target``
    (``SERVER[/DATABASE]``, the database created when missing). Refuses a store that has a
    database already, an unknown or inactive server, and any backend but PostgreSQL."""
    ensure_may_write("provision a store")
    plan = _reserve(platform, ref, target)
    made_schema = False
    try:
        secret = plan.pool_secret
        password = platform.box.open(secret) if secret else None
        create_database(plan.admin.set(database=plan.database))
        new_password = shared.ensure_pool_login(plan.admin, plan.database, password)
        if new_password is not None:
            password = new_password
        made_schema = not shared.schema_exists(plan.admin, plan.database, plan.schema)
        shared.ensure_tenant_schema(plan.admin, plan.database, plan.schema, plan.role)
        instance_id, tables = _build(platform, plan)
        shared.grant_tables(plan.admin, plan.database, plan.schema, plan.role)
        assert password is not None
        pool_url = plan.admin.set(
            database=plan.database, username=shared.pool_login(plan.database), password=password
        )
        _activate(platform, plan, pool_url, instance_id, actor)
    except BaseException:
        _undo(platform, plan, made_schema)
        raise
    return SharedProvisioned(
        plan.slug, plan.server, plan.database, plan.schema, instance_id, tables
    )


def _reserve(platform: Platform, ref: str | uuid.UUID, target: str) -> _Plan:
    server_name, database = parse_target(target)
    with platform.writer_sessions.begin() as session:
        store = stores.get_store(session, ref)
        session.refresh(store, with_for_update=True)
        provisioning.refuse_provisioned(session, store)
        server = servers.get_server(session, server_name)
        if not server.is_active:
            raise Conflict(
                f"server {server.name!r} is not active.",
                "Reactivate it, or give another registered PostgreSQL server to --shared.",
            )
        admin = server_url(platform.box, server)
        shared.refuse_backend(admin, f"server {server.name!r}")
        schema = shared.schema_name(store.slug, store.id)
        role = shared.tenant_role(store.slug, store.id)
        reservation = _reservation(session, store.id)
        if reservation is None:
            reservation = IntegrationConfig(store_id=store.id, is_active=False)
            session.add(reservation)
        elif (earlier := reservation.config_data.get("database")) != database:
            raise Conflict(
                f"store {store.slug!r} has an unfinished shared provisioning into {earlier!r}.",
                f"Run it again with --shared {server.name}/{earlier}.",
            )
        reservation.integration_type = "postgresql"
        reservation.database_server_id = server.id
        reservation.config_data = {"engine": "postgresql", "database": database, "role": role}
        reservation.db_schema = schema
        reservation.created_by_tenantry = True
        store.database_status = DatabaseStatus.PROVISIONING
        return _Plan(
            store.id,
            store.slug,
            server.name,
            admin,
            database,
            schema,
            role,
            _pool_secret(session, server, database),
        )


def _reservation(session: Any, store_id: uuid.UUID) -> IntegrationConfig | None:
    return session.scalar(  # type: ignore[no-any-return]
        select(IntegrationConfig).where(
            IntegrationConfig.store_id == store_id,
            IntegrationConfig.is_active.is_(False),
            IntegrationConfig.db_schema.is_not(None),
        )
    )


def _pool_secret(session: Any, server: DatabaseServer, database: str) -> str | None:
    """The sealed password master keeps for ``database``'s pool login (any active store's)."""
    for config in session.scalars(
        select(IntegrationConfig).where(
            IntegrationConfig.database_server_id == server.id,
            IntegrationConfig.db_schema.is_not(None),
            IntegrationConfig.is_active.is_(True),
        )
    ):
        if config.config_data.get("database") == database and config.secret_encrypted:
            return str(config.secret_encrypted)
    return None


def _build(platform: Platform, plan: _Plan) -> tuple[str, int]:
    """Tables, identity, version table and initial data inside the store's schema."""
    spec = platform.tenant_spec
    engine = make_engine(shared.schema_url(plan.admin, plan.database, plan.schema), pool_size=1)
    try:
        with connect(engine) as conn:
            state = tenant_setup.inspect(conn, spec, trusted=False)
        tenant_setup.refuse_conflicts(spec, state)
        builder.ensure_tables(engine, spec)
        with platform.sessions() as session:
            store = stores.get_store(session, plan.store_id)
            session.expunge(store)
        with connect(engine, begin=True) as conn:
            instance_id = tenant_setup.stamp_and_migrate(conn, spec, platform.settings.tenant_owner)
            if state.identity is None:  # the identity and the initial data go in together
                tenant_setup.seed(conn, spec, store)
        return instance_id, len(spec.metadata.sorted_tables)
    finally:
        engine.dispose()


def _activate(platform: Platform, plan: _Plan, pool_url: URL, instance_id: str, actor: str) -> None:
    config_data, secret = split_url(platform.box, pool_url)
    config_data["role"] = plan.role
    now = utcnow()
    with platform.writer_sessions.begin() as session:
        store = session.get(Store, plan.store_id, with_for_update=True)
        config = _reservation(session, plan.store_id)
        if store is None or config is None:
            raise Conflict(
                f"store {plan.slug!r} was deleted or provisioned elsewhere meanwhile; "
                f"schema {plan.schema} is left in {plan.database} for you to drop."
            )
        config.config_data = config_data
        config.secret_encrypted = secret
        config.instance_id = instance_id
        config.access_mode = AccessMode.RUNTIME_LOGIN
        config.can_ddl = False
        config.credentials_rotated_at = now
        config.is_active = True
        store.database_type = "postgresql"
        store.database_host = config_data.get("host")
        store.database_name = plan.database
        store.database_status = DatabaseStatus.ACTIVE
        store.schema_revision = migrations.head(platform.tenant_spec)
        store.connection_version += 1
        store.last_activity_at = now
        audit.record(
            session,
            actor=actor,
            action="store.provisioned",
            target_type="store",
            target_id=store.slug,
            store_id=store.id,
            details={"server": plan.server, "database": plan.database, "schema": plan.schema},
        )


def _undo(platform: Platform, plan: _Plan, made_schema: bool) -> None:
    """Remove what a failed call made: its schema and role (when this call created the
    schema) and the reservation; the store is left to be provisioned again."""
    try:
        if made_schema:
            shared.drop_tenant_schema(plan.admin, plan.database, plan.schema, plan.role)
    finally:
        with platform.writer_sessions.begin() as session:
            config = _reservation(session, plan.store_id)
            if config is not None:
                session.delete(config)
