"""What moves leave behind: the sources completed moves keep (read-only, for a while, dropped
with their store), and the half-made work of a mover that died (its write block lapsed),
cleaned up by the next move of the store or the workers' recovery sweep (see
:mod:`tenantry.operations.move_store`). Nothing here commits."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db import admin
from tenantry.db.master.models import (
    DatabaseServer,
    IntegrationConfig,
    OperationStatus,
    StoreMove,
)
from tenantry.db.readonly import make_writable
from tenantry.db.shared_schemas import drop_tenant_schema, schema_of, whole_database
from tenantry.db.urls import mask, parse_url
from tenantry.errors import DatabaseAdminError, TenantryError
from tenantry.services.connections import migrator_url, server_url


def kept_sources(session: Session, box: SecretBox, store_id: uuid.UUID) -> list[KeptSource]:
    """The databases the store's completed moves left behind (read-only, kept for a while),
    with the URL to drop each by; those tenantry did not create are never to be dropped."""
    configs = session.scalars(
        select(IntegrationConfig)
        .join(StoreMove, StoreMove.from_config_id == IntegrationConfig.id)
        .where(
            StoreMove.store_id == store_id,
            StoreMove.operation_status == OperationStatus.SUCCEEDED,
            # Kept still: the scheduler clears it once it dropped the source.
            StoreMove.keep_source_until.is_not(None),
            IntegrationConfig.is_active.is_(False),
        )
        .distinct()
    )
    found = []
    for config in configs:
        # Dropped with the server's admin login, as the move made it.
        role = config.config_data.get("role") if config.db_schema else None
        found.append(
            KeptSource(
                migrator_url(session, box, config),
                config.created_by_tenantry,
                str(role) if role else None,
            )
        )
    return found


@dataclass(frozen=True)
class KeptSource:
    """A database a move left behind (or a store's schema of a shared database, with its
    tenant ``role``), and whether tenantry may drop it (it created it)."""

    url: URL
    droppable: bool
    role: str | None = None


def drop_location(url: URL, role: str | None) -> bool:
    """Drop the database ``url`` names, or, for a :func:`~tenantry.db.shared_schemas.
    schema_url`, that store's schema and tenant ``role`` alone (never the shared database);
    True when something was dropped."""
    schema = schema_of(url)
    if schema is None:
        return admin.drop_database(url)
    if role is None:
        raise DatabaseAdminError(
            f"schema {schema} of {mask(whole_database(url))} has no tenant role recorded; "
            "nothing was dropped.",
            f"Drop it by hand: DROP SCHEMA {schema} CASCADE (in {url.database}).",
        )
    return drop_tenant_schema(whole_database(url), str(url.database), schema, role)


# ------------------------------------------------------------------ abandoned moves


def abandoned_error(by: uuid.UUID | None, step: str | None) -> str:
    """Why a move whose mover died is rolled back, and what to do (``by``: the move that took
    it over, if any)."""
    taker = f"; taken over by move {by}" if by is not None else ""
    return (
        f"abandoned: its mover stopped at step {step or 'start'} before the switch{taker}. "
        "The move was rolled back: the store stays on its source database, writable. Run the "
        "move again."
    )


def restore_abandoned_source(
    sessions: sessionmaker[Session], box: SecretBox, move: StoreMove
) -> None:
    """Make writable again a source a dead mover had made read-only (never switched)."""
    before = (move.details or {}).get("source_before")
    if before is None:
        return
    with sessions() as session:
        config = session.get(IntegrationConfig, move.from_config_id)
        if config is None or not config.is_active:
            return
        url = migrator_url(session, box, config)
    # Else left for an operator: the move's details say the source was made read-only.
    with contextlib.suppress(Exception):
        make_writable(url, before)


def drop_abandoned_target(sessions: sessionmaker[Session], box: SecretBox, move: StoreMove) -> bool:
    """Drop the database a dead mover created (it never became anyone's connection); whether
    it was dropped (the caller records it in the move's details)."""
    details = move.details or {}
    target = details.get("target") or {}
    if not details.get("target_created"):
        return False
    if target.get("engine") == "sqlite" and target.get("path"):
        return admin.drop_database(parse_url(f"sqlite:///{target['path']}", setting="target"))
    if not target.get("database"):
        return False
    with sessions() as session:
        server = session.scalar(select(DatabaseServer).where(DatabaseServer.name == move.to_server))
        if server is None:
            return False
        url = server_url(box, server).set(database=target["database"])
    dropped = False
    schema = details.get("target_schema")
    with contextlib.suppress(TenantryError):  # else left for an operator: details name it
        if isinstance(schema, dict):  # its schema in a shared database: never the database
            dropped = drop_tenant_schema(url, str(url.database), schema["schema"], schema["role"])
        else:
            dropped = admin.drop_database(url)
    return dropped
