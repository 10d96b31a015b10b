"""Spare databases: tenant databases cloned ahead of time, waiting for a store to claim one.

A spare is a copy of the current schema template, stamped with an *unassigned* identity (role
``spare``), on a registered server or as a SQLite file in the data dir. Provisioning claims a
ready one (the row is deleted in the claiming transaction), stamps the store's identity on it
and renames it to the store's database name. A row is written (``building``) before its
database is made, so a refill that dies half-way leaves a row the next refill cleans up, never
an unrecorded database.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.crypto import sealed_column
from tenantry.db.master.models.base import MasterBase
from tenantry.db.types import CreatedAt, UuidPk


class SpareStatus(StrEnum):
    """Where a spare is: its database being made, ready to be claimed, or being dropped."""

    BUILDING = "building"
    READY = "ready"
    #: Being dropped (stale, or beyond the bound): no longer claimable.
    RETIRING = "retiring"


class SpareDatabase(MasterBase):
    """One spare database (a row while it exists and is nobody's)."""

    __tablename__ = "spare_databases"
    __table_args__ = (Index("ix_spare_databases_pool", "database_server_id", "status"),)

    id: Mapped[UuidPk]
    #: The server it is on; ``None``: a SQLite file in ``$TENANTRY_DATA_DIR/spares``.
    database_server_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("database_servers.id", ondelete="CASCADE")
    )
    #: Its database name on the server (or file stem): ``tenantry_spare_<hex>``.
    database_name: Mapped[str] = mapped_column(String(63), unique=True)
    #: The template it was cloned from (schema and head revision): another one is stale.
    template: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(16))  # a SpareStatus
    #: PostgreSQL: the sealed password of the spare's runtime login (named as the database,
    #: granted ``service`` on it), renamed to the store's login when a store claims it.
    login_secret_encrypted: Mapped[str | None] = sealed_column()
    created_at: Mapped[CreatedAt]
