"""Queued imports of a shared database (``tenantry import shared --queue``).

The workers that run each store's import need the source and the mapping long after the
command that queued them has ended: :class:`ImportSource` keeps them, the source URL sealed
(its password is a credential, re-encrypted by key rotation like every sealed column), for
as long as one of its store imports is unfinished; the last one to end deletes it.
:class:`ImportJob` ties each store's ``import`` operation to its source.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tenantry.crypto import sealed_column
from tenantry.db.master.models.base import MasterBase
from tenantry.db.types import GUID, CreatedAt, UuidPk


class ImportSource(MasterBase):
    """A shared database queued store imports read from, and how to map it."""

    __tablename__ = "import_sources"

    id: Mapped[UuidPk]
    #: The source database's URL, sealed (never shown: operations name the store only).
    source_url: Mapped[str] = sealed_column()
    #: The mapping document (the YAML file's content), as ``parse_mapping`` reads it.
    mapping: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    #: Where stores created by the import get their database (None: SQLite files).
    server: Mapped[str | None] = mapped_column(String(63))
    batch_rows: Mapped[int] = mapped_column(Integer, nullable=False)
    requested_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[CreatedAt]


class ImportJob(MasterBase):
    """One store's queued ``import`` operation and the source it reads."""

    __tablename__ = "import_jobs"

    operation_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("operations.id", ondelete="CASCADE"), primary_key=True
    )
    source_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("import_sources.id", ondelete="CASCADE"), index=True, nullable=False
    )
