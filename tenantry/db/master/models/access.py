"""Access roles: database logins tenantry created for people and tools (seed 004)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.db.master.models.base import MasterBase
from tenantry.db.types import CreatedAt, UTCDateTime, UuidPk


class AccessRole(MasterBase):
    """A login made by ``tenantry access grant``: where it may go and at what level.

    The password is never stored: it is shown once when the role is granted.
    """

    __tablename__ = "access_roles"

    id: Mapped[UuidPk]
    #: The login's name on every server it was created on.
    name: Mapped[str] = mapped_column(String(32), index=True)
    #: ``master``, ``billing``, ``store:SLUG`` or ``all-tenants``.
    scope: Mapped[str] = mapped_column(String(80))
    #: ``readonly``, ``service`` or ``admin``.
    level: Mapped[str] = mapped_column(String(16))
    #: The servers the login exists on (``backend://host:port``, no credentials).
    servers: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    #: The databases it was granted on.
    databases: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[CreatedAt]
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
