"""Request and response bodies of the database-server routes (placement labels, capacity)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from tenantry.api.fields import (
    LABEL_PATTERN,
    TEXT_MAX,
    Bound32,
    ByteBound,
    RequestModel,
    StrictBool,
)

POOLER_DOC = (
    "PgBouncer (transaction mode) in front of this PostgreSQL server; stores' runtime "
    "connections go through it. Stored encrypted, never shown."
)
Label = Annotated[str, Field(pattern=LABEL_PATTERN)]


class ServerCreate(RequestModel):
    """A database server to register, with its placement labels and capacity."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$")
    url: str = Field(
        min_length=8, max_length=2048, description="Admin URL; stored encrypted, never shown."
    )
    notes: str | None = Field(None, max_length=TEXT_MAX)
    region: Label | None = Field(
        None, description="Region label, matched against stores' residency."
    )
    tier: Label | None = Field(None, description="Tier label, matched against stores' residency.")
    max_tenants: Bound32 | None = Field(
        None, description="At most this many stores (null: no bound)."
    )
    max_bytes: ByteBound | None = Field(None, description="At most this many bytes of stores.")
    accepting: StrictBool = Field(True, description="Whether placement may put new stores here.")
    pooler_url: str | None = Field(None, min_length=8, max_length=2048, description=POOLER_DOC)


class ServerUpdate(RequestModel):
    """Changes to a server's labels and capacity: only the fields given change; ``null``
    clears a label or a bound."""

    region: Label | None = None
    tier: Label | None = None
    max_tenants: Bound32 | None = None
    max_bytes: ByteBound | None = None
    #: Not nullable: only the fields given change, and a server either accepts or not.
    accepting: StrictBool = True
    #: ``null`` takes the pooler away (stores connect directly again).
    pooler_url: str | None = Field(None, min_length=8, max_length=2048, description=POOLER_DOC)


class ServerOut(BaseModel):
    """A registered server with its labels, capacity and load; never its URL's password."""

    id: uuid.UUID
    name: str
    engine: str
    host: str
    port: int
    is_active: bool
    created_at: datetime
    region: str | None = None
    tier: str | None = None
    max_tenants: int | None = None
    max_bytes: int | None = None
    accepting: bool = True
    pooled: bool = Field(
        False, description="Whether stores' runtime connections go through a pooler."
    )
    tenants: int = Field(0, description="Stores whose database is (or is being put) here.")
    bytes: int = Field(0, description="Their measured sizes (the usage rollup's).")
    tenant_headroom: int | None = Field(
        None, description="Stores it may still take (null: no bound)."
    )
    byte_headroom: int | None = Field(None, description="Bytes it may still take (null: no bound).")
