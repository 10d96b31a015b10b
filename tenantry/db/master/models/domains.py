"""Custom domains of stores: the hosts a store's own app is served on (issue 22)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.db.master.models.base import MasterBase
from tenantry.db.types import CreatedAt, UTCDateTime, UuidPk


class StoreDomain(MasterBase):
    """A host name a store claims; it resolves to the store only once verified.

    ``token`` is what the operator publishes (DNS TXT ``_tenantry.HOST`` or
    ``http://HOST/.well-known/tenantry/<token>``) to prove they control the host. It is a
    proof of control, not a credential: showing it again does no harm.
    """

    __tablename__ = "store_domains"

    id: Mapped[UuidPk]
    store_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), index=True
    )
    #: Lower case, no port, no trailing dot: the form resolution compares with.
    host: Mapped[str] = mapped_column(String(253), unique=True)
    token: Mapped[str] = mapped_column(String(64))
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[CreatedAt]
