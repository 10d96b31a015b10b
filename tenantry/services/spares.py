"""Master's record of the spare database pool: what is ready, reserved, stale, and claiming one.

The databases themselves are :mod:`tenantry.db.spares`'; filling and retiring the pool is
:mod:`tenantry.operations.spare_pool`'s, claiming one for a store :mod:`tenantry.operations.
provision_spare`'s. Functions here write in the caller's transaction and never commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, delete, func, select, update
from sqlalchemy.orm import Session

from tenantry.db.master.models import SpareDatabase, SpareStatus

SPARES = cast(Table, SpareDatabase.__table__)


@dataclass(frozen=True)
class ClaimedSpare:
    """A spare taken out of the pool for one store (its row is gone)."""

    id: uuid.UUID
    database_name: str
    #: The sealed password of its runtime login (PostgreSQL), or None.
    login_secret: str | None = None


@dataclass(frozen=True)
class PoolCount:
    """A pool's spares: ready for the current template, being made (or dropped), and stale."""

    ready: int = 0
    building: int = 0
    stale: int = 0

    @property
    def total(self) -> int:
        """Every spare database of the pool, whatever its state."""
        return self.ready + self.building + self.stale


def pool(session: Session, server_id: uuid.UUID | None) -> list[SpareDatabase]:
    """The spares of one pool (a server's, or SQLite's for ``None``), oldest first."""
    where = (
        SpareDatabase.database_server_id.is_(None)
        if server_id is None
        else SpareDatabase.database_server_id == server_id
    )
    query = select(SpareDatabase).where(where).order_by(SpareDatabase.created_at)
    return list(session.scalars(query))


def every_spare(session: Session) -> list[SpareDatabase]:
    """Every spare of every pool."""
    return list(session.scalars(select(SpareDatabase).order_by(SpareDatabase.created_at)))


def count(spares: list[SpareDatabase], template: str) -> PoolCount:
    """How many of ``spares`` are ready for ``template``, being made, or stale."""
    ready = sum(1 for s in spares if s.status == SpareStatus.READY and s.template == template)
    building = sum(1 for s in spares if s.status != SpareStatus.READY)
    return PoolCount(ready, building, len(spares) - ready - building)


def reserve(session: Session, server_id: uuid.UUID | None, name: str, template: str) -> uuid.UUID:
    """Record spare ``name`` as being made (before its database exists, so a refill that
    dies leaves a row to clean up rather than an unrecorded database); its id."""
    spare = SpareDatabase(
        database_server_id=server_id,
        database_name=name,
        template=template,
        status=SpareStatus.BUILDING,
    )
    session.add(spare)
    session.flush()
    return spare.id


def mark_ready(session: Session, spare_id: uuid.UUID, login_secret: str | None = None) -> bool:
    """The spare's database is made and stamped (and its login, sealed ``login_secret``, made
    and granted): claimable. False when its row is gone."""
    done = session.execute(
        update(SpareDatabase)
        .where(SpareDatabase.id == spare_id, SpareDatabase.status == SpareStatus.BUILDING)
        .values(status=SpareStatus.READY, login_secret_encrypted=login_secret)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(done, "rowcount", 0))


def retire(session: Session, spare_id: uuid.UUID) -> bool:
    """Take a ready spare out of the claimable set before dropping it; False when a store
    claimed it meanwhile (its row is gone)."""
    done = session.execute(
        update(SpareDatabase)
        .where(SpareDatabase.id == spare_id, SpareDatabase.status == SpareStatus.READY)
        .values(status=SpareStatus.RETIRING)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(done, "rowcount", 0))


def forget(session: Session, spare_id: uuid.UUID) -> None:
    """Remove a spare's row (its database was dropped, or never made)."""
    session.execute(
        delete(SpareDatabase)
        .where(SpareDatabase.id == spare_id)
        .execution_options(synchronize_session=False)
    )


#: Spares a claim tries, oldest first, before it says there is none (claimers at once each
#: skip the ones the others hold).
CLAIM_CANDIDATES = 16


def claim_ready(
    conn: Connection, server_id: uuid.UUID | None, template: str
) -> ClaimedSpare | None:
    """Take one ready spare of the pool for ``template`` out of it, in the caller's
    transaction on ``conn``; None when there is none. Of several claimers at once each gets
    a different spare: a row is locked (skipping those others hold) on a server master and
    the delete must remove it; SQLite's writer transactions run one at a time."""
    where = [SPARES.c.status == SpareStatus.READY.value, SPARES.c.template == template]
    where.append(
        SPARES.c.database_server_id.is_(None)
        if server_id is None
        else SPARES.c.database_server_id == server_id
    )
    columns = (SPARES.c.id, SPARES.c.database_name, SPARES.c.login_secret_encrypted)
    oldest = select(*columns).where(*where).order_by(SPARES.c.created_at)
    if conn.dialect.name == "sqlite":
        return _take(conn, conn.execute(oldest.limit(1)).first())
    # The oldest few, read without locks, then each locked by its key (skipping one another
    # claimer holds). One locking read over the pool would lock every row InnoDB reads to
    # sort it (MariaDB/MySQL), so the claimers after the first found every spare taken and
    # took the slow path while spares were ready.
    candidates = conn.execute(oldest.with_only_columns(SPARES.c.id).limit(CLAIM_CANDIDATES))
    for spare_id in candidates.scalars().all():
        mine = select(*columns).where(SPARES.c.id == spare_id, *where)
        row = conn.execute(mine.with_for_update(skip_locked=True)).first()
        if row is not None:  # None: another claimer has it (or had it and is done)
            return _take(conn, row)
    return None


def _take(conn: Connection, row: Row[Any, Any, Any] | None) -> ClaimedSpare | None:
    """Delete the claimed spare's row; the claim is the caller's if the delete removed it."""
    if row is None:
        return None
    gone = conn.execute(delete(SPARES).where(SPARES.c.id == row.id)).rowcount
    if gone != 1:
        return None
    return ClaimedSpare(row.id, str(row.database_name), row.login_secret_encrypted)


def pools_counts(session: Session, template: str) -> dict[uuid.UUID | None, PoolCount]:
    """Every pool's counts, by server id (``None``: SQLite)."""
    rows = session.execute(
        select(
            SpareDatabase.database_server_id,
            SpareDatabase.status,
            SpareDatabase.template,
            func.count(),
        ).group_by(
            # The column, not ``template == :t``: PostgreSQL sees the comparison in the
            # select list and the one in GROUP BY as two expressions (two parameters).
            SpareDatabase.database_server_id,
            SpareDatabase.status,
            SpareDatabase.template,
        )
    ).all()
    found: dict[uuid.UUID | None, list[int]] = {}
    for server_id, status, made_from, n in rows:
        current = made_from == template
        slot = found.setdefault(server_id, [0, 0, 0])
        if status != SpareStatus.READY:
            slot[1] += n
        elif current:
            slot[0] += n
        else:
            slot[2] += n
    return {k: PoolCount(*v) for k, v in found.items()}
