"""Platform users' login sessions and failed logins (for the web console and the API)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.db.master.models.base import MasterBase
from tenantry.db.types import CreatedAt, UTCDateTime, UuidPk


class UserSession(MasterBase):
    """A signed-in user's session; only the SHA-256 of its random token is stored."""

    __tablename__ = "user_sessions"

    id: Mapped[UuidPk]
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[CreatedAt]
    #: The session ends then however active it is (absolute timeout).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Last request (written at most once a minute); idle past the idle timeout, it ends.
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))


class LoginFailure(MasterBase):
    """A failed login (wrong password, unknown email, disabled user), counted to slow down
    guessing per email and address."""

    __tablename__ = "login_failures"
    __table_args__ = (Index(None, "email", "ip_address"),)

    id: Mapped[UuidPk]
    email: Mapped[str] = mapped_column(String(255))
    ip_address: Mapped[str] = mapped_column(String(45), index=True)
    created_at: Mapped[CreatedAt] = mapped_column(index=True)
