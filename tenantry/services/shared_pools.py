"""What master keeps about shared PostgreSQL databases' pool logins (see
:mod:`tenantry.db.shared_schemas`): every shared-schema store's connection carries the pool
login's sealed password, so the first active one of a database is its password."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantry.db.master.models import IntegrationConfig


def pool_secret(session: Session, server_id: uuid.UUID, database: str) -> str | None:
    """The sealed password master keeps for shared database ``database``'s pool login on
    server ``server_id`` (any active store's connection there), or ``None``."""
    for config in session.scalars(
        select(IntegrationConfig).where(
            IntegrationConfig.database_server_id == server_id,
            IntegrationConfig.db_schema.is_not(None),
            IntegrationConfig.is_active.is_(True),
        )
    ):
        if config.config_data.get("database") == database and config.secret_encrypted:
            return str(config.secret_encrypted)
    return None
