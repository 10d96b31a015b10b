"""What the console's store list shows of each store, read in a few queries per page.

A page of stores (filtered by a search text and a status) with, for the page only: the server
each store's database lives on, its last successful backup and whether a provisioning job runs
for it. A fixed number of queries per page, whatever the number of stores, so the list stays
fast with thousands of them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from tenantry.db.master.models import (
    ACTIVE_STATUSES,
    GOOD_BACKUP_STATUSES,
    Backup,
    DatabaseServer,
    DatabaseStatus,
    IntegrationConfig,
    Operation,
    OperationKind,
    Store,
)
from tenantry.db.types import utcnow
from tenantry.errors import InvalidInput

#: Longest search text accepted (a slug is at most 63 characters, a name 255).
MAX_SEARCH = 255


@dataclass(frozen=True)
class StoreRow:
    """One store as listed: the store, its lifecycle status, where its database lives and
    when it was last backed up."""

    store: Store
    status: str
    server: str | None
    last_backup_at: datetime | None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_stores(
    session: Session,
    *,
    search: str = "",
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[StoreRow], int]:
    """A page of stores whose slug or name contains ``search`` (any case), ordered by slug,
    and how many match in all."""
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput("limit must be 1 to 1000 and offset at least 0.")
    search = search.strip()
    if len(search) > MAX_SEARCH:
        raise InvalidInput(
            f"the search text is longer than {MAX_SEARCH} characters.", "Search for less."
        )
    conditions = []
    if search:
        pattern = f"%{_escape_like(search.lower())}%"
        conditions.append(
            or_(
                func.lower(Store.slug).like(pattern, escape="\\"),
                func.lower(Store.name).like(pattern, escape="\\"),
            )
        )
    if status:
        if status == "pending":  # never provisioned: stored as provisioning without a job
            conditions.append(Store.database_status == DatabaseStatus.PROVISIONING)
        else:
            conditions.append(Store.database_status == status)
    page = list(
        session.scalars(
            select(Store).where(*conditions).order_by(Store.slug).limit(limit).offset(offset)
        )
    )
    total = int(session.scalar(select(func.count()).select_from(Store).where(*conditions)) or 0)
    ids = [s.id for s in page]
    servers = _servers(session, ids)
    backups = _last_backups(session, ids)
    running = _provisioning(session, ids)
    rows = []
    for store in page:
        state = str(store.database_status)
        if state == DatabaseStatus.PROVISIONING and store.id not in running:
            state = "pending"
        rows.append(StoreRow(store, state, servers.get(store.id), backups.get(store.id)))
    return rows, total


def _servers(session: Session, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Each store's server name, or its engine for a database on no registered server."""
    if not ids:
        return {}
    found = session.execute(
        select(IntegrationConfig.store_id, DatabaseServer.name, IntegrationConfig.config_data)
        .outerjoin(DatabaseServer, DatabaseServer.id == IntegrationConfig.database_server_id)
        .where(IntegrationConfig.store_id.in_(ids), IntegrationConfig.is_active.is_(True))
    )
    servers: dict[uuid.UUID, str] = {}
    for store_id, name, config in found:
        servers[store_id] = name or str((config or {}).get("engine") or "own database")
    return servers


def _last_backups(session: Session, ids: list[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    """When each store's last successful backup finished."""
    if not ids:
        return {}
    found = session.execute(
        select(Backup.store_id, func.max(Backup.finished_at))
        .where(Backup.store_id.in_(ids), Backup.status.in_(GOOD_BACKUP_STATUSES))
        .group_by(Backup.store_id)
    )
    return {store_id: at for store_id, at in found if store_id is not None and at is not None}


def _provisioning(session: Session, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """The stores with a provisioning job that is not over."""
    if not ids:
        return set()
    found = session.scalars(
        select(Operation.store_id).where(
            Operation.store_id.in_(ids),
            Operation.kind == OperationKind.PROVISION,
            Operation.status.in_(ACTIVE_STATUSES),
        )
    )
    return {i for i in found if i is not None}


def running_operation(session: Session, store_id: uuid.UUID) -> Operation | None:
    """The store's newest operation that is not over (a provisioning job, a move…): what its
    page follows live, found again after a reload."""
    return session.scalar(
        select(Operation)
        .where(Operation.store_id == store_id, Operation.status.in_(ACTIVE_STATUSES))
        .order_by(Operation.created_at.desc())
        .limit(1)
    )


#: How long a store's page still shows the operation that just ended (its final bar).
JUST_ENDED = timedelta(minutes=2)


def just_ended_operation(session: Session, store_id: uuid.UUID) -> Operation | None:
    """The store's newest operation, if it ended within :data:`JUST_ENDED`: the page that
    followed it live reloads when it ends and shows how it ended."""
    return session.scalar(
        select(Operation)
        .where(
            Operation.store_id == store_id,
            Operation.status.not_in(ACTIVE_STATUSES),
            Operation.finished_at >= utcnow() - JUST_ENDED,
        )
        .order_by(Operation.finished_at.desc())
        .limit(1)
    )
