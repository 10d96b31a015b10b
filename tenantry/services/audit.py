"""The audit log in master: who did what to which thing."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from tenantry.db.master.models import AuditLog


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None = None,
    store_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
    actor_app: str | None = None,
) -> AuditLog:
    """Add an audit entry to ``session`` (committed with the caller's transaction).

    ``details`` must never hold a secret.
    """
    entry = AuditLog(
        actor=actor,
        actor_app=actor_app,
        action=action,
        target_type=target_type,
        target_id=target_id,
        store_id=store_id,
        details=details or {},
    )
    session.add(entry)
    return entry
