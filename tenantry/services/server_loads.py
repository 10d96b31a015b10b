"""How full each registered database server is: its stores, their measured bytes, headroom.

A store counts on a server from the moment it is bound to go there: its active connection
is there, a queued or running provisioning job will create its database there, or a move is
copying it there. Bytes are the stores' measured sizes (``stores.storage_used_bytes``, kept by
the usage rollup), so listing loads never opens a tenant database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, literal, select, union_all
from sqlalchemy.orm import Session

from tenantry.db.master.models import (
    ACTIVE_STATUSES,
    DatabaseServer,
    IntegrationConfig,
    OperationStatus,
    ProvisioningJob,
    Store,
    StoreMove,
)

#: A provisioning job in one of these states may still create a database on its server.
_UNFINISHED_JOBS = (OperationStatus.QUEUED, OperationStatus.RUNNING)


@dataclass(frozen=True)
class ServerLoad:
    """One server with what it holds and how much more it may take."""

    server: DatabaseServer
    tenants: int
    bytes: int

    @property
    def tenant_headroom(self) -> int | None:
        """Stores it may still take (``None``: no bound)."""
        if self.server.max_tenants is None:
            return None
        return max(0, self.server.max_tenants - self.tenants)

    @property
    def byte_headroom(self) -> int | None:
        """Bytes it may still take (``None``: no bound)."""
        if self.server.max_bytes is None:
            return None
        return max(0, self.server.max_bytes - self.bytes)

    @property
    def full(self) -> str | None:
        """Which bound it has reached, said for people (``None``: it has room)."""
        if self.tenant_headroom == 0:
            return f"full: {self.tenants} of {self.server.max_tenants} stores"
        if self.byte_headroom == 0:
            return f"full: {self.bytes} of {self.server.max_bytes} bytes"
        return None


def server_loads(session: Session, servers: list[DatabaseServer]) -> list[ServerLoad]:
    """The load of each of ``servers``, in their order (two queries, whatever the count)."""
    ids = [s.id for s in servers]
    if not ids:
        return []
    tenants, sizes = _counts(session, ids)
    return [ServerLoad(s, tenants.get(s.id, 0), sizes.get(s.id, 0)) for s in servers]


def _counts(
    session: Session, ids: list[uuid.UUID]
) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, int]]:
    """Stores and bytes per server id."""
    connected = select(
        IntegrationConfig.database_server_id.label("server_id"),
        IntegrationConfig.store_id.label("store_id"),
    ).where(
        IntegrationConfig.is_active.is_(True),
        IntegrationConfig.database_server_id.in_(ids),
    )
    provisioning = select(
        ProvisioningJob.database_server_id.label("server_id"),
        ProvisioningJob.store_id.label("store_id"),
    ).where(
        ProvisioningJob.database_server_id.in_(ids),
        ProvisioningJob.operation_status.in_(_UNFINISHED_JOBS),
    )
    moving_in = (
        select(DatabaseServer.id.label("server_id"), StoreMove.store_id.label("store_id"))
        .join(DatabaseServer, DatabaseServer.name == StoreMove.to_server)
        .where(DatabaseServer.id.in_(ids), StoreMove.operation_status.in_(ACTIVE_STATUSES))
    )
    bound = union_all(connected, provisioning, moving_in).subquery()
    # DISTINCT: a store counts once per server, whichever ways it is bound there.
    placed = select(bound.c.server_id, bound.c.store_id).distinct().subquery()
    rows = session.execute(
        select(
            placed.c.server_id,
            func.count(),
            func.coalesce(func.sum(Store.storage_used_bytes), literal(0)),
        )
        .join(Store, Store.id == placed.c.store_id)
        .group_by(placed.c.server_id)
    )
    tenants: dict[uuid.UUID, int] = {}
    sizes: dict[uuid.UUID, int] = {}
    for server_id, count, size in rows:
        tenants[server_id] = int(count)
        sizes[server_id] = int(size or 0)
    return tenants, sizes
